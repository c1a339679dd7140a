"""A deterministic synthetic long-tail dataset with real item text: the suite's offline default.

Why it looks like this: the LLM methods claim to help long-tail items by reading item text. The
data must therefore (a) have a long tail (Zipf-like popularity, most items with under five
interactions), and (b) make text informative: users stay in a category for a while, drift to
others, and tend to buy the same product type again (another serum, another tent). A tail item's
title then says what an ID embedding trained on two interactions cannot.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.data.lexicon import LEXICON


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and shape of a synthetic dataset. ``seed`` makes it byte-for-byte reproducible."""

    n_users: int
    n_items: int
    mean_extra_len: float  # sequence length = min_len + lognormal extra with this mean
    min_len: int = 5
    max_len: int = 200
    zipf_exponent: float = 1.2
    stay_prob: float = 0.75  # probability of staying in the current category
    same_type_prob: float = 0.5  # probability of buying the same product type again
    drift: float = 0.15  # how far a user's category taste moves at each switch
    seed: int = 0


PRESETS: dict[str, SyntheticSpec] = {
    "tiny": SyntheticSpec(n_users=300, n_items=500, mean_extra_len=4.0),
    "small": SyntheticSpec(n_users=5000, n_items=5000, mean_extra_len=6.0),
}


def _make_items(spec: SyntheticSpec, rng: np.random.Generator) -> pd.DataFrame:
    """Items with category, product type, brand, title and price; popularity weight per item."""
    cats = list(LEXICON)
    cat_share = rng.dirichlet(np.full(len(cats), 3.0))
    cat_of = rng.choice(len(cats), size=spec.n_items, p=cat_share)
    rows, seen_titles = [], set()
    for idx, c in enumerate(cat_of):
        lex = LEXICON[cats[c]]
        noun_i = int(rng.integers(len(lex["nouns"])))
        brand = str(rng.choice(lex["brands"]))
        adjs = rng.choice(lex["adjectives"], size=2, replace=False)
        title = f"{brand} {adjs[0]} {lex['nouns'][noun_i]}"
        if title in seen_titles:  # make titles unique the way shops do: add a second descriptor
            title = f"{brand} {adjs[0]} {adjs[1]} {lex['nouns'][noun_i]}"
        base, pack = title, 2
        while title in seen_titles:
            title, pack = f"{base}, Pack of {pack}", pack + 1
        seen_titles.add(title)
        lo, hi = lex["price"]
        price = round(float(np.exp(rng.uniform(np.log(lo), np.log(hi)))), 2)
        rows.append({"category": int(c), "type": noun_i, "title": title, "brand": brand,
                     "categories": f"{lex['path']} > {lex['nouns'][noun_i]}",
                     "price": f"{price:.2f}"})
    items = pd.DataFrame(rows)
    ranks = rng.permutation(spec.n_items) + 1  # popularity rank independent of category
    items["weight"] = 1.0 / ranks ** spec.zipf_exponent
    return items


def _sampler_tables(items: pd.DataFrame) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """(category, type) -> (item indices, cumulative popularity weights) for fast sampling."""
    tables = {}
    for key, grp in items.groupby(["category", "type"]):
        w = grp["weight"].to_numpy()
        tables[(int(key[0]), int(key[1]))] = (grp.index.to_numpy(), np.cumsum(w) / w.sum())
    return tables


def _user_sequence(spec: SyntheticSpec, rng: np.random.Generator, n_cats: int,
                   types_per_cat: list[list[int]], tables, length: int) -> list[int]:
    """One user's items: a walk over categories with drifting taste and product-type loyalty."""
    taste = rng.dirichlet(np.full(n_cats, 0.3))
    cat = int(rng.choice(n_cats, p=taste))
    last_type: dict[int, int] = {}
    seq: list[int] = []
    chosen: set[int] = set()
    while len(seq) < length:
        if rng.random() > spec.stay_prob:
            taste = (1 - spec.drift) * taste + spec.drift * rng.dirichlet(np.full(n_cats, 0.3))
            cat = int(rng.choice(n_cats, p=taste / taste.sum()))
        if cat in last_type and rng.random() < spec.same_type_prob:
            typ = last_type[cat]
        else:
            typ = int(rng.choice(types_per_cat[cat]))
        idx, cum = tables[(cat, typ)]
        for _ in range(8):  # no repeated items within a user (as in 5-core Amazon data)
            item = int(idx[min(np.searchsorted(cum, rng.random()), len(idx) - 1)])
            if item not in chosen:
                break
        else:
            continue
        seq.append(item)
        chosen.add(item)
        last_type[cat] = typ
    return seq


def generate(spec: SyntheticSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(interactions, items)`` in the prepared-dataset layout (see ``bench.data.prepared``).

    Items nobody interacted with are dropped and ids are assigned in order of first appearance.
    """
    rng = np.random.default_rng(spec.seed)
    items = _make_items(spec, rng)
    tables = _sampler_tables(items)
    n_cats = len(LEXICON)
    types_per_cat = [sorted(t for (c, t) in tables if c == cat) for cat in range(n_cats)]
    sigma = 1.0
    mu = np.log(spec.mean_extra_len) - sigma**2 / 2
    lengths = spec.min_len + np.floor(rng.lognormal(mu, sigma, size=spec.n_users)).astype(int)
    lengths = np.minimum(lengths, spec.max_len)
    users, seqs = [], []
    for u, length in enumerate(lengths):
        seqs.append(_user_sequence(spec, rng, n_cats, types_per_cat, tables, int(length)))
        users.append(u)
    flat = np.concatenate(seqs)
    order = pd.unique(flat)  # ids in order of first appearance
    new_id = {int(old): new for new, old in enumerate(order, start=1)}
    inter = pd.DataFrame({
        "user": np.repeat([f"u{u + 1:06d}" for u in users], [len(s) for s in seqs]),
        "item": [f"i{new_id[int(i)]:06d}" for i in flat],
        "ts": np.concatenate([np.arange(len(s)) for s in seqs]),
    })
    kept = items.loc[order, ["title", "brand", "categories", "price"]].copy()
    kept.insert(0, "item", [f"i{k:06d}" for k in range(1, len(order) + 1)])
    return inter, kept.reset_index(drop=True)
