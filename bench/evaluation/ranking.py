"""Scores -> pessimistic ranks of each user's held-out target.

rank = 1 + number of *other* candidates scoring >= the target. It is deterministic, independent
of batch size and of tie-breaking, and a constant scorer gets the worst rank (protocol.md). NaN
scores count as the lowest possible score, so a model that emits NaN cannot look good.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from recbole.data.interaction import Interaction


@dataclass
class EvalSplit:
    """One evaluation split (valid or test) as plain tensors: one row per user."""

    user: torch.Tensor  # (U,) internal RecBole user ids
    item_seq: torch.Tensor  # (U, max_len) input sequence, right-padded (RecBole layout)
    item_seq_len: torch.Tensor  # (U,)
    target: torch.Tensor  # (U,) internal item id of the held-out item
    negatives: torch.Tensor | None = None  # (U, n_neg) sampled candidates (paper protocol)
    history: list[np.ndarray] | None = None  # items to exclude from ranking (exclude_history)

    def __len__(self) -> int:
        return int(self.user.numel())

    def subset(self, keep: torch.Tensor) -> "EvalSplit":
        """The users where the boolean ``keep`` is set, every field cut alike."""
        rows = torch.nonzero(keep).view(-1)
        return EvalSplit(
            user=self.user[rows], item_seq=self.item_seq[rows],
            item_seq_len=self.item_seq_len[rows], target=self.target[rows],
            negatives=None if self.negatives is None else self.negatives[rows],
            history=None if self.history is None else [self.history[r] for r in rows.tolist()])

    @classmethod
    def from_recbole(cls, split_dataset) -> "EvalSplit":
        """Take RecBole's leave-one-out valid/test split (one row per user after ``build()``)."""
        f = split_dataset.inter_feat
        cfg = split_dataset.config
        seq_field = cfg["ITEM_ID_FIELD"] + cfg["LIST_SUFFIX"]
        return cls(user=f[split_dataset.uid_field].clone(), item_seq=f[seq_field].clone(),
                   item_seq_len=f[cfg["ITEM_LIST_LENGTH_FIELD"]].clone(),
                   target=f[split_dataset.iid_field].clone())


RANKING_KERNELS = ("eager", "compiled")
_compiled_count = None


def _count_eager(scores: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Per row, how many scores are >= the row's threshold: one compare pass and one byte sum
    (summing the bools as uint8 into int32 is about twice as fast as ``.sum()`` on bools)."""
    return (scores >= threshold).view(torch.uint8).sum(1, dtype=torch.int32)


def _count_compiled(scores: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """The same count fused into one vectorised loop by ``torch.compile`` (no bool tensor):
    about 6x faster than eager on a CPU, compiled once per process (seconds; cached on disk)."""
    global _compiled_count
    if _compiled_count is None:
        _compiled_count = torch.compile(
            lambda s, t: (s >= t).sum(1, dtype=torch.int32), dynamic=True)
    return _compiled_count(scores, threshold)


def pessimistic_rank(scores: torch.Tensor, target_col: torch.Tensor,
                     kernel: str = "eager") -> torch.Tensor:
    """Rank of column ``target_col[b]`` in row ``b`` of ``scores``; ties go against the target.

    NaN is the lowest score: a NaN item never counts against a real target (NaN >= t is
    false), and a NaN target ranks last. ``kernel`` picks how the compare-and-count runs
    (``RANKING_KERNELS``); the ranks are identical.
    """
    scores = scores.float()
    target_score = scores.gather(1, target_col.view(-1, 1))
    count = (_count_compiled if kernel == "compiled" else _count_eager)(scores, target_score)
    worst = torch.isnan(target_score.view(-1))
    return torch.where(worst, scores.shape[1], count.long())  # counts the target itself


@torch.no_grad()
def rank_targets(model, split: EvalSplit, batch_size: int,
                 device: torch.device | str = "cpu", kernel: str = "eager") -> np.ndarray:
    """Score every user of ``split`` with ``model.full_sort_predict`` and return 1-based ranks.

    Full protocol: candidates are all items (the padding id 0 is never a candidate).
    Sampled protocol (``split.negatives`` set): candidates are the target plus its negatives.
    With ``split.history`` set, the user's earlier items (except the target) are not candidates.
    """
    model.eval()
    ranks = []
    cfg_seq, cfg_len = model.ITEM_SEQ, model.ITEM_SEQ_LEN
    uid_field = getattr(model, "USER_ID", None)
    # Users in length order, each batch trimmed to its longest sequence: trailing padding changes
    # no output (causal mask / masked padding keys), so this only saves work.
    order = torch.argsort(split.item_seq_len, stable=True)
    for start in range(0, len(split), batch_size):
        sl = order[start: start + batch_size]
        lens = split.item_seq_len[sl]
        seq = split.item_seq[sl, : int(lens.max())]
        fields = {cfg_seq: seq, cfg_len: lens}
        if uid_field:  # graph models (LightGCN, AlphaRec) score users by id
            fields[uid_field] = split.user[sl]
        inter = Interaction(fields).to(device)
        scores = model.full_sort_predict(inter).view(-1, model.n_items).cpu()
        target = split.target[sl]
        if split.negatives is not None:
            cand = torch.cat([target.view(-1, 1), split.negatives[sl]], dim=1)
            ranks.append(pessimistic_rank(scores.gather(1, cand), torch.zeros_like(target),
                                          kernel))
            continue
        scores = scores[:, 1:]  # drop the padding id; column j is item j + 1
        if split.history is not None:
            hist = [torch.as_tensor(split.history[u]) for u in sl.tolist()]
            rows = torch.cat([torch.full((len(h),), r) for r, h in enumerate(hist)])
            masked = torch.zeros_like(scores, dtype=torch.bool)
            masked[rows, torch.cat(hist) - 1] = True
            masked[torch.arange(target.numel()), target - 1] = False
            scores = scores.masked_fill(masked, float("-inf"))
        ranks.append(pessimistic_rank(scores, target - 1, kernel))
    out = torch.empty(len(split), dtype=torch.long)
    out[order] = torch.cat(ranks)
    return out.numpy().astype(np.int64)


def sample_negatives(user_items: list[np.ndarray], n_items: int, n_neg: int,
                     seed: int) -> torch.Tensor:
    """``n_neg`` distinct negatives per user, uniform over items not in the user's sequence.

    Drawn from a generator seeded only by ``seed`` and visited in a fixed user order, so every
    method sees the same candidates (paired comparisons). Item ids are 1..n_items-1.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((len(user_items), n_neg), dtype=np.int64)
    for row, seen in enumerate(user_items):
        banned = np.unique(seen)
        if n_items - 1 - len(banned) < n_neg:
            raise ValueError(f"a user has seen too many items to draw {n_neg} negatives")
        chosen: np.ndarray = np.empty(0, dtype=np.int64)
        while len(chosen) < n_neg:
            draw = rng.integers(1, n_items, size=2 * n_neg)
            draw = draw[~np.isin(draw, banned)]
            chosen = np.concatenate([chosen, draw])
            _, first = np.unique(chosen, return_index=True)
            chosen = chosen[np.sort(first)]
        out[row] = chosen[:n_neg]
    return torch.from_numpy(out)
