"""The swapped layers of ``bench.fast_layers`` against the originals, forward and backward,
at SASRec's training shapes (batch 128, length 50, d 64; attention probs with 2 heads).
``--benchmark-group-by=param`` puts each pair side by side."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from bench.fast_layers import FastDropout

SHAPES = {"hidden": (128, 50, 64), "attention": (128, 2, 50, 50), "ffn": (128, 50, 256)}


def _recbole_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))  # RecBole's FeedForward.gelu


@pytest.mark.parametrize("shape", ["hidden", "attention"])
@pytest.mark.parametrize("layer", ["torch", "fast"])
def test_dropout(benchmark, shape, layer):
    x = torch.randn(*SHAPES[shape], requires_grad=True)
    module = (nn.Dropout(0.5) if layer == "torch" else FastDropout(0.5)).train()
    benchmark(lambda: module(x).sum().backward())


@pytest.mark.parametrize("layer", ["recbole", "torch"])
def test_gelu(benchmark, layer):
    x = torch.randn(*SHAPES["ffn"], requires_grad=True)
    fn = _recbole_gelu if layer == "recbole" else F.gelu
    benchmark(lambda: fn(x).sum().backward())
