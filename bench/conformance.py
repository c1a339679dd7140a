"""``python -m bench adapter check NAME``: is an adapter safe to put on the leaderboard?

On the tiny synthetic dataset, for each backbone the adapter declares, it trains and evaluates
the adapter several times, each run in a fresh cache (so cached one-off stages are rebuilt and
checked too), and verifies:

* **record**: the run record validates against the record schema;
* **same seed**: a second run with the same seed gives bit-identical parameters and ranks;
* **eval batch**: ranks do not depend on the evaluation batch size;
* **test targets**: the adapter is shown a copy of the data whose test targets (each user's
  last item) are replaced; its trained parameters and ranks must not change;
* **validation targets**: the same with validation targets; a change passes only if the adapter
  declares why (``validation_use``, e.g. early stopping of a teacher trained under the protocol).

The replacement items are drawn among items that already occurred earlier in the file, so
RecBole's id mapping (by first appearance) is the same and any difference is the adapter's.
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.adapters import MethodAdapter, load_adapter
from bench.data.prepared import PreparedDataset, export_recbole
from bench.errors import BenchError

SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "run-record.schema.json"
CHECK_DATASET = "synthetic-tiny"
OTHER_EVAL_BATCH = 7  # odd, so batches split differently from the default


@dataclass
class Finding:
    check: str
    backbone: str
    passed: bool
    detail: str


def validate_record(record: dict[str, Any]) -> None:
    """Raise BenchError naming the first schema violation of a run record."""
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    try:
        jsonschema.validate(record, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(map(str, exc.absolute_path)) or "(top level)"
        raise BenchError(f"run record does not match {SCHEMA_FILE.name} at {where}: "
                         f"{exc.message}") from None


def perturbed_view(prepared: PreparedDataset, which: str, seed: int = 0) -> PreparedDataset:
    """A copy whose held-out item (``test``: last, ``valid``: second to last) of every user is
    replaced by another item that first occurs earlier in the file (ids stay the same)."""
    offset = {"test": 0, "valid": 1}[which]
    inter = prepared.interactions.copy()
    codes, uniques = pd.factorize(inter["item"])  # RecBole's order: first appearance
    first_row = np.full(len(uniques), len(codes), dtype=np.int64)
    np.minimum.at(first_row, codes, np.arange(len(codes)))  # increasing in the code
    from_end = inter.groupby("user", sort=False).cumcount(ascending=False).to_numpy()
    rows = np.flatnonzero(from_end == offset)
    rng = np.random.default_rng(seed)
    items = inter["item"].to_numpy(copy=True)
    changed = 0
    for r in rows:
        n_before = int(np.searchsorted(first_row, r))  # codes first seen before row r
        if codes[r] >= n_before or n_before < 2:
            continue  # the item first occurs here (or nothing to swap in): keep it
        new = int(rng.integers(0, n_before - 1))
        items[r] = uniques[new + (new >= codes[r])]
        changed += 1
    inter["item"] = items
    meta = {**prepared.meta, "fingerprint": f"{prepared.fingerprint}-perturbed-{which}",
            "perturbed": {which: changed}}
    return dataclasses.replace(prepared, interactions=inter, meta=meta)


def _same(a, b) -> str | None:
    """None if two runs are bit-identical in parameters, ranks and validation curve; else what
    differs."""
    sa, sb = a.model.state_dict(), b.model.state_dict()
    if sa.keys() != sb.keys():
        return "the models have different parameters"
    for k in sa:
        if not torch.equal(sa[k], sb[k]):
            diff = (sa[k].float() - sb[k].float()).abs().max().item()
            return f"parameter {k} differs (max |Δ| {diff:.3g})"
    ra, rb = a.per_user["rank"].to_numpy(), b.per_user["rank"].to_numpy()
    if not np.array_equal(ra, rb):
        return f"test ranks differ for {int((ra != rb).sum())} of {len(ra)} users"
    if a.record["training"]["valid_ndcg10_per_epoch"] != \
            b.record["training"]["valid_ndcg10_per_epoch"]:
        return "the validation curves differ"
    return None


class _Runner:
    """Trains the adapter under the check's config, each run in a fresh cache directory."""

    def __init__(self, name: str, adapter: MethodAdapter, work: Path, epochs: int,
                 overrides: list[str]):
        self.name, self.adapter, self.work, self.epochs = name, adapter, work, epochs
        self.overrides, self.count = overrides, 0

    def cfg(self, backbone: str, cache: Path) -> dict[str, Any]:
        from bench.config import compose

        return compose([f"dataset={CHECK_DATASET}", f"method={self.name}",
                        f"backbone={backbone}", "seed=0", f"train.epochs={self.epochs}",
                        f"paths.cache={cache}", f"paths.runs={self.work / 'runs'}",
                        "show_progress=false", "device=cpu", "efficiency.inference=false",
                        *self.overrides])

    def run(self, backbone: str, view: str | None = None):
        from bench.data.sources import prepare
        from bench.runner import resolve_device, train_and_test

        self.count += 1
        cache = self.work / f"cache-{self.count}"
        cfg = self.cfg(backbone, cache)
        prepared = prepare(cfg["dataset"], cache)
        data_path = export_recbole(prepared, cache / "recbole")
        shown = perturbed_view(prepared, view) if view else None
        art = train_and_test(cfg, self.adapter, prepared, data_path, resolve_device("cpu"),
                             adapter_view=shown)
        return cfg, art


CHECKS = ("record", "same seed", "eval batch", "test targets", "validation targets")


def _check_backbone(runner: _Runner, backbone: str, checks: tuple[str, ...]) -> list[Finding]:
    from bench.evaluation.ranking import rank_targets
    from bench.records import RunKey, read_record, write_run

    out: list[Finding] = []
    cfg, base = runner.run(backbone)
    if "record" in checks:
        path = RunKey(runner.name, backbone, CHECK_DATASET, "full", 0).record_path(
            runner.work / "runs")
        write_run(path, base.record, base.per_user)
        try:
            validate_record(read_record(path))
            out.append(Finding("record", backbone, True, "validates against the record schema"))
        except BenchError as exc:
            out.append(Finding("record", backbone, False, str(exc)))

    if "same seed" in checks:
        _, again = runner.run(backbone)
        diff = _same(base, again)
        out.append(Finding("same seed", backbone, diff is None,
                           diff or "bit-identical parameters, ranks and validation curve"))

    if "eval batch" in checks:
        ranks = rank_targets(base.model, base.test, OTHER_EVAL_BATCH, torch.device("cpu"))
        n_diff = int((ranks != base.per_user["rank"].to_numpy()).sum())
        out.append(Finding("eval batch", backbone, n_diff == 0,
                           f"ranks at eval batch {OTHER_EVAL_BATCH} equal those at "
                           f"{cfg['train']['eval_batch_size']}" if n_diff == 0 else
                           f"{n_diff} test ranks change with the eval batch size"))

    for which, label in (("test", "test targets"), ("valid", "validation targets")):
        if label not in checks:
            continue
        _, moved = runner.run(backbone, view=which)
        diff = _same(base, moved)
        if diff is None:
            out.append(Finding(label, backbone, True, "training unchanged when they are replaced"))
        elif which == "valid" and runner.adapter.validation_use:
            out.append(Finding(label, backbone, True,
                               f"used, as declared: {runner.adapter.validation_use} ({diff})"))
        else:
            out.append(Finding(label, backbone, False,
                               f"training changed when {label} were replaced ({diff}): the "
                               "adapter reads held-out interactions. ctx.prepared.interactions "
                               "holds whole sequences; use ctx.train_dataset, or drop each "
                               "user's last two items"))
    return out


def adapter_name(method: str) -> str:
    """The adapter behind a method config (a variant such as ``morec-2stage`` names it)."""
    from bench.config import compose

    return compose([f"method={method}"])["method"].get("adapter") or method


def check(name: str, backbones: list[str] | None = None, epochs: int = 2,
          overrides: list[str] | None = None,
          checks: tuple[str, ...] = CHECKS) -> tuple[list[Finding], float]:
    """Run ``checks`` (default: all) for ``name`` on each backbone it declares (or
    ``backbones``); returns the findings and the seconds taken."""
    adapter = load_adapter(adapter_name(name))
    chosen = backbones or list(adapter.backbones)
    unknown = [b for b in chosen if b not in adapter.backbones]
    if unknown:
        raise BenchError(f"method '{name}' does not declare backbone(s) {', '.join(unknown)}; it "
                         f"declares {', '.join(adapter.backbones)}")
    start = time.perf_counter()
    findings: list[Finding] = []
    # torch's own multi-threaded CPU kernels may sum in a varying order (BERT4Rec's output bias
    # differed by 1e-9 between two identical runs at 2 threads): the check asks for torch's
    # deterministic algorithms, so a difference it reports is the adapter's.
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with tempfile.TemporaryDirectory(prefix=f"bench-check-{name}-") as work:
            runner = _Runner(name, adapter, Path(work), epochs, list(overrides or []))
            for backbone in chosen:
                findings += _check_backbone(runner, backbone, checks)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    return findings, time.perf_counter() - start


def report(name: str, findings: list[Finding], seconds: float) -> str:
    """The markdown report a submission includes."""
    from tabulate import tabulate

    from bench.adapters import load_adapter, method_source

    meta = load_adapter(adapter_name(name)).metadata()
    rows = [[f.check, f.backbone, "pass" if f.passed else "FAIL", f.detail] for f in findings]
    verdict = "PASSED" if all(f.passed for f in findings) else "FAILED"
    lines = [f"# adapter check: {name} ({method_source(name)})", "",
             f"paper: {meta['paper'] or '-'}; upstream: {meta['upstream'] or '-'} "
             f"@ {meta['upstream_commit'] or '-'}",
             f"language model: {meta['language_model']}; text: {meta['text_seen']}", "",
             tabulate(rows, headers=["check", "backbone", "result", "detail"],
                      tablefmt="github"), "",
             f"{verdict}: {sum(f.passed for f in findings)}/{len(findings)} checks on "
             f"{CHECK_DATASET} in {seconds:.0f} s (torch {torch.__version__}, cpu, "
             f"{torch.get_num_threads()} threads, deterministic algorithms)"]
    return "\n".join(lines)
