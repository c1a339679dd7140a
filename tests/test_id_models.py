"""The shared ID-model cache: an `id` run's trained backbone is LLMEmb's teacher and PAD's
phase 1 when their inputs agree, so it is trained once (bench/id_models.py)."""
from __future__ import annotations

import copy
import fcntl
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides

import bench.runner
from bench.config import compose
from bench.data.sources import prepare
from bench.encoders.cache import DirCache, cache_key
from bench.id_models import FOLDER, id_model_parts, trained_id_model
from bench.records import read_record
from bench.runner import execute, resolve_device


def _filed(cache: Path) -> list[Path]:
    return sorted((cache / FOLDER / "sasrec").glob("*/model.pt"))


def test_an_id_run_files_the_exact_model_a_fresh_training_gives(tmp_path, monkeypatch):
    cfg = compose(tiny_overrides(tmp_path / "a", "train.epochs=2"))
    outcome = execute(cfg)
    (filed,) = _filed(tmp_path / "a" / "cache")
    key = cache_key(**id_model_parts(cfg, prepare(cfg["dataset"], tmp_path / "a" / "cache")
                                     .fingerprint))
    assert filed.parent.name == key
    # what a run that reuses it reports of its training (one_off "built"): this run's figures
    built = DirCache(tmp_path / "a" / "cache" / FOLDER).figures("sasrec", key)
    record = read_record(outcome.record_path)
    assert built["epochs"] == record["training"]["epochs_run"] == 2
    assert built["valid_ndcg10"] == record["metrics"]["valid"]["NDCG@10"] > 0
    # the key names inputs, not code: the entry says which code trained it
    assert built["git"] == record["provenance"]["git"] and "commit" in built["git"]
    # the same inputs trained from scratch elsewhere (the teacher's path) give the same weights
    fresh_cfg = copy.deepcopy(cfg)
    fresh_cfg["paths"]["cache"] = str(tmp_path / "b" / "cache")
    fresh_cfg["efficiency"]["inference"] = False  # inference timing does not enter the key
    prepared = prepare(fresh_cfg["dataset"], tmp_path / "b" / "cache")
    monkeypatch.setattr("bench.checkpoint.EpochCheckpoint.remove", lambda self: None)
    state, items, info = trained_id_model(fresh_cfg, prepared, resolve_device("cpu"), "test")
    assert not info["cache_hit"] and info["key"] == key and items[0] == "[PAD]"
    assert info["git"] == record["provenance"]["git"]
    # its per-epoch checkpoint says what it trains, for `bench status` (the key says nothing)
    progress = torch.load(tmp_path / "b" / "cache" / FOLDER / "sasrec" / f"{key}.resume.pt",
                          weights_only=True)
    assert progress["about"] == "test: ID-only sasrec, synthetic-tiny/full, seed 0"
    saved = torch.load(filed, weights_only=True)["state"]
    assert saved.keys() == state.keys()
    assert all(torch.equal(saved[k], state[k]) for k in state)


def test_a_model_trained_inside_another_run_shows_a_labelled_epoch_bar(tmp_path, capsys):
    """LLMEmb's teacher trains for half an hour on Beauty before the run's own first epoch; the
    user sees whose epochs they are, not a silent wait (nor the bar of an `id` run they never
    asked for)."""
    cfg = compose(tiny_overrides(tmp_path, "train.epochs=1", "show_progress=true"))
    prepared = prepare(cfg["dataset"], tmp_path / "cache")
    trained_id_model(cfg, prepared, resolve_device("cpu"), "LLMEmb's teacher")
    err = capsys.readouterr().err
    assert "LLMEmb's teacher: ID-only sasrec, synthetic-tiny/full, seed 0" in err
    assert "1/1" in err  # the epoch bar itself, not only a heading
    quiet = compose(tiny_overrides(tmp_path / "q", "train.epochs=1"))  # show_progress=false
    trained_id_model(quiet, prepare(quiet["dataset"], tmp_path / "q" / "cache"),
                     resolve_device("cpu"), "LLMEmb's teacher")
    assert "ID-only" not in capsys.readouterr().err


@pytest.mark.slow
def test_pad_phase1_and_the_llmemb_teacher_reuse_the_id_run(tmp_path, tiny_llama_dir):
    execute(compose(tiny_overrides(tmp_path, "train.epochs=2")))
    pad = read_record(execute(compose(tiny_overrides(tmp_path, "method=pad",
                                                     "train.epochs=2"))).record_path)
    assert pad["efficiency"]["one_off"]["phase1"]["cache_hit"]
    llmemb = read_record(execute(compose(tiny_overrides(
        tmp_path, "method=llmemb", "train.epochs=2", "encoder=hf",
        f"encoder.path={tiny_llama_dir}", "method.scft_steps=2",
        "method.scft_batch_items=8"))).record_path)
    teacher = llmemb["efficiency"]["one_off"]["teacher"]
    assert teacher["cache_hit"] and teacher["seed"] == 0
    assert len(_filed(tmp_path / "cache")) == 1  # one ID model trained for all three


def test_another_seed_is_another_model(tmp_path):
    """PAD at seed 1 must not take the seed-0 `id` model: the seed is part of the key."""
    cfg = compose(tiny_overrides(tmp_path, "train.epochs=1"))
    fp = prepare(cfg["dataset"], tmp_path / "cache").fingerprint
    other = copy.deepcopy(cfg)
    other["seed"] = 1
    assert cache_key(**id_model_parts(cfg, fp)) != cache_key(**id_model_parts(other, fp))
    slower = copy.deepcopy(cfg)
    slower["train"]["learning_rate"] = 1e-4
    assert cache_key(**id_model_parts(cfg, fp)) != cache_key(**id_model_parts(slower, fp))


def test_an_id_run_trains_under_the_lock_a_teacher_waits_on(tmp_path, monkeypatch):
    """Side by side (a sweep's workers), LLMEmb's teacher must wait for the `id` run of its
    seed rather than train a copy: the run holds the very lock `trained_id_model` takes."""
    cfg = compose(tiny_overrides(tmp_path, "train.epochs=1"))
    fp = prepare(cfg["dataset"], tmp_path / "cache").fingerprint
    lock = tmp_path / "cache" / FOLDER / "sasrec" / f"{cache_key(**id_model_parts(cfg, fp))}.lock"
    held, train = [], bench.runner.train_and_test

    def probe(*args, **kwargs):  # another job trying the teacher's lock mid-training
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held.append(False)
            except BlockingIOError:
                held.append(True)
        return train(*args, **kwargs)

    monkeypatch.setattr(bench.runner, "train_and_test", probe)
    execute(cfg)
    assert held == [True]
    with open(lock, "a") as handle:  # released once the run is filed
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
