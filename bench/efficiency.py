"""Efficiency figures of a run: inference latency and throughput, peak memory (protocol.md).

Inference is what serving a user costs: ``full_sort_predict`` over all items, then the top-K
list. Latency is measured at batch 1 on a fixed, evenly spread set of test users after a
warm-up (p50 / p95 / p99); throughput at a fixed large batch over the whole test split (median
of repeats). On CUDA, timings use events and synchronise; on a CPU, ``perf_counter``. Peak
memory is ``torch.cuda.max_memory_allocated`` on CUDA and, on a CPU, the peak resident set size
of the process sampled every 20 ms while the measured code runs (``ru_maxrss`` cannot be
reset). Every figure carries its device name, dtype and batch size.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from recbole.data.interaction import Interaction

from bench.evaluation.ranking import EvalSplit
from bench.records import device_name

_PAGE = 4096


def model_precision(model: torch.nn.Module) -> str:
    """The dtype label of a model's figures: its parameters' dtypes, plus the autocast dtype a
    module declares (``autocast_dtype``; MoRec's encoder keeps float32 weights and computes in
    bfloat16 on CUDA). The first parameter alone mislabels a model that mixes them."""
    weights = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})
    casts = sorted({str(m.autocast_dtype).removeprefix("torch.") for m in model.modules()
                    if getattr(m, "autocast_dtype", None) not in (None, torch.float32)})
    return "/".join(weights) + (f" ({'/'.join(casts)} autocast)" if casts else "")


def _rss_bytes() -> int | None:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Peak memory while the ``with`` block runs: CUDA allocator peak, or sampled CPU RSS."""

    def __init__(self, device: torch.device, interval: float = 0.02):
        self.device, self.interval = device, interval
        self.peak: int | None = None
        self.baseline: int | None = None  # CPU: the process's RSS when the block began
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            rss = _rss_bytes()
            if rss is not None:
                self.peak = max(self.peak or 0, rss)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak = self.baseline = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = int(torch.cuda.max_memory_allocated(self.device))
        else:
            self._stop.set()
            self._thread.join()
            rss = _rss_bytes()
            if rss is not None:
                self.peak = max(self.peak or 0, rss)

    def figure(self) -> dict[str, Any]:
        kind = ("cuda max_memory_allocated" if self.device.type == "cuda"
                else "cpu peak resident set size of the process (sampled every 20 ms)")
        figure = {"bytes": self.peak, "mib": None if self.peak is None else self.peak / 2**20,
                  "kind": kind, "device": device_name(self.device)}
        if self.baseline is not None:  # what the process held before (imports, data, caches)
            figure["baseline_mib"] = self.baseline / 2**20
        return figure


@contextmanager
def _timed(device: torch.device, out: list[float]) -> Iterator[None]:
    """Append the block's seconds to ``out``: CUDA events on a GPU, perf_counter on a CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        yield
        end.record()
        torch.cuda.synchronize(device)
        out.append(start.elapsed_time(end) / 1000.0)
    else:
        t = time.perf_counter()
        yield
        out.append(time.perf_counter() - t)


def _batch(model, split: EvalSplit, rows: torch.Tensor, device: torch.device) -> Interaction:
    lens = split.item_seq_len[rows]
    fields = {model.ITEM_SEQ: split.item_seq[rows, : int(lens.max())], model.ITEM_SEQ_LEN: lens}
    if getattr(model, "USER_ID", None):
        fields[model.USER_ID] = split.user[rows]
    return Interaction(fields).to(device)


def _recommend(model, inter: Interaction, k: int) -> torch.Tensor:
    """Scores over all items -> the top-k item ids (padding excluded): one served request."""
    scores = model.full_sort_predict(inter).view(-1, model.n_items)
    scores[:, 0] = float("-inf")
    return torch.topk(scores, k, dim=1).indices


@torch.no_grad()
def inference_profile(model, split: EvalSplit, device: torch.device, latency_users: int = 200,
                      warmup: int = 10, batch_size: int = 1024, repeats: int = 3,
                      k: int = 20) -> dict[str, Any]:
    """Latency at batch 1 (p50/p95/p99 ms) and throughput at ``batch_size`` (users/s)."""
    model.eval()
    n = len(split)
    users = torch.from_numpy(np.unique(np.linspace(0, n - 1, min(latency_users, n)).astype(int)))
    for u in users[:warmup]:
        _recommend(model, _batch(model, split, u.view(1), device), k)
    seconds: list[float] = []
    for u in users:
        inter = _batch(model, split, u.view(1), device)
        with _timed(device, seconds):
            _recommend(model, inter, k)
    ms = np.array(seconds) * 1000.0
    runs: list[float] = []
    batches = [torch.arange(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    _recommend(model, _batch(model, split, batches[0], device), k)  # warm-up at this batch
    for _ in range(repeats):
        with _timed(device, runs):
            for rows in batches:
                _recommend(model, _batch(model, split, rows, device), k)
    return {"device": device_name(device), "dtype": model_precision(model), "top_k": k,
            "latency_ms": {"batch_size": 1, "users": len(users), "warmup": warmup,
                           "p50": float(np.percentile(ms, 50)),
                           "p95": float(np.percentile(ms, 95)),
                           "p99": float(np.percentile(ms, 99))},
            "throughput": {"batch_size": batch_size, "users": n, "repeats": repeats,
                           "users_per_second": n / float(np.median(runs))}}
