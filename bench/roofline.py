"""``python -m bench roofline``: full-ranking evaluation as a fraction of the machine's matmul
rate. The measurement lives in ``bench.evaluation.roofline``; this module is only its command,
so building the CLI's parser imports no torch (``python -m bench --help`` stays fast)."""
from __future__ import annotations

import argparse

from bench.errors import unknown_name

_KERNELS = "eager,compiled"  # bench.evaluation.ranking.RANKING_KERNELS (checked in main)


def main(args: argparse.Namespace) -> int:
    from bench.evaluation.ranking import RANKING_KERNELS
    from bench.evaluation.roofline import roofline
    from bench.runner import resolve_device

    device = resolve_device(args.device)
    kernels = tuple(k.strip() for k in args.kernels.split(",") if k.strip())
    for k in kernels:
        if k not in RANKING_KERNELS:
            raise unknown_name("ranking kernel", k, RANKING_KERNELS)
    out = roofline(device, args.users, args.items, args.dim, args.batch, args.size, kernels)
    s = out["shape"]
    print(f"device: {out['device']}")
    print(f"matmul rate (torch.mm {args.size}^3, fp32): {out['matmul_gflops']:.1f} GFLOP/s")
    print(f"full ranking {s['users']} users x {s['items']} items x {s['dim']} dims, batch "
          f"{s['batch']}:")
    print(f"  scoring only                     {out['scoring_gflops']:.1f} GFLOP/s = "
          f"{out['scoring_fraction']:.2f} of the matmul rate")
    for k in kernels:
        print(f"  scoring + ranking, {k:<8} kernel {out[f'scoring_ranking_{k}_gflops']:.1f} "
              f"GFLOP/s = {out[f'scoring_ranking_{k}_fraction']:.2f} of the matmul rate "
              "(target >= 0.50 on CPU)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("roofline", help="benchmark: full-ranking scoring vs the matmul rate",
                       description="Measure the device's matmul rate (square torch.mm), then "
                       "score and rank USERS x ITEMS at DIM in batches, and print each as a "
                       "fraction of that rate.")
    p.add_argument("--users", type=int, default=20000, help="users scored (default 20000)")
    p.add_argument("--items", type=int, default=12000, help="items (default 12000)")
    p.add_argument("--dim", type=int, default=64, help="vector width (default 64)")
    p.add_argument("--batch", type=int, default=256,
                   help="users per batch (default 256, the suite's train.eval_batch_size)")
    p.add_argument("--size", type=int, default=2048, help="square matmul size (default 2048)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--kernels", default=_KERNELS,
                   help="ranking kernels to time (default eager,compiled; compiled needs a C++ "
                   "compiler and compiles once, seconds)")
    p.set_defaults(func=main)
