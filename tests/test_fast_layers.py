"""bench.fast_layers: the swapped layers compute what the originals compute."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from bench.fast_layers import FastDropout, accelerate


def test_fast_dropout_keeps_one_minus_p_and_scales_the_kept():
    torch.manual_seed(0)
    x = torch.full((400_000,), 2.0)
    y = FastDropout(0.3).train()(x)
    kept = y != 0
    # keep rate 0.7 with binomial sd sqrt(.7 * .3 / 4e5) = 7e-4: 0.005 is > 7 sd
    assert abs(kept.float().mean().item() - 0.7) < 0.005
    assert torch.allclose(y[kept], torch.tensor(2.0 / 0.7))


def test_fast_dropout_gradient_is_the_same_mask_and_scale():
    torch.manual_seed(1)
    x = torch.randn(64, 50, requires_grad=True)
    y = FastDropout(0.5).train()(x)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, (y != 0).float() * 2.0)


def test_fast_dropout_is_seeded_and_the_identity_in_eval_mode():
    x = torch.randn(1000)
    layer = FastDropout(0.5).train()
    torch.manual_seed(3)
    a = layer(x)
    torch.manual_seed(3)
    assert torch.equal(a, layer(x))
    assert torch.equal(layer.eval()(x), x)


def _sasrec():
    from recbole.model.layers import TransformerEncoder
    torch.manual_seed(0)
    return TransformerEncoder(n_layers=2, n_heads=2, hidden_size=16, inner_size=32,
                              hidden_dropout_prob=0.5, attn_dropout_prob=0.5, hidden_act="gelu")


def test_accelerate_swaps_every_dropout_and_recbole_gelu_without_changing_outputs():
    model = nn.Sequential(_sasrec(), nn.Dropout(0.2))
    x, mask = torch.randn(3, 5, 16), torch.zeros(3, 1, 5, 5)
    model.eval()
    before = model[0](x, mask)[-1]
    counts = accelerate(model)
    # per layer: attention probs, attention output, feed-forward; plus the outer one
    assert counts == {"dropout": 2 * 3 + 1, "gelu": 2}
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert all(layer.feed_forward.intermediate_act_fn is F.gelu for layer in model[0].layer)
    assert torch.allclose(model[0](x, mask)[-1], before, atol=1e-6)
    assert accelerate(model) == {"dropout": 0, "gelu": 0}  # idempotent
