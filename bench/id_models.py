"""Trained ID-only backbones, cached: one training serves every method that needs it.

The ``id`` row of a leaderboard, LLMEmb's collaborative-alignment teacher (an ID SASRec at
``teacher_seed``) and PAD's phase 1 (the ID backbone at the run's seed) are the same model when
their data, backbone, protocol, training settings and seed agree: training is deterministic on
a device, so they are the same weights. Each used to train its own copy (on Beauty, 87 epochs
and half an hour of CPU each). Now every ID-only model that finishes training is filed here by
those inputs (``methods/id.py`` does it, whoever ran it), and the teacher and phase 1 look here
first: ``--methods id,llmemb,pad`` trains the ID backbone once per seed, sequentially or side
by side (the ``id`` run holds the lock a teacher or phase 1 waits on: ``id_model_lock``).

An entry is ``<cache>/id-models/<backbone>/<key>/model.pt`` (state dict plus the item-token order
it was trained under), sealed with a checksum manifest (``DirCache``); the manifest's figures
say how, where and by which code (git commit) it was trained, and records that reuse one name
it in ``efficiency.one_off``. The key names the inputs, not the code: a change that alters a
training trajectory (a new dropout kernel, say) reuses an entry filed by older code, and the
figures are where a reader sees that.
"""
from __future__ import annotations

import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch

from bench.encoders.cache import DirCache, build_lock, cache_key
from bench.errors import BenchError

FOLDER = "id-models"


def id_model_parts(cfg: dict[str, Any], dataset_fingerprint: str) -> dict[str, Any]:
    """What decides an ID-only model's weights (not paths, progress bars or inference timing)."""
    from bench.runner import protocol_fingerprint

    return {"dataset": dataset_fingerprint, "method": cfg["method"], "backbone": cfg["backbone"],
            "protocol": protocol_fingerprint(cfg["protocol"], cfg["dataset"]),
            "train": cfg["train"], "seed": int(cfg["seed"])}


def _store(cache_dir: Path) -> DirCache:
    return DirCache(Path(cache_dir) / FOLDER)


def file_model(cfg: dict[str, Any], dataset_fingerprint: str, model: torch.nn.Module,
               items: list[str], figures: dict[str, Any]) -> str:
    """File a trained ID-only model (best weights) under its inputs; returns its key. An entry
    that exists is kept (same key, same inputs)."""
    parts = id_model_parts(cfg, dataset_fingerprint)
    key, kind = cache_key(**parts), cfg["backbone"]["name"]
    store = _store(cfg["paths"]["cache"])
    if store.valid(kind, key) is None:
        staging = store.staging(kind, key)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save({"state": state, "items": [str(t) for t in items]}, staging / "model.pt")
        store.commit(kind, key, staging, parts, figures)
    return key


def id_model_lock(cfg: dict[str, Any], dataset_fingerprint: str) -> AbstractContextManager[None]:
    """The lock held while the ID-only model ``cfg`` describes is trained: by an ``id`` run
    (``IdOnly.run_lock``) and by ``trained_id_model``. A teacher or phase 1 that starts while
    the ``id`` run of its seed is training waits for it and reads the filed model; an ``id``
    run that starts while a teacher trains waits too, then trains (and times) its own run."""
    key = cache_key(**id_model_parts(cfg, dataset_fingerprint))
    return build_lock(_store(cfg["paths"]["cache"]).root / cfg["backbone"]["name"], key)


def trained_id_model(cfg: dict[str, Any], prepared, device: torch.device,
                     label: str) -> tuple[dict[str, torch.Tensor], list[str], dict[str, Any]]:
    """The ID-only model ``cfg`` describes: from the cache when some run trained it, else
    trained now (under the protocol, early stopping, resumable) and filed. Returns its state
    dict, its item-token order and what the record's ``one_off[label]`` should say."""
    from bench.adapters import load_adapter
    from bench.checkpoint import EpochCheckpoint
    from bench.data.prepared import export_recbole
    from bench.runner import train_and_test

    kind = cfg["backbone"]["name"]
    key = cache_key(**id_model_parts(cfg, prepared.fingerprint))
    store = _store(cfg["paths"]["cache"])
    with id_model_lock(cfg, prepared.fingerprint):  # one job trains it, the others wait
        folder = store.valid(kind, key)
        if folder is None:
            cache = Path(cfg["paths"]["cache"])
            about = (f"{label}: ID-only {kind}, {cfg['dataset']['name']}/"
                     f"{cfg['protocol']['name']}, seed {cfg['seed']}")
            resume = EpochCheckpoint(store.root / kind / f"{key}.resume.pt", key, about=about)
            start = time.perf_counter()
            art = train_and_test(cfg, load_adapter("id"), prepared,
                                 export_recbole(prepared, cache / "recbole"), device,
                                 resume=resume, progress=about)
            resume.remove()
            folder = store.valid(kind, key)  # the id adapter filed it
            if folder is None:
                raise BenchError(f"the ID-only {kind} trained for {label} was not filed under "
                                 f"{store.path(kind, key)}; check that the cache is writable")
            info = {"cache_hit": False, "seed": int(cfg["seed"]), "key": key,
                    "seconds": time.perf_counter() - start,
                    "epochs": art.record["training"]["epochs_run"],
                    "valid_ndcg10": art.record["metrics"]["valid"]["NDCG@10"],
                    "git": art.record["provenance"]["git"]}
        else:
            info = {"cache_hit": True, "seed": int(cfg["seed"]), "key": key,
                    "built": store.figures(kind, key)}
    saved = torch.load(folder / "model.pt", weights_only=True)
    return saved["state"], list(saved["items"]), info


def check_item_order(items: list[str], dataset, what: str) -> None:
    """A cached model's rows must line up with this run's item ids."""
    if items != [str(t) for t in dataset.field2id_token[dataset.iid_field]]:
        raise BenchError(f"the cached {what} has another item order than this run's data; "
                         f"delete <cache>/{FOLDER} to rebuild it")
