"""Run records -> leaderboard pages: one page per (dataset, protocol), one row per method x backbone.

Everything a page shows is computed from the records' per-user sidecars (user, rank, group
flags), so a page is a pure function of the committed records. Records that must not be
compared are refused, never mixed: a page needs one dataset fingerprint, one protocol
fingerprint and one shared setup (dataset, protocol, training and device settings), and the
seeds of a row must differ in nothing but the seed. Each refusal names the files.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bench.adapters import CONFIG_DIR
from bench.data.sources import unpinned
from bench.errors import BenchError
from bench.evaluation.metrics import metric_columns
from bench.records import SCHEMA, fingerprint, read_record, sidecar_path

GROUPS = ("overall", "head_item", "tail_item", "short_user", "long_user")
METRICS = ("NDCG@10", "HR@10")
# Config keys that may differ between the seeds of one row (everything else must be equal).
_SEED_FREE = ("seed", "paths", "show_progress", "efficiency", "ranking_kernel", "resume")
# Config sections every row of a page must share: what the comparison holds fixed.
_PAGE_SHARED = ("dataset", "protocol", "train", "device")


@dataclass
class Run:
    path: Path
    record: dict[str, Any]

    @property
    def key(self) -> dict[str, Any]:
        return self.record["key"]

    @property
    def stopped_at_cap(self) -> bool:
        """Whether the run used every epoch of ``train.epochs`` without meeting its early-stopping
        rule (RecBole stops ``patience + 1`` epochs after the best one): it was still improving
        when the cap ended it, so its numbers are not converged by the protocol's rule."""
        train = self.record["training"]
        limits = (self.record.get("config") or {}).get("train") or {}
        if "epochs" not in limits or "patience" not in limits:
            return False
        return int(limits["epochs"]) <= train["epochs_run"] < \
            train["best_epoch"] + int(limits["patience"]) + 2


@dataclass
class Row:
    method: str
    backbone: str
    runs: list[Run]
    seed_values: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    user_values: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> seed-mean/user
    seed_ranks: list[np.ndarray] = field(default_factory=list)  # per seed: ranks by user

    @property
    def name(self) -> str:
        return f"{self.method} / {self.backbone}"

    @property
    def seeds(self) -> list[int]:
        return sorted(r.key["seed"] for r in self.runs)


@dataclass
class Page:
    dataset: str
    protocol: str
    rows: list[Row]
    groups: dict[str, np.ndarray]  # group -> boolean mask over the page's users (sorted ids)
    users: np.ndarray
    # Derived results computed once and read by several tables (the Δ-vs-ID tests feed the
    # page and the index's summary); never part of a page's identity.
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def runs(self) -> list[Run]:
        return [run for row in self.rows for run in row.runs]

    @property
    def slug(self) -> str:
        return f"{self.dataset}-{self.protocol}"

    @property
    def source_fingerprint(self) -> str:
        """The data the page was measured on: its dataset fingerprint; for a cold page, that of
        the dataset its view was cut from (what the warm pages' records name)."""
        ds = self.runs[0].record["dataset"]
        return (ds.get("cold_start") or {}).get("source_fingerprint") or ds["fingerprint"]

    @property
    def pinned_fingerprint(self) -> str | None:
        """The fingerprint ``configs/dataset/<name>.yaml`` pins today: the data a new run of
        this dataset is checked against (None when the config pins none or is gone)."""
        return pinned_fingerprint(self.dataset)

    @property
    def shown_groups(self) -> list[str]:
        """The groups worth a column: overall, and each group that is neither empty nor every
        user (under ``cold`` every target is a never-trained item, so item groups go)."""
        n = len(self.users)
        return [g for g in GROUPS if g == "overall" or 0 < int(self.groups[g].sum()) < n]


def find_runs(records_dir: Path) -> list[Run]:
    """Every ``seed-*.json`` under ``records_dir`` that is a run record (schema checked)."""
    runs = []
    for path in sorted(Path(records_dir).rglob("seed-*.json")):
        try:
            record = read_record(path)
        except (OSError, ValueError) as exc:
            raise BenchError(f"run record {path} is unreadable ({exc}); delete it or rerun "
                             "that run with --force") from None
        if record.get("schema") != SCHEMA:
            raise BenchError(f"{path} is not a run record of schema {SCHEMA} "
                             f"(found {record.get('schema')!r}); remove it from {records_dir}")
        runs.append(Run(path, record))
    return runs


def pinned_fingerprint(dataset: str) -> str | None:
    """``fingerprint`` of ``configs/dataset/<dataset>.yaml``, if it pins one."""
    try:
        cfg = yaml.safe_load((CONFIG_DIR / "dataset" / f"{dataset}.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    value = cfg.get("fingerprint") if isinstance(cfg, dict) else None
    return str(value) if value else None


def _setup(record: dict[str, Any], sections: tuple[str, ...] | None = None,
           drop: tuple[str, ...] = ()) -> str:
    cfg = {**record["config"], "dataset": unpinned(record["config"].get("dataset"))}
    keys = sections if sections is not None else tuple(cfg)
    return fingerprint({k: cfg.get(k) for k in keys if k not in drop})


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(obj, dict):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _differing_keys(a: Run, b: Run, sections: tuple[str, ...] | None,
                    drop: tuple[str, ...]) -> str:
    fa, fb = _flat(a.record["config"]), _flat(b.record["config"])
    keys = sorted(k for k in fa.keys() | fb.keys() if fa.get(k, "<absent>") != fb.get(k, "<absent>")
                  and k.split(".")[0] not in drop
                  and (sections is None or k.split(".")[0] in sections))
    shown = ", ".join(f"{k}: {fa.get(k, '<absent>')} vs {fb.get(k, '<absent>')}" for k in keys[:4])
    return shown + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def _require_one(runs: list[Run], value, what: str, hint: str, detail=None) -> None:
    """All runs agree on ``value(run)``, else an error naming two files that differ (and
    ``detail(a, b)``, e.g. the config keys that differ)."""
    seen: dict[str, Run] = {}
    for run in runs:
        seen.setdefault(str(value(run)), run)
    if len(seen) > 1:
        first, other = list(seen.values())[:2]
        extra = f" ({detail(first, other)})" if detail else ""
        raise BenchError(f"records that must not be mixed: different {what} in {first.path} and "
                         f"{other.path}{extra}. {hint}")


def _require_same_config(runs: list[Run], sections: tuple[str, ...] | None,
                         drop: tuple[str, ...], what: str, hint: str) -> None:
    _require_one(runs, lambda r: _setup(r.record, sections, drop), what, hint,
                 lambda a, b: _differing_keys(a, b, sections, drop))


def _check_page(runs: list[Run]) -> None:
    rerun = "Rerun the stale records with --force, or move them out of the records folder."
    _require_one(runs, lambda r: r.record["dataset"]["fingerprint"], "dataset fingerprints",
                 rerun)
    _require_one(runs, lambda r: r.record["protocol"]["fingerprint"], "protocol fingerprints",
                 rerun)
    _require_same_config(runs, _PAGE_SHARED, (), "dataset/protocol/train/device settings", rerun)


def _per_user(run: Run, ks: list[int], mrr_k: int) -> pd.DataFrame:
    side = sidecar_path(run.path)
    try:
        frame = pd.read_parquet(side, columns=["user", "rank", "head_item", "long_user"])
    except Exception as exc:  # noqa: BLE001 - any unreadable parquet is the same user error
        raise BenchError(f"sidecar {side} of {run.path} is missing or unreadable ({exc}); rerun "
                         "that run with --force") from None
    frame = frame.sort_values("user", kind="stable").reset_index(drop=True)
    for name, values in metric_columns(frame["rank"].to_numpy(), ks, mrr_k).items():
        frame[name] = values
    return frame


def _group_masks(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    head, long = frame["head_item"].to_numpy(bool), frame["long_user"].to_numpy(bool)
    return {"overall": np.ones(len(frame), bool), "head_item": head, "tail_item": ~head,
            "short_user": ~long, "long_user": long}


def _backbone_rank(name: str) -> tuple[int, str]:
    """The suite's backbones in their usual order (sasrec, bert4rec, gru4rec, lightgcn), then
    any other by name."""
    order = ("sasrec", "bert4rec", "gru4rec", "lightgcn")
    return (order.index(name), "") if name in order else (len(order), name)


def build_page(dataset: str, protocol: str, runs: list[Run]) -> Page:
    _check_page(runs)
    by_row: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        by_row[(run.key["method"], run.key["backbone"])].append(run)
    proto = runs[0].record["protocol"]
    users, groups, rows = None, None, []
    for (method, backbone), row_runs in by_row.items():
        _require_same_config(row_runs, None, _SEED_FREE,
                             f"configs for the seeds of {method} / {backbone}",
                             "The seeds of one row must differ only in the seed; rerun the "
                             "stale ones.")
        row = Row(method, backbone, sorted(row_runs, key=lambda r: r.key["seed"]))
        sums: dict[str, np.ndarray] = {}
        for run in row.runs:
            frame = _per_user(run, proto["ks"], proto["mrr_k"])
            if users is None:
                users, groups = frame["user"].to_numpy(), _group_masks(frame)
            elif not np.array_equal(frame["user"].to_numpy(), users) or any(
                    not np.array_equal(m, groups[g]) for g, m in _group_masks(frame).items()):
                raise BenchError(f"sidecar of {run.path} has other test users or groups than "
                                 f"{runs[0].path}; they cannot be paired. Rerun it with --force.")
            row.seed_ranks.append(frame["rank"].to_numpy())
            for metric in METRICS:
                values = frame[metric].to_numpy()
                sums[metric] = sums.get(metric, 0.0) + values
                for group, mask in groups.items():
                    row.seed_values.setdefault((group, metric), []).append(
                        float(values[mask].mean()) if mask.any() else float("nan"))
        row.user_values = {m: v / len(row.runs) for m, v in sums.items()}
        rows.append(row)
    rows.sort(key=lambda r: (_backbone_rank(r.backbone), r.method != "id", r.method))
    return Page(dataset, protocol, rows, groups, users)


def load_pages(records_dir: Path) -> list[Page]:
    """All pages under ``records_dir`` (``<dataset>/<protocol>/<method>/<backbone>/seed-k``)."""
    by_page: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in find_runs(records_dir):
        by_page[(run.key["dataset"], run.key["protocol"])].append(run)
    return [build_page(d, p, runs) for (d, p), runs in sorted(by_page.items())]
