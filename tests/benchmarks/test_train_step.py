"""One optimiser step (forward, loss, backward, update) of each method on a training batch of
the tiny synthetic dataset, built exactly as a run builds it (``bench.runner.build_setup``;
one-off stages such as SCFT or PAD's phases run once, outside the timing)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

METHODS = ["id", "alpharec", "llm_esr", "llmemb", "pad", "morec"]


@pytest.mark.parametrize("method", METHODS)
def test_train_step(benchmark, bench_dir, method):
    from bench.adapters import load_adapter
    from bench.config import compose
    from bench.data.prepared import export_recbole
    from bench.data.sources import prepare
    from bench.item_tables import one_table_per_step
    from bench.runner import build_setup, resolve_device, run_key
    from bench.training import BenchTrainer

    cache = bench_dir / "cache"
    cfg = compose(["dataset=synthetic-tiny", f"method={method}", f"paths.cache={cache}",
                   "train.epochs=2", "show_progress=false"])
    device = resolve_device(cfg["device"])
    prepared = prepare(cfg["dataset"], cache)
    data_path = export_recbole(prepared, cache / "recbole")
    adapter = load_adapter(cfg["method"].get("adapter") or method)
    with tempfile.TemporaryDirectory() as work:
        setup = build_setup(cfg, run_key(cfg), adapter, prepared, data_path, Path(work), device)
        model = setup.model
        optimizer = BenchTrainer(setup.rb_config, model, lambda: (0.0, {})).optimizer
        batch = next(iter(setup.loader)).to(device)
        model.train()

        def step() -> None:  # as BenchTrainer runs it
            optimizer.zero_grad()
            with one_table_per_step(model):
                loss = model.calculate_loss(batch)
            loss = sum(loss) if isinstance(loss, tuple) else loss
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        benchmark.extra_info.update(batch_size=setup.loader.batch_size, device=str(device))
        benchmark.pedantic(step, rounds=5, warmup_rounds=1)
