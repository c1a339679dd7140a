"""Benchmark: the suite's embedding extraction against ``SentenceTransformer.encode``.

Same model files, same texts (a dataset's item prompts), same device and thread count; both
warmed up first; each timed ``--repeats`` times and the median kept. Prints texts/s for each,
the ratio (suite / sentence-transformers), and the largest difference between the two
embeddings after L2 normalisation (ST's pipeline ends with a Normalize layer), so a speed-up
cannot come from computing something else.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path



def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer
    from tabulate import tabulate

    from bench.config import compose
    from bench.data.sources import prepare
    from bench.encoders.models import batch_limits, encode, load_language_model
    from bench.encoders.prompts import item_prompts, template_for

    cfg = compose([f"dataset={args.dataset}", *args.overrides])
    ds = prepare(cfg["dataset"], Path(cfg["paths"]["cache"]))
    texts = item_prompts(ds.items, ds.text_fields, template_for(cfg["dataset"]))[: args.n]
    enc = {**cfg["encoder"], **({"device": "cpu"} if args.cpu else {})}
    max_length = int(enc["max_length"])
    models = [load_language_model({**enc, "dtype": d}) for d in args.dtypes.split(",")]
    device = models[0].device
    st = SentenceTransformer(str(models[0].path), device=str(device))
    st.max_seq_length = max_length
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{len(texts)} item prompts of '{ds.name}' (mean {np.mean([len(t) for t in texts]):.0f} "
          f"chars), model {models[0].name}, device {device} ({name}, {torch.get_num_threads()} "
          f"threads); median of {args.repeats}")
    st.encode(texts[:64])  # warm-up
    ref = st.encode(texts, batch_size=args.st_batch_size)
    st_s = _median_seconds(lambda: st.encode(texts, batch_size=args.st_batch_size), args.repeats)
    rows = [["SentenceTransformer.encode (float32)", f"batch_size={args.st_batch_size}",
             f"{len(texts) / st_s:.0f}", "1.00", "-"]]
    for lm in models:
        batch, budget = batch_limits(enc, lm.device)
        encode(lm, texts[:64], max_length, batch, budget, progress=False)  # warm-up
        mine = encode(lm, texts, max_length, batch, budget, progress=False)
        mine = mine / np.linalg.norm(mine, axis=1, keepdims=True)
        seconds = _median_seconds(lambda: encode(lm, texts, max_length, batch, budget,
                                                 progress=False), args.repeats)
        rows.append([f"suite encode ({str(lm.dtype).split('.')[-1]})",
                     f"batch<={batch}, {budget} tokens", f"{len(texts) / seconds:.0f}",
                     f"{st_s / seconds:.2f}", f"{np.abs(mine - ref).max():.1e}"])
    print(tabulate(rows, headers=["extractor", "batching", "texts/s", "ratio to ST",
                                  "max |diff| (L2-normalised)"], tablefmt="github"))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("speed-encode", help="benchmark: embedding extraction vs sentence-transformers",
                       description="Time the suite's item-embedding extraction against "
                       "SentenceTransformer.encode on the same item prompts and model; print "
                       "texts/s and the ratio (target: at least 1.3).")
    p.add_argument("--dataset", default="beauty", help="whose item prompts to encode (default beauty)")
    p.add_argument("--n", type=int, default=2000, help="number of prompts (default 2000)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats, median kept (default 3)")
    p.add_argument("--st-batch-size", type=int, default=32,
                   help="SentenceTransformer batch size (default 32, its own default)")
    p.add_argument("--dtypes", default="float32",
                   help="comma list of suite dtypes to time, e.g. float32,bfloat16 (default float32)")
    p.add_argument("--cpu", action="store_true", help="force the CPU even when CUDA is present")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. encoder.batch_size=128")
    p.set_defaults(func=main)
