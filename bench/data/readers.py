"""Readers for the file formats datasets come in, each failing with one line naming file and line.

Raw sources (Amazon 2014/2018 JSON lines, Yelp Open Dataset JSON lines, plain or gzip) and the
preprocessed formats people share (P5/OpenP5 ``user_sequence.txt``, LLM-ESR ``inter.txt``,
RecBole ``.item`` files, item JSON keyed by id, PGPR knowledge-graph text). Every reader returns
plain pandas frames: interactions ``user, item, ts`` or an item table ``item, <text fields>``.
"""
from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import zlib
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
from tqdm.auto import tqdm

from bench.errors import BenchError


def _decode_hint(path: Path) -> str:
    return (f"re-save {path.name} as UTF-8, or set dataset.encoding=<its encoding> "
            "(e.g. latin-1) in the dataset config")


def iter_lines(path: Path, encoding: str = "utf-8", progress: bool = False) -> Iterator[tuple[int, str]]:
    """Yield ``(line_no, line)`` of a text file, transparently gunzipping ``*.gz``.

    A truncated or corrupt gzip stream and undecodable bytes are reported with the line where
    reading stopped, instead of a bare ``EOFError``/``UnicodeDecodeError`` from deep inside.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"file {path} not found")
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name,
               disable=not progress, leave=False)
    line_no = 0
    try:
        with raw:
            for line_no, data in enumerate(raw, start=1):
                try:
                    text = data.decode(encoding)
                except UnicodeDecodeError as exc:
                    raise BenchError(f"{path} line {line_no}: byte 0x{data[exc.start]:02x} at column "
                                     f"{exc.start + 1} is not valid {encoding}; "
                                     f"{_decode_hint(path)}") from None
                if progress and line_no % 4096 == 0:
                    bar.n = raw.fileobj.tell() if hasattr(raw, "fileobj") else raw.tell()
                    bar.refresh()
                yield line_no, text
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise BenchError(f"{path}: the gzip stream is truncated or corrupt after line {line_no} "
                         f"({type(exc).__name__}); download the file again") from None
    finally:
        bar.close()


def iter_json_records(path: Path, encoding: str = "utf-8", progress: bool = True
                      ) -> Iterator[tuple[int, dict[str, Any]]]:
    """JSON lines; Amazon 2014 metadata files are Python literals, so those are parsed as such."""
    for line_no, line in iter_lines(path, encoding, progress):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            try:
                rec = ast.literal_eval(line)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise BenchError(f"{path} line {line_no}: not a JSON object (nor a Python dict "
                                 f"literal, as Amazon 2014 metadata is); the file may be damaged: "
                                 f"download it again") from None
        if not isinstance(rec, dict):
            raise BenchError(f"{path} line {line_no}: expected a JSON object per line, got "
                             f"{type(rec).__name__}")
        yield line_no, rec


def require_keys(rec: dict[str, Any], keys: tuple[str, ...], path: Path, line_no: int) -> None:
    absent = [k for k in keys if k not in rec]
    if absent:
        raise BenchError(f"{path} line {line_no}: missing field(s) {', '.join(absent)} "
                         f"(found: {', '.join(list(rec)[:12])}); is this the right file?")


def read_user_sequences(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """P5/OpenP5 ``user_sequence.txt`` / ``sequential_data.txt``: ``<user> <item_1> ...``.

    The files carry no timestamps; ``ts`` is the position, which keeps the chronological order
    the P5/S3Rec preprocessing wrote. A user on two lines is an error (order would be ambiguous).
    """
    users, items, ts = [], [], []
    seen: dict[str, int] = {}
    for line_no, line in iter_lines(path, encoding):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise BenchError(f"{path} line {line_no}: user '{parts[0]}' has no items; expected "
                             f"'<user> <item_1> <item_2> ...' (one user per line)")
        if parts[0] in seen:
            raise BenchError(f"{path} line {line_no}: user '{parts[0]}' already appeared on line "
                             f"{seen[parts[0]]}; a sequence file has one line per user")
        seen[parts[0]] = line_no
        users.extend([parts[0]] * (len(parts) - 1))
        items.extend(parts[1:])
        ts.extend(range(len(parts) - 1))
    if not users:
        raise BenchError(f"{path} is empty; expected '<user> <item_1> <item_2> ...' lines")
    return pd.DataFrame({"user": users, "item": items, "ts": ts})


def read_llmesr_inter(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """LLM-ESR ``inter.txt``: ``<user> <item>`` per line, integer ids, grouped by user in time order."""
    users, items, ts = [], [], []
    last_user, pos, closed = None, 0, set()
    for line_no, line in iter_lines(path, encoding):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not (parts[0].isdigit() and parts[1].isdigit()):
            raise BenchError(f"{path} line {line_no}: expected '<user id> <item id>' (two integers), "
                             f"got {line.strip()[:60]!r}")
        user = parts[0]
        if user != last_user:
            if user in closed:
                raise BenchError(f"{path} line {line_no}: user {user} reappears after other users; "
                                 "inter.txt lists each user's items together, in time order")
            if last_user is not None:
                closed.add(last_user)
            last_user, pos = user, 0
        users.append(user)
        items.append(parts[1])
        ts.append(pos)
        pos += 1
    if not users:
        raise BenchError(f"{path} is empty; expected '<user id> <item id>' lines")
    return pd.DataFrame({"user": users, "item": items, "ts": ts})


def read_recbole_item_file(path: Path, fields: list[str], encoding: str = "utf-8") -> pd.DataFrame:
    """A RecBole atomic ``.item`` file (tab-separated, CSV quoting, ``name:type`` header)."""
    text = "".join(line for _, line in iter_lines(path, encoding))
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t"))
    if not rows:
        raise BenchError(f"{path} is empty; expected a RecBole header like 'item_id:token\\ttitle:token'")
    header = [h.split(":")[0] for h in rows[0]]
    if "item_id" not in header:
        raise BenchError(f"{path}: no item_id column in the header ({', '.join(rows[0])}); "
                         "a RecBole .item file starts with 'item_id:token'")
    width = len(header)
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != width:
            raise BenchError(f"{path} line {i}: {len(row)} fields, the header has {width}; "
                             "give every row one tab-separated value per header field (empty "
                             "for a missing one)")
    df = pd.DataFrame(rows[1:], columns=header).rename(columns={"item_id": "item"})
    _check_fields(df, fields, path, ", ".join(header))
    return df[["item", *fields]].replace({"None": ""})


def _check_fields(df: pd.DataFrame, fields: list[str], path: Path, found: str) -> None:
    absent = [c for c in fields if c not in df.columns]
    if absent:
        raise BenchError(f"{path}: missing column(s) {', '.join(absent)}; found {found}. "
                         "Set dataset.text_fields to columns the file has")


def as_text(value: Any, sep: str = ", ") -> str:
    """Metadata value -> one string. Lists are joined; a list of lists (Amazon 2014 category
    paths) gives its first path, as the LLMEmb/LLM-ESR prompts use it; ``None`` -> ``""``."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, (list, tuple)) for v in value):
            value = value[0]
        return sep.join(s for s in (as_text(v, sep) for v in value) if s)
    if isinstance(value, dict):
        return sep.join(f"{k}: {as_text(v, sep)}" for k, v in value.items())
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_item_json(path: Path, fields: dict[str, str], id_offset: int = 0,
                   encoding: str = "utf-8") -> pd.DataFrame:
    """Item metadata as one JSON object ``{"<id>": {"<key>": value, ...}}`` (e.g. LETTER's).

    ``fields`` maps the suite's text field to the JSON key (``{"name": "title"}``). ``id_offset``
    is added to each integer key to get the item id used in the sequences: LETTER's Yelp file is
    keyed 0..n-1 while P5's ids are 1..n, so its offset is 1 (see the Yelp card).
    """
    try:
        data = json.loads("".join(line for _, line in iter_lines(path, encoding)))
    except json.JSONDecodeError as exc:
        raise BenchError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise BenchError(f"{path}: expected a JSON object keyed by item id, got {type(data).__name__}")
    rows = []
    for key, rec in data.items():
        if id_offset:
            if not str(key).lstrip("-").isdigit():
                raise BenchError(f"{path}: key {key!r} is not an integer, so dataset.id_offset="
                                 f"{id_offset} cannot apply; set dataset.id_offset=0")
            key = str(int(key) + id_offset)
        if not isinstance(rec, dict):
            raise BenchError(f"{path}: the value of item {key!r} is not an object")
        rows.append({"item": str(key), **{f: as_text(rec.get(k)) for f, k in fields.items()}})
    df = pd.DataFrame(rows, columns=["item", *fields])
    known = set().union(*(r.keys() for r in data.values())) if data else set()
    absent = [k for k in fields.values() if k not in known]
    if absent:
        raise BenchError(f"{path}: no item has key(s) {', '.join(absent)}; found "
                         f"{', '.join(sorted(known))}. Fix dataset.item_json_fields")
    return df


def read_pgpr_kg(directory: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """PGPR / JRL knowledge-graph text: ``product.txt.gz`` (line i = ASIN of product i) with the
    vocabularies ``brand.txt.gz``/``category.txt.gz`` and the relation files ``brand_p_b.txt.gz``/
    ``category_p_c.txt.gz`` (line i = space-separated vocabulary indices of product i).
    Returns ``item, brand, categories`` with several names joined by `` | ``."""
    directory = Path(directory)

    def lines(name: str) -> list[str]:
        return [line.rstrip("\r\n") for _, line in iter_lines(directory / name, encoding)]

    products = lines("product.txt.gz")
    out = {"item": [p.strip() for p in products]}
    for field, vocab_file, rel_file in (("brand", "brand.txt.gz", "brand_p_b.txt.gz"),
                                        ("categories", "category.txt.gz", "category_p_c.txt.gz")):
        vocab = [v.strip() for v in lines(vocab_file)]
        rel = lines(rel_file)
        if len(rel) != len(products):
            raise BenchError(f"{directory / rel_file}: {len(rel)} lines but product.txt.gz has "
                             f"{len(products)}; the files must come from the same PGPR release")
        names = []
        for i, row in enumerate(rel, start=1):
            idx = row.split()
            bad = [j for j in idx if not j.isdigit() or int(j) >= len(vocab)]
            if bad:
                raise BenchError(f"{directory / rel_file} line {i}: index {bad[0]!r} is not a line "
                                 f"of {vocab_file} ({len(vocab)} entries)")
            names.append(" | ".join(vocab[int(j)] for j in idx))
        out[field] = names
    return pd.DataFrame(out)
