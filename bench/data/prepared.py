"""The prepared-dataset format every dataset is turned into, and its RecBole export.

A prepared dataset is a directory with three files:

* ``interactions.tsv``: ``user  item  ts`` (ts = an integer that orders each user's events;
  a position when the source has no timestamps), sorted by user, then ts;
* ``items.tsv``: ``item`` plus named text fields (title, brand, categories, ...), one row per item;
* ``meta.json``: name, text fields, source, per-file sha256, the dataset fingerprint and the
  digest of the code that built it (``builder_digest``; an older copy is rebuilt).

The fingerprint hashes the two TSV files as written. They are written canonically (sorted rows,
UTF-8, ``\\n`` line ends, tabs and newlines removed from text), so the same data gives the same
fingerprint on every machine. Loading checks the checksums, so a corrupted or edited file is
reported instead of silently changing what is measured.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError

FORMAT_VERSION = 1
INTER_FILE, ITEMS_FILE, META_FILE = "interactions.tsv", "items.tsv", "meta.json"
_WS = re.compile(r"[\t\r\n]+")
# The modules whose code decides what a prepared dataset holds (generator, lexicon, readers, raw
# recipes, repairs, cold-start view, this format). A cached copy is reused only while their
# digest is unchanged: keyed on the config alone, a machine kept serving synthetic data made by
# a superseded title rule (fingerprint c74d18ea5aba9443) long after the generator had changed.
BUILDER_MODULES = ("prepared", "sources", "synthetic", "lexicon", "readers", "raw", "cold")


@dataclass
class PreparedDataset:
    """Interactions and item text of one dataset, with its fingerprint."""

    name: str
    path: Path
    interactions: pd.DataFrame  # user:str, item:str, ts:int64
    items: pd.DataFrame  # item:str + text fields (str, "" when missing)
    meta: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @property
    def text_fingerprint(self) -> str:
        """What item-text caches (encodings, SCFT) are keyed on: the fingerprint, except for a
        derived view that kept its source's item table byte for byte (the cold-start view),
        which keeps its source's, so text stages are not redone for it."""
        return self.meta["source"].get("text_fingerprint") or self.fingerprint

    @property
    def text_fields(self) -> list[str]:
        return list(self.meta["text_fields"])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _clean(text: Any) -> str:
    return "" if pd.isna(text) else _WS.sub(" ", str(text)).strip()


def _write_tsv(df: pd.DataFrame, path: Path) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(df.columns) + "\n")
        for row in df.itertuples(index=False):
            f.write("\t".join(_clean(v) for v in row) + "\n")


@functools.cache
def builder_digest() -> str:
    """Digest of the ``BUILDER_MODULES`` sources: part of the key a prepared copy is reused under.
    A rebuild after a code change that leaves the data alone gives the same fingerprint, so
    caches keyed on the fingerprint (encodings, SCFT, ID models) stay valid."""
    h = hashlib.sha256()
    for name in BUILDER_MODULES:
        h.update(Path(__file__).with_name(f"{name}.py").read_bytes())
    return h.hexdigest()[:16]


def built_by_current_code(ds: PreparedDataset) -> bool:
    """Whether a cached copy was written by today's builder code (else it is rebuilt)."""
    return ds.meta.get("builder") == builder_digest()


def _fingerprint(inter_sha: str, items_sha: str) -> str:
    return hashlib.sha256(f"v{FORMAT_VERSION}:{inter_sha}:{items_sha}".encode()).hexdigest()[:16]


def write_prepared(out_dir: Path, name: str, interactions: pd.DataFrame, items: pd.DataFrame,
                   source: dict[str, Any]) -> PreparedDataset:
    """Validate, canonicalise and write a prepared dataset atomically (temp dir, then rename)."""
    inter = interactions[["user", "item", "ts"]].copy()
    inter["user"], inter["item"] = inter["user"].astype(str), inter["item"].astype(str)
    inter["ts"] = inter["ts"].astype("int64")
    inter = inter.sort_values(["user", "ts"], kind="stable").reset_index(drop=True)
    items = items.copy()
    items["item"] = items["item"].astype(str)
    items = items.sort_values("item", kind="stable").reset_index(drop=True)
    missing = sorted(set(inter["item"]) - set(items["item"]))
    if missing:
        raise BenchError(f"dataset '{name}': {len(missing)} interaction items have no row in the "
                         f"item table (first: {missing[0]}); add them or drop their interactions")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        _write_tsv(inter, tmp / INTER_FILE)
        _write_tsv(items, tmp / ITEMS_FILE)
        shas = {INTER_FILE: sha256_file(tmp / INTER_FILE), ITEMS_FILE: sha256_file(tmp / ITEMS_FILE)}
        meta = {"name": name, "format_version": FORMAT_VERSION,
                "text_fields": [c for c in items.columns if c != "item"],
                "n_users": int(inter["user"].nunique()), "n_items": int(inter["item"].nunique()),
                "n_interactions": int(len(inter)), "source": source, "sha256": shas,
                "fingerprint": _fingerprint(shas[INTER_FILE], shas[ITEMS_FILE]),
                "builder": builder_digest()}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if _holds(out_dir, meta):  # a concurrent job wrote the same data first
            shutil.rmtree(tmp, ignore_errors=True)
            return load_prepared(out_dir)
        discard(out_dir)
        try:
            os.replace(tmp, out_dir)
        except OSError:  # not renamed onto a non-empty directory: another job's came first
            if not _holds(out_dir, meta):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_prepared(out_dir)


def _holds(out_dir: Path, meta: dict[str, Any]) -> bool:
    """Whether ``out_dir`` already holds this data written from this source description (a
    copy with the same data but an older builder or recipe is replaced, so it is not rebuilt
    on every later call)."""
    try:
        held = json.loads((out_dir / META_FILE).read_text())
        return (held["fingerprint"] == meta["fingerprint"] and held.get("builder") == meta["builder"]
                and held["source"] == json.loads(json.dumps(meta["source"])))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def discard(path: Path) -> None:
    """Remove a file or directory by renaming it aside first (one atomic step), so a
    concurrent reader never sees it half deleted; it finds the old entry whole, or none."""
    aside = path.with_name(f".{path.name}.{os.getpid()}.discarded")
    try:
        os.replace(path, aside)
    except OSError:
        return
    if aside.is_dir():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)


def _read_tsv(path: Path, required: list[str], fix: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE,
                         encoding="utf-8")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        msg = str(exc).strip().splitlines()[-1]
        raise BenchError(f"malformed prepared-dataset file {path}: {msg}; {fix}") from None
    absent = [c for c in required if c not in df.columns]
    if absent:
        raise BenchError(f"prepared-dataset file {path} lacks column(s) {', '.join(absent)}; {fix}")
    return df


def load_prepared(path: Path) -> PreparedDataset:
    """Load and verify a prepared dataset; any corruption is one clear ``BenchError``."""
    path = Path(path)
    fix = f"delete {path} and prepare it again (python -m bench data prepare <name> --force)"
    meta_path = path / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        name, shas = meta["name"], meta["sha256"]
    except FileNotFoundError:
        raise BenchError(f"no prepared dataset at {path} ({META_FILE} missing); {fix}") from None
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise BenchError(f"corrupted {meta_path} ({type(exc).__name__}); {fix}") from None
    for fname in (INTER_FILE, ITEMS_FILE):
        fpath = path / fname
        if not fpath.exists():
            raise BenchError(f"prepared-dataset file {fpath} is missing; {fix}")
        if sha256_file(fpath) != shas.get(fname):
            raise BenchError(f"prepared-dataset file {fpath} does not match its checksum in "
                             f"{META_FILE} (corrupted or edited); {fix}")
    inter = _read_tsv(path / INTER_FILE, ["user", "item", "ts"], fix)
    ts = pd.to_numeric(inter["ts"], errors="coerce")
    if ts.isna().any():
        line = int(ts.isna().to_numpy().argmax()) + 2
        raise BenchError(f"{path / INTER_FILE} line {line}: ts '{inter['ts'].iloc[line - 2]}' "
                         f"is not an integer; {fix}")
    inter["ts"] = ts.astype("int64")
    items = _read_tsv(path / ITEMS_FILE, ["item"], fix)
    return PreparedDataset(name=name, path=path, interactions=inter, items=items, meta=meta)


def export_recbole(ds: PreparedDataset, root: Path) -> Path:
    """Write RecBole atomic files for ``ds`` under ``root/<fingerprint>/`` and return that data path.

    Interactions are exported: RecBole needs ids and order; item text goes to the encoders
    directly. A view whose item table lists items without interactions (the cold-start view)
    also gets an ``.item`` file of every item id, so RecBole gives each one an id and every item
    is a candidate. The directory is keyed by fingerprint: written once per dataset version.
    """
    data_path = Path(root) / ds.fingerprint
    folder = data_path / ds.name
    folder.mkdir(parents=True, exist_ok=True)
    if recbole_item_file(ds, data_path) is not None:
        _write_atomic(folder / f"{ds.name}.item", ["item_id:token\n"]
                      + [f"{i}\n" for i in ds.items["item"]])
    target = folder / f"{ds.name}.inter"
    if not target.exists():  # written last: its presence means the export is complete
        df = ds.interactions
        _write_atomic(target, ["user_id:token\titem_id:token\ttimestamp:float\n"]
                      + [f"{u}\t{i}\t{t}\n" for u, i, t in zip(df["user"], df["item"], df["ts"])])
    return data_path


def recbole_item_file(ds: PreparedDataset, data_path: Path) -> Path | None:
    """The ``.item`` file of ``ds``'s export, for views that list items without interactions."""
    if not ds.meta["source"].get("cold_start"):
        return None
    return Path(data_path) / ds.name / f"{ds.name}.item"


def _write_atomic(path: Path, lines: list[str]) -> None:
    if path.exists():
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.suffix[1:]}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(lines)
    os.replace(tmp, path)
