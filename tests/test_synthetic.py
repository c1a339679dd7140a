"""The synthetic dataset: deterministic, long-tailed, with real item text."""
from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from bench.adapters import CONFIG_DIR
from bench.data.sources import prepare
from bench.data.synthetic import PRESETS, generate


@pytest.mark.parametrize("name", ["synthetic-tiny", "synthetic"])
def test_generated_data_has_the_fingerprint_its_config_pins(name, tmp_path):
    """The leaderboard's synthetic records were measured on the pinned data. A change to the
    generator or lexicon that changes the data must come with a new pin and new records."""
    cfg = yaml.safe_load((CONFIG_DIR / "dataset" / f"{name}.yaml").read_text())
    assert prepare(cfg, tmp_path).fingerprint == cfg["fingerprint"]


def test_same_seed_same_data_other_seed_other_data():
    a_inter, a_items = generate(PRESETS["tiny"])
    b_inter, b_items = generate(PRESETS["tiny"])
    c_inter, _ = generate(replace(PRESETS["tiny"], seed=1))
    assert a_inter.equals(b_inter) and a_items.equals(b_items)
    assert not a_inter.equals(c_inter)


def test_long_tail_most_items_have_under_five_interactions():
    for preset in ("tiny", "small"):
        inter, items = generate(PRESETS[preset])
        pop = inter["item"].value_counts()
        assert (pop < 5).mean() > 0.5, preset
        head_share = pop.sort_values(ascending=False)[: len(pop) // 5].sum() / len(inter)
        assert head_share > 0.45, preset  # a real head: top 20% of items hold most interactions
        assert set(items["item"]) == set(inter["item"])


def test_sequences_respect_minimum_length_and_have_no_repeats():
    inter, _ = generate(PRESETS["tiny"])
    lengths = inter.groupby("user").size()
    assert lengths.min() >= PRESETS["tiny"].min_len
    assert not inter.duplicated(["user", "item"]).any()


def test_item_text_is_real_words_and_users_follow_categories():
    inter, items = generate(PRESETS["small"])
    assert (items[["title", "brand", "categories"]] != "").all().all()
    assert items["title"].is_unique
    top = items.set_index("item")["categories"].str.split(" > ").str[1]
    cats = inter["item"].map(top)
    same_next = (cats.values[1:] == cats.values[:-1])[inter["user"].values[1:] == inter["user"].values[:-1]]
    shares = top.value_counts(normalize=True)
    chance = float((shares ** 2).sum())
    assert same_next.mean() > chance + 0.3  # consecutive items share a category far above chance
