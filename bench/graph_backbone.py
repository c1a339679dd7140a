"""LightGCN as a backbone of the suite: non-sequential collaborative filtering under the same
leave-one-out protocol, trainer and evaluation as the sequential backbones.

It exists for AlphaRec, whose native form is graph collaborative filtering (methods.md §3), and,
as method ``id``, for its ID-only reference (He et al., SIGIR 2020). The user-item graph is built
from the training part of every sequence only (never the valid or test item), as a sparse
symmetric-normalised adjacency ``D^-1/2 A D^-1/2``; embeddings are propagated ``n_layers`` times
and averaged over layers 0..n. Order inside a sequence is ignored: a user is their item set.

Training reuses the suite's loader (one window of recent training items per user): every item
in a user's window is a positive for that user, scored against the user's propagated vector
with the protocol's loss (or a method's sampled softmax). Inference scores users by id; the
propagated tables are computed once per evaluation, not per batch.
"""
from __future__ import annotations

import numpy as np
import torch
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from bench.backbones import Seq2SeqMixin


def training_edges(train_split) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique (user, item) pairs of the training part, from RecBole's augmented training rows:
    every row's target, plus each user's first item (it is only ever an input)."""
    cfg = train_split.config
    f = train_split.inter_feat
    users, items = f[train_split.uid_field], f[train_split.iid_field]
    first = f[cfg["ITEM_ID_FIELD"] + cfg["LIST_SUFFIX"]][:, 0]
    pairs = torch.stack([torch.cat([users, users]), torch.cat([items, first])], dim=1)
    pairs = torch.unique(pairs[pairs[:, 1] > 0], dim=0)
    return pairs[:, 0], pairs[:, 1]


def normalized_adjacency(users: torch.Tensor, items: torch.Tensor, n_users: int,
                         n_items: int) -> torch.Tensor:
    """Sparse (n_users + n_items)^2 matrix ``D^-1/2 A D^-1/2`` of the bipartite graph."""
    n = n_users + n_items
    rows = torch.cat([users, items + n_users])
    cols = torch.cat([items + n_users, users])
    deg = torch.bincount(rows, minlength=n).float()
    inv_sqrt = deg.pow(-0.5).masked_fill(deg == 0, 0.0)
    values = inv_sqrt[rows] * inv_sqrt[cols]
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n),
                                   check_invariants=True).coalesce()


class LightGCN(Seq2SeqMixin, SequentialRecommender):
    """ID user and item tables, LightGCN propagation, dot-product (or cosine) scores."""

    objective = "causal"  # the loader's windows; every item in the window is a positive
    prefix_training = False  # a window is a bag of positives: prefixes would repeat them

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        dim, self.n_layers = int(config["embedding_size"]), int(config["n_layers"])
        self.n_users = dataset.user_num
        self.user_embedding = nn.Embedding(self.n_users, dim)
        self.item_embedding = nn.Embedding(self.n_items, dim)
        for table in (self.user_embedding, self.item_embedding):
            nn.init.xavier_normal_(table.weight)
        users, items = training_edges(dataset)
        self.register_buffer("adjacency", normalized_adjacency(users, items, self.n_users,
                                                               self.n_items), persistent=False)
        self._propagated: tuple[torch.Tensor, torch.Tensor] | None = None

    def train(self, mode: bool = True):
        self._propagated = None  # weights are about to change (or just did)
        return super().train(mode)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user and item tables: the mean of layers 0..n_layers."""
        if self._propagated is not None and not self.training:
            return self._propagated
        x = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        layers = [x]
        for _ in range(self.n_layers):
            x = torch.sparse.mm(self.adjacency, x)
            layers.append(x)
        out = torch.stack(layers).mean(0)
        users, items = out[: self.n_users], out[self.n_users:]
        if not self.training:
            self._propagated = (users, items)
        return users, items

    def item_scores_table(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.propagate()[1], None

    def supervised_positions(self, interaction):
        """Every (user, item in the user's window) pair of the batch."""
        window = self._window(interaction)
        keep = window > 0
        rows = torch.nonzero(keep)[:, 0]
        users = interaction[self.USER_ID][rows]
        return self.propagate()[0][users], window[keep], rows

    def inference_user(self, interaction) -> torch.Tensor:
        return self.propagate()[0][interaction[self.USER_ID]]

    def expected_positions(self, window_lengths: np.ndarray) -> np.ndarray:
        return window_lengths.astype(float)  # every item of the window is a positive
