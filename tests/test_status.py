"""``python -m bench status``: done runs from records, unfinished ones from their checkpoints."""
from __future__ import annotations

import json
import os
import time

import pytest
import torch

from bench.cli import main
from bench.errors import BenchError
from bench.status import scan


def _record(path, epochs=30, valid=0.12, test=0.1):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "training": {"epochs_run": epochs},
        "metrics": {"valid": {"NDCG@10": valid, "best_epoch": 9},
                    "test": {"overall": {"NDCG@10": test}}},
        "efficiency": {"train_seconds": 4000.0}}))


def _checkpoint(path, epoch=4, age=0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": 1, "identity": "x", "epoch": epoch, "best_valid_score": 0.2,
                "best_epoch": 3, "epoch_seconds": [10.0] * (epoch + 1),
                "valid_seconds": [1.0] * (epoch + 1), "train_seconds": 55.0,
                "model": {"w": torch.zeros(3)}}, path)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))


def test_records_are_done_and_checkpoints_resumable_or_running(tmp_path):
    run = tmp_path / "synthetic" / "full"
    _record(run / "id" / "sasrec" / "seed-0.json")
    _checkpoint(run / "id" / "sasrec" / "seed-0.resume.pt")  # leftover beside a record
    _checkpoint(run / "morec" / "sasrec" / "seed-1.resume.pt", age=3600)
    _checkpoint(run / "morec" / "sasrec" / "seed-2.resume.pt", age=5)
    (run / "pad" / "sasrec").mkdir(parents=True)
    (run / "pad" / "sasrec" / "seed-0.resume.pt").write_bytes(b"not a checkpoint")
    states = {s.key[2:]: s for s in scan(tmp_path)}
    assert set(states) == {("id", "sasrec", 0), ("morec", "sasrec", 1), ("morec", "sasrec", 2),
                           ("pad", "sasrec", 0)}
    done = states[("id", "sasrec", 0)]
    assert (done.state, done.epochs, done.test_ndcg10) == ("done", 30, 0.1)
    paused = states[("morec", "sasrec", 1)]
    assert (paused.state, paused.epochs, paused.best_valid, paused.best_epoch) == \
        ("resumable", 5, 0.2, 3)
    assert states[("morec", "sasrec", 2)].state == "running"  # written 5 s ago, 11 s epochs
    assert states[("pad", "sasrec", 0)].state == "unreadable"


def test_the_command_prints_one_row_per_run_and_a_count(tmp_path, capsys):
    _record(tmp_path / "beauty" / "full" / "id" / "sasrec" / "seed-2.json")
    _checkpoint(tmp_path / "beauty" / "full" / "llmemb" / "sasrec" / "seed-0.resume.pt",
                age=3600)
    assert main(["status", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| beauty" in out and "1 h 07 min" in out  # the record's 4,000 s of training
    assert "1 done, 1 resumable" in out
    assert "0.1200 (epoch 10)" in out and "0.2000 (epoch 4)" in out  # best epochs, from 1


def test_a_missing_folder_or_a_broken_record_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(BenchError, match="not found"):
        scan(tmp_path / "nowhere")
    bad = tmp_path / "synthetic" / "full" / "id" / "sasrec" / "seed-0.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{truncated")
    assert main(["status", "--runs", str(tmp_path)]) == 2
    assert "seed-0.json is unreadable" in capsys.readouterr().err


def _with_patience(path, epoch, cur_step, stopping_step=20, max_epochs=200, stopped=False):
    state = torch.load(path, weights_only=True)
    state.update(cur_step=cur_step, stopping_step=stopping_step, max_epochs=max_epochs,
                 stopped=stopped)
    torch.save(state, path)


def test_unfinished_runs_say_how_many_epochs_can_be_left(tmp_path, capsys):
    run = tmp_path / "synthetic" / "full"
    paths = {name: run / name / "sasrec" / "seed-0.resume.pt"
             for name in ("patience", "cap", "stopped", "old")}
    for path in paths.values():
        _checkpoint(path, epoch=4, age=3600)  # 5 epochs of 10 s training + 1 s validation
    _with_patience(paths["patience"], 4, cur_step=3)  # 20 - 3 + 1 epochs without improving
    _with_patience(paths["cap"], 4, cur_step=0, max_epochs=7)  # the cap comes first
    _with_patience(paths["stopped"], 4, cur_step=21, stopped=True)
    states = {s.key[2]: s for s in scan(tmp_path)}
    assert (states["patience"].left_epochs, states["patience"].left_seconds) == (18, 18 * 11.0)
    assert states["cap"].left_epochs == 2 and states["stopped"].left_epochs == 0
    assert states["old"].left_epochs is None  # written before checkpoints recorded patience
    assert main(["status", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| 18 epochs, 3 min" in out and "| 2 epochs, 22 s" in out


def test_checkpoints_record_patience_and_the_epoch_cap(tmp_path):
    from types import SimpleNamespace

    from bench.checkpoint import EpochCheckpoint

    model = torch.nn.Linear(2, 2)
    trainer = SimpleNamespace(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), cur_step=2,
        stopping_step=20, epochs=200, best_state=None, best_epoch=1, best_valid_score=0.3,
        epoch_seconds=[1.0], valid_seconds=[0.5], valid_history=[0.3], resumed_at=[])
    path = tmp_path / "seed-0.resume.pt"
    EpochCheckpoint(path, "x").save(trainer, SimpleNamespace(epoch=1), 0, 1.5)
    state = torch.load(path, weights_only=True)
    assert (state["stopping_step"], state["max_epochs"], state["cur_step"]) == (20, 200, 2)


def test_a_resumed_run_records_which_hardware_each_stretch_ran_on(tmp_path):
    """A run resumed elsewhere times its epochs on two devices; the checkpoint carries each
    stretch's hardware into the record. A checkpoint older than the label gives None."""
    from types import SimpleNamespace

    from bench.checkpoint import EpochCheckpoint
    from bench.records import device_name
    from bench.runner import training_segments

    def trainer():
        model = torch.nn.Linear(2, 2)
        return SimpleNamespace(
            model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), cur_step=0,
            stopping_step=20, epochs=200, best_state=None, best_epoch=2, best_valid_score=0.3,
            epoch_seconds=[1.0] * 3, valid_seconds=[0.5] * 3, valid_history=[0.3] * 3,
            resumed_at=[], segment_devices=[])

    here = device_name(torch.device("cpu"))
    path = tmp_path / "seed-0.resume.pt"
    EpochCheckpoint(path, "x").save(trainer(), SimpleNamespace(epoch=3), 2, 3.0)
    state = torch.load(path, weights_only=True)
    assert state["segment_devices"] == [here]
    state["segment_devices"] = ["cpu: Elsewhere (1 threads)"]
    torch.save(state, path)
    resumed = trainer()
    EpochCheckpoint(path, "x").restore(resumed, SimpleNamespace(epoch=0))
    assert training_segments(resumed, torch.device("cpu")) == [
        {"from_epoch": 0, "device": "cpu: Elsewhere (1 threads)"},
        {"from_epoch": 3, "device": here}]

    del state["segment_devices"]  # a checkpoint written before the label existed
    torch.save(state, path)
    old = trainer()
    EpochCheckpoint(path, "x").restore(old, SimpleNamespace(epoch=0))
    assert [s["device"] for s in training_segments(old, torch.device("cpu"))] == [None, here]
    assert training_segments(trainer(), torch.device("cpu")) == [{"from_epoch": 0,
                                                                  "device": here}]


def test_one_off_stages_in_progress_are_listed_from_the_cache(tmp_path, capsys):
    """A PAD or LLMEmb run first trains its teacher / phases under the cache, where the runs
    folder shows nothing: those checkpoints get their own table, named by what they train."""
    from types import SimpleNamespace

    from bench.checkpoint import EpochCheckpoint
    from bench.status import scan_stages

    model = torch.nn.Linear(2, 2)
    trainer = SimpleNamespace(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), cur_step=0,
        stopping_step=20, epochs=200, best_state=None, best_epoch=6, best_valid_score=0.05,
        epoch_seconds=[10.0] * 7, valid_seconds=[1.0] * 7, valid_history=[0.05] * 7,
        resumed_at=[])
    cache = tmp_path / "cache"
    EpochCheckpoint(cache / "id-models" / "sasrec" / "abc.resume.pt", "abc",
                    about="PAD's phase 1: ID-only sasrec, beauty/full, seed 0"
                    ).save(trainer, SimpleNamespace(epoch=7), 6, 70.0)
    scft = cache / "llmemb" / "scft" / "scft-1.resume.pt"
    scft.parent.mkdir(parents=True)
    torch.save({"step": 75, "steps": 200, "every": 25, "seconds": 300.0,
                "about": "LLMEmb's SCFT: minilm, beauty", "lora": {}}, scft)
    stamp = time.time() - 3600
    os.utime(scft, (stamp, stamp))
    (tmp_path / "runs").mkdir()
    stages = {s.key[0]: s for s in scan_stages(cache)}
    teacher = stages["id-models/sasrec/abc.resume.pt"]
    assert (teacher.state, teacher.epochs, teacher.best_epoch) == ("running", 7, 6)
    assert teacher.left_epochs == 20 - 0 + 1
    fine_tune = stages["llmemb/scft/scft-1.resume.pt"]
    assert (fine_tune.state, fine_tune.epochs, fine_tune.left_epochs) == ("resumable", 75, 125)
    assert fine_tune.left_seconds == 125 * 4.0
    assert scan_stages(tmp_path / "no-cache") == []
    assert main(["status", "--runs", str(tmp_path / "runs"), "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "no runs under" in out
    assert "| PAD's phase 1: ID-only sasrec, beauty/full, seed 0 | running" in out
    assert "| 75 steps | –" in out and "| 125 steps, 8 min" in out
    # a first run still training its teacher has written no runs folder yet: the stages show,
    # not a "runs folder not found" error (that stays the answer when nothing is under way)
    assert main(["status", "--runs", str(tmp_path / "none-yet"), "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "no runs folder" in out and "| PAD's phase 1: ID-only sasrec" in out
    assert main(["status", "--runs", str(tmp_path / "none-yet"),
                 "--cache", str(tmp_path / "x")]) == 2
    assert "none-yet not found" in capsys.readouterr().err


def test_a_checkpoint_written_during_the_scan_is_zero_seconds_old(tmp_path, capsys):
    """The scan's clock is read first; a running job may rewrite its checkpoint just after."""
    _checkpoint(tmp_path / "beauty" / "full" / "llmemb" / "sasrec" / "seed-0.resume.pt",
                age=-5)
    assert main(["status", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| 0 s ago" in out and "-5 s" not in out


def test_a_run_that_finishes_during_the_scan_is_done_not_a_crash(tmp_path, capsys, monkeypatch):
    """The runner writes the record, then removes the checkpoint; a scan that listed the
    checkpoint first finds it gone when it reads it (this crashed `bench status` once)."""
    run = tmp_path / "runs" / "beauty" / "full" / "id" / "gru4rec"
    _checkpoint(run / "seed-0.resume.pt")
    stage = tmp_path / "cache" / "id-models" / "sasrec" / "abc.resume.pt"
    _checkpoint(stage)
    real_load = torch.load

    def finish_first(path, *args, **kwargs):  # the run ends just before the read
        if str(path).endswith("seed-0.resume.pt"):
            _record(run / "seed-0.json", epochs=51, test=0.034)
        os.remove(path)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", finish_first)
    (done,) = scan(tmp_path / "runs")
    assert (done.state, done.epochs, done.test_ndcg10) == ("done", 51, 0.034)
    _checkpoint(run.parent / "bert4rec" / "seed-0.resume.pt")  # removed, no record (yet)
    assert [s.key[3] for s in scan(tmp_path / "runs")] == ["gru4rec"]
    _checkpoint(stage)
    assert main(["status", "--runs", str(tmp_path / "runs"),
                 "--cache", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr()
    assert "unreadable" not in out.err and "abc" not in out.out and "| done" in out.out
