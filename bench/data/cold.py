"""The cold-start view of a prepared dataset (``protocol=cold``).

A seeded random share of the items (``protocol.cold_fraction``, drawn with
``protocol.cold_seed``) is held out of training entirely, as items added to the catalogue after
the model was trained. Every interaction with a cold item is removed except the last
interaction of a user whose last item is cold: that is the user's test target. So

* no cold item is ever a training input or target, nor a validation target (validation, and
  early stopping, see warm items only: a deployed model cannot be tuned on items it never saw);
* the test users are exactly the users whose last item is cold; their input sequence holds
  only warm items;
* users left with fewer than 3 interactions (train, valid, test) are dropped and counted.

The item table is the source's, unchanged: every item keeps its text, and the RecBole export
lists every item, so all items (cold and warm) are candidates at test time. Text-only stages
(item encoding, LLMEmb's SCFT) read the text of all items, as under ``full``; only
interactions are held out. The view is written as its own prepared dataset (own fingerprint,
checksums) under ``<cache>/prepared/<name>@cold-<fraction>-<seed>``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.data.prepared import (PreparedDataset, built_by_current_code, load_prepared,
                                 write_prepared)
from bench.errors import BenchError

MIN_USER_LEN = 3  # leave-one-out: a training, a validation and a test item


def is_cold(protocol: dict[str, Any]) -> bool:
    return protocol.get("cold_fraction") is not None


def cold_item_set(items: pd.Series, fraction: float, seed: int) -> set[str]:
    """``round(fraction * n)`` items drawn uniformly (``seed``) from the sorted item ids, so the
    draw depends only on the item ids, the fraction and the seed."""
    ids = np.sort(items.astype(str).unique())
    n_cold = int(round(fraction * len(ids)))
    if not 0 < n_cold < len(ids):
        raise BenchError(f"protocol.cold_fraction={fraction} holds out {n_cold} of {len(ids)} "
                         "items; choose a fraction that leaves some items cold and some warm")
    chosen = np.random.default_rng(seed).choice(len(ids), size=n_cold, replace=False)
    return set(ids[np.sort(chosen)].tolist())


def hold_out(inter: pd.DataFrame, cold: set[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Interactions (sorted by user, ts) with every cold interaction removed except the last
    interaction of users whose last item is cold; then users too short for leave-one-out go."""
    last = ~inter["user"].duplicated(keep="last").to_numpy()
    cold_row = inter["item"].isin(cold).to_numpy()
    kept = inter[~cold_row | last]
    length = kept.groupby("user", sort=False)["user"].transform("size").to_numpy()
    short = length < MIN_USER_LEN
    out = kept[~short].reset_index(drop=True)
    is_last = ~out["user"].duplicated(keep="last").to_numpy()
    counts = {
        "cold_interactions_removed": int((cold_row & ~last).sum()),
        "users_dropped": int(kept.loc[short, "user"].nunique()),
        "interactions_dropped_with_users": int(short.sum()),
        "test_users": int((is_last & out["item"].isin(cold).to_numpy()).sum()),
    }
    return out, counts


def cold_view(prepared: PreparedDataset, protocol: dict[str, Any],
              cache_dir: Path) -> PreparedDataset:
    """The cold-start view of ``prepared`` for ``protocol`` (built once, then loaded)."""
    fraction, seed = float(protocol["cold_fraction"]), int(protocol["cold_seed"])
    name = f"{prepared.name}@cold-{fraction:g}-{seed}"
    out_dir = Path(cache_dir) / "prepared" / name
    if (out_dir / "meta.json").exists():
        view = load_prepared(out_dir)
        if (view.meta["source"].get("cold_start", {}).get("source_fingerprint")
                == prepared.fingerprint and built_by_current_code(view)):
            return view
    cold = cold_item_set(prepared.items["item"], fraction, seed)
    inter, counts = hold_out(prepared.interactions, cold)
    if counts["test_users"] == 0:
        raise BenchError(f"dataset '{prepared.name}': no user's last item is among the "
                         f"{len(cold)} cold items (cold_seed={seed}); raise "
                         "protocol.cold_fraction or use a larger dataset")
    source = {"loader": "cold_start", "cold_start": {
        "source_fingerprint": prepared.fingerprint, "fraction": fraction, "seed": seed,
        "n_cold_items": len(cold), **counts, "items": sorted(cold)},
        # item text is the source's byte for byte: text caches stay keyed on the source
        "text_fingerprint": prepared.text_fingerprint}
    view = write_prepared(out_dir, prepared.name, inter, prepared.items, source)
    if view.meta["sha256"]["items.tsv"] != prepared.meta["sha256"]["items.tsv"]:
        raise BenchError(f"the cold view of '{prepared.name}' changed the item table; delete "
                         f"{out_dir} and {prepared.path} and prepare again")
    return view


def cold_items(prepared: PreparedDataset) -> list[str]:
    """The held-out item ids of a cold view; empty for any other prepared dataset."""
    return list(prepared.meta["source"].get("cold_start", {}).get("items", []))
