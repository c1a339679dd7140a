"""``python -m bench speed``: the suite's ID-only SASRec epoch against bare RecBole's.

Same prepared data (the same RecBole atomic file), the same SASRec hyper-parameters, batch size,
optimiser and max length. Bare RecBole trains on every prefix of every sequence (its data
augmentation); the suite trains one window per user sequence-to-sequence with dynamic padding.
Bare RecBole is timed twice: with autograd anomaly mode on (what ``import recbole`` leaves you
with) and off. With ``--converge`` both are trained to convergence (early stopping on validation
NDCG@10, the same patience) and their best validation NDCG@10 is printed.

This is a benchmark, not a test: it prints measured ratios; nothing asserts on wall time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from recbole.data import create_dataset, data_preparation
from recbole.model.sequential_recommender import SASRec
from recbole.trainer import Trainer
from recbole.utils import init_seed
from tabulate import tabulate

from bench.adapters import load_adapter
from bench.checkpoint import EpochCheckpoint
from bench.compat import recbole_config
from bench.config import compose
from bench.data.prepared import export_recbole
from bench.data.sources import prepare
from bench.errors import unknown_name
from bench.records import fingerprint
from bench.runner import _recbole_dict, resolve_device, train_and_test


class _TimedTrainer(Trainer):
    """Bare RecBole Trainer that only records each epoch's wall time; no files written."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.epoch_seconds: list[float] = []
        self.best_epoch = -1
        # what bench.checkpoint saves and restores (a converging bare run spans sessions)
        self.best_state, self.resumed_at = None, []
        self.valid_seconds: list[float] = []
        self.valid_history: list[float] = []

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        start = time.perf_counter()
        loss = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        self.epoch_seconds.append(time.perf_counter() - start)
        return loss

    def _valid_epoch(self, valid_data, show_progress=False):
        """Print one line per epoch: a converging bare run takes an hour or more on a CPU."""
        score, result = super()._valid_epoch(valid_data, show_progress)
        self.valid_history.append(score)
        print(f"  bare epoch {len(self.epoch_seconds) - 1}: train {self.epoch_seconds[-1]:.1f} s, "
              f"valid {self.valid_metric} {score:.4f}", flush=True)
        return score, result

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if epoch >= 0 or not self.resumed_at:  # -1: RecBole's call for a run with no epochs left
            self.best_epoch = epoch


def bare_recbole(cfg: dict[str, Any], data_path: Path, name: str, epochs: int, patience: int,
                 anomaly: bool, validate: bool) -> dict[str, Any]:
    """Train RecBole's own SASRec with RecBole's own data pipeline and Trainer."""
    device = resolve_device(cfg["device"])
    work_dir = tempfile.mkdtemp(prefix="bench-speed-")  # RecBole's Trainer creates this dir
    config_dict = _recbole_dict(cfg, data_path, Path(work_dir), device)
    config_dict.update(epochs=epochs, stopping_step=patience, eval_step=1 if validate else 0)
    config_dict.pop("bench_loss")
    config = recbole_config(SASRec, name, config_dict)
    init_seed(cfg["seed"], True)
    dataset = create_dataset(config)
    train, valid, _ = data_preparation(config, dataset)
    init_seed(cfg["seed"], True)
    model = SASRec(config, train.dataset).to(device)
    trainer = _TimedTrainer(config, model)
    resume, loader_state = None, SimpleNamespace(epoch=0)
    if validate:  # converging takes hours on a CPU: continue a killed run from its last epoch
        identity = fingerprint({k: v for k, v in config_dict.items()
                                if k not in ("data_path", "checkpoint_dir", "show_progress")})
        resume = EpochCheckpoint(Path(cfg["paths"]["cache"]) / "speed" /
                                 f"bare-{name}-{identity}.resume.pt", identity,
                                 about=f"bare RecBole SASRec (bench speed), {name}, "
                                 f"seed {cfg['seed']}")
        resume.restore(trainer, loader_state)

    def save(epoch_idx: int, score: float) -> None:
        if resume is not None:
            resume.save(trainer, loader_state, epoch_idx, sum(trainer.epoch_seconds))

    torch.autograd.set_detect_anomaly(anomaly)
    try:
        best, _ = trainer.fit(train, valid if validate else None, verbose=False, saved=True,
                              show_progress=cfg.get("show_progress", True), callback_fn=save)
    finally:
        torch.autograd.set_detect_anomaly(False)
        shutil.rmtree(work_dir, ignore_errors=True)
    if resume is not None:
        best = trainer.best_valid_score  # fit returns it too; also right when nothing was left
        resume.remove()
    return {"epoch_seconds": trainer.epoch_seconds, "samples": len(train.dataset),
            "valid_ndcg10": best if validate else None, "best_epoch": trainer.best_epoch}


def suite(cfg: dict[str, Any], prepared, data_path: Path) -> dict[str, Any]:
    art = train_and_test(cfg, load_adapter("id"), prepared, data_path, resolve_device(cfg["device"]))
    rec = art.record
    return {"epoch_seconds": rec["efficiency"]["epoch_seconds"],
            "samples": rec["training"]["train_windows"],
            "valid_ndcg10": rec["metrics"]["valid"]["NDCG@10"],
            "best_epoch": rec["training"]["best_epoch"]}


VARIANTS = ("suite", "bare", "bare-anomaly")


def machine_load() -> str:
    """The 1-minute load average against the CPU count. Why: the ratio depends on what else
    runs (Beauty, one thread: 0.104 idle, 0.107 beside one training job on a 2-core machine);
    about 85% of a suite step is the (positions x items) cross-entropy, bare RecBole's epoch is
    mostly its layers over padded prefixes, and other work need not slow the two alike."""
    try:
        return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    except OSError:  # no load average on this platform
        return "unknown"


def main(args: argparse.Namespace) -> int:
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in chosen:
        if v not in VARIANTS:
            raise unknown_name("speed variant", v, VARIANTS)
    if args.skip_anomaly and "bare-anomaly" in chosen:
        chosen.remove("bare-anomaly")
    converge = args.converge
    epochs = args.max_epochs if converge else args.epochs
    patience = args.patience if converge else epochs
    cfg = compose([f"dataset={args.dataset}", "method=id", "backbone=sasrec", "protocol=full",
                   f"train.epochs={epochs}", f"train.patience={patience}", *args.overrides])
    cache = Path(cfg["paths"]["cache"])
    prepared = prepare(cfg["dataset"], cache)
    data_path = export_recbole(prepared, cache / "recbole")
    print(f"dataset {prepared.name}: {prepared.meta['n_users']} users, {prepared.meta['n_items']} "
          f"items; SASRec {cfg['backbone']['n_layers']}x{cfg['backbone']['hidden_size']}, batch "
          f"{cfg['train']['batch_size']}, max length {cfg['protocol']['max_seq_length']}, "
          f"device {resolve_device(cfg['device'])}, {torch.get_num_threads()} threads; machine "
          f"load {machine_load()} (other work on the machine changes the ratio)")
    headers = ["variant", "train samples/epoch", "epochs", "s/epoch (median)", "suite / this",
               "best valid NDCG@10", "best epoch", "load after"]
    variants = {
        "suite": (f"suite ({cfg['protocol']['training']}, dynamic padding)",
                  lambda: suite(cfg, prepared, data_path)),
        "bare": ("bare RecBole, anomaly mode off", lambda: bare_recbole(
            cfg, data_path, prepared.name, epochs, patience, anomaly=False, validate=converge)),
        "bare-anomaly": ("bare RecBole, anomaly mode on (its default)", lambda: bare_recbole(
            cfg, data_path, prepared.name, args.epochs, args.epochs, anomaly=True, validate=False)),
    }
    rows, suite_epoch = [], None
    for v in chosen:  # each row is printed as soon as its variant finishes
        label, measure = variants[v]
        res = measure()
        med = float(np.median(res["epoch_seconds"]))
        suite_epoch = med if v == "suite" else suite_epoch
        ratio = "-" if suite_epoch is None else f"{suite_epoch / med:.3f}"
        rows.append([label, res["samples"], len(res["epoch_seconds"]), f"{med:.2f}", ratio,
                     "-" if res["valid_ndcg10"] is None else f"{res['valid_ndcg10']:.4f}",
                     res["best_epoch"] if res["valid_ndcg10"] is not None else "-",
                     machine_load()])
        print(tabulate(rows[-1:], headers=headers, tablefmt="github"), flush=True)
    print("\nsummary\n" + tabulate(rows, headers=headers, tablefmt="github"))
    return 0
