"""Small fixture files in every raw and shared format the suite reads, written by the tests.

The sizes are chosen so that the recipes' filtering has something to do: an Amazon category
where iterative and single-pass 5-core differ, a Yelp dump with reviews outside the date window,
and metadata with missing items and empty fields.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def amazon_reviews() -> list[dict]:
    """10 users x 6 items, all dense (5-core holds), plus a fringe that only iterative k-core
    removes: user ``x1`` reviews items ``z1..z5``, each of which has 5 reviews only with x1 and
    four one-off users ``y*`` (the y users have 1 review each, so they go first; then the z items
    drop to 1 review; then x1 drops to 0 in the second round)."""
    rows = []
    for u in range(10):
        for k, i in enumerate(range(6)):
            rows.append({"reviewerID": f"U{u}", "asin": f"A{i}", "overall": 5.0 - (k % 3),
                         "unixReviewTime": 1_300_000_000 + 1000 * (5 - k) + u})
    for z in range(5):
        rows.append({"reviewerID": "x1", "asin": f"Z{z}", "overall": 4.0,
                     "unixReviewTime": 1_200_000_000 + z})
        for y in range(4):
            rows.append({"reviewerID": f"y{z}{y}", "asin": f"Z{z}", "overall": 3.0,
                         "unixReviewTime": 1_200_000_100 + y})
    rows.append(dict(rows[0]))  # the same review twice: a duplicate the recipe drops and counts
    return rows


def write_amazon2014(raw: Path, category: str = "Beauty") -> Path:
    """``reviews_<cat>_5.json.gz`` (JSON) and ``meta_<cat>.json.gz`` (Python literals, as 2014)."""
    _write_lines(raw / f"reviews_{category}_5.json.gz", [json.dumps(r) for r in amazon_reviews()])
    meta = []
    for i in range(5):  # A5 has no metadata row: counted as items_without_metadata
        rec = {"asin": f"A{i}", "title": f"Rose Lip Balm {i}", "price": 4.0 + i,
               "salesRank": {"Beauty": 100 + i}, "imUrl": "http://x/y.jpg",
               "categories": [["Beauty", "Skin Care", "Lips"], ["Beauty", "Gifts"]],
               "description": "A balm.\nSoft."}
        if i != 3:
            rec["brand"] = "Rosy's"  # item A3 has an empty brand
        meta.append(repr(rec))
    meta.append(repr({"asin": "UNUSED", "title": "never reviewed"}))
    _write_lines(raw / f"meta_{category}.json.gz", meta)
    return raw


def write_amazon2018(raw: Path) -> Path:
    """``AMAZON_FASHION.json.gz`` + ``meta_AMAZON_FASHION.json.gz`` (both JSON lines)."""
    rows = [{**r, "verified": True} for r in amazon_reviews()]
    _write_lines(raw / "AMAZON_FASHION.json.gz", [json.dumps(r) for r in rows])
    meta = [json.dumps({"asin": f"A{i}", "title": f"Linen shirt {i}", "brand": "Weave",
                        "category": ["Clothing", "Men", "Shirts"], "price": "$19.99",
                        "feature": ["100% linen", "Machine wash"], "description": ["Cool."],
                        "also_buy": ["A1"], "date": "June 3, 2016"}) for i in range(6)]
    _write_lines(raw / "meta_AMAZON_FASHION.json.gz", meta)
    return raw


def write_yelp(raw: Path, old_schema: bool = False) -> Path:
    """``business.json`` + ``review.json``; 6 users x 5 businesses in 2019 and noise in 2018.
    ``old_schema``: the 2013 challenge fields (``open``, list categories, date without time)."""
    reviews = []
    for u in range(6):
        for b in range(5):
            date = f"2019-0{1 + b}-1{u} 10:00:00"
            reviews.append({"review_id": f"r{u}{b}", "user_id": f"u{u}", "business_id": f"b{b}",
                            "stars": 4, "date": date[:10] if old_schema else date})
            if b == 0:  # the same user visiting again later: a repeat, kept
                reviews.append({"review_id": f"q{u}", "user_id": f"u{u}", "business_id": "b0",
                                "stars": 5, "date": "2019-09-01" if old_schema else
                                "2019-09-01 08:00:00"})
    reviews.append({"review_id": "old", "user_id": "u0", "business_id": "b4", "stars": 1,
                    "date": "2018-05-05" if old_schema else "2018-05-05 00:00:00"})
    business = []
    for b in range(5):
        rec = {"business_id": f"b{b}", "name": f"Cafe {b}", "city": "Tempe", "state": "AZ",
               "stars": 4.5, "review_count": 10 + b, "latitude": 33.4, "longitude": -111.9}
        if old_schema:
            rec.update(open=True, categories=["Coffee & Tea", "Cafes"], type="business")
        else:
            rec.update(is_open=1, categories="Coffee & Tea, Cafes")
        business.append(json.dumps(rec))
    _write_lines(raw / "review.json", [json.dumps(r) for r in reviews])
    _write_lines(raw / "business.json", business)
    return raw


def write_p5(folder: Path) -> Path:
    """P5 ``user_sequence.txt`` + RecBole ``.item`` (quoted fields, ``None``) + item JSON."""
    seqs = [f"user{u} " + " ".join(f"B{(u + k) % 8}" for k in range(5 + u % 3)) for u in range(12)]
    _write_lines(folder / "user_sequence.txt", seqs)
    header = "item_id:token\ttitle:token\tcategories:token_seq\tprice:float\tbrand:token"
    rows = [f'B{i}\t"Gel ""{i}"" pen"\t\'Office\', \'Pens\'\t{1.5 + i}\t{"None" if i == 2 else "Pilot"}'
            for i in range(7)]  # B7 has no row
    _write_lines(folder / "Toy.item", [header, *rows])
    (folder / "items.json").write_text(json.dumps(
        {str(k): {"title": f"Place {k + 1}", "description": "Bars, Pubs"} for k in range(8)}))
    ints = [f"{u + 1} " + " ".join(str((u + k) % 8 + 1) for k in range(5)) for u in range(12)]
    _write_lines(folder / "sequential_data.txt", ints)
    return folder


def write_llmesr(path: Path) -> Path:
    lines = [f"{u} {i}" for u in range(1, 9) for i in ([u, u + 1, u + 2, 1] if u % 2 else [u, 2, 3])]
    return _write_lines(path, lines)


def write_pgpr(folder: Path) -> Path:
    _write_lines(folder / "product.txt.gz", ["B0", "B1", "B2"])
    _write_lines(folder / "brand.txt.gz", ["Pilot", "Zebra"])
    _write_lines(folder / "brand_p_b.txt.gz", ["0", "", "1"])
    _write_lines(folder / "category.txt.gz", ["Office", "Pens", "Ink"])
    _write_lines(folder / "category_p_c.txt.gz", ["0 1", "0", "2 0"])
    return folder
