"""One exception type for every user-facing mistake: the CLI prints it as one line, exit code 2."""
from __future__ import annotations

import difflib
from typing import Iterable


class BenchError(Exception):
    """Bad input from the user (name, file, value). The message says what and how to fix it."""


def unknown_name(kind: str, name: str, known: Iterable[str]) -> BenchError:
    """``unknown dataset 'beuaty' (did you mean 'beauty'?); known: ...``"""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return BenchError(f"unknown {kind} '{name}'{hint}; known {kind}s: {', '.join(known)}")
