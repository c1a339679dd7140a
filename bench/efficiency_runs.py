"""``python -m bench efficiency``: what each method costs to train and to serve, per device.

Accuracy runs early-stop, so their epoch counts differ and their timings are whatever else the
machine was doing. An efficiency run instead trains every method for the same fixed number of
epochs (``train.epochs = train.patience = --epochs``, so nothing stops early), on one device,
then measures serving (latency at batch 1, throughput at a large batch, peak memory) exactly as
every run does (``bench/efficiency.py``). Records go to ``<out>/<device>/<dataset>/<protocol>/
<method>/<backbone>/seed-<k>.json``, apart from the accuracy records, because a run of a few
epochs is not an accuracy result. ``python -m bench leaderboard`` turns them into the
efficiency tables; this command prints the same table for the records it made.

Each run gets a fresh process. On a CPU, peak memory is the process's resident set, and a
finished run leaves memory behind (the heap keeps freed blocks, ``bench/runtime.py``; a language
model loaded for a one-off stage): measured in one process, a run's peak counted the runs before
it and depended on the order of ``--methods`` (llm_esr: 2,792 MiB third in a batch, 1,231 MiB
alone). On CUDA a fresh process also starts from an empty allocator.
"""
from __future__ import annotations

import argparse
import multiprocessing
from pathlib import Path
from typing import Any

from bench.errors import BenchError

DEFAULT_OUT = "runs/efficiency"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "efficiency", help="fixed-epoch runs measuring training and serving cost per device",
        description="Train each (dataset, method, backbone) for a fixed number of epochs on "
        "this machine's device (CUDA when present, else CPU; device=cpu forces the CPU), measure "
        "epoch time, training throughput, inference latency p50/p95/p99 at batch 1, throughput "
        "at a large batch, peak memory, parameter counts and one-off costs, write one record "
        "per run under OUT/<device>/ and print the efficiency table.",
        epilog="Publish to the committed leaderboard with --out leaderboards/efficiency-records, "
        "then python -m bench leaderboard. Run nothing else on the machine while it measures.")
    p.add_argument("--methods", required=True, help="comma list of methods")
    p.add_argument("--datasets", default="synthetic", help="comma list (default synthetic)")
    p.add_argument("--backbones", default="sasrec", help="comma list (default sasrec)")
    p.add_argument("--protocol", default="full", help="protocol (default full)")
    p.add_argument("--epochs", type=int, default=3,
                   help="training epochs per run, all timed (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"records folder (default {DEFAULT_OUT})")
    p.add_argument("--force", action="store_true", help="rerun runs whose record exists")
    p.add_argument("--include", action="append", metavar="FILE",
                   help="load a method adapter from this Python file (repeatable)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bench.cli import _include, _names
    from bench.config import compose
    from bench.leaderboard.costs import CostRow, device_slug, efficiency_table
    from bench.records import device_name, read_record
    from bench.runner import resolve_device

    _include(args.include)
    if args.epochs < 1:
        raise BenchError(f"--epochs must be at least 1 (got {args.epochs})")
    methods, backbones = _names("method", args.methods), _names("backbone", args.backbones)
    datasets, protocol = _names("dataset", args.datasets), _names("protocol", args.protocol)[0]
    # the first method's config, so that method.* overrides (e.g. method.mlp_dtype) resolve
    probe = compose([f"dataset={datasets[0]}", f"method={methods[0]}", *args.overrides])
    slug = device_slug(device_name(resolve_device(probe["device"])))
    runs_dir = Path(args.out) / slug
    fixed = [f"train.epochs={args.epochs}", f"train.patience={args.epochs}",
             f"paths.runs={runs_dir}", f"seed={args.seed}"]
    configs = [compose([f"dataset={d}", f"protocol={protocol}", f"method={m}", f"backbone={b}",
                        *args.overrides, *fixed])
               for d in datasets for m in methods for b in backbones]
    outcomes = [_in_fresh_process(cfg, args.force, args.include) for cfg in configs]
    for dataset in datasets:
        rows = []
        for o in outcomes:
            if o.key.dataset == dataset:
                rec = o.record or read_record(o.record_path)
                rows.append(CostRow(o.key.method, o.key.backbone, rec["provenance"]["device"],
                                    rec, o.record_path))
        print(f"\n{dataset} ({protocol}), {args.epochs} epochs per run, records in {runs_dir}\n")
        print(efficiency_table(rows))
    return 0


def _in_fresh_process(cfg: dict[str, Any], force: bool, includes: list[str] | None):
    """``bench.runner.execute(cfg)`` in a spawned process (see the module docstring); its
    errors (a ``BenchError`` too) are raised here."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        outcome = pool.apply(_execute_one, (cfg, force, includes))
        pool.close()  # let the worker exit by itself: terminating it leaks its semaphores
        pool.join()
    return outcome


def _execute_one(cfg: dict[str, Any], force: bool, includes: list[str] | None):
    import bench  # noqa: F401  (the RecBole fixes, before anything imports RecBole)
    from bench.cli import _include
    from bench.runner import execute_all

    _include(includes)
    return execute_all([cfg], force=force)[0]
