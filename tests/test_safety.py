"""Safety: no network at run time, no code run from data (checkpoints, caches, user files,
configs)."""
from __future__ import annotations

import ast
import os
import socket
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, tiny_overrides

from bench.config import compose
from bench.runner import execute

SOURCES = sorted([*(ROOT / "bench").rglob("*.py"), *(ROOT / "methods").rglob("*.py")])


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = (f"{f.value.id}.{f.attr}" if isinstance(f, ast.Attribute)
                    and isinstance(f.value, ast.Name) else getattr(f, "id", None)
                    or getattr(f, "attr", None))
            yield name, node


def _keyword(node: ast.Call, key: str):
    for kw in node.keywords:
        if kw.arg == key and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def test_loads_never_unpickle_and_nothing_is_evaluated_as_code():
    problems = []
    for path in SOURCES:
        for name, node in _calls(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{node.lineno} {name}"
            if name == "torch.load" and _keyword(node, "weights_only") is not True:
                problems.append(f"{where} without weights_only=True")
            if name in ("np.load", "numpy.load") and _keyword(node, "allow_pickle") is not False:
                problems.append(f"{where} without allow_pickle=False")
            if name in ("eval", "exec", "pickle.load", "pickle.loads", "yaml.load",
                        "yaml.unsafe_load", "marshal.loads"):
                problems.append(where)
    assert problems == []


def test_configs_are_plain_yaml_data():
    for path in (ROOT / "configs").rglob("*.yaml"):
        data = yaml.safe_load(path.read_text())  # no tags, no objects: data only
        text = path.read_text()
        assert "!!python" not in text and "_target_: builtins" not in text, path
        assert data is None or isinstance(data, dict), path


def test_hub_lookups_are_disabled_on_import():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


@pytest.mark.slow
def test_a_text_method_runs_with_every_network_connection_refused(tmp_path, monkeypatch):
    """LLM-ESR on tiny: the language model loads, encodes items and users, the run finishes,
    with sockets unable to connect anywhere."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] or kwargs)
        raise OSError("network access attempted during a run")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    cfg = compose(tiny_overrides(tmp_path, "method=llm_esr", "train.epochs=1"))
    outcome = execute(cfg)
    assert Path(outcome.record_path).exists() and attempts == []
