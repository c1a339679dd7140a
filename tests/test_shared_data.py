"""The shared real datasets load through the suite's importers and match their PROVENANCE.md
figures (skipped, with the reason, when ../shared/data is absent, as on a fresh clone)."""
from __future__ import annotations

import pandas as pd
import pytest

from bench.config import compose
from bench.data.sources import prepare
from bench.data.stats import dataset_stats

from conftest import SHARED_DATA

pytestmark = [pytest.mark.shared_data,
              pytest.mark.skipif(not SHARED_DATA.is_dir(),
                                 reason="../shared/data is absent (a fresh clone has no ../shared)")]

# (users, items, interactions) from each PROVENANCE.md
PROVENANCE = {"beauty": (22363, 12101, 198502), "yelp": (30431, 20033, 316354),
              "fashion": (39387, 23033, 278677), "yelp-llmesr": (15720, 11383, 192214),
              "fashion-llmesr": (9094, 4722, 34759)}


def _prepare(name, tmp_path):
    cfg = compose([f"dataset={name}", f"paths.data={SHARED_DATA}"])
    return prepare(cfg["dataset"], tmp_path)


@pytest.mark.parametrize("name", sorted(PROVENANCE))
def test_counts_match_provenance_and_fingerprint_is_stable(name, tmp_path):
    ds = _prepare(name, tmp_path / "a")
    assert (ds.meta["n_users"], ds.meta["n_items"], ds.meta["n_interactions"]) == PROVENANCE[name]
    assert not any(ds.meta["source"]["repairs"].values())
    assert _prepare(name, tmp_path / "b").fingerprint == ds.fingerprint


def test_text_fields_and_coverage(tmp_path):
    beauty, yelp = _prepare("beauty", tmp_path), _prepare("yelp", tmp_path)
    assert (beauty.items["title"] != "").mean() == pytest.approx(0.9994, abs=1e-4)
    assert (beauty.items["brand"] != "").mean() == pytest.approx(0.8266, abs=1e-4)
    names = yelp.items.set_index("item")["name"]
    assert (names != "").all() and (yelp.items["categories"] != "").all()
    assert _prepare("yelp-llmesr", tmp_path).text_fields == []


def test_fashion_kg_text_equals_the_provenance_join(tmp_path):
    fashion = _prepare("fashion", tmp_path)
    ref = pd.read_csv(SHARED_DATA / "fashion/pgpr_clothing_kg/item_text.tsv", sep="\t", dtype=str,
                      keep_default_na=False).rename(columns={"asin": "item"})
    merged = fashion.items.merge(ref, on="item", suffixes=("", "_ref"))
    assert len(merged) == 23033
    assert (merged["brand"] == merged["brand_ref"]).all()
    assert (merged["categories"] == merged["categories_ref"]).all()


def test_llmesr_group_shares_match_the_measured_figures(tmp_path):
    """methods.md §0.2: on LLM-ESR's Yelp 79.3% short users, 73.3% tail items, 22.8% tail targets."""
    paper = compose(["protocol=paper"])["protocol"]
    stats = dataset_stats(_prepare("yelp-llmesr", tmp_path), {"paper": paper},
                          {"item": 13, "user": 12})
    g = stats["groups"]["paper"]
    figures = (g["short_users"], g["tail_items"], g["tail_test_targets"])
    assert figures == pytest.approx((0.793, 0.733, 0.228), abs=6e-4)  # quoted to 3 digits
