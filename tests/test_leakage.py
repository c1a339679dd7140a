"""Leakage checks: nothing a model or a method's own stages learn from may contain a user's
validation or test item, and groups are defined from the training part only (``full``).

Positions, not item ids, are compared: a user may buy the same item twice, so their test item
can legitimately occur earlier in their history."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_overrides

from bench.adapters import load_adapter
from bench.backbones import TARGET_SEQ
from bench.config import compose
from bench.data.prepared import export_recbole
from bench.data.sources import prepare
from bench.evaluation.groups import SequenceStats, group_masks
from bench.runner import build_setup, resolve_device, run_key


def _setup(tmp: Path, backbone: str):
    cfg = compose(tiny_overrides(tmp, f"backbone={backbone}"))
    cache = Path(cfg["paths"]["cache"])
    prepared = prepare(cfg["dataset"], cache)
    data_path = export_recbole(prepared, cache / "recbole")
    return cfg, build_setup(cfg, run_key(cfg), load_adapter("id"), prepared, data_path,
                            tmp / "work", resolve_device("cpu"))


@pytest.mark.parametrize("backbone", ["sasrec", "bert4rec"])
def test_training_inputs_hold_only_each_users_training_part(tmp_path, backbone):
    cfg, setup = _setup(tmp_path, backbone)
    max_len = cfg["protocol"]["max_seq_length"]
    seq_field = setup.loader.seq_field
    seen = 0
    for batch in setup.loader:  # what the model trains on
        seqs, users = batch[seq_field], batch[setup.loader.uid_field]
        targets = batch[TARGET_SEQ] if backbone == "sasrec" else None
        for row, user in enumerate(users.tolist()):
            train_part = setup.stats.user_items[user][:-2]
            window = train_part[-(max_len + 1):]
            got = seqs[row][seqs[row] > 0].numpy()
            expect = window[:-1] if backbone == "sasrec" else window[-max_len:]
            np.testing.assert_array_equal(got, expect)
            if targets is not None:  # inputs 1..n-1 predict items 2..n of the training part
                np.testing.assert_array_equal(targets[row][targets[row] > 0].numpy(), window[1:])
            seen += 1
    assert seen == len(setup.loader.lengths) > 0

    # the split adapters receive (ctx.train_dataset): its targets are training positions only
    split = setup.ctx.train_dataset.inter_feat
    uid = split[setup.ctx.train_dataset.uid_field].numpy()
    iid = split[setup.ctx.train_dataset.iid_field].numpy()
    for user in np.unique(uid)[:50]:
        np.testing.assert_array_equal(iid[uid == user], setup.stats.user_items[user][1:-2])


def _frame(sequences: dict[str, list[int]]) -> pd.DataFrame:
    rows = [(u, i, t) for u, items in sequences.items() for t, i in enumerate(items)]
    return pd.DataFrame(rows, columns=["user", "item", "ts"])


def test_full_protocol_groups_use_training_popularity_only():
    rng = np.random.default_rng(0)
    base = {f"u{k}": list(rng.integers(1, 30, size=rng.integers(3, 12))) for k in range(200)}
    # the same training parts; every held-out (valid, test) item replaced by item 29
    moved = {u: items[:-2] + [29, 29] for u, items in base.items()}
    stats = []
    for seqs in (base, moved):
        inter = _frame(seqs)
        stats.append(SequenceStats.from_codes(inter["user"].str[1:].astype(int).to_numpy() + 1,
                                              inter["item"].to_numpy(), inter["user"], 201, 31,
                                              "toy"))
    assert (stats[0].full_pop != stats[1].full_pop).any()  # the held-out items did change
    np.testing.assert_array_equal(stats[0].train_pop, stats[1].train_pop)
    protocol = {"groups": "quantile", "head_fraction": 0.2}
    users, targets = np.arange(1, 201), rng.integers(1, 31, size=200)
    masks = [group_masks(s, users, targets, protocol, None, 50) for s in stats]
    for name in ("head_item", "long_user"):
        np.testing.assert_array_equal(masks[0][name], masks[1][name])


class _Captured(Exception):
    pass


def test_llm_user_prompts_list_training_items_only(tmp_path, monkeypatch):
    from bench.encoders import tables

    cfg = compose(tiny_overrides(tmp_path, "method=llm_esr"))
    prepared = prepare(cfg["dataset"], Path(cfg["paths"]["cache"]))
    captured = {}

    def capture(histories, names, dataset_cfg, max_chars):
        captured["histories"] = histories
        raise _Captured

    monkeypatch.setattr(tables, "user_prompts", capture)
    with pytest.raises(_Captured):
        tables.user_embeddings(prepared, cfg["dataset"], cfg["encoder"], tmp_path / "cache",
                               progress=False)
    users = prepared.interactions["user"].drop_duplicates().tolist()
    full = prepared.interactions.groupby("user", sort=False)["item"].agg(list)
    assert len(captured["histories"]) == len(users)
    for user, history in zip(users, captured["histories"], strict=True):
        assert list(history) == full[user][:-2]
