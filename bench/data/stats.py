"""Dataset statistics for the cards: ``python -m bench data stats <name>``.

Sizes, sequence lengths, density, repeats, text coverage per field, and how the two protocols'
group definitions cut this dataset (share of tail items and short users, and of test targets
that are tail items). The groups are computed by ``bench.evaluation.groups`` itself, with ids
numbered in order of first appearance as RecBole numbers them, so the shares printed here are
the shares a run's record will report.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.data.prepared import PreparedDataset
from bench.evaluation.groups import SequenceStats, head_items, long_users

def _markers(name: str) -> tuple[str, str]:
    return f"<!-- stats:{name}:begin -->", f"<!-- stats:{name}:end -->"


def _codes(values: pd.Series) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(values)
    return codes + 1, len(uniques) + 1  # 0 is padding, as in RecBole


def group_shares(ds: PreparedDataset, protocol: dict[str, Any],
                 thresholds: dict[str, Any] | None) -> dict[str, float]:
    """Share of tail items, short users and tail-item test targets under one protocol."""
    inter = ds.interactions  # sorted by (user, ts): each user's rows are contiguous
    uid, n_users = _codes(inter["user"])
    iid, n_items = _codes(inter["item"])
    seq = SequenceStats.from_codes(uid, iid, inter["user"], n_users, n_items, ds.name)
    is_last = np.r_[uid[1:] != uid[:-1], True]
    head = head_items(seq, protocol, thresholds)
    long = long_users(seq, protocol, thresholds, protocol["max_seq_length"])
    return {"tail_items": float(1 - head[1:].mean()), "short_users": float(1 - long[1:].mean()),
            "tail_test_targets": float(1 - head[iid[is_last]].mean())}


def dataset_stats(ds: PreparedDataset, protocols: dict[str, dict[str, Any]],
                  thresholds: dict[str, Any] | None) -> dict[str, Any]:
    """Everything a dataset card reports, as plain numbers."""
    inter, items = ds.interactions, ds.items
    lengths = inter.groupby("user", sort=False).size()
    n_users, n_items, n_inter = len(lengths), inter["item"].nunique(), len(inter)
    pairs = inter.drop_duplicates(["user", "item"])
    pop = inter["item"].value_counts()
    stats: dict[str, Any] = {
        "users": n_users, "items": n_items, "interactions": n_inter,
        "length_mean": float(lengths.mean()), "length_median": float(lengths.median()),
        "length_min": int(lengths.min()), "length_max": int(lengths.max()),
        "density": n_inter / (n_users * n_items),
        "users_with_repeats": int((pairs.groupby("user").size() < lengths).sum()),
        "unique_pairs": len(pairs),
        "top20_item_interaction_share": float(pop.iloc[:int(np.ceil(0.2 * n_items))].sum() / n_inter),
        "text_fields": ds.text_fields,
        "text_coverage": {f: float((items[f] != "").mean()) for f in ds.text_fields},
        "any_text": float((items[ds.text_fields] != "").any(axis=1).mean()) if ds.text_fields else 0.0,
        "repairs": ds.meta["source"].get("repairs", {}),
        "filtering": ds.meta["source"].get("counts", {}),
        "fingerprint": ds.fingerprint,
        "groups": {name: group_shares(ds, p, thresholds) for name, p in protocols.items()},
        "paper_thresholds": thresholds,
    }
    return stats


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def stats_markdown(stats: dict[str, Any]) -> str:
    """The statistics section of a dataset card (GitHub markdown)."""
    from tabulate import tabulate

    s = stats
    size = [["users", f"{s['users']:,}"], ["items", f"{s['items']:,}"],
            ["interactions", f"{s['interactions']:,}"],
            ["sequence length", f"mean {s['length_mean']:.2f}, median {s['length_median']:g}, "
                                f"min {s['length_min']}, max {s['length_max']}"],
            ["density", f"{100 * s['density']:.3f}%"],
            ["users with a repeated item", f"{s['users_with_repeats']:,} "
                                           f"({s['unique_pairs']:,} unique user-item pairs)"],
            ["interactions on the top 20% items", _pct(s["top20_item_interaction_share"])],
            ["fingerprint", f"`{s['fingerprint']}`"]]
    if s["text_fields"]:
        cover = ", ".join(f"{f} {_pct(v)}" for f, v in s["text_coverage"].items())
        size.append(["text coverage (items)", f"{cover}; any field {_pct(s['any_text'])}"])
    else:
        size.append(["text coverage (items)", "none: ID-only dataset (LLM methods cannot run on it)"])
    repairs = {k: v for k, v in s["repairs"].items() if v}
    size.append(["repairs", ", ".join(f"{k} {v:,}" for k, v in repairs.items()) or "none needed"])
    if s["filtering"]:
        size.append(["recipe filtering", ", ".join(f"{k} {v:,}" for k, v in s["filtering"].items())])
    thr = s["paper_thresholds"] or {}
    rows = [[name, _pct(g["tail_items"]), _pct(g["short_users"]), _pct(g["tail_test_targets"])]
            for name, g in s["groups"].items()]
    groups = tabulate(rows, headers=["protocol groups", "tail items", "short users",
                                     "test targets on tail items"], tablefmt="github")
    return (tabulate(size, headers=["statistic", "value"], tablefmt="github") + "\n\n" + groups +
            f"\n\n`full`: tail = the 80% least popular items in the training part, short = the 80% "
            f"shortest training sequences. `paper`: tail item if full-data popularity < "
            f"{thr.get('item')}, short user if input length < {thr.get('user')} (LLM-ESR / LLMEmb "
            f"thresholds).\n")


def update_card(card_text: str, name: str, section: str) -> str:
    """Replace dataset ``name``'s statistics block in a card (appended when absent); a card may
    hold several datasets (``yelp`` and ``yelp-llmesr``), each in its own marked block."""
    begin, end = _markers(name)
    block = f"{begin}\n{section}{end}"
    if begin in card_text and end in card_text:
        head, rest = card_text.split(begin, 1)
        return head + block + rest.split(end, 1)[1]
    return card_text.rstrip("\n") + f"\n\n### `{name}` (`python -m bench data stats {name}`)\n" \
        + block + "\n"
