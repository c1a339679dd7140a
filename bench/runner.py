"""One run: composed config -> prepared data -> RecBole model -> training -> test ranks -> record.

Data flows one way: ``bench.data`` prepares the dataset and exports it to RecBole, RecBole's
``create_dataset``/``build`` makes the leave-one-out split, the method adapter builds the model,
``BenchTrainer`` trains it, ``bench.evaluation`` ranks each user's target and groups the metrics,
and ``bench.records`` writes the record and the per-user sidecar atomically.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from recbole.data import create_dataset
from recbole.utils import init_seed
from tqdm.auto import tqdm

from bench.adapters import BuildContext, load_adapter, method_source
from bench.backbones import BACKBONES
from bench.checkpoint import EpochCheckpoint, checkpoint_path
from bench.compat import recbole_config
from bench.data.cold import cold_items, cold_view, is_cold
from bench.data.prepared import PreparedDataset, export_recbole, recbole_item_file
from bench.data.sources import prepare, unpinned
from bench.efficiency import PeakMemory, inference_profile
from bench.errors import BenchError
from bench.evaluation.groups import SequenceStats, group_masks
from bench.evaluation.metrics import grouped_metrics, metric_columns
from bench.evaluation.ranking import EvalSplit, rank_targets, sample_negatives
from bench.fast_layers import accelerate
from bench.records import (SCHEMA, RunKey, device_name, fingerprint, provenance, read_record,
                           write_run)
from bench.runtime import release_free_heap
from bench.training import BenchTrainer, Seq2SeqTrainLoader


@dataclass
class Artifacts:
    """What one training run produced; tests and benchmarks inspect these directly."""

    record: dict[str, Any]
    per_user: pd.DataFrame
    model: Any
    dataset: Any  # RecBole dataset (before splitting)
    splits: tuple  # RecBole's (train, valid, test) split datasets
    rb_config: Any  # RecBole Config
    valid: EvalSplit
    test: EvalSplit


@dataclass
class Outcome:
    key: RunKey
    record_path: Path
    skipped: bool
    record: dict[str, Any] | None = None


def run_key(cfg: dict[str, Any]) -> RunKey:
    return RunKey(cfg["method"]["name"], cfg["backbone"]["name"], cfg["dataset"]["name"],
                  cfg["protocol"]["name"], int(cfg["seed"]))


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchError("device=cuda but no CUDA device is visible; use device=auto or device=cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def resume_identity(cfg: dict[str, Any], dataset_fingerprint: str) -> str:
    """What a resume checkpoint must match to be continued: the run's settings and data (not
    paths, progress bars, or the dataset config's fingerprint pin, which is a note)."""
    settings = {s: cfg.get(s) for s in _IDENTITY + ("encoder",)}
    return fingerprint({"config": {**settings, "dataset": unpinned(cfg["dataset"])},
                        "dataset": dataset_fingerprint})


def protocol_fingerprint(protocol: dict[str, Any], dataset_cfg: dict[str, Any]) -> str:
    """Everything that changes what a number means: candidates, loss, training mode, groups."""
    fields = {**protocol, "causal_mask": True}
    if protocol["groups"] == "threshold":
        fields["thresholds"] = dataset_cfg.get("paper_thresholds")
    return fingerprint(fields)


def _recbole_dict(cfg: dict[str, Any], data_path: Path, work_dir: Path, device: torch.device,
                  item_file: bool = False):
    t, p = cfg["train"], cfg["protocol"]
    backbone = {k: v for k, v in cfg["backbone"].items() if k != "name"}
    load_col = {"inter": ["user_id", "item_id", "timestamp"]}
    if item_file:  # every item gets an id, including those without interactions (cold view)
        load_col["item"] = ["item_id"]
    return {
        "data_path": str(data_path), "checkpoint_dir": str(work_dir), "show_progress": False,
        "load_col": load_col,
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "MAX_ITEM_LIST_LENGTH": p["max_seq_length"],
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full",
                      "group_by": "user"},
        "metrics": ["Hit", "NDCG"], "topk": [10], "valid_metric": "NDCG@10",
        "epochs": t["epochs"], "stopping_step": t["patience"], "eval_step": 1,
        "train_batch_size": t["batch_size"], "eval_batch_size": t["eval_batch_size"],
        "learning_rate": t["learning_rate"], "weight_decay": t["weight_decay"],
        "clip_grad_norm": {"max_norm": t["clip_grad_norm"]} if t["clip_grad_norm"] else None,
        # RecBole's own loss code is never called; "CE" only satisfies its constructor checks.
        "loss_type": "CE", "bench_loss": p["loss"], "train_neg_sample_args": None,
        "seed": int(cfg["seed"]), "reproducibility": True, "use_gpu": device.type == "cuda",
        "log_wandb": False, "worker": 0, **backbone,
    }


def _eval_splits(dataset, splits, stats: SequenceStats, protocol: dict[str, Any],
                 cold: torch.Tensor | None = None):
    """Validation and test users as tensors; under ``cold`` (internal ids of the held-out
    items) the test users are those whose target is cold (validation targets are all warm)."""
    valid, test = EvalSplit.from_recbole(splits[1]), EvalSplit.from_recbole(splits[2])
    if cold is not None:
        test = test.subset(torch.isin(test.target, cold))
    if protocol["exclude_history"]:  # the whole sequence before the target, not just the window
        valid.history = [stats.user_items[u][:-2] for u in valid.user.tolist()]
        test.history = [stats.user_items[u][:-1] for u in test.user.tolist()]
    if protocol["candidates"] == "sampled":
        for offset, split in enumerate((valid, test)):
            seen = [stats.user_items[u] for u in split.user.tolist()]
            split.negatives = sample_negatives(seen, dataset.item_num, protocol["n_negatives"],
                                               seed=protocol["negative_seed"] * 2 + offset)
    return valid, test


def _cold_ids(dataset, prepared: PreparedDataset) -> torch.Tensor | None:
    """Internal ids of a cold view's held-out items (None for other data)."""
    tokens = cold_items(prepared)
    if not tokens:
        return None
    return torch.as_tensor(dataset.token2id(dataset.iid_field, tokens), dtype=torch.long)


def _per_user_frame(dataset, test: EvalSplit, ranks: np.ndarray, stats: SequenceStats,
                    groups: dict[str, np.ndarray], n_candidates: int, max_len: int) -> pd.DataFrame:
    users, targets = test.user.numpy(), test.target.numpy()
    return pd.DataFrame({
        "user": dataset.id2token(dataset.uid_field, users),
        "target": dataset.id2token(dataset.iid_field, targets),
        "rank": ranks, "n_candidates": n_candidates,
        "target_train_pop": stats.train_pop[targets], "target_full_pop": stats.full_pop[targets],
        "train_len": stats.train_len[users],
        "input_len": np.minimum(stats.full_len[users] - 1, max_len),
        "head_item": groups["head_item"], "long_user": groups["long_user"],
    })


def execute_all(configs: list[dict[str, Any]], force: bool = False) -> list[Outcome]:
    """Run each config in turn (``execute``), saying which ones were skipped."""
    outcomes = []
    for cfg in configs:
        outcome = execute(cfg, force=force)
        if outcome.skipped:
            print(f"skip {outcome.key}: {outcome.record_path} exists (use --force to rerun)")
        outcomes.append(outcome)
    return outcomes


def execute(cfg: dict[str, Any], force: bool = False) -> Outcome:
    """Run one (method, backbone, dataset, protocol, seed); skip it if its record exists
    (unless ``force`` or the config's ``force=true``)."""
    force = force or bool(cfg.get("force", False))
    key = run_key(cfg)
    record_path = key.record_path(Path(cfg["paths"]["runs"]))
    cache = Path(cfg["paths"]["cache"])
    prepared = prepare(cfg["dataset"], cache)
    if is_cold(cfg["protocol"]):  # the data the protocol trains on: cold items held out
        prepared = cold_view(prepared, cfg["protocol"], cache)
    adapter = load_adapter(cfg["method"].get("adapter") or key.method)
    if record_path.exists() and not force:
        _check_same_run(record_path, prepared, cfg, adapter.uses_text)
        return Outcome(key, record_path, skipped=True)
    if key.backbone not in adapter.backbones:
        raise BenchError(f"method '{key.method}' does not support backbone '{key.backbone}'; "
                         f"it supports {', '.join(adapter.backbones)}")
    if adapter.uses_text and not prepared.text_fields:
        raise BenchError(f"method '{key.method}' reads item text, but dataset '{prepared.name}' is "
                         "ID-only (no item text); use a dataset with text, e.g. beauty or yelp")
    device = resolve_device(cfg["device"])
    data_path = export_recbole(prepared, cache / "recbole")
    resume = None
    if cfg.get("resume", True):
        resume = EpochCheckpoint(checkpoint_path(record_path),
                                 resume_identity(cfg, prepared.fingerprint))
    release_free_heap()  # a previous run's freed heap must not count in this run's peak RSS
    with adapter.run_lock(cfg, prepared):
        art = train_and_test(cfg, adapter, prepared, data_path, device, resume=resume)
    write_run(record_path, art.record, art.per_user)
    if resume is not None:
        resume.remove()
    return Outcome(key, record_path, skipped=False, record=art.record)


# Config sections that define what a record measured; paths, device and progress do not.
_IDENTITY = ("dataset", "method", "backbone", "protocol", "train", "seed")


def _diff(old: Any, new: Any, prefix: str) -> str | None:
    """The first key where two config values differ, as ``key: old -> new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            found = _diff(old.get(k), new.get(k), f"{prefix}.{k}")
            if found:
                return found
        return None
    return None if old == new else f"{prefix}: {old!r} -> {new!r}"


def _check_same_run(record_path: Path, prepared: PreparedDataset, cfg: dict[str, Any],
                    uses_text: bool) -> None:
    """A record made on other data or another configuration is not silently reused as this
    run's (e.g. ``method.scft=false`` against a default ``llmemb`` record)."""
    try:
        record = read_record(record_path)
        old_fp, old_cfg = record["dataset"]["fingerprint"], record["config"]
    except (OSError, ValueError, KeyError, TypeError):
        raise BenchError(f"record {record_path} is unreadable or damaged; delete it or rerun with "
                         "--force") from None
    keep = "; rerun with --force to replace it, or set paths.runs=<another dir> to keep both"
    if old_fp != prepared.fingerprint:
        raise BenchError(f"record {record_path} was made on dataset fingerprint {old_fp}, but "
                         f"'{prepared.name}' is now {prepared.fingerprint}{keep}")
    for section in _IDENTITY + (("encoder",) if uses_text else ()):
        old_part, new_part = old_cfg.get(section), cfg.get(section)
        if section == "dataset":  # the data itself is the fingerprint; these change the numbers
            keys = ("paper_thresholds",) + (("prompt_domain",) if uses_text else ())
            old_part, new_part = ({k: (d or {}).get(k) for k in keys} for d in (old_part, new_part))
        found = _diff(old_part, new_part, section)
        if found:
            raise BenchError(f"record {record_path} was made with another configuration "
                             f"({found}); name the variant in configs/method/ (e.g. "
                             f"llmemb-noscft){keep}")


def train_and_test(cfg: dict[str, Any], adapter, prepared: PreparedDataset, data_path: Path,
                   device: torch.device, adapter_view: PreparedDataset | None = None,
                   resume: EpochCheckpoint | None = None,
                   progress: str | None = None) -> Artifacts:
    """Train with early stopping on validation, restore the best weights, rank the test users.

    ``adapter_view``: the prepared dataset the adapter is shown instead of ``prepared`` (the
    conformance check passes a copy with perturbed held-out targets; the harness's own split,
    selection and evaluation always use ``prepared``). ``resume``: continue from (and save
    after every epoch) this checkpoint. ``progress``: the epoch bar's label (default: the run's
    key), for a model trained inside another run (LLMEmb's teacher, PAD's phases)."""
    with tempfile.TemporaryDirectory(prefix="bench-run-") as work_dir:
        return _train_and_test(cfg, run_key(cfg), adapter, prepared, data_path, Path(work_dir),
                               device, adapter_view or prepared, resume, progress)


@dataclass
class Setup:
    """Everything a run builds before its first epoch: RecBole's data and config, the
    evaluation splits, the adapter's context (one-off stages done) and the untrained model
    with its training loader. The runner trains it; benchmarks time single steps of it."""

    rb_config: Any
    dataset: Any
    splits: tuple
    stats: SequenceStats
    valid: EvalSplit
    test: EvalSplit
    ctx: BuildContext
    model: Any
    loader: Seq2SeqTrainLoader
    data_seconds: float
    prepare_seconds: float


def build_setup(cfg: dict[str, Any], key: RunKey, adapter, prepared: PreparedDataset,
                data_path: Path, work_dir: Path, device: torch.device,
                adapter_view: PreparedDataset | None = None, fast_layers: bool = True) -> Setup:
    """``fast_layers=False`` keeps torch's own dropout and GELU (``bench verify`` replaying a
    record made before ``bench.fast_layers``, whose dropout masks come from another stream)."""
    protocol, t = cfg["protocol"], cfg["train"]
    if is_cold(protocol) and not cold_items(prepared):
        raise BenchError(f"protocol '{protocol['name']}' holds out cold items, but dataset "
                         f"'{prepared.name}' was passed whole; pass bench.data.cold.cold_view(...)")
    backbone_cls = BACKBONES[key.backbone]
    if protocol["training"] == "prefix" and not backbone_cls.prefix_training:
        raise BenchError(f"protocol.training=prefix trains next-item backbones (sasrec, "
                         f"gru4rec), not '{key.backbone}': use seq2seq or seq2seq-tiled")
    item_file = recbole_item_file(prepared, data_path) is not None
    rb_config = recbole_config(backbone_cls, prepared.name,
                               _recbole_dict(cfg, data_path, work_dir, device, item_file))
    start = time.perf_counter()
    dataset = create_dataset(rb_config)
    splits = dataset.build()
    stats = SequenceStats.from_interactions(prepared.interactions, dataset, prepared.name)
    cold = _cold_ids(dataset, prepared)
    valid, test = _eval_splits(dataset, splits, stats, protocol, cold)
    data_seconds = time.perf_counter() - start

    ctx = BuildContext(rb_config, splits[0], backbone_cls, adapter_view or prepared,
                       cfg["method"], Path(cfg["paths"]["cache"]), run_cfg=cfg, device=device)
    prepare_start = time.perf_counter()
    adapter.prepare(ctx)  # one-off stages; cached ones cost only their lookup
    prepare_seconds = time.perf_counter() - prepare_start
    init_seed(key.seed, True)
    model = adapter.build_model(ctx).to(device)
    # same layers, cheaper CPU kernels
    ctx.extras["layer_swaps"] = accelerate(model) if fast_layers else {}
    if cold is not None:  # cold items are not in the catalogue while the model trains
        if not hasattr(model, "exclude_items"):
            raise BenchError(f"method '{key.method}' built a {type(model).__name__}, which "
                             "cannot keep cold items out of its loss; build the model on a "
                             "bench.backbones class to run protocol=cold")
        model.exclude_items(cold.to(device))
    loader = Seq2SeqTrainLoader(splits[0], adapter.batch_size(ctx), backbone_cls.objective,
                                key.seed, t["bucket_batches"], mode=protocol["training"])
    if t["loss_reduction"] == "constant":
        model.position_norm = loader.batch_size * float(loader.expected_positions(model).mean())
    return Setup(rb_config, dataset, tuple(splits), stats, valid, test, ctx, model, loader,
                 data_seconds, prepare_seconds)


def validation_fn(model, valid: EvalSplit, cfg: dict[str, Any], device: torch.device):
    """What early stopping reads after each epoch: NDCG@10 over the validation users."""

    def valid_fn() -> tuple[float, dict[str, float]]:
        ranks = rank_targets(model, valid, cfg["train"]["eval_batch_size"], device,
                             cfg.get("ranking_kernel", "eager"))
        ndcg = float(metric_columns(ranks, [10], 10)["NDCG@10"].mean())
        return ndcg, {"ndcg@10": ndcg}

    return valid_fn


def _train_and_test(cfg, key: RunKey, adapter, prepared: PreparedDataset, data_path: Path,
                    work_dir: Path, device: torch.device, adapter_view: PreparedDataset,
                    resume: EpochCheckpoint | None = None,
                    progress: str | None = None) -> Artifacts:
    protocol, t = cfg["protocol"], cfg["train"]
    # the code that trains, not what is checked out by the time the record is written
    code_at_start = provenance(device, None)["git"]
    setup = build_setup(cfg, key, adapter, prepared, data_path, work_dir, device, adapter_view)
    rb_config, dataset, splits, stats = setup.rb_config, setup.dataset, setup.splits, setup.stats
    valid, test, ctx, model, loader = setup.valid, setup.test, setup.ctx, setup.model, setup.loader
    data_seconds, prepare_seconds = setup.data_seconds, setup.prepare_seconds

    kernel = cfg.get("ranking_kernel", "eager")
    trainer = BenchTrainer(rb_config, model, validation_fn(model, valid, cfg, device),
                           step_progress=bool(cfg.get("show_progress", True)))
    seconds_before = resume.restore(trainer, loader) if resume is not None else 0.0
    bar = tqdm(total=t["epochs"], initial=len(trainer.valid_history), desc=progress or str(key),
               unit="epoch", leave=True, disable=not cfg.get("show_progress", True),
               dynamic_ncols=True)

    def on_epoch(epoch_idx: int, score: float) -> None:
        bar.update(1)
        bar.set_postfix_str(f"valid NDCG@10 {score:.4f} (best {trainer.best_valid_score:.4f})")
        if resume is not None:
            resume.save(trainer, loader, epoch_idx,
                        seconds_before + time.perf_counter() - train_start)

    train_start = time.perf_counter()
    with PeakMemory(device) as train_memory:
        trainer.fit(loader, valid, verbose=False, saved=True, callback_fn=on_epoch)
    train_seconds = seconds_before + time.perf_counter() - train_start
    bar.close()
    trainer.load_best()
    ctx.extras["trained"] = {  # for trained_info (the ID-model cache files it)
        "epochs": len(trainer.epoch_seconds), "best_epoch": trainer.best_epoch,
        "valid_ndcg10": trainer.best_valid_score, "train_seconds": train_seconds,
        "git": code_at_start}  # the cache key names inputs, not code: say which code trained it

    eval_start = time.perf_counter()
    ranks = rank_targets(model, test, t["eval_batch_size"], device, kernel)
    eval_seconds = time.perf_counter() - eval_start
    users, targets = test.user.numpy(), test.target.numpy()
    groups = group_masks(stats, users, targets, protocol, cfg["dataset"].get("paper_thresholds"),
                         protocol["max_seq_length"])
    n_candidates = (protocol["n_negatives"] + 1 if protocol["candidates"] == "sampled"
                    else dataset.item_num - 1)
    metrics = grouped_metrics(ranks, groups, protocol["ks"], protocol["mrr_k"])
    per_user = _per_user_frame(dataset, test, ranks, stats, groups, n_candidates,
                               protocol["max_seq_length"])
    timing = {"data": data_seconds, "train": train_seconds, "test_eval": eval_seconds}
    record = _make_record(cfg, key, prepared, dataset, model, trainer, loader, metrics, timing,
                          n_test=len(test), device=device, encoder=adapter.encoder_id(ctx))
    record["method_info"] = {**ctx.extras.get("record_info", {}),  # what the adapter says it ran
                             **adapter.trained_info(ctx, model),
                             "adapter": {**adapter.metadata(),
                                         "source": method_source(key.method)}}
    record["efficiency"]["one_off"] = ctx.extras.get("one_off", {})
    record["efficiency"]["prepare_seconds"] = prepare_seconds
    record["efficiency"]["peak_memory_train"] = train_memory.figure()
    eff = cfg.get("efficiency") or {}
    if eff.get("inference", True):
        with PeakMemory(device) as infer_memory:
            record["efficiency"]["inference"] = inference_profile(
                model, test, device, int(eff.get("latency_users", 200)),
                batch_size=int(eff.get("throughput_batch", 1024)),
                repeats=int(eff.get("repeats", 3)))
        record["efficiency"]["inference"]["peak_memory"] = infer_memory.figure()
    record["provenance"]["git"] = code_at_start
    record["provenance"]["layer_swaps"] = ctx.extras.get("layer_swaps", {})
    return Artifacts(record, per_user, model, dataset, tuple(splits), rb_config, valid, test)


def _cold_summary(prepared: PreparedDataset) -> dict[str, Any]:
    """A cold view's split in the record: what was held out and how many users it tests."""
    info = prepared.meta["source"].get("cold_start")
    if not info:
        return {}
    return {"cold_start": {k: v for k, v in info.items() if k != "items"}}


def portable_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config as a record stores it. Where this machine keeps runs, caches and data says
    nothing about what was measured, and committed records must not carry one machine's
    absolute paths: ``paths`` (and ``force``, how the run was asked for) is dropped, and a
    value under one of its folders (a dataset's files under ``paths.data``) is written as
    ``${paths.<name>}/...``, as the configs spell it."""
    roots = sorted(((str(v).rstrip("/"), k) for k, v in (cfg.get("paths") or {}).items() if v),
                   key=lambda pair: -len(pair[0]))

    def portable(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: portable(v) for k, v in value.items()}
        if isinstance(value, list):
            return [portable(v) for v in value]
        if isinstance(value, str):
            for root, name in roots:
                if value.startswith(root + "/"):
                    return f"${{paths.{name}}}{value[len(root):]}"
        return value

    return {k: portable(v) for k, v in cfg.items() if k not in ("paths", "force")}


def training_segments(trainer, device: torch.device) -> list[dict[str, Any]]:
    """Each stretch of training between resumes: the epoch it started from (0-based) and the
    hardware it ran on (None where the checkpoint predates the label). One stretch unless the
    run was resumed; with more, the record's epoch times mix them."""
    starts = [0, *trainer.resumed_at]
    devices = [*trainer.segment_devices, device_name(device)]
    return [{"from_epoch": int(s), "device": d} for s, d in zip(starts, devices)]


def _make_record(cfg, key: RunKey, prepared: PreparedDataset, dataset, model, trainer, loader,
                 metrics, timing: dict[str, float], n_test: int, device: torch.device,
                 encoder: str | None) -> dict[str, Any]:
    """The run record: metrics, training curve, efficiency, fingerprints, config, provenance."""
    protocol = cfg["protocol"]
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    epoch_median = float(np.median(trainer.epoch_seconds))
    return {
        "schema": SCHEMA,
        "key": key.__dict__,
        "metrics": {"test": metrics,
                    "valid": {"NDCG@10": trainer.best_valid_score, "best_epoch": trainer.best_epoch}},
        "training": {"epochs_run": len(trainer.epoch_seconds), "best_epoch": trainer.best_epoch,
                     "valid_ndcg10_per_epoch": trainer.valid_history,
                     "train_windows": len(loader.lengths), "batch_size": loader.batch_size,
                     "resumed_at_epochs": trainer.resumed_at,
                     "segments": training_segments(trainer, device)},
        "efficiency": {
            "device": str(device), "data_seconds": timing["data"],
            "train_seconds": timing["train"], "epoch_seconds": trainer.epoch_seconds,
            "epoch_seconds_median": epoch_median,
            "train_sequences_per_second": len(loader.lengths) / epoch_median,
            "valid_seconds_median": float(np.median(trainer.valid_seconds)),
            "test_eval_seconds": timing["test_eval"],
            "test_users_per_second": n_test / timing["test_eval"],
            "parameters": {"total": n_params, "trainable": n_trainable,
                           "frozen": n_params - n_trainable},
        },
        "protocol": {**protocol, "causal_mask": True,
                     "fingerprint": protocol_fingerprint(protocol, cfg["dataset"])},
        "dataset": {"name": prepared.name, "fingerprint": prepared.fingerprint,
                    "n_users": int(dataset.user_num - 1), "n_items": int(dataset.item_num - 1),
                    "n_interactions": int(prepared.meta["n_interactions"]),
                    "paper_thresholds": cfg["dataset"].get("paper_thresholds"),
                    **_cold_summary(prepared)},
        "config": portable_config(cfg),
        "provenance": provenance(device, encoder),
    }
