"""The cold-start protocol (``protocol=cold``, bench/data/cold.py): no held-out item reaches
any training input, target or negative; the split is deterministic per ``cold_seed``; the test
users are exactly those whose last item is cold; the record and leaderboard page say so."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import tiny_overrides

from bench.adapters import _builtin_methods, load_adapter
from bench.backbones import TARGET_SEQ
from bench.config import compose
from bench.conformance import validate_record
from bench.data.cold import cold_item_set, cold_items, cold_view, hold_out
from bench.data.prepared import export_recbole
from bench.data.sources import prepare
from bench.errors import BenchError
from bench.runner import build_setup, execute, resolve_device, run_key


def _view(tmp: Path, *extra: str):
    cfg = compose(tiny_overrides(tmp, "protocol=cold", *extra))
    cache = Path(cfg["paths"]["cache"])
    source = prepare(cfg["dataset"], cache)
    return cfg, source, cold_view(source, cfg["protocol"], cache)


def _setup(tmp: Path, *extra: str):
    cfg, source, view = _view(tmp, *extra)
    data_path = export_recbole(view, Path(cfg["paths"]["cache"]) / "recbole")
    setup = build_setup(cfg, run_key(cfg), load_adapter("id"), view, data_path, tmp / "work",
                        resolve_device("cpu"))
    cold = torch.as_tensor(setup.dataset.token2id(setup.dataset.iid_field, cold_items(view)))
    return cfg, source, view, setup, cold


def test_hold_out_keeps_only_cold_last_items_and_drops_short_users():
    inter = pd.DataFrame({
        "user": ["a"] * 5 + ["b"] * 4 + ["c"] * 3,
        "item": ["w1", "c1", "w2", "w3", "c2",  # a: last item cold -> test user
                 "w1", "w2", "c1", "w3",  # b: cold item mid-sequence removed
                 "c1", "w1", "c2"],  # c: one warm item left -> dropped
        "ts": [1, 2, 3, 4, 5, 1, 2, 3, 4, 1, 2, 3]})
    out, counts = hold_out(inter, {"c1", "c2"})
    assert out.groupby("user")["item"].agg(list).to_dict() == {
        "a": ["w1", "w2", "w3", "c2"], "b": ["w1", "w2", "w3"]}
    assert counts == {"cold_interactions_removed": 3, "users_dropped": 1,
                      "interactions_dropped_with_users": 2, "test_users": 1}


def test_cold_items_are_deterministic_per_seed():
    items = pd.Series([f"i{k:03d}" for k in range(200)])
    first, again = cold_item_set(items, 0.1, 7), cold_item_set(items[::-1], 0.1, 7)
    assert first == again and len(first) == 20  # the draw does not depend on row order
    assert cold_item_set(items, 0.1, 8) != first
    with pytest.raises(BenchError, match="cold_fraction"):
        cold_item_set(items, 0.001, 0)


def test_cold_view_is_cached_deterministic_and_keeps_every_items_text(tmp_path):
    cfg, source, view = _view(tmp_path)
    _, _, again = _view(tmp_path)
    assert again.fingerprint == view.fingerprint != source.fingerprint
    assert view.items.equals(source.items) and view.text_fingerprint == source.fingerprint
    other = cold_view(source, {**cfg["protocol"], "cold_seed": 1}, Path(cfg["paths"]["cache"]))
    assert set(cold_items(other)) != set(cold_items(view))
    cold = set(cold_items(view))
    assert len(cold) == round(0.1 * len(source.items))
    last = view.interactions.groupby("user")["item"].last()
    inter = view.interactions
    earlier = inter[inter.duplicated("user", keep="last")]
    assert not earlier["item"].isin(cold).any()  # only final items may be cold
    assert last.isin(cold).sum() == view.meta["source"]["cold_start"]["test_users"] > 0


@pytest.mark.parametrize("backbone", ["sasrec", "bert4rec"])
def test_no_cold_item_in_any_training_input_or_validation(tmp_path, backbone):
    cfg, _, view, setup, cold = _setup(tmp_path, f"backbone={backbone}")
    n_batches = 0
    for batch in setup.loader:  # what the model trains on
        for field in (setup.loader.seq_field, TARGET_SEQ):
            if field in batch.interaction:
                assert not torch.isin(batch[field], cold).any(), field
        n_batches += 1
    assert n_batches > 0
    train = setup.splits[0].inter_feat
    assert not torch.isin(train[setup.dataset.iid_field], cold).any()
    for split in (setup.valid, setup.test):  # inputs are warm
        assert not torch.isin(split.item_seq, cold).any()
    assert not torch.isin(setup.valid.target, cold).any()
    assert torch.isin(setup.test.target, cold).all()
    assert len(setup.test) == view.meta["source"]["cold_start"]["test_users"]
    assert setup.stats.train_pop[cold.numpy()].sum() == 0
    # every item is a candidate: the RecBole vocabulary holds all items, cold ones too
    assert setup.dataset.item_num - 1 == len(view.items)


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_cold_rows_get_no_gradient_and_are_never_negatives(tmp_path, loss):
    _, _, _, setup, cold = _setup(tmp_path, f"protocol.loss={loss}")
    model = setup.model
    model.train()
    for batch in setup.loader:
        model.zero_grad()
        model.calculate_loss(batch).backward()
        grad = model.item_embedding.weight.grad
        assert grad[cold].abs().sum() == 0
        assert grad.abs().sum() > 0
    drawn = model.random_items((20000,), "cpu")
    assert not torch.isin(drawn, cold).any() and (drawn > 0).all()


def test_cold_run_record_and_leaderboard_page(tmp_path):
    from bench.leaderboard import build
    from bench.records import read_record, sidecar_path

    cfg = compose(tiny_overrides(tmp_path, "protocol=cold", "train.epochs=2"))
    outcome = execute(cfg)
    rec = outcome.record
    validate_record(read_record(outcome.record_path))
    info = rec["dataset"]["cold_start"]
    assert info["n_cold_items"] > 0 and "items" not in info
    assert rec["dataset"]["fingerprint"] != info["source_fingerprint"]
    assert rec["method_info"]["adapter"]["cold_start"] is None  # id: the floor
    users = pd.read_parquet(sidecar_path(outcome.record_path))
    assert len(users) == info["test_users"] == rec["metrics"]["test"]["overall"]["n"]
    assert (users["target_train_pop"] == 0).all()
    assert (users["n_candidates"] == rec["dataset"]["n_items"]).all()
    assert execute(cfg).skipped  # the cold view has a stable fingerprint
    out = tmp_path / "lb"
    build(Path(cfg["paths"]["runs"]), out, with_plots=True)
    page = (out / "synthetic-tiny-cold.md").read_text()
    assert "cold start:" in page and "a cold item's vector" in page
    assert f"HR@10 {10 / rec['dataset']['n_items']:.4f}" in page  # the random reference
    assert "head items" not in page.split("## NDCG@10")[1].split("##")[0]
    assert (out / "synthetic-tiny-cold-overall.png").exists()
    ranks = page.split("## Rank of the cold target")[1].split("##")[0]
    assert f"| {float(users['rank'].median()):.0f} †" in ranks  # one seed: its median rank


def test_text_methods_declare_how_they_score_cold_items():
    for name in sorted(_builtin_methods()):
        adapter = load_adapter(compose([f"method={name}"])["method"].get("adapter") or name)
        assert (adapter.cold_start is not None) == adapter.uses_text, name


@pytest.mark.parametrize("override, needle", [
    ("protocol.cold_fraction=1.5", "protocol.cold_fraction"),
    ("protocol.cold_seed=abc", "protocol.cold_seed"),
    ("train.weight_decay=0.01", "train.weight_decay"),
])
def test_bad_cold_settings_are_named(tmp_path, override, needle):
    with pytest.raises(BenchError, match=needle):
        compose(tiny_overrides(tmp_path, "protocol=cold", override))


def test_whole_dataset_under_cold_protocol_is_refused(tmp_path):
    cfg = compose(tiny_overrides(tmp_path, "protocol=cold"))
    cache = Path(cfg["paths"]["cache"])
    source = prepare(cfg["dataset"], cache)
    with pytest.raises(BenchError, match="cold_view"):
        build_setup(cfg, run_key(cfg), load_adapter("id"), source,
                    export_recbole(source, cache / "recbole"), tmp_path / "w",
                    resolve_device("cpu"))
