"""Ranks -> HR@K, NDCG@K, MRR@K, overall and per item/user group.

A group metric is the mean over the test cases in the group, reported with its n. An empty
group reports n = 0 and ``None`` (never 0.0): a 0.0 would read as "the method fails on tail
items" when there simply are no tail items (protocol.md).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def metric_columns(ranks: np.ndarray, ks: Sequence[int], mrr_k: int) -> dict[str, np.ndarray]:
    """Per-user metric values; the mean of each column is the reported metric."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hit = ranks <= k
        out[f"HR@{k}"] = hit.astype(np.float64)
        out[f"NDCG@{k}"] = np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0)
    out[f"MRR@{mrr_k}"] = np.where(ranks <= mrr_k, 1.0 / ranks, 0.0)
    return out


def summarize(columns: dict[str, np.ndarray], mask: np.ndarray | None = None) -> dict[str, Any]:
    """Mean of every metric over the users selected by ``mask`` (all when None), with n."""
    n_all = len(next(iter(columns.values())))
    sel = np.ones(n_all, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    n = int(sel.sum())
    out: dict[str, Any] = {"n": n}
    for name, values in columns.items():
        out[name] = float(values[sel].mean()) if n else None
    return out


def grouped_metrics(ranks: np.ndarray, groups: dict[str, np.ndarray], ks: Sequence[int],
                    mrr_k: int) -> dict[str, dict[str, Any]]:
    """``{"overall": {...}, "<group>": {...}}`` for each boolean group mask."""
    columns = metric_columns(ranks, ks, mrr_k)
    result = {"overall": summarize(columns)}
    for name, mask in groups.items():
        result[name] = summarize(columns, mask)
    return result
