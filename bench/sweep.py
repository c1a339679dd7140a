"""Sweeps on Hydra's launchers: each (dataset, protocol, method, backbone, seed) a Hydra job.

``python -m bench run ... --launcher joblib`` (local processes), ``submitit_local`` (local
processes through submitit, the way a cluster runs them) or ``slurm`` (``configs/hydra/launcher/
slurm.yaml``) builds the multirun overrides and calls this module's Hydra app; Hydra users can
call it directly: ``python -m bench.sweep --multirun method=id,llmemb seed=0,1
hydra/launcher=joblib``. Scheduling, retries and cluster submission are the launcher's.

Each job runs ``bench.runner.execute`` on its composed config, so it writes its own record
(skipped when it exists, resumed from its epoch checkpoint when killed); jobs share only the
content-addressed caches, which are safe for concurrent writers. A job never raises: it writes
``outcome.json`` (done, skipped, failed with the one-line error, or crashed) into its Hydra
output directory, where the launcher's logs are too, and the caller reports every job.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

import bench  # noqa: F401  (RecBole compatibility fixes before anything imports RecBole)
from bench.adapters import CONFIG_DIR, _load_entry_points, include
from bench.errors import BenchError
from bench.records import RunKey

LAUNCHERS = ("basic", "joblib", "submitit_local", "slurm")
OUTCOME = "outcome.json"
INCLUDE_ENV = "BENCH_INCLUDE"  # adapter files (--include) every job process registers

# A job process composes its config before calling ``run_job``: out-of-tree adapters must be
# registered when this module is imported (unpickling the job imports it).
_load_entry_points()
for _path in filter(None, os.environ.get(INCLUDE_ENV, "").split(os.pathsep)):
    include(_path)


def _outcome(cfg: DictConfig) -> dict[str, Any]:
    from bench.config import validate
    from bench.runner import execute

    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
        validate(plain)
        outcome = execute(plain)  # the config's force=true (--force) reruns existing records
        return {"status": "skipped" if outcome.skipped else "done",
                "record": str(outcome.record_path)}
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return {"status": "failed", "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported per job; the other jobs go on
        traceback.print_exc()
        return {"status": "crashed", "error": f"{type(exc).__name__}: {exc}"}


def _limit_threads() -> None:
    """A job given ``hydra.launcher.cpus_per_task`` (submitit, SLURM) uses that many threads,
    not every core of the node it shares (joblib's workers are limited by joblib itself).
    Records name the thread count with the device."""
    cpus = HydraConfig.get().launcher.get("cpus_per_task")
    if cpus:
        import torch

        torch.set_num_threads(int(cpus))


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def run_job(cfg: DictConfig) -> dict[str, Any]:
    _limit_threads()
    result = _outcome(cfg)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    result["overrides"] = list(HydraConfig.get().overrides.task)
    from bench.records import write_text_atomic

    write_text_atomic(out_dir / OUTCOME, json.dumps(result, indent=2) + "\n")
    return result


def outcomes(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job's outcome under a sweep directory, in job order."""
    found = []
    for path in Path(sweep_dir).glob(f"*/{OUTCOME}"):
        found.append({**json.loads(path.read_text()), "job_dir": str(path.parent)})
    return sorted(found, key=lambda o: int(Path(o["job_dir"]).name))


def launch(axes: dict[str, list], overrides: list[str], launcher: str, force: bool,
           runs_dir: Path, includes: list[str]) -> int:
    """Run the grid ``axes`` (Hydra sweeps each comma list) on ``launcher``; print every
    job's outcome. Exit code: 0 all done or skipped, 2 a job failed on bad input, 1 a job
    crashed or left no outcome (killed)."""
    from hydra.core.global_hydra import GlobalHydra

    if launcher not in LAUNCHERS:
        from bench.errors import unknown_name

        raise unknown_name("launcher", launcher, LAUNCHERS)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    sweep_dir = Path(runs_dir).resolve() / ".sweeps" / f"{stamp}-{os.getpid()}"
    argv = [sys.argv[0], "--multirun",
            *(f"{k}={','.join(map(str, v))}" for k, v in axes.items()), *overrides,
            f"hydra.sweep.dir={sweep_dir}", *(["force=true"] if force else [])]
    if launcher != "basic":
        argv.append(f"hydra/launcher={launcher}")
    env_before, argv_before = os.environ.get(INCLUDE_ENV), sys.argv
    if includes:
        os.environ[INCLUDE_ENV] = os.pathsep.join(str(Path(p).resolve()) for p in includes)
    n_jobs = math.prod(len(v) for v in axes.values())
    print(f"sweep: {n_jobs} jobs on {launcher}; job "
          f"outcomes and logs under {sweep_dir}", flush=True)
    GlobalHydra.instance().clear()
    sys.argv = argv
    try:
        run_job()
    except SystemExit as exc:  # Hydra reports its own errors (e.g. a bad launcher setting)
        if exc.code:
            raise BenchError(f"the {launcher} sweep did not start or stopped early (Hydra exit "
                             f"code {exc.code}, see above); logs under {sweep_dir}") from None
    finally:
        sys.argv = argv_before
        GlobalHydra.instance().clear()
        if env_before is None:
            os.environ.pop(INCLUDE_ENV, None)
        else:
            os.environ[INCLUDE_ENV] = env_before
    return report(sweep_dir, n_jobs)


def report(sweep_dir: Path, n_jobs: int) -> int:
    """Print the finished runs' table and one line per job that did not finish."""
    from bench.cli import summary_table
    from bench.records import read_record
    from bench.runner import Outcome

    found = outcomes(sweep_dir)
    finished = [o for o in found if o["status"] in ("done", "skipped")]
    if finished:
        print(summary_table([Outcome(RunKey(**rec["key"]), Path(o["record"]),
                                     o["status"] == "skipped", rec)
                             for o in finished for rec in [read_record(Path(o["record"]))]]))
    statuses = {o["status"] for o in found}
    for o in found:
        if o not in finished:
            print(f"{o['status']}: job {Path(o['job_dir']).name} ({' '.join(o['overrides'])}): "
                  f"{o['error']}", file=sys.stderr)
    missing = n_jobs - len(found)
    if missing:
        print(f"{missing} of {n_jobs} jobs left no outcome (killed or still queued); see the "
              f"launcher's logs under {sweep_dir}; rerunning the same command finishes them",
              file=sys.stderr)
    if missing or "crashed" in statuses:
        return 1
    return 2 if "failed" in statuses else 0


if __name__ == "__main__":
    run_job()
