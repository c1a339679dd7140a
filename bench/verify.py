"""``python -m bench verify RECORD``: replay a record's first epochs and compare its curve.

A leaderboard number is only as good as the claim that the suite produced it. Every record
holds its resolved config, its dataset fingerprint and its validation NDCG@10 after every epoch;
a run is seeded end to end (model initialisation, batch order, negatives, dropout, and a
resumed run restores every generator), so the same config on the same data traces the same
curve. Replaying a few epochs costs minutes where the full run took hours, and a mismatch at
epoch 1 already says the record was not made by this code on this data. Earlier stages a method
caches (LLMEmb's SCFT, PAD's phases 1-2, the ID model LLMEmb aligns to) are read from the cache
when they are there and built in full when not; only the run's own training is cut short.

Floating-point results can differ in the last bits across CPUs, BLAS builds and commits that
reorder a sum, and training amplifies them slowly, so the comparison has a tolerance; the
report says whether the curve was reproduced exactly.
"""
from __future__ import annotations

import argparse
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError

_PATH_REF = re.compile(r"^\$\{paths\.(\w+)\}")


def runnable_config(record_config: dict[str, Any], paths: dict[str, Any]) -> dict[str, Any]:
    """The record's config made runnable here: ``${paths.<name>}/...`` values (how records
    store a location under this machine's folders) resolved against ``paths``, which is put
    back (records drop it)."""

    def local(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: local(v) for k, v in value.items()}
        if isinstance(value, list):
            return [local(v) for v in value]
        if isinstance(value, str):
            found = _PATH_REF.match(value)
            if found:
                root = paths.get(found.group(1))
                if not root:
                    raise BenchError(f"the record's config refers to paths.{found.group(1)}, "
                                     f"which is not set here; pass paths.{found.group(1)}=DIR")
                return str(root).rstrip("/") + value[found.end():]
        return value

    return {**local(record_config), "paths": dict(paths)}


@dataclass
class Replay:
    recorded: list[float]
    replayed: list[float]
    commit: str | None
    device: str
    stages: str  # the method's one-off stages in the replay: read from the cache or built
    swaps: dict[str, int] | None = None  # layers bench.fast_layers swapped in the replay

    def max_diff(self) -> float:
        return max((abs(a - b) for a, b in zip(self.recorded, self.replayed)), default=0.0)

    def exact(self) -> bool:
        return self.recorded[: len(self.replayed)] == self.replayed


def fast_layers(record: dict[str, Any]) -> bool:
    """Whether the record's run trained with ``bench.fast_layers``: records say so (with the
    swap counts) since that module exists; a record without the field predates it."""
    return "layer_swaps" in record["provenance"]


def replay(cfg: dict[str, Any], record: dict[str, Any], epochs: int) -> Replay:
    """Train the record's run for ``epochs`` epochs in a scratch folder; nothing is written
    under ``paths.runs``. The data must be the record's (same fingerprint)."""
    from bench.adapters import load_adapter
    from bench.data.cold import cold_view, is_cold
    from bench.data.prepared import export_recbole
    from bench.data.sources import prepare
    from bench.records import provenance
    from bench.runner import build_setup, resolve_device, run_key, validation_fn
    from bench.training import BenchTrainer

    key = run_key(cfg)
    cache = Path(cfg["paths"]["cache"])
    prepared = prepare(cfg["dataset"], cache)
    if is_cold(cfg["protocol"]):
        prepared = cold_view(prepared, cfg["protocol"], cache)
    if prepared.fingerprint != record["dataset"]["fingerprint"]:
        raise BenchError(f"the record was made on dataset fingerprint "
                         f"{record['dataset']['fingerprint']}, but '{prepared.name}' here is "
                         f"{prepared.fingerprint}: different data, nothing to compare")
    adapter = load_adapter(cfg["method"].get("adapter") or key.method)
    device = resolve_device(cfg["device"])
    data_path = export_recbole(prepared, cache / "recbole")
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as work_dir:
        setup = build_setup(cfg, key, adapter, prepared, data_path, Path(work_dir), device,
                            fast_layers=fast_layers(record))
        trainer = BenchTrainer(setup.rb_config, setup.model,
                               validation_fn(setup.model, setup.valid, cfg, device),
                               step_progress=bool(cfg.get("show_progress", True)))
        trainer.epochs = epochs  # the run's own config is untouched: only this fit stops early
        trainer.fit(setup.loader, setup.valid, verbose=False, saved=True)
    here = provenance(device, None)
    return Replay(list(record["training"]["valid_ndcg10_per_epoch"][:epochs]),
                  list(trainer.valid_history), (here["git"] or {}).get("commit"),
                  f"recorded on {record['provenance']['device']}, replayed on {here['device']}",
                  _stages(setup.ctx.extras.get("one_off") or {}),
                  setup.ctx.extras.get("layer_swaps"))


def _stages(one_off: dict[str, Any]) -> str:
    """``embedding: cache, phase1: built`` -- a replay on a cached stage depends on that cache
    having been built by the record's code, so the report says which it used."""
    parts = [f"{name}: {'cache' if info.get('cache_hit') else 'built'}"
             for name, info in one_off.items() if isinstance(info, dict) and "cache_hit" in info]
    return ", ".join(parts) or "none"


def _layers(record: dict[str, Any], result: Replay) -> str:
    if not fast_layers(record):
        return "torch's dropout and GELU (the record predates bench.fast_layers)"
    then = record["provenance"]["layer_swaps"]
    if then == result.swaps:
        return f"bench.fast_layers, as the record's run ({then})"
    return (f"bench.fast_layers swapped {result.swaps} here but {then} in the record's run "
            "(a difference may come from that)")


def report(path: Path, record: dict[str, Any], result: Replay,
           tolerance: float) -> tuple[str, bool]:
    """The side-by-side curve and a verdict line; ok when every epoch is within tolerance."""
    from tabulate import tabulate

    rows = [(i + 1, f"{a:.6f}", f"{b:.6f}", f"{abs(a - b):.2e}")
            for i, (a, b) in enumerate(zip(result.recorded, result.replayed))]
    table = tabulate(rows, headers=["epoch", "recorded valid NDCG@10", "replayed", "|Δ|"],
                     tablefmt="github")
    recorded_commit = (record["provenance"].get("git") or {}).get("commit")
    same_code = recorded_commit == result.commit
    lines = [f"{path}", result.device,
             f"code: recorded at {str(recorded_commit)[:7]}, replayed at {str(result.commit)[:7]}"
             + ("" if same_code else " (different commits: a difference may be the code's)"),
             "layers: " + _layers(record, result),
             f"one-off stages: {result.stages}",
             "", table, ""]
    ok = all(math.isclose(a, b, rel_tol=0.0, abs_tol=tolerance)
             for a, b in zip(result.recorded, result.replayed))
    n = len(result.replayed)
    if result.exact():
        lines.append(f"reproduced exactly: {n} of {n} epochs (the same validation NDCG@10 to the "
                     "last bit)")
    elif ok:
        lines.append(f"reproduced within {tolerance:g}: {n} epochs, largest |Δ| "
                     f"{result.max_diff():.2e} (not to the last bit: another commit, CPU or "
                     "BLAS build can do that)")
    else:
        bad = next(i for i, (a, b) in enumerate(zip(result.recorded, result.replayed))
                   if not math.isclose(a, b, rel_tol=0.0, abs_tol=tolerance))
        lines.append(f"NOT reproduced: epoch {bad + 1} differs by "
                     f"{abs(result.recorded[bad] - result.replayed[bad]):.2e} "
                     f"(tolerance {tolerance:g})")
    return "\n".join(lines), ok


# What may differ from the record's config: where things are here, and how the run is shown.
_LOCAL = ("device", "show_progress")


def _local_overrides(overrides: list[str]) -> list[str]:
    """The overrides that say where this machine keeps things (``paths.*``) or how to run
    (``device``, ``show_progress``); anything else would change what the record measured."""
    for override in overrides:
        name = override.partition("=")[0]
        if not (name.startswith("paths.") or name in _LOCAL):
            raise BenchError(f"verify replays the record's own config, so '{override}' cannot "
                             "be set; only paths.*, device and show_progress can")
    return [o for o in overrides if o.partition("=")[0].startswith("paths.")]


def _load(path: Path) -> dict[str, Any]:
    from bench.records import read_record

    try:
        record = read_record(path)
        curve, config = record["training"]["valid_ndcg10_per_epoch"], record["config"]
        if not (isinstance(curve, list) and curve and isinstance(config, dict)):
            raise ValueError("no validation curve or no config")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"run record {path} is unreadable ({type(exc).__name__}: {exc}); "
                         "pass a record JSON written by `python -m bench run`") from None
    return record


def main(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bench.config import compose

    if args.epochs < 1:
        raise BenchError(f"--epochs must be at least 1 (got {args.epochs})")
    if not (args.tolerance >= 0):
        raise BenchError(f"--tolerance must be a number >= 0 (got {args.tolerance})")
    items = [*args.items, *args.overrides]  # the CLI appends what follows an option here
    overrides = [a for a in items if "=" in a]
    paths = [Path(a) for a in items if "=" not in a]
    if not paths:
        raise BenchError("name at least one run record to verify")
    records = [_load(path) for path in paths]  # every record readable before any training
    local_paths = compose(_local_overrides(overrides))["paths"]
    local = {name: compose([o])[name] for o in overrides
             if (name := o.partition("=")[0]) in _LOCAL}  # device, show_progress
    summary = []
    for path, record in zip(paths, records):
        cfg = {**runnable_config(record["config"], local_paths), **local}
        epochs = min(args.epochs, len(record["training"]["valid_ndcg10_per_epoch"]))
        result = replay(cfg, record, epochs)
        text, ok = report(path, record, result, args.tolerance)
        print(text + "\n", flush=True)
        summary.append((str(path), len(result.replayed), f"{result.max_diff():.2e}",
                        "exact" if result.exact() else "within tolerance" if ok else "NOT"))
    if len(summary) > 1:
        print(tabulate(summary, headers=["record", "epochs", "max |Δ|", "reproduced"],
                       tablefmt="github", disable_numparse=True))
    return 0 if all(row[3] != "NOT" for row in summary) else 1


def add_parser(sub) -> None:
    p = sub.add_parser("verify", help="replay a record's first epochs and compare its curve",
                       description="Retrain the run a record describes, from its own resolved "
                       "config and on the same data (checked by fingerprint), for its first "
                       "few epochs, and compare the validation NDCG@10 after each epoch with "
                       "the record's. Exit 0: every record reproduced (exactly or within the "
                       "tolerance); 1: one was not; 2: bad input. Nothing is written under "
                       "paths.runs.",
                       epilog="Overrides: paths.cache=DIR, paths.data=DIR (where the data and "
                       "caches are here), device=cpu, show_progress=false.")
    p.add_argument("items", nargs="+", metavar="RECORD | KEY=VALUE",
                   help="one or more run records, e.g. leaderboards/records/synthetic/full/id/"
                   "sasrec/seed-0.json, then any overrides (paths.*, device, show_progress)")
    p.add_argument("--epochs", type=int, default=2,
                   help="epochs to replay (default 2; at most the record's)")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest |Δ| of validation NDCG@10 still counted as reproduced "
                   "(default 1e-4)")
    p.set_defaults(func=main, overrides=[])
