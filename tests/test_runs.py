"""End-to-end runs on the tiny synthetic set: records, sidecars, RecBole agreement, determinism."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.trainer import Trainer

from bench.config import compose
from bench.data.sources import unpinned
from bench.errors import BenchError
from bench.evaluation.metrics import grouped_metrics, metric_columns
from bench.evaluation.ranking import rank_targets
from bench.records import read_record, sidecar_path
from bench.runner import execute
from bench.training import Seq2SeqTrainLoader

from conftest import tiny_overrides

BACKBONES = ["sasrec", "bert4rec", "gru4rec"]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_sidecar_metrics_equal_recboles_own_evaluator(trained, backbone):
    art = trained(backbone)
    test_loader = FullSortEvalDataLoader(art.rb_config, art.splits[2], None, shuffle=False)
    recbole = Trainer(art.rb_config, art.model).evaluate(test_loader, load_best_model=False)
    ranks = art.per_user["rank"].to_numpy()
    ours = {k: float(v.mean()) for k, v in metric_columns(ranks, [10], 10).items()}
    assert ours["HR@10"] == pytest.approx(recbole["hit@10"], abs=1e-4)
    assert ours["NDCG@10"] == pytest.approx(recbole["ndcg@10"], abs=1e-4)
    assert art.record["metrics"]["test"]["overall"]["NDCG@10"] == pytest.approx(ours["NDCG@10"])


@pytest.mark.parametrize("backbone", BACKBONES)
def test_metrics_do_not_depend_on_eval_batch_size(trained, backbone):
    art = trained(backbone)
    ranks = [rank_targets(art.model, art.test, bs) for bs in (1, 7, 256)]
    assert np.array_equal(ranks[0], ranks[1]) and np.array_equal(ranks[0], ranks[2])
    assert np.array_equal(ranks[0], art.per_user["rank"].to_numpy())


def test_record_and_sidecar_contents(trained):
    art = trained("sasrec")
    rec, side = art.record, art.per_user
    assert set(side.columns) >= {"user", "target", "rank", "target_train_pop", "train_len"}
    test = rec["metrics"]["test"]
    assert test["head_item"]["n"] + test["tail_item"]["n"] == test["overall"]["n"] == len(side)
    assert test["long_user"]["n"] + test["short_user"]["n"] == len(side)
    regrouped = grouped_metrics(side["rank"].to_numpy(),
                                {"tail_item": ~side["head_item"].to_numpy()}, [5, 10, 20], 10)
    assert regrouped["tail_item"] == test["tail_item"]
    assert len(rec["protocol"]["fingerprint"]) == 16 and len(rec["dataset"]["fingerprint"]) == 16
    assert rec["protocol"]["training"] == "seq2seq"
    assert rec["provenance"]["device"].startswith("cpu")
    assert rec["provenance"]["packages"]["recbole"] == "1.2.1"
    # SASRec's dropouts (input, 3 per block x 2 blocks) and GELUs (1 per block) were swapped
    assert rec["provenance"]["layer_swaps"] == {"dropout": 7, "gelu": 2}
    assert not any(type(m) is torch.nn.Dropout for m in art.model.modules())
    # head items are the top 20% of items by training popularity
    pop = side.groupby("target")["target_train_pop"].first()
    head = side.groupby("target")["head_item"].first()
    assert pop[head].min() >= pop[~head].max()


def test_paper_protocol_uses_shared_sampled_candidates(trained):
    art = trained("sasrec", "paper")
    assert (art.per_user["n_candidates"] == 101).all()
    assert art.per_user["rank"].between(1, 101).all()
    assert art.test.negatives.shape == (len(art.test), 100)
    assert art.record["metrics"]["test"]["overall"].keys() == {"n", "HR@10", "NDCG@10", "MRR@10"}
    thresholds = art.record["dataset"]["paper_thresholds"]
    side = art.per_user
    assert ((side["target_full_pop"] >= thresholds["item"]) == side["head_item"]).all()


def test_constant_scorer_gets_the_worst_metrics(trained):
    art = trained("sasrec")
    model = copy.deepcopy(art.model)
    model.full_sort_predict = lambda inter: torch.zeros(inter[model.ITEM_SEQ].size(0), model.n_items)
    ranks = rank_targets(model, art.test, 64)
    assert (ranks == model.n_items - 1).all()  # every other item ties -> last place
    metrics = grouped_metrics(ranks, {}, [5, 10, 20], 10)["overall"]
    assert all(metrics[k] == 0.0 for k in metrics if k != "n")


def _deterministic_part(record):
    rec = copy.deepcopy(record)
    for key in ("efficiency", "provenance", "sidecar"):
        rec.pop(key, None)
    assert "paths" not in rec["config"]  # machine paths never reach a (committable) record
    return rec


def test_same_seed_gives_identical_records(tmp_path):
    outs = [execute(compose(tiny_overrides(tmp_path / name, "train.epochs=2")), force=True)
            for name in ("a", "b")]
    recs = [read_record(o.record_path) for o in outs]
    assert _deterministic_part(recs[0]) == _deterministic_part(recs[1])
    sides = [pd.read_parquet(sidecar_path(o.record_path)) for o in outs]
    pd.testing.assert_frame_equal(sides[0], sides[1])
    other = execute(compose(tiny_overrides(tmp_path / "c", "train.epochs=2", "seed=1")))
    assert read_record(other.record_path)["metrics"] != recs[0]["metrics"]


def test_existing_record_is_skipped_unless_forced(tmp_path):
    cfg = compose(tiny_overrides(tmp_path, "train.epochs=1"))
    first = execute(cfg)
    mtime = first.record_path.stat().st_mtime_ns
    assert execute(cfg).skipped and first.record_path.stat().st_mtime_ns == mtime
    assert not execute(cfg, force=True).skipped
    assert not execute(compose(tiny_overrides(tmp_path, "train.epochs=1", "force=true"))).skipped
    # the same run key on other data (another generator seed) is not silently reused
    other = compose(tiny_overrides(tmp_path, "train.epochs=1", "dataset.generator_seed=7"))
    with pytest.raises(BenchError, match=r"was made on dataset fingerprint \w+, but "
                                         r"'synthetic-tiny' is now \w+; rerun with --force"):
        execute(other)
    changed = compose(tiny_overrides(tmp_path, "train.epochs=1", "train.learning_rate=0.002"))
    with pytest.raises(BenchError, match=r"another configuration \(train.learning_rate: 0.001 -> "
                                         r"0.002\); name the variant"):
        execute(changed)


def test_text_methods_refuse_id_only_datasets(tmp_path, monkeypatch):
    import bench.runner as runner
    from bench.adapters import load_adapter

    inter = tmp_path / "inter.txt"
    inter.write_text("".join(f"{u} {i}\n" for u in range(1, 6) for i in range(1, 5)))
    text_method = type("TextMethod", (type(load_adapter("id")),), {"uses_text": True})()
    monkeypatch.setattr(runner, "load_adapter", lambda name: text_method)
    cfg = compose(tiny_overrides(tmp_path, "dataset=yelp-llmesr", f"dataset.inter={inter}")[1:])
    with pytest.raises(BenchError, match="dataset 'yelp-llmesr' is ID-only"):
        execute(cfg)


def test_losses_follow_the_protocol(trained):
    """full: cross-entropy over all items; paper: BCE with one sampled negative per position."""
    import torch.nn.functional as F

    full, paper = trained("sasrec", "full").model, trained("sasrec", "paper").model
    assert (full.bench_loss, paper.bench_loss) == ("ce", "bce")
    batch = next(iter(Seq2SeqTrainLoader(trained("sasrec", "paper").splits[0], 16, "causal", seed=0)))
    paper.eval()  # no dropout: the two computations below see the same hidden states
    fixed = torch.ones(int((batch["target_item_list"] > 0).sum()), dtype=torch.long)
    paper._sample_negatives = lambda inter, rows: fixed
    # trained with train.loss_reduction=constant: the sum over positions / the expected count
    # in a full training batch; here the batch's own count, which gives the mean
    assert paper.position_norm and full.position_norm
    norms = paper.position_norm, full.position_norm
    paper.position_norm = full.position_norm = float(len(fixed))
    hidden, targets, _ = paper.supervised_positions(batch)
    table = paper.item_embedding.weight
    pos, neg = (hidden * table[targets]).sum(-1), (hidden * table[fixed]).sum(-1)
    expected = (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
                + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg)))
    assert paper.calculate_loss(batch).item() == pytest.approx(expected.item(), rel=1e-6)
    full.eval()
    logits = full.sequence_output(batch["item_id_list"])[batch["target_item_list"] > 0] \
        @ full.item_embedding.weight[: full.n_items].T
    logits[:, 0] = float("-inf")
    ce = F.cross_entropy(logits, batch["target_item_list"][batch["target_item_list"] > 0])
    assert full.calculate_loss(batch).item() == pytest.approx(ce.item(), rel=1e-5)
    paper.position_norm, full.position_norm = norms


def test_published_records_do_not_mark_the_code_dirty(tmp_path):
    """Runs publishing into leaderboards/ change tracked files there; only code counts."""
    import subprocess

    from bench.records import _git_commit

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "leaderboards").mkdir()
    (tmp_path / "leaderboards" / "r.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    (tmp_path / "leaderboards" / "r.json").write_text('{"a": 1}')
    assert _git_commit(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert _git_commit(tmp_path)["dirty"] is True


def test_records_spell_data_files_relative_to_the_data_folder():
    """A dataset read from /some/machine/data is recorded as ${paths.data}/..., so records
    made on two machines can share a leaderboard page."""
    from bench.runner import portable_config

    cfg = {"paths": {"data": "/mnt/x/data/", "runs": "runs", "cache": "/mnt/x/data/cache"},
           "dataset": {"sequences": "/mnt/x/data/beauty/seq.txt", "name": "beauty",
                       "text_fields": ["title"]},
           "encoder": {"path": "/models/llama"}, "seed": 0}
    out = portable_config(cfg)
    assert "paths" not in out
    assert out["dataset"] == {"sequences": "${paths.data}/beauty/seq.txt", "name": "beauty",
                              "text_fields": ["title"]}
    assert out["encoder"] == {"path": "/models/llama"}  # a user's model stays where it is named
    assert portable_config({**cfg, "x": "/mnt/x/data/cache/f"})["x"] == "${paths.cache}/f"


def test_the_fingerprint_pin_does_not_make_a_resume_checkpoint_stale(tmp_path):
    """Checkpoints of runs killed before configs pinned their data must still resume; a real
    setting of the dataset still makes them stale."""
    from bench.runner import resume_identity

    cfg = compose(tiny_overrides(tmp_path))
    before = resume_identity({**cfg, "dataset": unpinned(cfg["dataset"])}, "abc")
    assert resume_identity(cfg, "abc") == before
    assert resume_identity({**cfg, "dataset": {**cfg["dataset"], "fingerprint": "x"}},
                           "abc") == before
    assert resume_identity({**cfg, "dataset": {**cfg["dataset"], "min_user_len": 4}},
                           "abc") != before
    assert resume_identity(cfg, "abd") != before
