"""Recipes from the public raw sources: Amazon 2014 / 2018 review dumps and the Yelp Open Dataset.

Each recipe reads the review file(s) into ``user, item, ts`` rows (ts = the review time, so order
is chronological), applies the card's filtering (rating floor, date window, k-core), and builds
the item text table from the metadata file. Counts of everything removed go into the source
description, so ``meta.json`` and ``data stats`` say what the recipe did.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.data.readers import as_text, iter_json_records, require_keys
from bench.errors import BenchError


def find_raw_file(cfg: dict[str, Any], key: str) -> Path:
    """The first of the config's candidate names for ``key`` that exists in ``raw_dir``."""
    raw_dir = Path(str(cfg.get("raw_dir") or ""))
    names = cfg[key] if isinstance(cfg[key], list) else [cfg[key]]
    for name in names:
        if (raw_dir / name).is_file():
            return raw_dir / name
    hint = (f"python -m bench data download {cfg['name']} --raw {raw_dir}" if cfg.get("downloads")
            else f"see datasets/{cfg.get('card', cfg['name'])}/README.md")
    raise BenchError(f"dataset '{cfg['name']}': none of {', '.join(names)} is in {raw_dir}; "
                     f"put the raw files there ({hint})")


def kcore(inter: pd.DataFrame, user_core: int, item_core: int, iterative: bool = True
          ) -> pd.DataFrame:
    """Keep users with >= user_core and items with >= item_core interactions.

    ``iterative`` repeats until both hold (the usual k-core); ``False`` is LLM-ESR's single pass
    over counts taken once on the raw data (its ``filter_common``).
    """
    while True:
        u = inter["user"].map(inter["user"].value_counts())
        i = inter["item"].map(inter["item"].value_counts())
        keep = (u >= user_core) & (i >= item_core)
        if keep.all():
            return inter
        inter = inter[keep.to_numpy()]
        if not iterative:
            return inter


def _pick(rec: dict[str, Any], keys: str | list[str]) -> Any:
    """The value of the first of ``keys`` present in ``rec`` (schemas differ across releases)."""
    for k in [keys] if isinstance(keys, str) else keys:
        if k in rec:
            return rec[k]
    return None


def read_item_metadata(path: Path, id_key: str, fields: dict[str, Any], wanted: set[str],
                       encoding: str) -> pd.DataFrame:
    """Rows ``item, <field>...`` for the ids in ``wanted``; ``fields`` maps field -> key(s)."""
    rows = {}
    for line_no, rec in iter_json_records(path, encoding):
        require_keys(rec, (id_key,), path, line_no)
        item = str(rec[id_key])
        if item in wanted and item not in rows:
            rows[item] = {f: as_text(_pick(rec, k)) for f, k in fields.items()}
    return pd.DataFrame([{"item": k, **v} for k, v in rows.items()], columns=["item", *fields])


def _filter_and_count(inter: pd.DataFrame, cfg: dict[str, Any], counts: dict[str, int]
                      ) -> pd.DataFrame:
    n0 = len(inter)
    inter = inter.drop_duplicates(["user", "item", "ts"])
    counts["duplicate_reviews_dropped"] = n0 - len(inter)
    if cfg.get("repeats", "keep") == "first":
        n1 = len(inter)
        inter = inter.sort_values(["user", "ts"], kind="stable").drop_duplicates(["user", "item"])
        counts["repeat_interactions_dropped"] = n1 - len(inter)
    n2 = len(inter)
    inter = kcore(inter, int(cfg.get("user_core", 1)), int(cfg.get("item_core", 1)),
                  iterative=cfg.get("kcore", "iterative") == "iterative")
    counts["kcore_interactions_dropped"] = n2 - len(inter)
    if inter.empty:
        raise BenchError(f"dataset '{cfg['name']}': nothing is left after filtering "
                         f"(user_core={cfg.get('user_core')}, item_core={cfg.get('item_core')}); "
                         "lower the cores or check the raw files")
    return inter


def amazon(cfg: dict[str, Any]):
    """Amazon review data, 2014 (``reviews_<Cat>(_5).json.gz`` + ``meta_<Cat>.json.gz``, the
    metadata as Python literals) or 2018 (``<CAT>(_5).json.gz`` + ``meta_<CAT>.json.gz``, JSON)."""
    reviews, meta = find_raw_file(cfg, "reviews"), find_raw_file(cfg, "meta")
    enc = cfg.get("encoding", "utf-8")
    min_rating = float(cfg.get("min_rating", 0))
    users, items, ts = [], [], []
    counts = {"reviews_read": 0, "reviews_below_min_rating": 0}
    for line_no, rec in iter_json_records(reviews, enc):
        require_keys(rec, ("reviewerID", "asin", "unixReviewTime"), reviews, line_no)
        counts["reviews_read"] += 1
        if float(rec.get("overall") or 0) < min_rating:
            counts["reviews_below_min_rating"] += 1
            continue
        users.append(str(rec["reviewerID"]))
        items.append(str(rec["asin"]))
        ts.append(int(rec["unixReviewTime"]))
    inter = _filter_and_count(pd.DataFrame({"user": users, "item": items, "ts": ts}), cfg, counts)
    item_table = read_item_metadata(meta, "asin", cfg["item_fields"], set(inter["item"]), enc)
    source = {"loader": "amazon", "reviews": reviews.name, "meta": meta.name, "counts": counts}
    return inter, item_table, source


def _yelp_time(date: str, path: Path, line_no: int) -> int:
    """``"2019-03-01 12:30:00"`` or ``"2012-05-01"`` -> 20190301123000 (LLM-ESR's integer time)."""
    digits = "".join(ch for ch in str(date) if ch.isdigit())
    if len(digits) not in (8, 14):
        raise BenchError(f"{path} line {line_no}: date {date!r} is not 'YYYY-MM-DD[ hh:mm:ss]'")
    return int(digits.ljust(14, "0"))


def yelp(cfg: dict[str, Any]):
    """Yelp Open Dataset (``business.json`` + ``review.json``, or the ``yelp_academic_dataset_``
    names); also reads the 2013 challenge schema (``open``, list-valued ``categories``)."""
    business, review = find_raw_file(cfg, "business"), find_raw_file(cfg, "review")
    enc = cfg.get("encoding", "utf-8")
    lo = _yelp_time(cfg.get("date_from") or "1900-01-01", Path("dataset.date_from"), 0)
    date_to = str(cfg.get("date_to") or "2999-12-31")
    hi = _yelp_time(date_to if ":" in date_to else f"{date_to} 23:59:59", Path("dataset.date_to"), 0)
    min_rating = float(cfg.get("min_rating", 0))
    users, items, ts = [], [], []
    counts = {"reviews_read": 0, "reviews_outside_dates": 0, "reviews_below_min_rating": 0}
    for line_no, rec in iter_json_records(review, enc):
        require_keys(rec, ("user_id", "business_id", "date"), review, line_no)
        counts["reviews_read"] += 1
        t = _yelp_time(rec["date"], review, line_no)
        if not lo <= t <= hi:
            counts["reviews_outside_dates"] += 1
            continue
        if float(rec.get("stars") or 0) < min_rating:
            counts["reviews_below_min_rating"] += 1
            continue
        users.append(str(rec["user_id"]))
        items.append(str(rec["business_id"]))
        ts.append(t)
    inter = _filter_and_count(pd.DataFrame({"user": users, "item": items, "ts": ts}), cfg, counts)
    item_table = read_item_metadata(business, "business_id", cfg["item_fields"],
                                    set(inter["item"]), enc)
    source = {"loader": "yelp", "business": business.name, "review": review.name, "counts": counts}
    return inter, item_table, source
