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
