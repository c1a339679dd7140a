"""What the trained models say about themselves, as tables on the page.

An adapter's ``trained_info`` may return a *table*: a dict whose values are lists of one common
length (columns by name, one entry per row), e.g. PAD's gate weights per popularity bin. Such a
value is too long for the "settings" cell, and it is what a reader asks of a gating or mixing
method ("where did the weight go?"), so each one gets a table of its own here, averaged over the
row's seeds. The convention is generic: a new adapter gets its table without touching this file.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from tabulate import tabulate

from bench.leaderboard.load import Page, Row


def is_table(value: Any) -> bool:
    """A dict of at least one list, all lists of one length >= 1."""
    if not isinstance(value, dict) or not value:
        return False
    if not all(isinstance(v, list) for v in value.values()):
        return False
    lengths = {len(v) for v in value.values()}
    return len(lengths) == 1 and lengths != {0}


def _mean_column(columns: list[list[Any]]) -> list[str]:
    """One column over seeds: numbers averaged (integers stay integers when every seed agrees),
    anything else shown when the seeds agree and as "varies" when they do not."""
    out = []
    for cells in zip(*columns):
        if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in cells):
            if all(isinstance(c, int) for c in cells) and len(set(cells)) == 1:
                out.append(str(cells[0]))
            else:
                out.append(f"{float(np.mean(cells)):.4f}")
        else:
            out.append(str(cells[0]) if len(set(map(str, cells))) == 1 else "varies")
    return out


def _row_tables(row: Row) -> list[tuple[str, str]]:
    """(title, markdown) for each table the row's records carry under ``method_info``."""
    infos = [run.record.get("method_info") or {} for run in row.runs]
    seeds = ", ".join(map(str, row.seeds))
    out = []
    for key in sorted(infos[0]):
        tables = [info.get(key) for info in infos]
        if not all(is_table(t) for t in tables):
            continue
        names = list(tables[0])
        if any(list(t) != names or len(t[names[0]]) != len(tables[0][names[0]]) for t in tables):
            out.append((f"{row.name} · `{key}`",
                        "the seeds' tables differ in shape: see the records"))
            continue
        columns = [_mean_column([t[name] for t in tables]) for name in names]
        over = f"mean over seeds {seeds}" if len(row.runs) > 1 else f"seed {seeds}"
        title = f"{row.name} · `{key}` ({over})"
        out.append((title, tabulate(list(zip(*columns)), headers=names, tablefmt="github",
                                    disable_numparse=True)))
    return out


def learned_tables(page: Page) -> str | None:
    """Every row's learned tables, or None when no record carries one."""
    parts = []
    for row in page.rows:
        for title, table in _row_tables(row):
            parts += [f"**{title}**", table]
    if not parts:
        return None
    intro = ("From each record's `method_info` (the adapter's `trained_info`, read after "
             "training with the best weights restored).")
    return "\n\n".join([intro, *parts])
