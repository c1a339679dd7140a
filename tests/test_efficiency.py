"""Efficiency figures: peak memory, inference latency and throughput, stored in every record."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.config import compose
from bench.efficiency import inference_profile
from bench.errors import BenchError

_PEAK_SCRIPT = """
import time, torch
from bench.efficiency import PeakMemory, _rss_bytes
before = _rss_bytes()
with PeakMemory(torch.device("cpu")) as big:
    x = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched, freed before the block ends
    x += 1
    time.sleep(0.1)  # lives a few sampling intervals
    del x
fig = big.figure()
print(big.peak - before, fig["bytes"] == big.peak, "cpu peak resident set size" in fig["kind"])
"""


def test_peak_memory_sees_a_large_cpu_allocation():
    """In a fresh process: a long-running one may hold freed heap memory that a new tensor
    reuses without raising the resident set (bench/runtime.py keeps large blocks)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT], capture_output=True, text=True,
                         check=True).stdout.split()
    assert int(out[0]) > 48 * 2**20 and out[1:] == ["True", "True"]


_RELEASE_SCRIPT = """
import torch
import bench  # applies the heap settings that keep freed large blocks
from bench.efficiency import _rss_bytes
from bench.runtime import release_free_heap
start = _rss_bytes()
x = torch.ones(256 * 2**20 // 4)  # 256 MiB, touched, then freed
x += 1
held = _rss_bytes()
del x
release_free_heap()
print(held - start, _rss_bytes() - start)
"""


def test_freed_heap_is_given_back_before_the_next_run():
    """``bench run --seeds 0,1,2`` trains in one process: run 2's peak RSS must not include
    what run 1 freed (``execute`` calls ``release_free_heap`` first)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _RELEASE_SCRIPT], capture_output=True,
                         text=True, check=True).stdout.split()
    assert int(out[0]) > 200 * 2**20 and int(out[1]) < 32 * 2**20


def test_inference_profile_reports_labelled_percentiles_and_throughput(trained):
    art = trained("sasrec", "full")
    prof = inference_profile(art.model, art.test, torch.device("cpu"), latency_users=30,
                             batch_size=64, repeats=2)
    lat = prof["latency_ms"]
    assert lat["batch_size"] == 1 and lat["users"] == 30
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert prof["throughput"]["users"] == len(art.test)
    assert prof["throughput"]["users_per_second"] > 0 and prof["throughput"]["batch_size"] == 64
    assert prof["dtype"] == "float32" and prof["device"].startswith("cpu:")


def test_every_record_carries_training_and_inference_efficiency(trained):
    eff = trained("sasrec", "full").record["efficiency"]
    assert eff["peak_memory_train"]["bytes"] > 0
    assert 0 < eff["peak_memory_train"]["baseline_mib"] <= eff["peak_memory_train"]["mib"]
    assert eff["inference"]["peak_memory"]["bytes"] > 0
    assert eff["inference"]["latency_ms"]["users"] == 20  # tests time 20 users, runs 200
    assert np.isfinite(eff["inference"]["throughput"]["users_per_second"])


def test_bad_efficiency_values_are_refused():
    with pytest.raises(BenchError, match="efficiency.repeats"):
        compose(["efficiency.repeats=0"])


def test_roofline_reports_fractions_of_the_matmul_rate(capsys):
    from bench.cli import main

    assert main(["roofline", "--users", "256", "--items", "512", "--dim", "16", "--batch", "64",
                 "--size", "256", "--device", "cpu", "--kernels", "eager"]) == 0
    out = capsys.readouterr().out
    assert "matmul rate" in out and "of the matmul rate (target >= 0.50 on CPU)" in out
    from bench.evaluation.roofline import roofline

    res = roofline(torch.device("cpu"), 256, 512, 16, 64, size=256, kernels=("eager",))
    assert res["matmul_gflops"] > 0 and res["scoring_ranking_eager_fraction"] > 0
    assert res["shape"] == {"users": 256, "items": 512, "dim": 16, "batch": 64}


def test_efficiency_command_times_fixed_epochs_per_device(tmp_path, capsys):
    """``bench efficiency``: every epoch runs (no early stop), the record lands under the
    device's folder, and the printed table carries the device and the serving figures."""
    from bench.cli import main
    from bench.records import read_record
    from tests.conftest import tiny_overrides

    out = tmp_path / "eff"
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith(("paths.runs",
                                                                            "train.epochs"))]
    assert main(["efficiency", "--methods", "id", "--datasets", "synthetic-tiny", "--epochs",
                 "2", "--out", str(out), *overrides]) == 0
    text = capsys.readouterr().out
    path = out / "cpu" / "synthetic-tiny" / "full" / "id" / "sasrec" / "seed-0.json"
    rec = read_record(path)
    assert rec["training"]["epochs_run"] == 2 and len(rec["efficiency"]["epoch_seconds"]) == 2
    assert rec["config"]["train"]["patience"] == 2
    assert "| id " in text and "cpu:" in text and "(b 1024)" in text


def test_efficiency_command_takes_method_overrides(tmp_path, monkeypatch):
    """``method.*`` overrides reach the runs (they were once refused: the device probe was
    composed without the method, so ``method.mlp_dtype`` was an unknown key)."""
    import bench.efficiency_runs as eff
    from bench.cli import main

    seen = []

    def capture(cfg, force, includes):
        seen.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr(eff, "_in_fresh_process", capture)
    with pytest.raises(SystemExit):
        main(["efficiency", "--methods", "alpharec", "--datasets", "synthetic-tiny",
              "--out", str(tmp_path), "method.mlp_dtype=bfloat16"])
    assert seen[0]["method"]["mlp_dtype"] == "bfloat16" and seen[0]["train"]["epochs"] == 3


def test_efficiency_command_refuses_zero_epochs(capsys):
    from bench.cli import main

    assert main(["efficiency", "--methods", "id", "--epochs", "0"]) == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err


def test_heap_tuning_is_applied_and_recorded(trained):
    """glibc keeps large blocks in the heap (bench/runtime.py), and every record says so."""
    import platform

    from bench.runtime import malloc_state

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert "M_MMAP_MAX=0" in malloc_state()
    record = trained("sasrec", "full").record
    assert record["provenance"]["runtime"]["malloc"] == malloc_state()
    # and what else floating point depends on (the synthetic data once differed by machine)
    libc = " ".join(part for part in platform.libc_ver() if part) or "unknown"
    assert record["provenance"]["runtime"]["libc"] == libc
    assert record["provenance"]["runtime"]["numpy_simd"]


def test_heap_tuning_can_be_switched_off():
    import os
    import subprocess
    import sys

    code = "import bench.runtime as r; r.tune_malloc(); print(r.malloc_state())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "BENCH_MALLOC": "default"}, check=True)
    assert "BENCH_MALLOC=default" in out.stdout


def _record_pid_then_run(cfg, force, includes):
    """Stands in for ``_execute_one`` in the child (a top-level function, so it pickles)."""
    import os
    from pathlib import Path

    import bench.efficiency_runs as eff

    Path(cfg["paths"]["runs"], "pid").parent.mkdir(parents=True, exist_ok=True)
    Path(cfg["paths"]["runs"], "pid").write_text(str(os.getpid()))
    return eff._execute_one(cfg, force, includes)


def test_efficiency_runs_each_measurement_in_a_fresh_process(tmp_path, monkeypatch):
    """A run's CPU peak memory is the process's resident set, so a run measured after another
    in the same process would count what the first left behind: each run gets its own process."""
    import os

    import bench.efficiency_runs as eff
    from bench.config import compose
    from tests.conftest import tiny_overrides

    monkeypatch.setattr(eff, "_execute_one", _record_pid_then_run)
    cfg = compose(tiny_overrides(tmp_path, "train.epochs=1", "train.patience=1"))
    outcome = eff._in_fresh_process(cfg, False, None)
    assert outcome.record_path.exists() and outcome.record is not None
    child = int((tmp_path / "runs" / "pid").read_text())
    assert child != os.getpid()
    assert eff._in_fresh_process(cfg, False, None).skipped  # what the child says comes back
