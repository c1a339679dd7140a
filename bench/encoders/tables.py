"""Item embedding tables: text -> embeddings (cached), the user's precomputed arrays, PCA, and
alignment to RecBole's internal item ids.

``item_embeddings`` is what a method adapter calls: it returns one row per prepared item (in the
prepared item table's order), computed once per (model weights, pooling, prompt template,
dataset fingerprint) and cached, or read from a precomputed file the user brings
(``encoder=precomputed encoder.path=...``), as LLM-ESR and LLMEmb release theirs.
"""
from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.prepared import PreparedDataset, sha256_file
from bench.encoders.cache import ArrayCache, build_lock, cache_key
from bench.encoders.models import (LanguageModel, batch_limits, encode, load_language_model,
                                   model_directory, resolve_device_dtype, weights_hash)
from bench.encoders.prompts import item_prompts, template_for, user_prompts, user_template_id
from bench.errors import BenchError


@dataclass
class EmbeddingTable:
    """Rows aligned with ``PreparedDataset.items``; ``info`` goes into the run's provenance."""

    vectors: np.ndarray  # (n_items, d) float32
    encoder_id: str
    info: dict[str, Any] = field(default_factory=dict)


def pca(x: np.ndarray, dim: int) -> np.ndarray:
    """Project onto the top ``dim`` principal components (torch SVD, float64, sign-fixed so
    the result is deterministic, as sklearn's ``svd_flip``)."""
    n, d = x.shape
    if not 1 <= dim <= min(n, d):
        raise BenchError(f"bad PCA dimension {dim}: must be between 1 and min(items, dim) = "
                         f"{min(n, d)}")
    t = torch.from_numpy(np.asarray(x, dtype=np.float64))
    t = t - t.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(t, full_matrices=False)
    comps = vh[:dim]
    signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    return (t @ (comps * signs).T).float().numpy()


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles arrays, lists and dicts of them, nothing else: a pickle naming any other
    class or function (which could run code) is refused instead of executed."""

    ALLOWED = frozenset({
        ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")})

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which is not an array or a dict of arrays (refused: "
                "unpickling it could run code); save the table with numpy.save or as a dict of "
                "numpy arrays")
        return super().find_class(module, name)


def load_precomputed(path: Path, item_ids: list[str], row_offset: int = 1) -> np.ndarray:
    """A user's embedding file -> rows for ``item_ids``.

    ``.npy`` (a 2-D array) or a pickle (``.pkl``) of a 2-D array or of a dict keyed by item id.
    An array is indexed by integer item id: row ``k`` is item ``k + row_offset`` (LLM-ESR and
    LLMEmb release theirs with row k = item id k+1, so the default offset is 1).
    A pickle may hold only numpy arrays, lists and dicts (``_ArrayUnpickler``): one that names
    anything else is refused, since unpickling arbitrary objects can run code.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchError(f"precomputed embedding file '{path}' not found; set encoder.path=<.npy or .pkl>")
    try:
        if path.suffix == ".npy":
            obj = np.load(path, allow_pickle=False)
        else:
            with open(path, "rb") as f:
                obj = _ArrayUnpickler(f).load()
    except (OSError, ValueError, pickle.UnpicklingError, EOFError) as exc:
        raise BenchError(f"cannot read precomputed embeddings '{path}': {exc}; point "
                         "encoder.path at an intact .npy or .pkl (re-export it if damaged)") from None
    if isinstance(obj, dict):
        table = {str(k): np.asarray(v, dtype=np.float32) for k, v in obj.items()}
        missing = [i for i in item_ids if i not in table]
        if missing:
            raise BenchError(f"{path}: {len(missing)} of the dataset's {len(item_ids)} items have "
                             f"no embedding (first: {missing[0]!r}); keys look like "
                             f"{list(table)[:3]}")
        out = np.stack([table[i] for i in item_ids])
    else:
        arr = np.asarray(obj, dtype=np.float32)
        if arr.ndim != 2:
            raise BenchError(f"{path}: expected a 2-D array (items x dim), got shape {arr.shape}")
        if not all(i.isdigit() for i in item_ids):
            raise BenchError(f"{path}: an array is indexed by integer item id, but this dataset's "
                             f"ids are not integers (e.g. {item_ids[0]!r}); give a dict keyed by id")
        rows = np.array([int(i) - row_offset for i in item_ids])
        if rows.min() < 0 or rows.max() >= len(arr):
            raise BenchError(f"{path}: shape {arr.shape} does not cover the dataset's item ids "
                             f"{min(map(int, item_ids))}..{max(map(int, item_ids))} with row = id - "
                             f"{row_offset}; check the file or encoder.row_offset")
        out = arr[rows]
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).any(axis=1).sum())
        raise BenchError(f"{path}: {bad} of the dataset's items have NaN or inf values; "
                         "re-export the table (NaN often means a float16 overflow)")
    return out


def item_embeddings(prepared: PreparedDataset, dataset_cfg: dict[str, Any],
                    encoder_cfg: dict[str, Any], cache_dir: Path, progress: bool = True,
                    lm: LanguageModel | None = None, model=None, stage: str = "raw",
                    only_cached: bool = False) -> EmbeddingTable | None:
    """Embeddings of every prepared item; ``model``/``stage`` let SCFT encode with its own
    fine-tuned weights under its own cache key. ``only_cached``: None instead of computing."""
    if encoder_cfg.get("kind") == "precomputed":
        path = Path(str(encoder_cfg.get("path") or "")).expanduser()
        vectors = load_precomputed(path, prepared.items["item"].tolist(),
                                   int(encoder_cfg.get("row_offset", 1)))
        return EmbeddingTable(vectors, f"precomputed:{path.name}@{sha256_file(path)[:12]}",
                              {"kind": "precomputed", "path": str(path)})
    if not prepared.text_fields:
        raise BenchError(f"dataset '{prepared.name}' has no item text (ID-only); text encoders "
                         "need text, or bring embeddings with encoder=precomputed encoder.path=...")
    tpl = template_for(dataset_cfg)
    parts = {"template": tpl.id, "fields": prepared.text_fields,
             "dataset": prepared.text_fingerprint, "stage": stage}
    return _encoded_table("items", lambda: item_prompts(prepared.items, prepared.text_fields, tpl),
                          parts, f"{tpl.id}/{stage}", encoder_cfg, cache_dir, progress, lm, model,
                          only_cached)


def name_field(prepared: PreparedDataset, dataset_cfg: dict[str, Any]) -> str:
    """The item field that names an item: ``dataset.name_field``, else the first text field."""
    field = dataset_cfg.get("name_field") or prepared.text_fields[0]
    if field not in prepared.items.columns:
        raise BenchError(f"dataset.name_field={field!r} is not an item field of "
                         f"'{prepared.name}'; it has {', '.join(prepared.text_fields)}")
    return field


def item_title_embeddings(prepared: PreparedDataset, dataset_cfg: dict[str, Any],
                          encoder_cfg: dict[str, Any], cache_dir: Path,
                          progress: bool = True) -> EmbeddingTable:
    """Embeddings of each item's name alone, no prompt (AlphaRec encodes titles only).

    The name is ``dataset.name_field`` or the first text field; an item without one is
    ``unknown``. ``encoder=precomputed`` returns the user's table as ``item_embeddings`` does.
    """
    if encoder_cfg.get("kind") == "precomputed" or not prepared.text_fields:
        return item_embeddings(prepared, dataset_cfg, encoder_cfg, cache_dir, progress)
    field = name_field(prepared, dataset_cfg)
    names = [" ".join(str(v).split()) or "unknown" for v in prepared.items[field]]
    parts = {"template": f"name-only:{field}", "dataset": prepared.text_fingerprint,
             "stage": "names"}
    return _encoded_table("items", lambda: names, parts, f"name-only:{field}", encoder_cfg,
                          cache_dir, progress)


def user_embeddings(prepared: PreparedDataset, dataset_cfg: dict[str, Any],
                    encoder_cfg: dict[str, Any], cache_dir: Path, progress: bool = True,
                    max_chars: int = 8000) -> tuple[list[str], EmbeddingTable]:
    """LM embeddings of LLM-ESR's user prompts (the names of each user's training items).

    Returns the user ids (prepared order) and their vectors, cached like item embeddings. With
    ``encoder=precomputed``, ``encoder.user_path`` names the user table (row k = user id k+1,
    as LLM-ESR releases ``usr_emb_np.pkl``).
    """
    users = prepared.interactions["user"].drop_duplicates().tolist()
    if encoder_cfg.get("kind") == "precomputed":
        path = Path(str(encoder_cfg.get("user_path") or "")).expanduser()
        if not str(encoder_cfg.get("user_path") or ""):
            raise BenchError("user embeddings with encoder=precomputed need encoder.user_path="
                             "<.npy or .pkl of user vectors>; or switch the user-side stage off")
        vectors = load_precomputed(path, users, int(encoder_cfg.get("row_offset", 1)))
        return users, EmbeddingTable(vectors, f"precomputed:{path.name}@{sha256_file(path)[:12]}",
                                     {"kind": "precomputed", "path": str(path)})
    if not prepared.text_fields:
        raise BenchError(f"dataset '{prepared.name}' has no item text, so no user prompts; bring "
                         "user embeddings with encoder=precomputed encoder.user_path=...")
    field = name_field(prepared, dataset_cfg)
    names = dict(zip(prepared.items["item"], prepared.items[field], strict=True))
    inter = prepared.interactions
    from_end = inter.groupby("user", sort=False).cumcount(ascending=False)
    train = inter[from_end >= 2].groupby("user", sort=False)["item"].agg(list)
    histories = [train.get(u, []) for u in users]
    tpl_id = user_template_id(dataset_cfg, field, max_chars)
    parts = {"template": tpl_id, "dataset": prepared.fingerprint, "stage": "users"}
    table = _encoded_table("users", lambda: user_prompts(histories, names, dataset_cfg, max_chars),
                           parts, f"{tpl_id}/users", encoder_cfg, cache_dir, progress)
    return users, table


def _encoded_table(kind: str, make_texts, parts: dict[str, Any], label: str,
                   encoder_cfg: dict[str, Any], cache_dir: Path, progress: bool,
                   lm: LanguageModel | None = None, model=None,
                   only_cached: bool = False) -> EmbeddingTable | None:
    """Texts -> vectors through the content-addressed cache; the key is checked before any
    model is loaded, and the texts are only built on a miss."""
    max_length = int(encoder_cfg.get("max_length", 256))
    parts = {**encoder_identity(encoder_cfg, cache_dir), **parts, "max_length": max_length}
    key = cache_key(**parts)
    store = ArrayCache(Path(cache_dir) / "embeddings")
    vectors = store.load(kind, key)
    encoder_id = f"{encoder_cfg.get('name')}@{parts['weights'][:12]}/{parts['pooling']}/{label}"
    info = {"kind": "hf", "encoder": encoder_id, "cache_key": key, "cache_hit": vectors is not None}
    if vectors is None and only_cached:
        return None
    with build_lock(store.root / kind, key):
        vectors = store.load(kind, key)  # built by another job while this one waited?
        if vectors is not None:
            info.update(cache_hit=True, built=store.figures(kind, key))
            return EmbeddingTable(vectors, encoder_id, info)
        lm = lm or load_language_model(encoder_cfg, cache_dir)
        texts = make_texts()
        start = time.perf_counter()
        vectors = encode(lm, texts, max_length, *batch_limits(encoder_cfg, lm.device), progress,
                         model=model)
        seconds = time.perf_counter() - start
        info.update(seconds=seconds, texts_per_second=len(texts) / seconds)
        store.save(kind, key, vectors, parts, {"seconds": seconds, "n_texts": len(texts),
                                               "texts_per_second": len(texts) / seconds,
                                               "device": str(lm.device)})
    return EmbeddingTable(vectors, encoder_id, info)


def encoder_identity(encoder_cfg: dict[str, Any], cache_dir: Path) -> dict[str, str]:
    """What identifies an encoder's output without loading it: weights hash, pooling, dtype."""
    path = model_directory(encoder_cfg)
    _, dtype = resolve_device_dtype(encoder_cfg.get("device", "auto"), encoder_cfg.get("dtype", "auto"))
    return {"weights": weights_hash(path, cache_dir), "pooling": encoder_cfg.get("pooling", "mean"),
            "dtype": str(dtype)}


def align_to_recbole(table: np.ndarray, prepared: PreparedDataset, dataset) -> torch.Tensor:
    """Rows in RecBole's internal item order, with row 0 (padding) all zeros."""
    tokens = dataset.field2id_token[dataset.iid_field]
    index = {item: row for row, item in enumerate(prepared.items["item"].tolist())}
    out = np.zeros((len(tokens), table.shape[1]), dtype=np.float32)
    rows = [index[t] for t in tokens[1:]]
    out[1:] = table[rows]
    return torch.from_numpy(out)
