"""Scale-out and reliability with real processes, no mocks: sweeps on Hydra's joblib and
submitit launchers, runs killed with SIGKILL and resumed, caches under concurrent writers."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, tiny_overrides

from bench.cli import main
from bench.records import read_record, sidecar_path

pytestmark = pytest.mark.slow


def _grid(tmp: Path, methods: str = "id", backbones: str = "sasrec,gru4rec",
          seeds: str = "0") -> list[str]:
    return ["run", "--methods", methods, "--backbones", backbones, "--seeds", seeds,
            "--datasets", "synthetic-tiny", *tiny_overrides(tmp)[1:]]


def _bench(cwd: Path, argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "bench", *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def _outcomes(runs: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((runs / ".sweeps").glob("*/*/outcome.json"))]


def _records(runs: Path) -> list[Path]:
    return sorted(runs.glob("synthetic-tiny/full/*/*/seed-*.json"))


@pytest.mark.parametrize("launcher, extra", [("joblib", ["hydra.launcher.n_jobs=2"]),
                                             ("submitit_local", [])])
def test_a_sweep_on_a_launcher_writes_one_record_per_job_and_a_rerun_skips_them(
        tmp_path, launcher, extra):
    argv = [*_grid(tmp_path), "--launcher", launcher, *extra]
    code, out = _finish(_bench(tmp_path, argv))
    assert code == 0, out
    records = _records(tmp_path / "runs")
    assert [p.parent.name for p in records] == ["gru4rec", "sasrec"]
    assert sorted(o["status"] for o in _outcomes(tmp_path / "runs")) == ["done", "done"]
    for path in records:
        rec = read_record(path)
        assert rec["training"]["epochs_run"] >= 1 and sidecar_path(path).exists()
    if launcher == "submitit_local":  # real submitit jobs: their own logs per job
        assert list((tmp_path / "runs" / ".sweeps").glob("*/.submitit/*/*_log.out"))
    mtimes = [p.stat().st_mtime_ns for p in records]
    code, out = _finish(_bench(tmp_path, argv))
    assert code == 0, out
    assert sorted(o["status"] for o in _outcomes(tmp_path / "runs"))[-2:] == ["skipped"] * 2
    assert [p.stat().st_mtime_ns for p in _records(tmp_path / "runs")] == mtimes


def test_a_failing_job_is_reported_and_the_others_finish(tmp_path, capsys):
    code = main([*_grid(tmp_path, methods="id,pad", backbones="bert4rec"), "--launcher", "basic"])
    err = capsys.readouterr().err
    assert code == 2
    assert "failed: job 1 (" in err and "method 'pad' does not support backbone 'bert4rec'" in err
    assert [p.parent.parent.name for p in _records(tmp_path / "runs")] == ["id"]


def test_the_slurm_launcher_config_composes_with_overrides():
    from hydra import compose, initialize_config_dir

    from bench.adapters import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert launcher.gpus_per_node == 1 and launcher.max_num_timeout >= 1


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def test_a_run_killed_mid_training_resumes_to_the_record_an_uninterrupted_run_writes(tmp_path):
    argv = [*_grid(tmp_path, backbones="sasrec"), "train.epochs=6", "train.patience=6"]
    proc = _bench(tmp_path, argv)
    record = tmp_path / "runs/synthetic-tiny/full/id/sasrec/seed-0.json"
    _wait_for(record.with_name("seed-0.resume.pt"), proc)
    _kill(proc)
    assert not record.exists()
    code, out = _finish(_bench(tmp_path, argv))
    assert code == 0 and "resume: continuing from" in out, out
    assert not record.with_name("seed-0.resume.pt").exists()
    resumed = read_record(record)
    assert resumed["training"]["resumed_at_epochs"] and resumed["training"]["epochs_run"] == 6
    here = resumed["provenance"]["device"]
    assert resumed["training"]["segments"] == [  # both stretches ran here
        {"from_epoch": e, "device": here} for e in [0, *resumed["training"]["resumed_at_epochs"]]]

    code, out = _finish(_bench(tmp_path, [*argv, f"paths.runs={tmp_path / 'straight'}"]))
    assert code == 0, out
    straight = read_record(tmp_path / "straight/synthetic-tiny/full/id/sasrec/seed-0.json")
    assert straight["training"]["resumed_at_epochs"] == []
    assert resumed["metrics"] == straight["metrics"]
    assert (resumed["training"]["valid_ndcg10_per_epoch"]
            == straight["training"]["valid_ndcg10_per_epoch"])


KILLS = int(os.environ.get("BENCH_TEST_KILLS", "3"))


def _moment(runs: Path, proc: subprocess.Popen, phase: int, rng: random.Random) -> None:
    """Wait for a random moment in one phase of the grid: 0 start-up and data preparation,
    1 mid-training (an epoch checkpoint exists), 2 after a run's record is written (the next
    run starting, or the last one evaluating)."""
    marker = {0: None, 1: "*.resume.pt", 2: "seed-*.json"}[phase]

    def stamps() -> set:
        return {(p, p.stat().st_mtime_ns) for p in runs.rglob(marker)} if runs.exists() else set()

    if marker:  # this attempt's own progress: a checkpoint or a record written since it started
        before, end = stamps(), time.monotonic() + 300
        while not stamps() - before and proc.poll() is None:
            assert time.monotonic() < end
            time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 3.0 if marker else 8.0))


def test_killing_a_grid_at_random_moments_loses_and_duplicates_no_run(tmp_path):
    """``BENCH_TEST_KILLS`` SIGKILLs at random moments of each phase in turn, then the same
    command to the end: every run finished once, none lost, none duplicated, no debris."""
    import pandas as pd

    argv = [*_grid(tmp_path, seeds="0,1"), "train.epochs=6", "train.patience=6"]
    runs, rng, log = tmp_path / "runs", random.Random(0), []
    for k in range(KILLS):
        proc = _bench(tmp_path, argv)
        _moment(runs, proc, k % 3, rng)
        if proc.poll() is not None:  # the grid finished before this kill: nothing left to kill
            break
        _kill(proc)
        log.append((len(_records(runs)), len(list(runs.rglob("*.resume.pt")))))
    finished = len(_records(runs))  # the last attempt may have run to the end unkilled
    code, out = _finish(_bench(tmp_path, argv))
    assert code == 0, out
    print(f"\nkills: {len(log)}; (records, epoch checkpoints) after each: {log}; final run: "
          f"{out.count('skip ')} skipped, {out.count('resume: continuing')} resumed")
    files = [p for p in runs.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == sorted(
        [f"seed-{s}.{ext}" for s in (0, 1) for ext in ("json", "users.parquet")] * 2)
    assert out.count("skip ") == finished  # finished runs were not redone
    assert len([line for line in out.splitlines() if line.startswith("| synthetic-tiny")]) == 4
    for path in _records(runs):
        rec = read_record(path)
        users = pd.read_parquet(sidecar_path(path))
        assert len(users) == rec["metrics"]["test"]["overall"]["n"]


# ----------------------------------------------------------------- concurrent cache writers
def _hammer(root: str, worker: int, rounds: int, barrier) -> list[str]:
    """One process: write and read the same cache entries as the others, every round."""
    import bench  # noqa: F401
    from bench.encoders.cache import ArrayCache, DirCache

    arrays, dirs = ArrayCache(Path(root)), DirCache(Path(root))
    problems = []
    barrier.wait()
    for r in range(rounds):
        arrays.save("items", "same-key", np.full((64, 32), worker * 1000 + r, np.float32),
                    {"worker": worker})
        got = arrays.load("items", "same-key")
        if got is None or len(np.unique(got)) != 1:
            problems.append(f"array round {r}: {None if got is None else np.unique(got)[:3]}")
        build = dirs.staging("lora", "same-key")
        (build / "weights.bin").write_bytes(bytes([worker]) * 4096)
        folder = dirs.commit("lora", "same-key", build, {"worker": worker})
        if dirs.valid("lora", "same-key") != folder:
            problems.append(f"dir round {r}: invalid entry")
    return problems


def test_concurrent_writers_of_one_cache_entry_never_corrupt_it(tmp_path, capfd):
    ctx = mp.get_context("spawn")
    barrier = ctx.Manager().Barrier(3)
    with ctx.Pool(3) as pool:
        results = pool.starmap(_hammer, [(str(tmp_path), w, 40, barrier) for w in range(3)])
    assert results == [[], [], []]
    assert "corrupted" not in capfd.readouterr().err
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_a_converging_bare_recbole_run_continues_after_a_kill(tmp_path, monkeypatch, capsys):
    """``bench speed --converge`` (hours on Beauty on a CPU) continues where it was killed."""
    from bench import speed
    from bench.config import compose
    from bench.data.prepared import export_recbole
    from bench.data.sources import prepare

    cfg = compose(tiny_overrides(tmp_path))
    prepared = prepare(cfg["dataset"], Path(cfg["paths"]["cache"]))
    data_path = export_recbole(prepared, Path(cfg["paths"]["cache"]) / "recbole")
    real, calls = speed._TimedTrainer._valid_epoch, []

    def killed_in_epoch_3(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(speed._TimedTrainer, "_valid_epoch", killed_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        speed.bare_recbole(cfg, data_path, prepared.name, 4, 4, anomaly=False, validate=True)
    monkeypatch.setattr(speed._TimedTrainer, "_valid_epoch", real)
    res = speed.bare_recbole(cfg, data_path, prepared.name, 4, 4, anomaly=False, validate=True)
    assert "resume: continuing from" in capsys.readouterr().err
    assert len(res["epoch_seconds"]) == 4 and res["valid_ndcg10"] > 0
    assert not list((tmp_path / "cache" / "speed").glob("*.resume.pt"))


def _build_under_lock(root: str, barrier) -> tuple[float, float]:
    import bench  # noqa: F401
    from bench.encoders.cache import build_lock

    barrier.wait()
    with build_lock(Path(root), "same-key"):
        start = time.monotonic()
        time.sleep(0.5)
        return start, time.monotonic()


def test_jobs_missing_the_same_entry_build_it_one_at_a_time(tmp_path):
    """The second job waits for the first (then finds a cache hit) instead of fine-tuning the
    same LLM twice."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Manager().Barrier(3)
    with ctx.Pool(3) as pool:
        spans = sorted(pool.starmap(_build_under_lock, [(str(tmp_path), barrier)] * 3))
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # no two builds overlap


def test_a_method_can_compose_configs_inside_a_running_sweep_job():
    """LLMEmb's teacher and PAD's phases compose configs from inside a Hydra job."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from bench.adapters import CONFIG_DIR
    from bench.config import compose

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        running = GlobalHydra.instance().hydra
        assert compose(["method=id"])["method"]["name"] == "id"
        assert GlobalHydra.instance().hydra is running  # the job's Hydra is put back
