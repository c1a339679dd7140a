"""Dataset sources: turn a dataset config into a (cached) ``PreparedDataset``.

A dataset config (``configs/dataset/<name>.yaml``) names a ``loader`` and its arguments. Each
loader returns ``(interactions, items, source_description)``. ``finalize`` then applies the
repairs every dataset gets, each counted in ``meta.json`` under ``source.repairs``:

* exact duplicate rows (same user, item and time) are dropped;
* users with fewer than ``min_user_len`` interactions (default 3: leave-one-out needs a train,
  a validation and a test item) are dropped;
* items that occur in the interactions but have no metadata row get a row with empty text;
  prompts later render empty fields as the originals do (``unknown``), and ``data stats``
  reports text coverage per field;
* duplicate metadata rows for one item keep the first.

``prepare`` writes the result once under ``<cache>/prepared/<name>`` and reuses it while the
recipe and the code that builds it (``prepared.builder_digest``) are unchanged; a config that
pins a ``fingerprint`` gets a note when the data differs from it. Relative paths in a dataset
config are read from the current directory, or else from the project root (so
``../shared/data`` works from anywhere).
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from bench.data import raw
from bench.data.prepared import (PreparedDataset, built_by_current_code, load_prepared,
                                 sha256_file, write_prepared)
from bench.data.readers import (read_item_json, read_llmesr_inter, read_pgpr_kg,
                                read_recbole_item_file, read_user_sequences)
from bench.data.synthetic import PRESETS, generate
from bench.errors import BenchError, unknown_name

Loader = Callable[[dict[str, Any]], tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]]
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def resolve_path(value: Any) -> Path:
    """A config path: absolute, or relative to the cwd, or else relative to the project root."""
    path = Path(str(value)).expanduser()
    if path.is_absolute() or path.exists():
        return path
    rooted = PROJECT_ROOT / path
    return rooted if rooted.exists() else path


def _existing(cfg: dict[str, Any], key: str, is_dir: bool = False) -> Path:
    path = resolve_path(cfg.get(key, ""))
    if not (path.is_dir() if is_dir else path.is_file()):
        what = "directory" if is_dir else "file"
        raise BenchError(f"dataset '{cfg['name']}': {key} {what} '{cfg.get(key)}' not found; set "
                         f"dataset.{key}=<path> or place it there (see "
                         f"datasets/{cfg.get('card', cfg['name'])}/README.md)")
    return path


def _synthetic(cfg: dict[str, Any]):
    preset = cfg.get("preset", "small")
    if preset not in PRESETS:
        raise unknown_name("synthetic preset", str(preset), PRESETS)
    spec = replace(PRESETS[preset], seed=int(cfg.get("generator_seed", 0)))
    inter, items = generate(spec)
    return inter, items, {"loader": "synthetic", "preset": preset, "spec": spec.__dict__}


def _item_table(cfg: dict[str, Any], source: dict[str, Any]) -> pd.DataFrame | None:
    """Item text from whichever metadata the config names, or ``None`` for an ID-only dataset."""
    enc = cfg.get("encoding", "utf-8")
    if cfg.get("item_file"):  # RecBole atomic .item file
        path = _existing(cfg, "item_file")
        table = read_recbole_item_file(path, list(cfg.get("text_fields") or []), enc)
    elif cfg.get("item_json"):  # {"<id>": {...}} with an id offset
        path = _existing(cfg, "item_json")
        table = read_item_json(path, dict(cfg.get("item_json_fields") or {}),
                               int(cfg.get("id_offset", 0)), enc)
    elif cfg.get("pgpr_kg"):  # PGPR / JRL knowledge-graph text
        path = _existing(cfg, "pgpr_kg", is_dir=True)
        table = read_pgpr_kg(path, enc)
        source.update(pgpr_kg={p.name: sha256_file(p) for p in sorted(path.glob("*.txt.gz"))})
        return table
    else:
        return None
    source.update(item_source=path.name, item_source_sha256=sha256_file(path))
    return table


def _p5(cfg: dict[str, Any]):
    """P5/OpenP5 sequences plus item metadata from a ``.item`` file, item JSON or PGPR KG text."""
    seq_path = _existing(cfg, "sequences")
    inter = read_user_sequences(seq_path, cfg.get("encoding", "utf-8"))
    source = {"loader": "p5", "sequences": seq_path.name, "sequences_sha256": sha256_file(seq_path)}
    return inter, _item_table(cfg, source), source


def _llmesr(cfg: dict[str, Any]):
    """LLM-ESR's ``inter.txt``: anonymised integer ids with no id map, hence no item text."""
    path = _existing(cfg, "inter")
    inter = read_llmesr_inter(path, cfg.get("encoding", "utf-8"))
    source = {"loader": "llmesr", "inter": path.name, "inter_sha256": sha256_file(path),
              "id_only": True}
    return inter, None, source


LOADERS: dict[str, Loader] = {"synthetic": _synthetic, "p5": _p5, "llmesr": _llmesr,
                              "amazon": raw.amazon, "yelp": raw.yelp}
# Keys of a dataset config that describe or evaluate the data but do not change it.
_DESCRIPTIVE_KEYS = {"description", "paper_thresholds", "card", "downloads", "raw_dir",
                     "download_note", "prompt_domain", "fingerprint"}


def finalize(inter: pd.DataFrame, items: pd.DataFrame | None, cfg: dict[str, Any]
             ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Apply the counted repairs in the module docstring; return data and the counts."""
    repairs: dict[str, int] = {}
    n = len(inter)
    inter = inter.drop_duplicates(["user", "item", "ts"])
    repairs["duplicate_interactions_dropped"] = n - len(inter)
    min_len = int(cfg.get("min_user_len", 3))
    if min_len < 3:
        raise BenchError(f"bad config value dataset.min_user_len={min_len}: leave-one-out needs at "
                         "least 3 interactions per user (train, valid, test)")
    length = inter["user"].map(inter["user"].value_counts())
    short = length < min_len
    repairs["short_users_dropped"] = int(inter.loc[short.to_numpy(), "user"].nunique())
    repairs["short_user_interactions_dropped"] = int(short.sum())
    inter = inter[~short.to_numpy()]
    if inter.empty:
        raise BenchError(f"dataset '{cfg['name']}': no user has {min_len} or more interactions")
    used = set(inter["item"])
    if items is None:
        items = pd.DataFrame({"item": sorted(used)})
    items = items.assign(item=items["item"].astype(str))
    n = len(items)
    items = items.drop_duplicates("item")
    repairs["duplicate_item_rows_dropped"] = n - len(items)
    items = items[items["item"].isin(used)]
    absent = sorted(used - set(items["item"]))
    repairs["items_without_metadata"] = len(absent) if len(items.columns) > 1 else 0
    if absent:
        items = pd.concat([items, pd.DataFrame({"item": absent})], ignore_index=True).fillna("")
    return inter, items, repairs


def prepare(cfg: dict[str, Any], cache_dir: Path, force: bool = False) -> PreparedDataset:
    """Return the prepared dataset for ``cfg``, building it only when missing or out of date."""
    name, loader = cfg["name"], cfg.get("loader")
    if loader not in LOADERS:
        raise unknown_name("dataset loader", str(loader), LOADERS)
    recipe = {k: v for k, v in cfg.items() if k not in _DESCRIPTIVE_KEYS}
    out_dir = Path(cache_dir) / "prepared" / name
    if out_dir.exists() and not force:
        ds = load_prepared(out_dir)  # a damaged copy is an error naming the fix, never used
        if ds.meta["source"].get("recipe") == recipe and built_by_current_code(ds):
            return _check_expected(ds, cfg)
    inter, items, source = LOADERS[loader](cfg)
    inter, items, repairs = finalize(inter, items, cfg)
    return _check_expected(write_prepared(out_dir, name, inter, items, {
        **source, "repairs": repairs, "recipe": recipe}), cfg)


def unpinned(dataset_cfg: Any) -> Any:
    """A dataset config without its ``fingerprint`` pin: the pin says which data the published
    records used; it is not a setting, so it must not split a leaderboard page or make a
    killed run's resume checkpoint look stale."""
    if not isinstance(dataset_cfg, dict):
        return dataset_cfg
    return {k: v for k, v in dataset_cfg.items() if k != "fingerprint"}


def _check_expected(ds: PreparedDataset, cfg: dict[str, Any]) -> PreparedDataset:
    """Say so when the data differs from the fingerprint the config pins (``fingerprint``: the
    data the published records were measured on). Not an error: a user's own copy may differ
    on purpose; but their records will then not join those pages, and they should know now."""
    expected = cfg.get("fingerprint")
    if expected and str(expected) != ds.fingerprint:
        print(f"note: dataset '{ds.name}' has fingerprint {ds.fingerprint}, not the {expected} "
              f"that configs/dataset/{ds.name}.yaml pins (the published records' data); records "
              "made now will not join those leaderboard pages. A changed source file, recipe "
              "or generator is the usual cause", file=sys.stderr)
    return ds
