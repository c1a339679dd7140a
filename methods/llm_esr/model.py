"""LLM-ESR's dual-view model over any of the suite's backbones (methods.md §2.2-2.3).

The semantic view reads frozen LM item vectors through a two-layer adapter; the collaborative
view is the backbone's own ID table, initialised with the PCA of the LM vectors. Each view's
embedded sequence goes through the backbone's input layer (shared positions), then two-head
cross-attention (each view queries the other), then the *same* backbone layers. The user vector
is the concatenation of the two views' outputs and an item's vector the concatenation of its
two views, so a score is the sum of the two views' dot products.

Departure, on purpose: the originals' cross-attention has no causal mask (nor does their
SASRec). Under the suite's sequence-to-sequence training, position t would then see item t+1,
its own target, through the other view. For the causal backbones (SASRec, GRU4Rec) the
cross-attention is causal; for BERT4Rec it is bidirectional, as the backbone is.

Retrieval-augmented self-distillation: each training user's vector is pulled (MSE, weight
``sd_alpha``) toward the detached mean of the vectors the same model gives to its most similar
users (by LM user embedding, precomputed), each read from its own training window.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.backbones import TARGET_SEQ
from bench.item_tables import TextItemTable, linear_adapter
from bench.training import window_inputs


class CrossAttention(nn.Module):
    """Query one view with the other: two heads, bias-free projections, no residual, no norm."""

    def __init__(self, dim: int, heads: int = 2):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, bias=False, batch_first=True)

    def forward(self, query: torch.Tensor, other: torch.Tensor, pad: torch.Tensor,
                causal: bool) -> torch.Tensor:
        length = query.size(1)
        mask = (torch.ones(length, length, dtype=torch.bool, device=query.device).triu(1)
                if causal else None)
        out, _ = self.attn(query, other, other, key_padding_mask=pad, attn_mask=mask,
                           need_weights=False)
        return out


class DualViewMixin:
    """Put before a ``bench.backbones`` class; ``setup_views`` after the backbone is built."""

    def setup_views(self, llm_table: torch.Tensor, pca_table: torch.Tensor | None,
                    adapter_hidden: int, cross_attention: bool, heads: int,
                    causal_cross: bool | None = None) -> None:
        """``causal_cross``: mask the cross-attention causally (default: when the backbone is
        causal; False on a causal backbone is the original's unmasked form)."""
        dim = self.item_embedding.embedding_dim
        n_rows = self.item_embedding.weight.shape[0]
        if pca_table is not None:  # the collaborative view starts from the semantic one
            with torch.no_grad():
                self.item_embedding.weight[1: pca_table.size(0)] = pca_table[1:]
        self.llm_items = TextItemTable(llm_table, linear_adapter(llm_table.size(1), adapter_hidden, dim),
                                       dim, extra_rows=n_rows - llm_table.size(0))
        self.cross = (nn.ModuleDict({"id": CrossAttention(dim, heads), "llm": CrossAttention(dim, heads)})
                      if cross_attention else None)
        self.cross_causal = self.objective == "causal" if causal_cross is None else causal_cross
        self.sd_alpha = 0.0

    def setup_distillation(self, alpha: float, neighbours: torch.Tensor, users: torch.Tensor,
                           windows: torch.Tensor, lengths: torch.Tensor) -> None:
        """``neighbours``: (n_users, k) internal user ids (-1: none); ``users``/``windows``/
        ``lengths``: every training user's window (``bench.training.training_windows``)."""
        n_users = neighbours.size(0)
        slot = torch.full((n_users,), -1, dtype=torch.long)
        slot[users] = torch.arange(users.numel())
        self.sd_alpha = float(alpha)
        self.register_buffer("sd_neighbours", neighbours.long(), persistent=False)
        self.register_buffer("sd_slot", slot, persistent=False)
        self.register_buffer("sd_windows", windows, persistent=False)
        self.register_buffer("sd_lengths", torch.as_tensor(lengths, dtype=torch.long), persistent=False)

    # ---- the two views -----------------------------------------------------------------------
    def sequence_output(self, item_seq: torch.Tensor) -> torch.Tensor:  # (B, L, 2d)
        s_id = self.input_layer(item_seq, self.item_embedding(item_seq))
        s_llm = self.input_layer(item_seq, self.llm_items(item_seq))
        if self.cross is not None:
            pad, causal = item_seq == 0, self.cross_causal
            s_id, s_llm = (self.cross["id"](s_llm, s_id, pad, causal),
                           self.cross["llm"](s_id, s_llm, pad, causal))
        return torch.cat([self.encode(item_seq, s_id), self.encode(item_seq, s_llm)], dim=-1)

    def item_scores_table(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        table, bias = super().item_scores_table()
        return torch.cat([table, self.llm_items.weight[: self.n_items]], dim=-1), bias

    # ---- training ----------------------------------------------------------------------------
    def calculate_loss(self, interaction) -> torch.Tensor:
        if self.sd_alpha <= 0:
            return super().calculate_loss(interaction)
        item_seq, lens = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        if self.objective == "causal":  # one forward: every position's loss + the user vector
            targets = interaction[TARGET_SEQ]
            hidden = self.sequence_output(item_seq)
            keep = targets > 0
            loss = self._rec_loss(interaction, hidden[keep], targets[keep],
                                  torch.nonzero(keep)[:, 0])
            anchor = self.gather_indexes(hidden, lens - 1)
        else:
            loss = super().calculate_loss(interaction)
            anchor = self.user_vector(item_seq, lens)
        return loss + self.sd_alpha * self.distillation_loss(interaction[self.USER_ID], anchor)

    def distillation_loss(self, users: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        nbr = self.sd_neighbours[users]  # (B, k)
        slot = torch.where(nbr >= 0, self.sd_slot[nbr.clamp(min=0)], -1)
        valid = slot >= 0
        rows = valid.any(1)
        if not rows.any():
            return anchor.sum() * 0.0
        wanted, inverse = torch.unique(slot[valid], return_inverse=True)
        with torch.no_grad():  # the teacher is detached, as in the original
            vectors = self._window_vectors(wanted)
            teacher = torch.zeros(*slot.shape, anchor.size(1), device=anchor.device)
            teacher[valid] = vectors[inverse]
            teacher = teacher.sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        return F.mse_loss(anchor[rows], teacher[rows])

    def _window_vectors(self, slots: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """User vectors of training windows, read as the anchors are read in training.

        Neighbours are random users of every length: they are sorted by length and run in
        chunks, each padded to its own longest window (one batch padded to the longest of
        ~1,000 windows costs several times more; padding changes no output)."""
        order = torch.argsort(self.sd_lengths[slots], stable=True)
        out = torch.empty(slots.numel(), self.item_embedding.embedding_dim * 2,
                          device=slots.device)
        for start in range(0, slots.numel(), chunk):
            part = order[start: start + chunk]
            out[part] = self._chunk_vectors(slots[part])
        return out

    def _chunk_vectors(self, slots: torch.Tensor) -> torch.Tensor:
        seq, lens = window_inputs(self.sd_windows[slots], self.sd_lengths[slots], self.objective)
        return self.user_vector(seq, lens)


_CLASSES: dict[type, type] = {}


def dual_view_class(backbone: type) -> type:
    """``DualViewMixin`` over ``backbone`` (one class per backbone, named after it)."""
    if backbone not in _CLASSES:
        _CLASSES[backbone] = type(f"LLMESR{backbone.__name__}", (DualViewMixin, backbone), {})
    return _CLASSES[backbone]
