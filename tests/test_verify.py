"""``python -m bench verify``: a record's first epochs, replayed from its own config, trace its
curve; a record whose curve the code does not trace is reported, with exit code 1."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main
from bench.config import compose
from bench.errors import BenchError
from bench.runner import execute
from bench.verify import runnable_config

from conftest import tiny_overrides


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A tiny ID-only SASRec record (3 epochs) and the overrides that locate its data."""
    tmp = tmp_path_factory.mktemp("verify")
    overrides = tiny_overrides(tmp, "train.epochs=3", "train.patience=3")
    out = execute(compose(overrides))
    local = [o for o in overrides if o.startswith("paths.")] + ["show_progress=false"]
    return out.record_path, local


def test_a_fresh_record_replays_exactly(made, capsys):
    path, local = made
    cache = path.parents[5] / "cache"
    cached = sorted(cache.rglob("*"))
    assert any(p.name == "id-models" for p in cached)  # the run cached its trained model
    assert main(["verify", str(path), "--epochs", "2", *local]) == 0
    # a 2-epoch model is never cached as the trained ID model other methods look up
    assert sorted(cache.rglob("*")) == cached
    out = capsys.readouterr().out
    assert "reproduced exactly: 2 of 2 epochs" in out and "one-off stages: none" in out
    assert "layers: bench.fast_layers, as the record's run ({'dropout': " in out
    assert len(list(path.parent.glob("seed-*.json"))) == 1  # nothing written beside it


def test_a_curve_the_code_does_not_trace_is_not_reproduced(made, tmp_path, capsys):
    path, local = made
    record = json.loads(path.read_text())
    record["training"]["valid_ndcg10_per_epoch"][1] += 0.01  # epoch 2 was "better"
    record["provenance"]["layer_swaps"] = {"dropout": 99}
    forged = tmp_path / "seed-0.json"
    forged.write_text(json.dumps(record))
    assert main(["verify", str(forged), "--epochs", "2", *local]) == 1
    out = capsys.readouterr().out
    assert "NOT reproduced: epoch 2 differs by 1.00e-02" in out
    assert "but {'dropout': 99} in the record's run (a difference may come from that)" in out
    # a wide enough tolerance accepts it, and says the curve was not bit for bit
    assert main(["verify", str(forged), "--epochs", "2", "--tolerance", "0.02", *local]) == 0
    assert "reproduced within 0.02" in capsys.readouterr().out


def test_a_record_from_before_fast_layers_replays_with_torch_layers(tmp_path, monkeypatch, capsys):
    """Records without ``provenance.layer_swaps`` trained with torch's dropout, whose masks come
    from another random stream: replayed with fast layers they would not match."""
    import bench.runner

    monkeypatch.setattr(bench.runner, "accelerate", lambda model: {})  # the code before them
    old = execute(compose(tiny_overrides(tmp_path, "train.epochs=2"))).record_path
    monkeypatch.undo()
    record = json.loads(old.read_text())
    local = [f"paths.cache={tmp_path / 'cache'}", "show_progress=false"]
    assert main(["verify", str(old), *local]) == 1  # as if made with fast layers: it was not
    del record["provenance"]["layer_swaps"]  # as records made before them are
    old.write_text(json.dumps(record))
    assert main(["verify", str(old), *local]) == 0
    out = capsys.readouterr().out
    assert "reproduced exactly: 2 of 2" in out and "predates bench.fast_layers" in out


def test_bad_input_is_one_line_and_exit_2(made, tmp_path, capsys):
    path, local = made
    assert main(["verify", str(path), "train.learning_rate=0.1", *local]) == 2
    assert "cannot be set; only paths.*, device and show_progress" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert main(["verify", str(broken), *local]) == 2
    assert f"run record {broken} is unreadable" in capsys.readouterr().err
    other_data = json.loads(path.read_text())
    other_data["dataset"]["fingerprint"] = "0" * 16
    moved = tmp_path / "other.json"
    moved.write_text(json.dumps(other_data))
    assert main(["verify", str(moved), *local]) == 2
    assert "different data, nothing to compare" in capsys.readouterr().err


def test_record_paths_resolve_against_this_machine():
    cfg = runnable_config({"dataset": {"path": "${paths.data}/beauty/items.csv"}, "seed": 0},
                          {"data": "/here/data/", "runs": "r"})
    assert cfg["dataset"]["path"] == "/here/data/beauty/items.csv"
    assert cfg["paths"] == {"data": "/here/data/", "runs": "r"}
    with pytest.raises(BenchError, match="paths.models=DIR"):
        runnable_config({"encoder": {"path": "${paths.models}/llama"}}, {"data": "d"})


def test_several_records_are_summarised_and_one_failure_fails_all(made, tmp_path, capsys):
    path, local = made
    record = json.loads(path.read_text())
    record["training"]["valid_ndcg10_per_epoch"][0] -= 0.001
    forged = tmp_path / "seed-0.json"
    forged.write_text(json.dumps(record))
    assert main(["verify", str(path), str(forged), "--epochs", "1", *local]) == 1
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| /")]
    assert rows == [[str(path), "1", "0.00e+00", "exact"], [str(forged), "1", "1.00e-03", "NOT"]]


REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("record", [
    "synthetic/full/id/sasrec/seed-0.json",  # made before bench.fast_layers: torch's layers
    "synthetic/paper/id/sasrec/seed-1.json",  # made with them
])
def test_committed_leaderboard_records_still_replay(record, tmp_path, capsys):
    """A guard on the published numbers: a change that alters what training computes makes
    the committed records unreproducible by the code beside them. If this fails on purpose,
    rerun and republish the affected records (and say so), or make the change opt-in."""
    path = REPO / "leaderboards" / "records" / record
    code = main(["verify", str(path), "--epochs", "1", f"paths.cache={tmp_path / 'cache'}",
                 "show_progress=false"])
    assert code == 0, capsys.readouterr().out
