"""Cheaper kernels for two layers every backbone trains through, same function.

Applied by the runner to each model it trains (``accelerate``); the record's provenance says
how many layers were swapped. Neither swap changes what a layer computes:

* **Dropout on a CPU.** torch draws a CPU dropout mask with ``bernoulli_``, one scalar draw
  per element (pytorch/pytorch#138199). On this machine, dropout over a SASRec hidden state
  (128 x 50 x 64) took 9.5 ms forward and backward against 0.6 ms for a 64 x 64 linear layer of
  the same input, and dropout was 13% of an LLM-ESR training profile. ``FastDropout`` draws
  the mask as ``torch.rand(...) >= p`` (vectorised uniform draws), keeps each element with
  probability 1 - p and scales kept ones by 1 / (1 - p), as torch does: the same distribution,
  2.3-2.9x faster (``tests/benchmarks/test_fast_layers.py``). The draws come from torch's
  seeded generator, so a seed still fixes a run; they are other draws than torch's own, so a
  record trained before this swap is not reproduced bit for bit (the record's commit says
  which code trained it). On CUDA, in eval mode and for p in {0, 1} it is torch's dropout.
* **RecBole's GELU.** ``FeedForward.gelu`` is ``x * 0.5 * (1 + erf(x / sqrt(2)))`` written as
  five tensor operations; ``torch.nn.functional.gelu`` computes the same exact (erf) GELU in
  one kernel, about 4x faster forward and backward. Outputs agree to float rounding (< 1e-6).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class _MaskedScale(torch.autograd.Function):
    """Dropout with a uniform-threshold mask; backward reuses the mask (one bool per element)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = torch.rand(x.shape, dtype=torch.float32, device=x.device) >= p
        ctx.save_for_backward(keep)
        ctx.scale = 1.0 / (1.0 - p)
        return x.mul(keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None


class FastDropout(nn.Dropout):
    """``nn.Dropout`` whose CPU training path draws its mask with ``torch.rand``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and 0.0 < self.p < 1.0 and x.device.type == "cpu" and not self.inplace:
            return _MaskedScale.apply(x, self.p)
        return super().forward(x)


def _is_recbole_gelu(module: nn.Module) -> bool:
    act = getattr(module, "intermediate_act_fn", None)
    return getattr(act, "__func__", None) is getattr(type(module), "gelu", object())


def accelerate(model: nn.Module) -> dict[str, int]:
    """Swap every plain ``nn.Dropout`` for ``FastDropout`` and RecBole's Python GELU for
    ``F.gelu``, in place. Returns how many of each were swapped (for the record)."""
    counts = {"dropout": 0, "gelu": 0}
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout:
                fast = FastDropout(child.p, child.inplace)
                fast.train(child.training)
                setattr(module, name, fast)
                counts["dropout"] += 1
        if _is_recbole_gelu(module):
            module.intermediate_act_fn = F.gelu
            counts["gelu"] += 1
    return counts
