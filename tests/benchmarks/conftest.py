"""Shared setup for the benchmark suite (``pytest tests/benchmarks --benchmark-only``).

Not part of the default test run (tests/conftest.py skips this folder unless
``--benchmark-only`` is given): these time hot paths, they do not check behaviour.
"""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bench_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("benchmarks")
