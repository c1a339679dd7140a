"""Full-sort scoring and ranking at a realistic size (20k x 12k x 64 split in the evaluator's
batches of 256 users; one batch per benchmark round)."""
from __future__ import annotations

import shutil

import pytest
import torch

from bench.evaluation.ranking import pessimistic_rank

USERS, ITEMS, DIM = 256, 12000, 64


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    users = torch.randn(USERS, DIM, generator=g)
    items = torch.randn(ITEMS, DIM, generator=g)
    target = torch.randint(0, ITEMS, (USERS,), generator=g)
    return users, items, target


def test_scoring(benchmark, batch):
    users, items, _ = batch
    benchmark.extra_info["gflop"] = 2 * USERS * ITEMS * DIM / 1e9
    benchmark(lambda: users @ items.T)


@pytest.mark.parametrize("kernel", ["eager", "compiled"])
def test_scoring_and_ranking(benchmark, batch, kernel):
    if kernel == "compiled" and shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("torch.compile needs a C++ compiler")
    users, items, target = batch
    benchmark.extra_info["gflop"] = 2 * USERS * ITEMS * DIM / 1e9
    pessimistic_rank(users @ items.T, target, kernel)  # compile outside the timing
    benchmark(lambda: pessimistic_rank(users @ items.T, target, kernel))


def test_top20_serving(benchmark, batch):
    """What serving returns: the top-20 list per user."""
    users, items, _ = batch
    benchmark(lambda: torch.topk(users @ items.T, 20, dim=1))
