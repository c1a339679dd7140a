"""The sequence-to-sequence train loader: windows, dynamic padding, deterministic shuffling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.backbones import TARGET_SEQ
from bench.training import Seq2SeqTrainLoader


def _loader(art, objective="causal", seed=0, batch=32):
    return Seq2SeqTrainLoader(art.splits[0], batch, objective, seed)


def test_windows_are_the_last_training_items_of_each_user(trained):
    art = trained("sasrec")
    loader = _loader(art)
    inter = art.dataset.inter_feat  # augmented rows; the full sequence per user is recoverable
    ds = art.dataset
    seqs = {}
    for u, tgt in zip(inter[ds.uid_field].tolist(), inter[ds.iid_field].tolist()):
        seqs.setdefault(u, []).append(tgt)
    users = np.unique(art.splits[0].inter_feat[ds.uid_field].numpy())
    for row, u in enumerate(users[:50]):
        first = ds.inter_feat[ds.item_id_list_field][ds.inter_feat[ds.uid_field] == u][0][0].item()
        full = [first] + seqs[u]  # whole sequence; the last two are valid and test
        train = full[:-2][-(50 + 1):]
        assert loader.windows[row, : loader.lengths[row]].tolist() == train


def test_batches_cover_every_user_once_padded_to_their_own_length(trained):
    art = trained("sasrec")
    loader = _loader(art, batch=16)
    seen = 0
    for batch in loader:
        seq, tgt = batch[loader.seq_field], batch[TARGET_SEQ]
        lens = batch[loader.len_field]
        assert seq.shape == tgt.shape and seq.size(1) == int(lens.max())
        assert ((seq > 0).sum(1) == lens).all() and ((tgt > 0).sum(1) == lens).all()
        nxt = seq[:, 1:] > 0  # input t+1 is target t wherever input t+1 exists
        assert torch.equal(seq[:, 1:][nxt], tgt[:, :-1][nxt])
        seen += seq.size(0)
    assert seen == len(loader.lengths)


def test_masked_objective_gets_whole_windows(trained):
    art = trained("bert4rec")
    loader = _loader(art, objective="masked")
    for batch in loader:
        seq, lens = batch[loader.seq_field], batch[loader.len_field]
        assert TARGET_SEQ not in batch.interaction and seq.size(1) == int(lens.max()) <= 50
        assert ((seq > 0).sum(1) == lens).all()  # the whole window, training targets included


def test_shuffling_is_deterministic_per_seed_and_epoch(trained):
    art = trained("sasrec")
    first = [b[loader.seq_field] for loader in [_loader(art, seed=3)] for b in loader]
    again = [b[loader.seq_field] for loader in [_loader(art, seed=3)] for b in loader]
    other = [b[loader.seq_field] for loader in [_loader(art, seed=4)] for b in loader]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, other))


def test_constant_loss_reduction_weighs_every_target_the_same(trained):
    """``train.loss_reduction=constant``: sum over positions / a fixed number, so a target in a
    batch of short windows weighs what a target in a batch of long windows weighs."""
    art = trained("sasrec")
    model = art.model
    model.eval()  # no dropout: the same forward twice
    loader = _loader(art, batch=16)
    batch = next(iter(loader))
    n_pos = int((batch[TARGET_SEQ] > 0).sum())
    trained_norm = model.position_norm  # the session's shared model: put it back after
    with torch.no_grad():
        model.position_norm = None
        mean_loss = model.calculate_loss(batch)
        model.position_norm = float(n_pos)
        same = model.calculate_loss(batch)
        model.position_norm = 2.0 * n_pos
        half = model.calculate_loss(batch)
    model.position_norm = trained_norm
    assert trained_norm is not None  # the default: train.loss_reduction=constant
    assert torch.allclose(mean_loss, same) and torch.allclose(half, mean_loss / 2)
    assert trained_norm == pytest.approx(
        128 * np.maximum(loader.lengths - 1, 1).mean())  # train.batch_size x positions/window


def _split_with_max_len(tmp_path, max_len: int):
    """The tiny training split with ``max_seq_length=max_len``: most users outgrow one window."""
    from pathlib import Path

    from recbole.data import create_dataset

    from bench.backbones import BACKBONES
    from bench.compat import recbole_config
    from bench.config import compose
    from bench.data.prepared import export_recbole
    from bench.data.sources import prepare
    from bench.runner import _recbole_dict
    from tests.conftest import tiny_overrides

    cfg = compose(tiny_overrides(tmp_path, f"protocol.max_seq_length={max_len}",
                                 "protocol.training=seq2seq-tiled"))
    cache = Path(cfg["paths"]["cache"])
    prepared = prepare(cfg["dataset"], cache)
    data_path = export_recbole(prepared, cache / "recbole")
    cls = BACKBONES["sasrec"]
    rb = recbole_config(cls, prepared.name, _recbole_dict(cfg, data_path, tmp_path,
                                                          torch.device("cpu")))
    return create_dataset(rb).build()[0]


def test_tiled_windows_predict_every_training_target_exactly_once(tmp_path):
    """``protocol.training=seq2seq-tiled``: consecutive windows from the end of each user's
    training part; their targets (items 2..n of each window) are the user's training targets,
    each once and in order. ``seq2seq`` keeps only the last window of each user."""
    split = _split_with_max_len(tmp_path, 5)
    tiled = Seq2SeqTrainLoader(split, 32, "causal", 0, mode="seq2seq-tiled")
    last = Seq2SeqTrainLoader(split, 32, "causal", 0)
    uid = split.inter_feat[split.uid_field].numpy()
    targets = split.inter_feat[split.iid_field].numpy()
    by_user: dict[int, list[int]] = {}
    for u, w, n in zip(tiled.users.tolist(), tiled.windows, tiled.lengths):
        assert 2 <= n <= 6
        by_user[u] = w[1:n].tolist() + by_user.get(u, [])  # windows come last-first per user
    for u in np.unique(uid):
        assert by_user[int(u)] == targets[uid == u].tolist()
    assert len(tiled.lengths) > len(last.lengths) == len(np.unique(uid))
    assert (tiled.lengths - 1).sum() == len(uid)  # one prediction per training target
    for u, w, n in zip(last.users.tolist(), last.windows, last.lengths):  # last == final tile
        assert w[1:n].tolist() == by_user[u][-(n - 1):]
    batches = list(tiled)  # the loader batches every tile once
    assert sum(b[tiled.seq_field].size(0) for b in batches) == len(tiled.lengths)


def test_tiled_training_is_a_protocol_value(tmp_path):
    from bench.config import compose
    from bench.errors import BenchError
    from bench.runner import protocol_fingerprint
    from tests.conftest import tiny_overrides

    cfg = compose(tiny_overrides(tmp_path))
    tiled = compose(tiny_overrides(tmp_path, "protocol.training=seq2seq-tiled"))
    assert (protocol_fingerprint(cfg["protocol"], cfg["dataset"])
            != protocol_fingerprint(tiled["protocol"], tiled["dataset"]))
    with pytest.raises(BenchError, match="protocol.training"):
        compose(tiny_overrides(tmp_path, "protocol.training=prefixes"))


def test_a_slow_epoch_shows_its_steps(tmp_path, monkeypatch, capsys):
    """Minutes-long epochs (MoRec, big data on a CPU) get a transient step bar under the epoch
    bar; fast ones do not (the bar waits ``_STEP_BAR_DELAY`` seconds before it appears)."""
    import bench.training as training
    from bench.config import compose
    from bench.runner import execute

    from conftest import tiny_overrides

    def steps_shown(delay: float, run: str) -> bool:
        monkeypatch.setattr(training, "_STEP_BAR_DELAY", delay)
        execute(compose(tiny_overrides(tmp_path / run, "train.epochs=1", "show_progress=true",
                                       "efficiency.inference=false")), force=True)
        err = capsys.readouterr().err
        return "epoch 1: " in err and "step" in err  # the epoch bar itself says "epoch/s"

    assert steps_shown(0.0, "slow")
    assert not steps_shown(3600.0, "fast")


def test_prefix_windows_are_recboles_rows_supervised_at_their_target(trained):
    """``protocol.training=prefix``: one window per RecBole training row (its history, then its
    target), only the target supervised, so the loss on a batch is bare RecBole's objective
    on those rows: the cross-entropy of RecBole's own SASRec forward at the last item."""
    import torch.nn.functional as F
    from recbole.model.sequential_recommender import SASRec

    art = trained("sasrec")
    split, model = art.splits[0], art.model
    loader = Seq2SeqTrainLoader(split, 16, "causal", seed=0, mode="prefix")
    f, seq_field, len_field = split.inter_feat, loader.seq_field, loader.len_field
    rows = {(tuple(s[:n].tolist()), t) for s, n, t in
            zip(f[seq_field], f[len_field].tolist(), f[split.iid_field].tolist())}
    assert len(loader.lengths) == len(f) and (loader.expected_positions(model) == 1).all()
    seen = set()
    for batch in loader:
        seq, lens, tgt = batch[seq_field], batch[len_field], batch[TARGET_SEQ]
        assert ((tgt > 0).sum(1) == 1).all()  # one target per window, after its last item
        last = tgt[torch.arange(len(lens)), lens - 1]
        seen |= {(tuple(s[:n].tolist()), t) for s, n, t in zip(seq, lens.tolist(), last.tolist())}
    assert seen == rows
    model.eval()  # no dropout: both forwards see the same function
    norm, model.position_norm = model.position_norm, None
    try:
        with torch.no_grad():
            suite_loss = model.calculate_loss(batch)
            hidden = SASRec.forward(model, seq, lens)  # RecBole's forward: gathered at lens - 1
            bare = F.cross_entropy(hidden @ model.item_embedding.weight[1:].T, last - 1)
    finally:
        model.position_norm = norm
    assert torch.allclose(suite_loss, bare, atol=1e-6)


def test_prefix_training_rejects_backbones_it_does_not_fit(tmp_path):
    from bench.config import compose
    from bench.errors import BenchError
    from bench.runner import execute
    from tests.conftest import tiny_overrides

    cfg = compose(tiny_overrides(tmp_path, "backbone=bert4rec", "protocol.training=prefix"))
    with pytest.raises(BenchError, match="protocol.training=prefix trains next-item backbones"):
        execute(cfg)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.json"))
