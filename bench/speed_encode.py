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
    from bench.encoders.models import encode, load_language_model
    from bench.encoders.prompts import item_prompts, template_for

    cfg = compose([f"dataset={args.dataset}", *args.overrides])
    ds = prepare(cfg["dataset"], Path(cfg["paths"]["cache"]))
    texts = item_prompts(ds.items, ds.text_fields, template_for(cfg["dataset"]))[: args.n]
    enc = cfg["encoder"]
    lm = load_language_model({**enc, "device": "cpu" if args.cpu else enc.get("device", "auto")})
    st = SentenceTransformer(str(lm.path), device=str(lm.device))
    st.max_seq_length = int(enc["max_length"])
    device = f"{lm.device} ({torch.cuda.get_device_name() if lm.device.type == 'cuda' else 'CPU'}, " \
             f"{torch.get_num_threads()} threads)"
    print(f"{len(texts)} item prompts of '{ds.name}' (mean {np.mean([len(t) for t in texts]):.0f} "
          f"chars), model {lm.id}, device {device}")

    def ours():
        return encode(lm, texts, int(enc["max_length"]), int(enc["batch_size"]),
                      int(enc["token_budget"]), progress=False)

    encode(lm, texts[:64], progress=False)  # warm-up
    st.encode(texts[:64])
    ref = st.encode(texts, batch_size=args.st_batch_size)
    mine = ours()
    mine = mine / np.linalg.norm(mine, axis=1, keepdims=True)
    max_diff = float(np.abs(mine - ref).max())
    rows, suite_s = [], _median_seconds(ours, args.repeats)
    rows.append(["suite encode", f"batch<={enc['batch_size']}, {enc['token_budget']} tokens",
                 f"{len(texts) / suite_s:.0f}", "1.00"])
    for bs in dict.fromkeys([args.st_batch_size, int(enc["batch_size"])]):
        st_s = _median_seconds(lambda: st.encode(texts, batch_size=bs), args.repeats)
        rows.append(["SentenceTransformer.encode", f"batch_size={bs}", f"{len(texts) / st_s:.0f}",
                     f"{st_s / suite_s:.2f}"])
    print(tabulate(rows, headers=["extractor", "setting", "texts/s", "suite speed-up"],
                   tablefmt="github"))
    print(f"max |difference| of L2-normalised embeddings: {max_diff:.2e}")
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
    p.add_argument("--cpu", action="store_true", help="force the CPU even when CUDA is present")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. encoder.batch_size=128")
    p.set_defaults(func=main)
