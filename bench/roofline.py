"""``python -m bench roofline``: full-ranking evaluation as a fraction of the machine's matmul rate.

The scoring path of every sequential model ends in ``user @ items.T`` followed by ranking (the
pessimistic rank of the target: one comparison and one sum per score). Its useful work is
2 x users x items x dim FLOPs. This command measures the device's dense matmul rate once
(square ``torch.mm``), then times scoring alone and scoring + ranking at a realistic size, and
prints each as a fraction of that rate. Warm-up, median of repeats, CUDA synchronised.
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import numpy as np
import torch

from bench.evaluation.ranking import pessimistic_rank
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
                  repeats: int = 3, dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """Useful FLOP/s of scoring all users against all items, alone and with ranking."""
    g = torch.Generator().manual_seed(1)
    u = torch.randn(users, dim, generator=g).to(device, dtype)
    v = torch.randn(items, dim, generator=g).to(device, dtype)
    target = torch.randint(0, items, (users,), generator=g).to(device)
    batches = [(s, min(s + batch, users)) for s in range(0, users, batch)]

    def score() -> None:
        for s, e in batches:
            u[s:e] @ v.T

    def score_rank() -> None:
        for s, e in batches:
            pessimistic_rank(u[s:e] @ v.T, target[s:e])

    flops = 2.0 * users * items * dim
    return {"scoring": flops / _median_seconds(score, device, repeats),
            "scoring_ranking": flops / _median_seconds(score_rank, device, repeats)}


def roofline(device: torch.device, users: int, items: int, dim: int, batch: int,
             size: int = 2048) -> dict[str, Any]:
    peak = matmul_rate(device, size)
    rates = scoring_rates(device, users, items, dim, batch)
    return {"device": device_name(device), "matmul_gflops": peak / 1e9,
            "shape": {"users": users, "items": items, "dim": dim, "batch": batch},
            **{f"{k}_gflops": r / 1e9 for k, r in rates.items()},
            **{f"{k}_fraction": r / peak for k, r in rates.items()}}


def main(args: argparse.Namespace) -> int:
    from bench.runner import resolve_device

    device = resolve_device(args.device)
    out = roofline(device, args.users, args.items, args.dim, args.batch, args.size)
    s = out["shape"]
    print(f"device: {out['device']}")
    print(f"matmul rate (torch.mm {args.size}^3, fp32): {out['matmul_gflops']:.1f} GFLOP/s")
    print(f"full ranking {s['users']} users x {s['items']} items x {s['dim']} dims, batch "
          f"{s['batch']}:")
    print(f"  scoring only      {out['scoring_gflops']:.1f} GFLOP/s = "
          f"{out['scoring_fraction']:.2f} of the matmul rate")
    print(f"  scoring + ranking {out['scoring_ranking_gflops']:.1f} GFLOP/s = "
          f"{out['scoring_ranking_fraction']:.2f} of the matmul rate (target >= 0.50 on CPU)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("roofline", help="benchmark: full-ranking scoring vs the matmul rate",
                       description="Measure the device's matmul rate (square torch.mm), then "
                       "score and rank USERS x ITEMS at DIM in batches, and print each as a "
                       "fraction of that rate.")
    p.add_argument("--users", type=int, default=20000, help="users scored (default 20000)")
    p.add_argument("--items", type=int, default=12000, help="items (default 12000)")
    p.add_argument("--dim", type=int, default=64, help="vector width (default 64)")
    p.add_argument("--batch", type=int, default=1024, help="users per batch (default 1024)")
    p.add_argument("--size", type=int, default=2048, help="square matmul size (default 2048)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=main)
