"""Efficiency records -> the efficiency table: one row per method x backbone x device.

Efficiency records are ordinary run records made by ``python -m bench efficiency``: a fixed,
small number of epochs (no early stopping), one seed, on one device, kept apart from the
accuracy records (``leaderboards/efficiency-records/<device>/<dataset>/<protocol>/...``) because
their accuracy is not a converged result. Every figure is read from the record, labelled with
the device, dtype and batch size it was measured at. The one-off costs (embedding extraction,
fine-tuning, teachers, pre-training phases) are the run's own when it built them, or the
figures stored with the cache it reused.

Time to convergence on a device is estimated as (epochs the accuracy runs of the same row took
to early stop, mean over seeds) x (that device's seconds per epoch including validation): the
accuracy runs fix how many epochs a method needs; the device fixes what an epoch costs.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from bench.errors import BenchError
from bench.leaderboard.load import Run, find_runs


def device_slug(name: str) -> str:
    """``'cuda: NVIDIA H200'`` -> ``'cuda-nvidia-h200'``; ``'cpu: Intel(R) Xeon(R) ...'`` -> ``'cpu'``
    (a folder name per device kind; the full name stays in every record)."""
    kind, _, model = name.partition(":")
    if kind.strip() == "cpu":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", f"{kind} {model}".lower()).strip("-")


@dataclass
class CostRow:
    method: str
    backbone: str
    device: str
    record: dict[str, Any]
    path: Path


def load_costs(records_dir: Path) -> dict[tuple[str, str], list[CostRow]]:
    """Efficiency records under ``records_dir`` grouped by (dataset, protocol); a missing folder
    means none. Two records for one (method, backbone, device) are refused, naming both."""
    records_dir = Path(records_dir)
    if not records_dir.is_dir():
        return {}
    pages: dict[tuple[str, str], list[CostRow]] = defaultdict(list)
    seen: dict[tuple, Path] = {}
    for run in find_runs(records_dir):
        rec, key = run.record, run.key
        device = rec["provenance"]["device"]
        ident = (key["dataset"], key["protocol"], key["method"], key["backbone"], device)
        if ident in seen:
            raise BenchError(f"two efficiency records for {key['method']} / {key['backbone']} on "
                             f"{device}: {seen[ident]} and {run.path}; keep one")
        seen[ident] = run.path
        pages[(key["dataset"], key["protocol"])].append(
            CostRow(key["method"], key["backbone"], device, rec, run.path))
    return dict(pages)


def _get(node: Any, *path: str) -> Any:
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _fmt(x: float | None, digits: int) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def _millions(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:.2f}M"


def one_off(record: dict[str, Any]) -> str:
    """The run's one-off costs in one cell: each phase's seconds (and rate, epochs, device where
    known); '(cached)' marks figures stored with a cache the run reused."""
    parts = []
    for name, info in (_get(record, "efficiency", "one_off") or {}).items():
        if not isinstance(info, dict):
            continue
        built = info.get("built") if info.get("cache_hit") else info
        if not isinstance(built, dict) or built.get("seconds") is None:
            parts.append(f"{name} (cached, cost not recorded)")
            continue
        extra = []
        if built.get("texts_per_second"):
            extra.append(f"{built['texts_per_second']:,.0f} texts/s")
        if built.get("steps"):
            extra.append(f"{built['steps']} steps")
        if built.get("epochs"):
            extra.append(f"{built['epochs']} ep")
        if info.get("cache_hit") and built.get("device"):
            extra.append(f"on {built['device']}")
        note = f" ({', '.join(extra)})" if extra else ""
        parts.append(f"{name} {built['seconds']:.1f} s{note}" + (" (cached)" if info.get(
            "cache_hit") else ""))
    return "; ".join(parts) or "none"


def _commit(record: dict[str, Any]) -> str:
    """Short commit of the code that measured the row; ``+`` marks uncommitted changes."""
    git = _get(record, "provenance", "git") or {}
    commit = git.get("commit")
    return "–" if not commit else commit[:7] + ("+" if git.get("dirty") else "")


def _other_stretches(record: dict[str, Any]) -> set[str]:
    """The hardware of a resumed run's stretches that did not run where its record says it
    ran ("hardware not recorded" where the checkpoint predates the label)."""
    training, final = record.get("training") or {}, record["provenance"]["device"]
    stretches = training.get("segments")
    if stretches is None:  # a record older than the field: only the last stretch is known
        stretches = [{"device": None}] * len(training.get("resumed_at_epochs") or [])
    return {s["device"] or "hardware not recorded" for s in stretches if s["device"] != final}


def device_cell(records: list[dict[str, Any]]) -> str:
    """The devices a row's records were timed on. A run resumed on other hardware mixes its
    epoch times: the cell says how many runs did and where their earlier epochs ran."""
    cell = "; ".join(sorted({r["provenance"]["device"] for r in records}))
    mixed = [_other_stretches(r) for r in records]
    n = sum(bool(m) for m in mixed)
    if not n:
        return cell
    runs = "the run" if len(records) == 1 else f"{n} of {len(records)} runs"
    return f"{cell} (resumed: {runs} also on {', '.join(sorted(set().union(*mixed)))})"


def _epoch_with_valid(record: dict[str, Any]) -> float | None:
    eff = record["efficiency"]
    if eff.get("epoch_seconds_median") is None:
        return None
    return eff["epoch_seconds_median"] + (eff.get("valid_seconds_median") or 0.0)


def _times_id(value: float | None, reference: float | None) -> str:
    """`` (× 7.58)``: a figure over the same backbone's ID-only figure on the same device."""
    if value is None or not reference:
        return ""
    return f" (× {value / reference:.2f})"


def id_references(rows: list[CostRow]) -> dict[tuple[str, str], dict[str, Any]]:
    """(backbone, device) -> the ``id`` row's record: what each row's cost is divided by. The
    reference is the plain backbone on the same device, data and protocol, so the ratio is the
    price of the method's additions (issues 5 and 6 ask for exactly these ratios)."""
    return {(r.backbone, r.device): r.record for r in rows if r.method == "id"}


def cost_rows(rows: list[CostRow],
              epochs_to_stop: dict[tuple[str, str], tuple[float, bool]]) -> list[list]:
    """Table rows; ``epochs_to_stop[(method, backbone)]`` is the accuracy runs' mean epochs and
    whether any of them was ended by the epoch cap (then the estimate is a lower bound)."""
    out = []
    refs = id_references(rows)
    for row in rows:
        ref = refs.get((row.backbone, row.device)) or {}
        rec = row.record
        eff, inf = rec["efficiency"], _get(rec, "efficiency", "inference") or {}
        lat = inf.get("latency_ms") or {}
        thr = inf.get("throughput") or {}
        params = eff.get("parameters") or {}
        epochs, capped = epochs_to_stop.get((row.method, row.backbone), (None, False))
        per_epoch = _epoch_with_valid(rec)
        converge = "–" if epochs is None or per_epoch is None else \
            f"{'≥' if capped else '≈'} {epochs * per_epoch:,.0f} ({epochs:.0f} ep)"
        batch = rec["config"]["train"]["batch_size"]
        out.append([
            row.method, row.backbone, device_cell([rec]), inf.get("dtype", "–"),
            f"{_millions(params.get('trainable'))} / {_millions(params.get('total'))}",
            _fmt(eff.get("epoch_seconds_median"), 2)
            + _times_id(eff.get("epoch_seconds_median"),
                        _get(ref, "efficiency", "epoch_seconds_median")),
            f"{_fmt(eff.get('train_sequences_per_second'), 0)} (b {batch})",
            _fmt(_get(eff, "peak_memory_train", "mib"), 0)
            + _times_id(_get(eff, "peak_memory_train", "mib"),
                        _get(ref, "efficiency", "peak_memory_train", "mib")),
            " / ".join(_fmt(lat.get(q), 2) for q in ("p50", "p95", "p99")),
            f"{_fmt(thr.get('users_per_second'), 0)} (b {thr.get('batch_size', '–')})",
            _fmt(_get(inf, "peak_memory", "mib"), 0),
            one_off(rec), converge, len(eff.get("epoch_seconds") or []), _commit(rec),
        ])
    return out


HEADERS = ["method", "backbone", "device", "dtype", "params trainable / total",
           "s / epoch (× id)", "train seq / s (batch)", "peak train MiB (× id)",
           "latency ms p50 / p95 / p99 (batch 1)", "users / s (batch)", "peak inference MiB",
           "one-off costs", "est. s to converge", "epochs timed", "code"]


def _order(row: CostRow) -> tuple:
    from bench.leaderboard.load import _backbone_rank

    return (not row.device.startswith("cpu"), row.device, _backbone_rank(row.backbone),
            row.method != "id", row.method)


def efficiency_markdown(pages: dict[tuple[str, str], list[CostRow]],
                        epochs: dict[tuple[str, str], dict[tuple[str, str], float]],
                        marker: str) -> str:
    """The efficiency page: one section per (dataset, protocol), then the notes."""
    intro = ("Training and serving cost per method x backbone x device, from the efficiency "
             "records (`python -m bench efficiency`). Accuracy is on the per-dataset pages.")
    parts = [marker, "# Efficiency", intro]
    for (dataset, protocol), rows in sorted(pages.items()):
        parts += [f"## {dataset} · {protocol} protocol",
                  efficiency_table(rows, epochs.get((dataset, protocol)))]
    parts += ["## Notes", NOTES]
    return "\n\n".join(parts) + "\n"


def efficiency_table(rows: list[CostRow],
                     epochs_to_stop: dict[tuple[str, str], tuple[float, bool]] | None = None
                     ) -> str:
    rows = sorted(rows, key=_order)
    body = cost_rows(rows, epochs_to_stop or {})
    return tabulate(body, headers=HEADERS, tablefmt="github", disable_numparse=True)


def epochs_to_stop(runs: list[Run]) -> dict[tuple[str, str], tuple[float, bool]]:
    """Mean epochs run (to early stop) per (method, backbone) over accuracy records, and
    whether any of those runs was ended by the epoch cap instead."""
    by_row: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        by_row[(run.key["method"], run.key["backbone"])].append(run)
    return {k: (float(np.mean([r.record["training"]["epochs_run"] for r in v])),
                any(r.stopped_at_cap for r in v)) for k, v in by_row.items()}


NOTES = """\
How to read the efficiency table:
- Each row is one `python -m bench efficiency` run: the method trained for a fixed number of
  epochs ("epochs timed"; no early stopping, internal phases capped alike) on one device, then
  served. Its accuracy is not a converged result and is not shown.
- s / epoch and train seq / s: median training epoch (validation excluded) and training windows
  per second at the run's batch size. Peak memory: `torch.cuda.max_memory_allocated` on CUDA;
  on a CPU the process's peak resident set size (sampled every 20 ms), which includes the
  Python runtime and the data.
- dtype: the parameters' dtype; "(bfloat16 autocast)": float32 weights whose forward runs in
  bfloat16 (MoRec's encoder on CUDA).
- (× id): the figure divided by the same backbone's `id` row on the same device (the price of
  the method's additions); absent where no such row exists. On a CPU the memory ratio divides
  whole-process peaks, so it understates the method's own share.
- Latency: `full_sort_predict` over all items plus the top-20 list for one user at a time
  (after a warm-up); users / s: the same at the stated batch over all test users (median of
  repeats). CUDA timings use events and synchronise.
- One-off costs are paid once per dataset (text embeddings, fine-tuning, teachers,
  pre-training phases; their epochs are capped like the run's). "(cached)" figures were
  measured when the cache was built, on the device named.
- est. s to converge = epochs the accuracy runs of the same row took to early stop (mean over
  seeds, from the accuracy records) × this device's s / epoch including validation; "≥"
  where a seed ran to the epoch cap still improving (the estimate is then a lower bound).
- device "resumed: the run also on ...": the run was killed and resumed on other hardware, so
  its timings mix the two.
- code: the commit that measured the row (+ = with uncommitted changes); rows measured by
  different code are only as comparable as the code is.
- CPU rows are measured with the machine otherwise idle unless a page note says otherwise."""
