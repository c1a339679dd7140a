"""PAD's pieces: multi-kernel MMD, the text and aligned item tables, popularity bins, and the
three-expert model with frequency-aware gating (methods.md §4).

Everything plugs into the suite's backbones: an expert is a backbone instance (its own item
table and layers), and the gated model is the run's backbone class with two more experts
attached, so the harness trains and scores it like any other model.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.backbones import TARGET_SEQ
from bench.item_tables import ServedTable

# tllib's GaussianKernel multipliers in PAD: alpha = 2^k, k = -3..1
MMD_ALPHAS = tuple(2.0 ** k for k in range(-3, 2))


def mk_mmd(source: torch.Tensor, target: torch.Tensor,
           alphas: tuple[float, ...] = MMD_ALPHAS) -> torch.Tensor:
    """Multi-kernel maximum mean discrepancy between two samples (rows are vectors).

    Gaussian kernels k(x, y) = exp(-|x - y|^2 / (2 sigma^2)) with sigma^2 = alpha x the mean
    pairwise squared distance of the pooled sample (detached, as tllib's ``GaussianKernel``),
    summed over the multipliers. The biased (V-statistic) estimate is used: exactly zero for
    identical samples and never negative; tllib's unbiased form differs by terms that vanish as
    the batch grows (and by a constant that carries no gradient).
    """
    z = torch.cat([source, target], dim=0)
    d2 = torch.cdist(z, z).pow(2)
    scale = d2.detach().mean().clamp(min=1e-12)
    kernel = sum(torch.exp(-d2 / (2.0 * alpha * scale)) for alpha in alphas)
    n = source.size(0)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2.0 * kernel[:n, n:].mean()


def text_tower(lm_dim: int, dim: int, dropout: float, depth: int = 4) -> nn.Sequential:
    """PAD's g: Linear(lm -> d) + GELU, then ``depth`` x [Dropout, Linear(d, d), GELU]."""
    layers: list[nn.Module] = [nn.Linear(lm_dim, dim), nn.GELU()]
    for _ in range(depth):
        layers += [nn.Dropout(dropout), nn.Linear(dim, dim), nn.GELU()]
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class AlignedItemTable(ServedTable, nn.Module):
    """Phase 2's item vectors: CAT(E_id'[i], g(x_i)) with CAT = Dropout -> Linear(2d -> d) ->
    GELU; E_id' starts as the phase-1 ID table. ``auxiliary_loss`` adds the MK-MMD between
    g(x) and E_id' over the batch's target items (the rec-anchored alignment)."""

    def __init__(self, id_table: torch.Tensor, llm: torch.Tensor, dim: int, dropout: float,
                 mmd_weight: float, mmd_max_items: int):
        super().__init__()
        self.ids = nn.Embedding.from_pretrained(id_table.clone(), freeze=False, padding_idx=0)
        self.llm = nn.Parameter(llm.float(), requires_grad=False)
        self.text = text_tower(llm.size(1), dim, dropout)
        self.cat = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * dim, dim), nn.GELU())
        nn.init.xavier_normal_(self.cat[1].weight)
        nn.init.zeros_(self.cat[1].bias)
        self.embedding_dim, self.n_llm_rows = dim, llm.size(0)
        self.mmd_weight, self.mmd_max_items = float(mmd_weight), int(mmd_max_items)

    def _text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text(self.llm[ids.clamp(max=self.n_llm_rows - 1)])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.cat(torch.cat([self.ids(ids), self._text(ids)], dim=-1))
        return out.masked_fill((ids == 0).unsqueeze(-1), 0.0)

    @property
    def weight(self) -> torch.Tensor:
        """Every item's vector; reused while serving (``ServedTable``)."""
        return self.served(lambda: self(torch.arange(self.ids.num_embeddings,
                                                     device=self.llm.device)))

    def auxiliary_loss(self, targets: torch.Tensor) -> torch.Tensor:
        if self.mmd_weight <= 0 or targets.numel() < 2:
            return targets.new_zeros((), dtype=torch.float)
        if targets.numel() > self.mmd_max_items:  # the kernel matrix is (2n)^2
            targets = targets[torch.randperm(targets.numel(), device=targets.device)
                              [: self.mmd_max_items]]
        return self.mmd_weight * mk_mmd(self._text(targets), self.ids(targets))


def popularity_bins(train_pop: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Bin (1..n_bins) of each item id, bins holding equal shares of the training interactions:
    items sorted by training popularity (ties by id), an item's bin set by the interaction mass
    of the items before it. Index 0 (padding) is bin 0; unseen items fall in the last bin."""
    pop = np.asarray(train_pop, dtype=np.float64).copy()
    pop[0] = 0.0
    ids = np.arange(1, len(pop))
    order = ids[np.lexsort((ids, -pop[ids]))]
    before = np.cumsum(pop[order]) - pop[order]
    total = max(pop.sum(), 1.0)
    bins = np.zeros(len(pop), dtype=np.int64)
    bins[order] = np.minimum(n_bins, 1 + np.floor(n_bins * before / total)).astype(np.int64)
    return bins


def initial_gate_logits(n_bins: int = 10, gamma_align: float = -4.0) -> torch.Tensor:
    """(3, n_bins + 1) logits for (ID, aligned, text) per bin, as PAD initialises them: popular
    bins lean on the ID expert, rare bins on the text expert, the aligned expert starts low."""
    return torch.stack([torch.linspace(1.0, 0.0, n_bins + 1),
                        torch.linspace(gamma_align, gamma_align - 1.0, n_bins + 1),
                        torch.linspace(0.0, 1.0, n_bins + 1)])


class GatedExpertsMixin:
    """Three experts (this backbone = ID tower; ``aligned``; ``text``) scored per item as
    sum_k w_k(bin(i)) * (u_k . v_k(i)), w_k = sigmoid(a_k[bin]) / sum_j sigmoid(a_j[bin])."""

    def setup_experts(self, aligned: nn.Module, text: nn.Module, bins: np.ndarray,
                      gate_logits: torch.Tensor) -> None:
        self.aligned, self.text = aligned, text
        self.gate = nn.Parameter(gate_logits.clone())
        self.register_buffer("item_bin", torch.as_tensor(bins, dtype=torch.long))

    def gate_weights(self) -> torch.Tensor:
        """(3, n_bins + 1) normalised expert weights per popularity bin."""
        s = torch.sigmoid(self.gate)
        return s / s.sum(0, keepdim=True)

    def _experts(self):
        return (self, self.aligned, self.text)

    def _tables(self) -> list[torch.Tensor]:
        return [e.item_embedding.weight[: self.n_items] for e in self._experts()]

    def expert_hidden(self, item_seq: torch.Tensor) -> list[torch.Tensor]:
        return [e.sequence_output(item_seq) for e in self._experts()]

    def gated_scores(self, hiddens: list[torch.Tensor], items: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """Scores (P, n_items) of every item, or (P, m) of ``items`` (P, m) per row.

        sum_k w_k(bin(i)) (u_k . v_k(i)) is computed as one product of the concatenated user
        vectors [u_1, u_2, u_3] with the concatenated gate-scaled item vectors
        [w_1 v_1(i), w_2 v_2(i), w_3 v_3(i)]: the same sum, without three (P, n_items) score
        matrices scaled and added element by element (a quarter of a synthetic phase-3 step)."""
        user = torch.cat(hiddens, dim=-1)
        table = self.gated_table()
        if items is None:
            return user @ table.T
        return torch.einsum("pd,pmd->pm", user, table[items])

    def gated_table(self) -> torch.Tensor:
        """(n_items, 3d): each expert's item vectors scaled by its gate weight for the item's bin."""
        w = self.gate_weights()
        return torch.cat([table * w[k][self.item_bin].unsqueeze(-1)
                          for k, table in enumerate(self._tables())], dim=-1)

    def calculate_loss(self, interaction) -> torch.Tensor:
        item_seq, targets = interaction[self.ITEM_SEQ], interaction[TARGET_SEQ]
        keep = targets > 0
        hiddens = [h[keep] for h in self.expert_hidden(item_seq)]
        targets, rows = targets[keep], torch.nonzero(keep)[:, 0]
        if self.bench_loss == "ce":
            # classes are items 1..n-1: the padding row is sliced off the table, not the logits
            logits = torch.cat(hiddens, dim=-1) @ self.gated_table()[1:].T
            return self.item_cross_entropy(logits, targets)
        negatives = self._sample_negatives(interaction, rows)
        scores = self.gated_scores(hiddens, torch.stack([targets, negatives], dim=1))
        return self._reduce(
            F.binary_cross_entropy_with_logits(scores[:, 0], torch.ones_like(scores[:, 0]),
                                               reduction="none")
            + F.binary_cross_entropy_with_logits(scores[:, 1], torch.zeros_like(scores[:, 1]),
                                                 reduction="none"))

    def _users(self, interaction) -> list[torch.Tensor]:
        seq, lens = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        pos = lens - 1
        return [self.gather_indexes(h, pos) for h in self.expert_hidden(seq)]

    def full_sort_predict(self, interaction) -> torch.Tensor:
        return self.gated_scores(self._users(interaction))

    def predict(self, interaction) -> torch.Tensor:
        items = interaction[self.ITEM_ID].unsqueeze(1)
        return self.gated_scores(self._users(interaction), items).squeeze(1)


_CLASSES: dict[type, type] = {}


def gated_class(backbone: type) -> type:
    """``GatedExpertsMixin`` over ``backbone`` (one class per backbone, named after it)."""
    if backbone not in _CLASSES:
        _CLASSES[backbone] = type(f"PAD{backbone.__name__}", (GatedExpertsMixin, backbone), {})
    return _CLASSES[backbone]
