"""LLMEmb stage 2: Recommendation Adaptation Training (RAT), as an item table for any backbone.

methods.md §1.3. ``AdaptedItemTable`` replaces a RecBole backbone's ``item_embedding``: the
frozen (SCFT) LLM embedding of each item goes through a trainable two-layer adapter (Linear ->
Linear, biases, no activation) to the backbone's dimension, and that vector is both the input
embedding and the scoring vector. Row 0 (padding) is zero; BERT4Rec's mask token gets a learned
row initialised N(0, 0.01²). ``auxiliary_loss`` adds the collaborative alignment,
``alpha * soft-target symmetric CE(E_cf[targets], A(E_llm[targets]))`` with a fixed τ, which
the backbones' loss picks up for every supervised target.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.item_tables import TextItemTable, linear_adapter


def soft_contrastive(x: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
    """LLMEmb's ``Contrastive_Loss2``: the SCFT loss with a fixed temperature (P x P)."""
    logits = x @ y.T / tau
    targets = F.softmax((x @ x.T + y @ y.T) / 2 * tau, dim=-1)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets.T)) / 2


def grouped_soft_contrastive(x: torch.Tensor, y: torch.Tensor, counts: torch.Tensor,
                             tau: float) -> torch.Tensor:
    """``soft_contrastive`` over P positions, computed exactly on the U unique items they hold.

    Positions with the same target item have identical rows, so every sum over positions is a
    count-weighted sum over unique items: ``x``, ``y`` are (U, d), ``counts`` (U,) how often
    each occurs. Same value and gradients as the P x P form, with U x U matrices (a batch of
    128 windows of up to 50 items has P up to 6,400 positions but far fewer distinct items).
    """
    log_c = counts.float().log()
    n = counts.sum()
    logits = x @ y.T / tau
    sims = (x @ x.T + y @ y.T) / 2 * tau
    targets = torch.exp(sims - torch.logsumexp(sims + log_c, dim=1, keepdim=True))  # T_uv per position
    log_p_rows = logits - torch.logsumexp(logits + log_c, dim=1, keepdim=True)
    log_p_cols = logits - torch.logsumexp(logits + log_c.unsqueeze(1), dim=0, keepdim=True)
    row_loss = -(targets * log_p_rows * counts).sum(1)  # CE of each row position u
    col_loss = -(targets * log_p_cols * counts.unsqueeze(1)).sum(0)  # CE of logits.T rows
    return ((counts * row_loss).sum() + (counts * col_loss).sum()) / (2 * n)


class AdaptedItemTable(TextItemTable):
    """Frozen LLM table -> two-layer adapter -> item vectors, with the alignment term."""

    def __init__(self, llm_table: torch.Tensor, out_dim: int, hidden: int, extra_rows: int = 0,
                 teacher: torch.Tensor | None = None, alpha: float = 0.0, tau: float = 2.0):
        super().__init__(llm_table, linear_adapter(llm_table.size(1), hidden, out_dim), out_dim,
                         extra_rows)
        self.teacher = (nn.Parameter(teacher.float(), requires_grad=False)
                        if teacher is not None and alpha > 0 else None)
        self.alpha, self.tau = float(alpha), float(tau)

    def auxiliary_loss(self, targets: torch.Tensor) -> torch.Tensor | int:
        if self.teacher is None:
            return 0
        items, counts = torch.unique(targets, return_counts=True)
        return self.alpha * grouped_soft_contrastive(self.teacher[items], self._adapt(items),
                                                     counts, self.tau)
