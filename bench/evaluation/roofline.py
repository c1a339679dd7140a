"""Full-ranking evaluation as a fraction of the machine's matmul rate.

The scoring path of every sequential model ends in ``user @ items.T`` followed by ranking (the
pessimistic rank of the target: one comparison and one count per score). Its useful work is
2 x users x items x dim FLOPs. This module measures the device's dense matmul rate once
(square ``torch.mm``), then times scoring alone and scoring + ranking at a realistic size with
the suite's own ``pessimistic_rank``, under each ranking kernel (``ranking_kernel`` in the run
config), and reports each as a fraction of that rate. Warm-up, median of repeats, CUDA
synchronised. ``python -m bench roofline`` (``bench/roofline.py``) prints it.

With dim 64 a score costs 128 FLOPs, so ranking (a compare and a count per score, memory
bound) is not free: eager PyTorch writes a bool per score and reads it back; the compiled
kernel fuses both into one pass.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from bench.evaluation.ranking import RANKING_KERNELS, pessimistic_rank
from bench.records import device_name


def _median_seconds(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_rate(device: torch.device, size: int = 2048, repeats: int = 5,
                dtype: torch.dtype = torch.float32) -> float:
    """Dense matmul FLOP/s of square ``size`` matrices."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device, dtype)
    b = torch.randn(size, size, generator=g).to(device, dtype)
    return 2 * size**3 / _median_seconds(lambda: torch.mm(a, b), device, repeats)


def scoring_rates(device: torch.device, users: int, items: int, dim: int, batch: int,
                  repeats: int = 5, dtype: torch.dtype = torch.float32,
                  kernels: tuple[str, ...] = RANKING_KERNELS) -> dict[str, float]:
    """Useful FLOP/s of scoring all users against all items, alone and with ranking by each
    kernel (as the evaluator runs it: a fresh score matrix per batch)."""
    g = torch.Generator().manual_seed(1)
    u = torch.randn(users, dim, generator=g).to(device, dtype)
    v = torch.randn(items, dim, generator=g).to(device, dtype)
    target = torch.randint(0, items, (users,), generator=g).to(device)
    batches = [(s, min(s + batch, users)) for s in range(0, users, batch)]

    def score() -> None:
        for s, e in batches:
            u[s:e] @ v.T

    def score_rank(kernel: str) -> Callable[[], None]:
        def run() -> None:
            for s, e in batches:
                pessimistic_rank(u[s:e] @ v.T, target[s:e], kernel)
        return run

    flops = 2.0 * users * items * dim
    rates = {"scoring": flops / _median_seconds(score, device, repeats)}
    for kernel in kernels:
        rates[f"scoring_ranking_{kernel}"] = flops / _median_seconds(score_rank(kernel), device,
                                                                    repeats)
    return rates


def roofline(device: torch.device, users: int, items: int, dim: int, batch: int,
             size: int = 2048, kernels: tuple[str, ...] = RANKING_KERNELS) -> dict[str, Any]:
    peak = matmul_rate(device, size)
    rates = scoring_rates(device, users, items, dim, batch, kernels=kernels)
    return {"device": device_name(device), "matmul_gflops": peak / 1e9,
            "shape": {"users": users, "items": items, "dim": dim, "batch": batch},
            **{f"{k}_gflops": r / 1e9 for k, r in rates.items()},
            **{f"{k}_fraction": r / peak for k, r in rates.items()}}
