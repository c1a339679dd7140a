"""PAD: MK-MMD, popularity bins, gate initialisation, and the three phases end to end."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.config import compose
from methods.pad.model import initial_gate_logits, mk_mmd, popularity_bins
from conftest import tiny_overrides


def test_mk_mmd_is_zero_for_identical_samples_and_grows_with_shift():
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    assert mk_mmd(x, x.clone()).item() == pytest.approx(0.0, abs=1e-6)
    values = [mk_mmd(x, x + shift).item() for shift in (0.1, 0.5, 1.0, 2.0)]
    assert all(v > 0 for v in values) and values == sorted(values)


def test_mk_mmd_separates_distributions_not_samples():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(300, 8, generator=g), torch.randn(300, 8, generator=g)
    shifted = torch.randn(300, 8, generator=g) + 1.0
    assert mk_mmd(a, b).item() < 0.2 * mk_mmd(a, shifted).item()


def test_mk_mmd_gradient_pulls_the_samples_together():
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(2))
    y = (x + 1.5).requires_grad_(True)
    before = mk_mmd(x, y).item()
    mk_mmd(x, y).backward()
    with torch.no_grad():
        y -= 0.5 * y.grad / y.grad.norm()
    assert mk_mmd(x, y).item() < before


def test_popularity_bins_hold_equal_interaction_mass():
    pop = np.concatenate([[0], np.sort(np.random.default_rng(0).zipf(1.6, 3000))[::-1]])
    pop = np.minimum(pop, 200)
    bins = popularity_bins(pop)
    assert bins[0] == 0 and set(bins[1:]) <= set(range(1, 11))
    mass = np.array([pop[bins == b].sum() for b in range(1, 11)]) / pop[1:].sum()
    assert np.all(np.abs(mass - 0.1) < 0.03)
    # more popular items never fall in a later bin
    order = np.argsort(-pop[1:], kind="stable") + 1
    assert np.all(np.diff(bins[order]) >= 0)


def test_initial_gates_lean_on_id_for_popular_and_on_text_for_rare_items():
    s = torch.sigmoid(initial_gate_logits())
    w = s / s.sum(0)
    assert w[0, 1] > w[2, 1] and w[2, 10] > w[0, 10]  # bin 1 popular, bin 10 rare
    assert torch.all(w[1, 1:] < 0.05)  # the aligned expert starts nearly off (gamma = -4)


@pytest.mark.slow
def test_gated_scores_are_the_gate_weighted_sum_of_expert_scores():
    from methods.pad.model import GatedExpertsMixin

    class Gated(GatedExpertsMixin):
        def __init__(self, tables, bins):
            self.tables, self.item_bin = tables, bins
            self.gate = torch.nn.Parameter(initial_gate_logits(4) + torch.randn(3, 5))

        def _tables(self):
            return self.tables

    torch.manual_seed(0)
    n, d, p = 12, 5, 7
    model = Gated([torch.randn(n, d) for _ in range(3)], torch.randint(0, 5, (n,)))
    hiddens = [torch.randn(p, d) for _ in range(3)]
    w = model.gate_weights()
    expected = sum((h @ t.T) * w[k][model.item_bin]
                   for k, (h, t) in enumerate(zip(hiddens, model.tables)))
    assert torch.allclose(model.gated_scores(hiddens), expected, atol=1e-5)
    items = torch.randint(0, n, (p, 2))
    assert torch.allclose(model.gated_scores(hiddens, items), expected.gather(1, items), atol=1e-5)
    model.gated_scores(hiddens).sum().backward()
    assert model.gate.grad is not None and model.gate.grad.abs().sum() > 0  # the gates learn


def test_pad_trains_three_phases_caches_them_and_reports_gates(tmp_path):
    from bench.runner import execute

    cfg = compose(tiny_overrides(tmp_path, "method=pad", "train.epochs=2"))
    first = execute(cfg).record
    info = first["method_info"]
    gates = info["gate_weights"]
    assert gates["bin"] == list(range(1, 11)) and sum(gates["items"]) == first["dataset"]["n_items"]
    for b in range(10):
        assert sum(gates[k][b] for k in ("id", "aligned", "text")) == pytest.approx(1.0, abs=1e-3)
    one_off = first["efficiency"]["one_off"]
    assert not one_off["phase1"]["cache_hit"] and not one_off["phase2"]["cache_hit"]
    # phase 3 alone: another run of the same seed reuses phases 1 and 2
    again = execute(compose(tiny_overrides(tmp_path, "method=pad", "train.epochs=2")),
                    force=True).record
    assert again["efficiency"]["one_off"]["phase1"]["cache_hit"]
    assert again["efficiency"]["one_off"]["phase2"]["cache_hit"]
    assert again["metrics"]["test"] == first["metrics"]["test"]


def test_pad_refuses_bert4rec():
    from bench.adapters import load_adapter

    assert "bert4rec" not in load_adapter("pad").backbones
