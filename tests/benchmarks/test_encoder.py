"""Embedding extraction with the default language model (all-MiniLM-L6-v2), suite batching."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def model_and_texts(bench_dir):
    from bench.config import compose
    from bench.data.sources import prepare
    from bench.encoders.models import batch_limits, load_language_model
    from bench.encoders.prompts import item_prompts, template_for

    cfg = compose(["dataset=synthetic-tiny", f"paths.cache={bench_dir / 'cache'}"])
    ds = prepare(cfg["dataset"], Path(cfg["paths"]["cache"]))
    texts = item_prompts(ds.items, ds.text_fields, template_for(cfg["dataset"]))[:256]
    lm = load_language_model(cfg["encoder"])
    return lm, texts, int(cfg["encoder"]["max_length"]), batch_limits(cfg["encoder"], lm.device)


def test_encode_256_item_prompts(benchmark, model_and_texts):
    from bench.encoders.models import encode

    lm, texts, max_length, (batch, budget) = model_and_texts
    benchmark.extra_info["texts"] = len(texts)
    benchmark.pedantic(lambda: encode(lm, texts, max_length, batch, budget, progress=False),
                       rounds=3, warmup_rounds=1)
