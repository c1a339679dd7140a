"""Item and user groups, as protocol.md defines them for each protocol.

``full``: popularity = interactions in the training part; head items = top 20% of items (ties by
item id), long users = top 20% by training-sequence length (ties by user id).
``paper`` (LLM-ESR / LLMEmb): tail item if full-data popularity < ts_item; short user if the
test input length (train + valid, capped at max_len) < ts_user. Thresholds are per dataset copy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError


@dataclass
class SequenceStats:
    """Per-item and per-user counts indexed by RecBole's internal ids (index 0 = padding)."""

    train_pop: np.ndarray  # (n_items,) interactions in the training part
    full_pop: np.ndarray  # (n_items,) interactions in the whole data
    train_len: np.ndarray  # (n_users,) training-sequence length (all but the last two)
    full_len: np.ndarray  # (n_users,) whole-sequence length
    user_items: list[np.ndarray]  # internal item ids of each user's whole sequence (by uid)

    @classmethod
    def from_interactions(cls, inter: pd.DataFrame, dataset, name: str) -> "SequenceStats":
        """``inter``: prepared interactions sorted by (user, ts); ``dataset``: RecBole Dataset."""
        uid = inter["user"].map(dataset.field2token_id[dataset.uid_field]).to_numpy()
        iid = inter["item"].map(dataset.field2token_id[dataset.iid_field]).to_numpy()
        return cls.from_codes(uid, iid, inter["user"], dataset.user_num, dataset.item_num, name)

    @classmethod
    def from_codes(cls, uid: np.ndarray, iid: np.ndarray, users: pd.Series, n_users: int,
                   n_items: int, name: str) -> "SequenceStats":
        """Integer ids (0 = padding) of interactions sorted by (user, ts); ``users`` the raw ids."""
        full_len = np.bincount(uid, minlength=n_users)
        short = np.flatnonzero(full_len[1:] < 3)
        if len(short):
            raise BenchError(f"dataset '{name}': {len(short)} users have fewer than 3 interactions; "
                             "leave-one-out needs train, valid and test items. Filter them out.")
        # position from the end of each user's sequence: 0 = test item, 1 = valid item
        from_end = users.groupby(users, sort=False).cumcount(ascending=False).to_numpy()
        train = from_end >= 2
        order = np.argsort(uid, kind="stable")
        bounds = np.cumsum(full_len)[:-1]
        return cls(train_pop=np.bincount(iid[train], minlength=n_items),
                   full_pop=np.bincount(iid, minlength=n_items),
                   train_len=np.maximum(full_len - 2, 0), full_len=full_len,
                   user_items=np.split(iid[order], bounds))


def _top_fraction(values: np.ndarray, ids: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask over ``ids``: the top ``fraction`` by value, ties broken by smaller id."""
    n_top = math.ceil(fraction * len(ids))
    order = np.lexsort((ids, -values[ids]))
    top = np.zeros(len(values), dtype=bool)
    top[ids[order[:n_top]]] = True
    return top


def _check_thresholds(thresholds: dict[str, Any] | None) -> None:
    if not thresholds or thresholds.get("item") is None or thresholds.get("user") is None:
        raise BenchError("the 'paper' protocol needs dataset.paper_thresholds.item and .user "
                         "(LLM-ESR values: Yelp 13/12, Fashion 4/3, Beauty 4/9)")


def head_items(stats: SequenceStats, protocol: dict[str, Any],
               thresholds: dict[str, Any] | None) -> np.ndarray:
    """Boolean mask over internal item ids (index 0 = padding, never head)."""
    if protocol["groups"] == "quantile":
        item_ids = np.arange(1, len(stats.train_pop))
        return _top_fraction(stats.train_pop, item_ids, protocol["head_fraction"])
    if protocol["groups"] == "threshold":
        _check_thresholds(thresholds)
        head = stats.full_pop >= int(thresholds["item"])
        head[0] = False
        return head
    raise BenchError(f"unknown protocol groups '{protocol['groups']}'; use quantile or threshold")


def long_users(stats: SequenceStats, protocol: dict[str, Any], thresholds: dict[str, Any] | None,
               max_len: int) -> np.ndarray:
    """Boolean mask over internal user ids (index 0 = padding, never long)."""
    if protocol["groups"] == "quantile":
        user_ids = np.arange(1, len(stats.train_len))
        return _top_fraction(stats.train_len, user_ids, protocol["head_fraction"])
    if protocol["groups"] == "threshold":
        _check_thresholds(thresholds)
        long = np.minimum(stats.full_len - 1, max_len) >= int(thresholds["user"])
        long[0] = False
        return long
    raise BenchError(f"unknown protocol groups '{protocol['groups']}'; use quantile or threshold")


def group_masks(stats: SequenceStats, users: np.ndarray, targets: np.ndarray,
                protocol: dict[str, Any], thresholds: dict[str, Any] | None,
                max_len: int) -> dict[str, np.ndarray]:
    """Boolean masks over the test cases for head/tail items and long/short users."""
    head_item = head_items(stats, protocol, thresholds)[targets]
    long_user = long_users(stats, protocol, thresholds, max_len)[users]
    return {"head_item": head_item, "tail_item": ~head_item,
            "long_user": long_user, "short_user": ~long_user}
