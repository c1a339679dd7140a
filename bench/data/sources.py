"""Dataset sources: turn a dataset config into a (cached) ``PreparedDataset``.

A dataset config (``configs/dataset/<name>.yaml``) names a ``loader`` and its arguments. Each
loader returns ``(interactions, items, source_description)``; ``prepare`` writes the result once
under ``<cache>/prepared/<name>`` and reuses it while the source description is unchanged.
"""
from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from bench.data.prepared import PreparedDataset, load_prepared, sha256_file, write_prepared
from bench.data.synthetic import PRESETS, generate
from bench.errors import BenchError, unknown_name

Loader = Callable[[dict[str, Any]], tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]]


def _synthetic(cfg: dict[str, Any]):
    preset = cfg.get("preset", "small")
    if preset not in PRESETS:
        raise unknown_name("synthetic preset", str(preset), PRESETS)
    spec = replace(PRESETS[preset], seed=int(cfg.get("generator_seed", 0)))
    inter, items = generate(spec)
    return inter, items, {"loader": "synthetic", "preset": preset, "spec": spec.__dict__}


def _existing_file(cfg: dict[str, Any], key: str) -> Path:
    path = Path(str(cfg.get(key, "")))
    if not path.is_file():
        raise BenchError(f"dataset '{cfg['name']}': {key} file '{path}' not found; set "
                         f"dataset.{key}=<path> or place the file there (see datasets/{cfg['name']}/)")
    return path


def read_user_sequences(path: Path) -> pd.DataFrame:
    """P5/OpenP5 ``user_sequence.txt``: ``<user> <item_1> <item_2> ...`` in time order."""
    users, items, ts = [], [], []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise BenchError(f"{path} line {line_no}: a user with no items; expected "
                                 f"'<user> <item_1> <item_2> ...'")
            users.extend([parts[0]] * (len(parts) - 1))
            items.extend(parts[1:])
            ts.extend(range(len(parts) - 1))
    return pd.DataFrame({"user": users, "item": items, "ts": ts})


def read_recbole_item_file(path: Path, fields: list[str]) -> pd.DataFrame:
    """A RecBole atomic ``.item`` file (tab-separated, CSV quoting, ``name:type`` header)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    header = [h.split(":")[0] for h in rows[0]]
    df = pd.DataFrame(rows[1:], columns=header).rename(columns={"item_id": "item"})
    absent = [c for c in ["item", *fields] if c not in df.columns]
    if absent:
        raise BenchError(f"{path}: missing column(s) {', '.join(absent)}; found {', '.join(header)}")
    return df[["item", *fields]].replace({"None": ""})


def _p5(cfg: dict[str, Any]):
    seq_path = _existing_file(cfg, "sequences")
    inter = read_user_sequences(seq_path)
    source = {"loader": "p5", "sequences": seq_path.name, "sequences_sha256": sha256_file(seq_path)}
    fields = list(cfg.get("text_fields") or [])
    if cfg.get("item_file"):
        item_path = _existing_file(cfg, "item_file")
        items = read_recbole_item_file(item_path, fields)
        items = items[items["item"].isin(set(inter["item"]))]
        source.update(item_file=item_path.name, item_file_sha256=sha256_file(item_path))
        absent = sorted(set(inter["item"]) - set(items["item"]))
        if absent:  # counted repair: ids without metadata get empty text
            items = pd.concat([items, pd.DataFrame({"item": absent})]).fillna("")
            source["items_without_text"] = len(absent)
    else:
        items = pd.DataFrame({"item": sorted(set(inter["item"]))})
    return inter, items, source


LOADERS: dict[str, Loader] = {"synthetic": _synthetic, "p5": _p5}
# Keys of a dataset config that describe or evaluate the data but do not change it.
_DESCRIPTIVE_KEYS = {"description", "paper_thresholds", "card"}


def prepare(cfg: dict[str, Any], cache_dir: Path, force: bool = False) -> PreparedDataset:
    """Return the prepared dataset for ``cfg``, building it only when missing or out of date."""
    name, loader = cfg["name"], cfg.get("loader")
    if loader not in LOADERS:
        raise unknown_name("dataset loader", str(loader), LOADERS)
    recipe = {k: v for k, v in cfg.items() if k not in _DESCRIPTIVE_KEYS}
    out_dir = Path(cache_dir) / "prepared" / name
    if out_dir.exists() and not force:
        ds = load_prepared(out_dir)
        if ds.meta["source"].get("recipe") == recipe:
            return ds
    inter, items, source = LOADERS[loader](cfg)
    return write_prepared(out_dir, name, inter, items, {**source, "recipe": recipe})
