"""``python -m bench status``: which runs under a runs folder are done, and where the others are.

A MoRec run on a CPU takes hours and a grid of runs takes days, spread over interrupted
sessions. Every finished run has its record; every unfinished one that trained at least an
epoch has its per-epoch checkpoint (``bench.checkpoint``). This lists both, one row per
(dataset, protocol, method, backbone, seed), so a user can see what is left and what a rerun of
the same command will resume, without opening logs. Checkpoints are memory-mapped, so reading
only their counters costs milliseconds even for MoRec's 200 MB files.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError

_LAYOUT = "<dataset>/<protocol>/<method>/<backbone>/seed-<k>"


@dataclass
class RunState:
    # runs: (dataset, protocol, method, backbone, seed); one-off stages: (path under the cache,)
    key: tuple
    state: str  # done, running (checkpoint rewritten within two epochs), resumable, unreadable
    epochs: int  # epochs done (steps for a step-checkpointed stage: see ``unit``)
    best_valid: float | None
    best_epoch: int | None  # 0-based, as records and RecBole count; shown from 1, as bars count
    train_seconds: float | None
    test_ndcg10: float | None
    updated: float  # mtime of the file read
    # unfinished runs: epochs left if validation does not improve again (early stopping's
    # patience or the epoch cap, whichever comes first; a new best adds more), and their time at
    # the recent epoch pace
    left_epochs: int | None = None
    left_seconds: float | None = None
    unit: str = "epochs"
    about: str = ""  # what a one-off stage trains, in words (its checkpoint says)


def _key(path: Path, root: Path) -> tuple[str, str, str, str, int] | None:
    parts = path.relative_to(root).parts
    if len(parts) != 5:
        return None
    seed = parts[4].split(".")[0].removeprefix("seed-")
    return (parts[0], parts[1], parts[2], parts[3], int(seed)) if seed.isdigit() else None


def _from_record(path: Path, key) -> RunState:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        training, metrics = rec["training"], rec["metrics"]
    except (OSError, ValueError, KeyError) as exc:
        raise BenchError(f"run record {path} is unreadable ({type(exc).__name__}: {exc}); "
                         "delete it to rerun that run") from None
    return RunState(key, "done", int(training["epochs_run"]), metrics["valid"]["NDCG@10"],
                    metrics["valid"]["best_epoch"], rec["efficiency"].get("train_seconds"),
                    metrics["test"]["overall"]["NDCG@10"], path.stat().st_mtime)


def _from_checkpoint(path: Path, key, now: float) -> RunState:
    """Raises FileNotFoundError when the checkpoint is gone: its run finished (and removed it)
    between the folder listing and this read; the caller decides what that means."""
    import torch

    updated = path.stat().st_mtime
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True,
                                           mmap=True)
        if "epoch" not in state and "step" in state:
            return _from_step_checkpoint(state, key, updated, now)
        epochs = int(state["epoch"]) + 1
        seconds = [float(s) for s in state["epoch_seconds"]] + \
            [float(s) for s in state["valid_seconds"]]
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 (a damaged checkpoint is reported, not fatal)
        print(f"note: checkpoint {path} is unreadable ({type(exc).__name__}); a rerun of its "
              "run starts afresh", file=sys.stderr)
        return RunState(key, "unreadable", 0, None, None, None, None, updated)
    per_epoch = sum(seconds) / max(1, epochs)
    # written after every epoch: one not rewritten for two epochs' time is no longer training
    running = now - updated < max(60.0, 2 * per_epoch)
    left = _epochs_left(state, epochs)
    recent = [float(a) + float(b) for a, b in zip(state["epoch_seconds"][-5:],
                                                  state["valid_seconds"][-5:])]
    return RunState(key, "running" if running else "resumable", epochs,
                    float(state["best_valid_score"]), int(state["best_epoch"]),
                    float(state["train_seconds"]), None, updated, left,
                    None if left is None or not recent else left * sum(recent) / len(recent),
                    about=str(state.get("about", "")))


def _from_step_checkpoint(state: dict[str, Any], key, updated: float, now: float) -> RunState:
    """A stage saved every few steps (LLMEmb's SCFT: ``methods/llmemb/scft.py``), running while
    its checkpoint is younger than two saves' time."""
    done, seconds = int(state["step"]), float(state["seconds"])
    per_step = seconds / max(1, done)
    left = max(0, int(state["steps"]) - done) if "steps" in state else None
    running = now - updated < max(60.0, 2 * int(state.get("every", 1)) * per_step)
    return RunState(key, "running" if running else "resumable", done, None, None, seconds,
                    None, updated, left, None if left is None else left * per_step,
                    unit="steps", about=str(state.get("about", "")))


def _epochs_left(state: dict[str, Any], epochs: int) -> int | None:
    """Epochs still to run if validation never improves again: RecBole stops once
    ``cur_step`` (epochs since the best) exceeds ``stopping_step``, or at the epoch cap.
    None for checkpoints written before they recorded both."""
    if "stopping_step" not in state or "max_epochs" not in state:
        return None
    if state.get("stopped"):
        return 0
    patience_left = int(state["stopping_step"]) - int(state["cur_step"]) + 1
    return max(0, min(int(state["max_epochs"]) - epochs, patience_left))


def scan(root: Path, now: float | None = None) -> list[RunState]:
    """Every run under ``root``: a record makes it done (a leftover checkpoint beside a record
    is ignored, as the runner does); otherwise its checkpoint says how far it got."""
    root, now = Path(root), time.time() if now is None else now
    if not root.is_dir():
        raise BenchError(f"runs folder {root} not found (records are written to paths.runs, "
                         "'runs' by default): pass --runs DIR")
    found: dict[tuple, RunState] = {}
    for path in sorted(root.glob("*/*/*/*/seed-*.json")):
        if (key := _key(path, root)) is not None:
            found[key] = _from_record(path, key)
    for path in sorted(root.glob("*/*/*/*/seed-*.resume.pt")):
        if (key := _key(path, root)) is not None and key not in found:
            try:
                found[key] = _from_checkpoint(path, key, now)
            except FileNotFoundError:  # the run finished during the scan: its record says
                record = path.with_name(path.name.removesuffix(".resume.pt") + ".json")
                if record.is_file():
                    found[key] = _from_record(record, key)
    return [found[k] for k in sorted(found)]


def scan_stages(cache: Path, now: float | None = None) -> list[RunState]:
    """Unfinished one-off stages under the cache folder (an ID-only teacher or PAD phase
    training, SCFT, a converging ``bench speed`` run): a PAD or LLMEmb run on Beauty spends
    its first half hour there, where the runs folder shows nothing. Finished stages leave no
    checkpoint; a missing cache folder has none."""
    cache, now = Path(cache), time.time() if now is None else now
    if not cache.is_dir():
        return []
    stages = []
    for path in sorted(cache.rglob("*.resume.pt")):
        try:
            stages.append(_from_checkpoint(path, (str(path.relative_to(cache)),), now))
        except FileNotFoundError:  # the stage finished during the scan
            pass
    return stages


def _num(x: float | None, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def table(states: list[RunState], now: float) -> str:
    from tabulate import tabulate

    rows = [[*s.key, s.state, s.epochs,
             _best(s), _num(s.test_ndcg10), _duration(s.train_seconds), _left(s),
             _ago(now, s.updated)]
            for s in states]
    return tabulate(rows, headers=["dataset", "protocol", "method", "backbone", "seed", "state",
                                   "epochs", "best valid NDCG@10", "test NDCG@10", "training",
                                   "left if no new best", "last written"], tablefmt="github",
                    disable_numparse=True)


def stage_table(stages: list[RunState], now: float) -> str:
    from tabulate import tabulate

    rows = [[s.about or s.key[0], s.state, f"{s.epochs} {s.unit}", _best(s), _left(s),
             _ago(now, s.updated)]
            for s in stages]
    return tabulate(rows, headers=["one-off stage in progress", "state", "done",
                                   "best valid NDCG@10", "left if no new best", "last written"],
                    tablefmt="github", disable_numparse=True)


def _ago(now: float, updated: float) -> str:
    """A file written while the scan ran has a time after ``now``: that is 0 s ago, not -5 s."""
    return _duration(max(0.0, now - updated)) + " ago"


def _best(s: RunState) -> str:
    if s.best_valid is None:
        return "–"
    return f"{_num(s.best_valid)} (epoch {s.best_epoch + 1})"


def _left(s: RunState) -> str:
    if s.left_epochs is None:
        return "–"
    return f"{s.left_epochs} {s.unit}, {_duration(s.left_seconds)}"


def main(args: argparse.Namespace) -> int:
    now = time.time()
    stages = scan_stages(Path(args.cache), now)
    if stages and not Path(args.runs).is_dir():  # a first run still in its one-off stages
        print(f"no runs folder {args.runs} yet: no run has reached its own training")
        states = []
    else:
        states = scan(Path(args.runs), now)
        if not states:
            print(f"no runs under {args.runs} (expected {_LAYOUT}.json or .resume.pt)")
    if states:
        print(table(states, now))
        counts = Counter(s.state for s in states)
        print("\n" + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) +
              ". A resumable run continues from its checkpoint when its `bench run` command "
              "is run again.")
    if stages:
        print("\n" + stage_table(stages, now))
        print(f"\nOne-off stages (under {args.cache}) are shared by the runs that need them; "
              "one resumes when any of those runs is started again.")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("status", help="which runs are done, running or resumable",
                       description="List the runs under a runs folder: finished ones (their "
                       "record: epochs, best validation and test NDCG@10, training time) and "
                       "unfinished ones (their per-epoch checkpoint: epochs so far, best "
                       "validation NDCG@10, whether it is still being written, and how many "
                       "epochs can be left before early stopping or the epoch cap ends it, "
                       "with their time at the recent pace). Then the one-off stages still "
                       "training under the cache folder, which the runs that need them share.")
    p.add_argument("--runs", default="runs", help="the runs folder (paths.runs; default runs)")
    p.add_argument("--cache", default=".cache",
                   help="the cache folder, for one-off stages in progress: ID-only teachers and "
                   "PAD phases, SCFT, converging `bench speed` runs (paths.cache; default .cache)")
    p.set_defaults(func=main)
