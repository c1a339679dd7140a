"""The shared real datasets load through the suite's importers (skipped without ../shared/data)."""
from __future__ import annotations

import pytest

from bench.config import compose
from bench.data.sources import prepare

from conftest import SHARED_DATA

pytestmark = [pytest.mark.shared_data,
              pytest.mark.skipif(not (SHARED_DATA / "beauty").is_dir(),
                                 reason="../shared/data/beauty is absent (a fresh clone has no ../shared)")]


def test_beauty_matches_its_provenance_counts(tmp_path):
    cfg = compose(["dataset=beauty", f"dataset.sequences={SHARED_DATA}/beauty/user_sequence.txt",
                   f"dataset.item_file={SHARED_DATA}/beauty/Amazon_Beauty.item"])
    ds = prepare(cfg["dataset"], tmp_path)
    assert (ds.meta["n_users"], ds.meta["n_items"], ds.meta["n_interactions"]) == (22363, 12101, 198502)
    assert (ds.items["title"] != "").mean() > 0.99
    again = prepare(cfg["dataset"], tmp_path / "again")
    assert again.fingerprint == ds.fingerprint
