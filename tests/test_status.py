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
