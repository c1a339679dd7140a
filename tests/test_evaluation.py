"""Ranks and metrics exactly as protocol.md defines them."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from bench.evaluation.groups import _top_fraction
from bench.evaluation.metrics import grouped_metrics, metric_columns
from bench.evaluation.ranking import pessimistic_rank, sample_negatives


def test_pessimistic_rank_counts_ties_against_the_target():
    scores = torch.tensor([[0.1, 0.5, 0.5, 0.9], [1.0, 1.0, 1.0, 1.0], [0.3, 0.2, 0.1, 0.0]])
    ranks = pessimistic_rank(scores, torch.tensor([1, 2, 0]))
    assert ranks.tolist() == [3, 4, 1]  # tie with one other + one higher; constant -> worst


def test_nan_scores_never_help():
    scores = torch.tensor([[float("nan"), 0.1, 0.2], [0.5, float("nan"), 0.1]])
    assert pessimistic_rank(scores, torch.tensor([0, 0])).tolist() == [3, 1]


def test_infinite_scores_rank_as_ordered_and_nan_targets_rank_last():
    inf = float("inf")
    scores = torch.tensor([[-inf, 0.0, float("nan")], [inf, inf, 1.0], [float("nan"), 1.0, 2.0]])
    assert pessimistic_rank(scores, torch.tensor([0, 2, 0])).tolist() == [2, 3, 3]


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile needs a C++ compiler")
def test_compiled_ranking_kernel_gives_the_eager_ranks():
    g = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 5, (37, 211), generator=g).float()  # many ties
    scores[3, 7], scores[5] = float("nan"), 1.0
    target = torch.randint(0, 211, (37,), generator=g)
    target[3] = 7
    eager = pessimistic_rank(scores, target, "eager")
    assert torch.equal(pessimistic_rank(scores, target, "compiled"), eager)
    assert eager[3] == 211 and eager[5] == 211  # NaN target, constant row: last


def test_metric_formulas():
    cols = metric_columns(np.array([1, 2, 10, 11]), ks=[10], mrr_k=10)
    assert cols["HR@10"].tolist() == [1, 1, 1, 0]
    assert cols["NDCG@10"] == pytest.approx([1, 1 / math.log2(3), 1 / math.log2(11), 0])
    assert cols["MRR@10"] == pytest.approx([1, 0.5, 0.1, 0])


def test_empty_group_reports_n_zero_and_no_value():
    ranks = np.array([1, 5, 30])
    out = grouped_metrics(ranks, {"tail_item": np.zeros(3, bool), "head_item": np.ones(3, bool)},
                          ks=[10], mrr_k=10)
    assert out["tail_item"] == {"n": 0, "HR@10": None, "NDCG@10": None, "MRR@10": None}
    assert out["head_item"]["n"] == 3 and out["head_item"]["HR@10"] == pytest.approx(2 / 3)


def test_top_fraction_breaks_ties_by_id():
    values = np.array([0, 5, 3, 3, 3, 1, 0, 0, 0, 0, 0])  # index 0 = padding
    top = _top_fraction(values, np.arange(1, 11), 0.2)
    assert np.flatnonzero(top).tolist() == [1, 2]  # pop 5, then the smallest id among the 3s


def test_sampled_negatives_exclude_history_are_distinct_and_shared():
    seen = [np.array([1, 2, 3]), np.array([4, 5])]
    a = sample_negatives(seen, n_items=60, n_neg=50, seed=7)
    b = sample_negatives(seen, n_items=60, n_neg=50, seed=7)
    assert torch.equal(a, b)
    for row, s in zip(a.numpy(), seen):
        assert len(set(row)) == 50 and not set(row) & set(s) and row.min() >= 1 and row.max() < 60
    assert not torch.equal(a, sample_negatives(seen, n_items=60, n_neg=50, seed=8))


class _FixedScorer:
    """Scores item j of every user as ``scores[user_row, j]``; records the widths it was fed."""

    ITEM_SEQ, ITEM_SEQ_LEN = "item_id_list", "item_length"

    def __init__(self, scores: torch.Tensor):
        self.scores, self.n_items, self.widths = scores, scores.size(1), []

    def eval(self):
        return self

    def full_sort_predict(self, inter):
        seq = inter[self.ITEM_SEQ]
        self.widths.append(seq.size(1))
        return self.scores[seq[:, 0]]  # the first item id doubles as the user's row here


def _split(**extra):
    from bench.evaluation.ranking import EvalSplit

    seq = torch.tensor([[0, 3, 0, 0], [1, 2, 4, 5], [2, 1, 0, 0]])
    return EvalSplit(user=torch.tensor([1, 2, 3]), item_seq=seq,
                     item_seq_len=torch.tensor([2, 4, 2]), target=torch.tensor([4, 3, 1]), **extra)


def test_rank_targets_full_history_and_sampled():
    from bench.evaluation.ranking import rank_targets

    # items 0..5 (0 = padding). Row r holds the scores of the user whose first input item is r.
    scores = torch.tensor([[9.0, 5, 4, 3, 2, 1],    # user 1: target 4 scores 2 -> rank 4
                           [9.0, 1, 2, 6, 5, 4],    # user 2: target 3 scores 6 -> rank 1
                           [9.0, 3, 5, 9, 1, 0]])   # user 3: target 1 scores 3 -> rank 3
    model = _FixedScorer(scores)
    assert rank_targets(model, _split(), batch_size=2).tolist() == [4, 1, 3]
    assert sorted(model.widths) == [2, 4]  # length-sorted batches trimmed to their longest row
    history = [np.array([1, 2, 3]), np.array([3, 4]), np.array([2, 1, 3])]  # user 3 repeats 1
    assert rank_targets(model, _split(history=history), batch_size=2).tolist() == [1, 1, 1]
    negatives = torch.tensor([[1, 5], [4, 5], [4, 5]])
    assert rank_targets(model, _split(negatives=negatives), batch_size=3).tolist() == [2, 1, 1]
