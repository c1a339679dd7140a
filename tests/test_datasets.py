"""Dataset recipes, importers and validation, on small files written by ``datafiles``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main
from bench.config import compose
from bench.data.download import download
from bench.data.readers import read_pgpr_kg
from bench.data.sources import prepare
from bench.data.stats import dataset_stats, update_card
from bench.errors import BenchError

import datafiles
from conftest import tiny_overrides


def _dataset(name: str, tmp_path: Path, *overrides: str) -> dict:
    return compose([f"dataset={name}", f"paths.cache={tmp_path / 'cache'}", *overrides])["dataset"]


def _prepare(name: str, tmp_path: Path, *overrides: str):
    return prepare(_dataset(name, tmp_path, *overrides), tmp_path / "cache")


def _left_behind(tmp_path: Path) -> list[Path]:
    prepared = tmp_path / "cache" / "prepared"
    return list(prepared.iterdir()) if prepared.exists() else []


# --- raw recipes ---------------------------------------------------------------------------

def test_amazon2014_recipe_kcore_order_text_and_counts(tmp_path):
    raw = datafiles.write_amazon2014(tmp_path / "raw")
    ds = _prepare("beauty-raw", tmp_path, f"dataset.raw_dir={raw}")
    inter = ds.interactions
    assert (ds.meta["n_users"], ds.meta["n_items"], ds.meta["n_interactions"]) == (10, 6, 60)
    assert inter[inter.user == "U3"]["item"].tolist() == ["A5", "A4", "A3", "A2", "A1", "A0"]
    counts, repairs = ds.meta["source"]["counts"], ds.meta["source"]["repairs"]
    assert counts["duplicate_reviews_dropped"] == 1 and counts["kcore_interactions_dropped"] == 25
    assert repairs["items_without_metadata"] == 1  # A5 has no metadata row
    a0 = ds.items.set_index("item").loc["A0"]
    assert a0["categories"] == "Beauty, Skin Care, Lips"  # the first category path
    assert (a0["price"], a0["brand"], a0["description"]) == ("4", "Rosy's", "A balm. Soft.")
    assert ds.items.set_index("item").loc["A3", "brand"] == ""
    assert "UNUSED" not in set(ds.items["item"])


def test_single_pass_core_keeps_what_iterative_core_removes(tmp_path):
    raw = datafiles.write_amazon2014(tmp_path / "raw")
    ds = _prepare("beauty-raw", tmp_path, f"dataset.raw_dir={raw}", "dataset.kcore=single")
    assert ds.meta["n_users"] == 11 and "x1" in set(ds.interactions["user"])


def test_amazon2018_recipe_reads_json_metadata_lists(tmp_path):
    raw = datafiles.write_amazon2018(tmp_path / "raw")
    ds = _prepare("fashion-raw", tmp_path, f"dataset.raw_dir={raw}")
    a1 = ds.items.set_index("item").loc["A1"]
    assert (a1["categories"], a1["feature"], a1["price"]) == ("Clothing, Men, Shirts",
                                                              "100% linen, Machine wash", "$19.99")
    assert ds.meta["n_interactions"] == 60


@pytest.mark.parametrize("old_schema", [False, True])
def test_yelp_recipe_date_window_repeats_and_both_schemas(tmp_path, old_schema):
    raw = datafiles.write_yelp(tmp_path / "raw", old_schema)
    ds = _prepare("yelp-raw", tmp_path, f"dataset.raw_dir={raw}")
    assert ds.meta["source"]["counts"]["reviews_outside_dates"] == 1
    assert ds.meta["n_interactions"] == 36  # 6 users x (5 businesses + 1 repeat visit)
    u0 = ds.interactions[ds.interactions.user == "u0"]
    assert u0["item"].tolist() == ["b0", "b1", "b2", "b3", "b4", "b0"]
    assert u0["ts"].iloc[0] == (20190110100000 if not old_schema else 20190110000000)
    b1 = ds.items.set_index("item").loc["b1"]
    assert (b1["categories"], b1["is_open"], b1["review_count"]) == (
        "Coffee & Tea, Cafes", "True" if old_schema else "1", "11")


def test_prepare_raw_on_the_command_line_uses_the_raw_recipe(tmp_path, capsys):
    raw = datafiles.write_amazon2014(tmp_path / "raw")
    assert main(["data", "prepare", "beauty", "--raw", str(raw),
                 f"paths.cache={tmp_path / 'cache'}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("beauty-raw: 10 users, 6 items, 60 interactions")
    assert "items_without_metadata 1" in out


def test_missing_raw_files_say_where_to_put_them(tmp_path, capsys):
    assert main(["data", "prepare", "beauty", "--raw", str(tmp_path / "nothing"),
                 f"paths.cache={tmp_path / 'cache'}"]) == 2
    err = capsys.readouterr().err
    assert "none of reviews_Beauty_5.json.gz, reviews_Beauty.json.gz is in" in err
    assert "data download beauty-raw" in err


def test_a_dataset_without_a_raw_recipe_is_named(capsys):
    assert main(["data", "prepare", "synthetic", "--raw", "/tmp"]) == 2
    assert "dataset 'synthetic' has no raw recipe; raw recipes: beauty-raw" in capsys.readouterr().err


# --- download -------------------------------------------------------------------------------

def test_download_streams_to_a_part_file_then_renames(tmp_path):
    src = datafiles.write_amazon2014(tmp_path / "mirror")
    cfg = {"name": "beauty-raw", "downloads": [f"file://{p}" for p in sorted(src.iterdir())]}
    paths = download(cfg, tmp_path / "raw")
    assert [p.name for p in paths] == sorted(p.name for p in src.iterdir())
    assert all(p.read_bytes() == (src / p.name).read_bytes() for p in paths)
    assert not list((tmp_path / "raw").glob("*.part"))


def test_unreachable_download_fails_in_one_line_with_manual_steps(tmp_path):
    cfg = {"name": "beauty-raw", "downloads": [f"file://{tmp_path}/absent/reviews.json.gz"]}
    with pytest.raises(BenchError, match=r"could not download .*by hand and put the files in"):
        download(cfg, tmp_path / "raw")
    assert not list((tmp_path / "raw").iterdir())


def test_yelp_download_explains_the_terms_page(capsys, tmp_path):
    assert main(["data", "download", "yelp", "--raw", str(tmp_path)]) == 2
    assert "https://www.yelp.com/dataset/download" in capsys.readouterr().err


# --- shared-format importers ----------------------------------------------------------------

def test_p5_with_recbole_item_file(tmp_path):
    folder = datafiles.write_p5(tmp_path / "p5")
    ds = _prepare("beauty", tmp_path, f"dataset.sequences={folder / 'user_sequence.txt'}",
                  f"dataset.item_file={folder / 'Toy.item'}")
    items = ds.items.set_index("item")
    assert items.loc["B0", "title"] == 'Gel "0" pen' and items.loc["B2", "brand"] == ""
    assert items.loc["B7", "title"] == "" and ds.meta["source"]["repairs"]["items_without_metadata"] == 1
    assert ds.interactions[ds.interactions.user == "user1"]["item"].tolist()[:3] == ["B1", "B2", "B3"]


def test_p5_with_item_json_and_id_offset(tmp_path):
    folder = datafiles.write_p5(tmp_path / "p5")
    ds = _prepare("yelp", tmp_path, f"dataset.sequences={folder / 'sequential_data.txt'}",
                  f"dataset.item_json={folder / 'items.json'}")
    assert ds.items.set_index("item").loc["1", "name"] == "Place 1"  # key 0 + offset 1
    shifted = _prepare("yelp", tmp_path, f"dataset.sequences={folder / 'sequential_data.txt'}",
                       f"dataset.item_json={folder / 'items.json'}", "dataset.id_offset=0")
    assert shifted.items.set_index("item").loc["1", "name"] == "Place 2"


def test_llmesr_inter_is_id_only_and_says_so(tmp_path, capsys):
    path = datafiles.write_llmesr(tmp_path / "inter.txt")
    ds = _prepare("yelp-llmesr", tmp_path, f"dataset.inter={path}")
    assert ds.text_fields == [] and ds.meta["n_users"] == 8 and ds.meta["source"]["id_only"]
    assert ds.interactions[ds.interactions.user == "1"]["item"].tolist() == ["1", "2", "3", "1"]
    assert main(["data", "prepare", "yelp-llmesr", f"dataset.inter={path}",
                 f"paths.cache={tmp_path / 'cache'}"]) == 0
    assert "ID-only dataset" in capsys.readouterr().out


def test_pgpr_kg_text(tmp_path):
    folder = datafiles.write_pgpr(tmp_path / "kg")
    table = read_pgpr_kg(folder)
    assert table.to_dict("records") == [
        {"item": "B0", "brand": "Pilot", "categories": "Office | Pens"},
        {"item": "B1", "brand": "", "categories": "Office"},
        {"item": "B2", "brand": "Zebra", "categories": "Ink | Office"}]


def test_pgpr_kg_relation_file_of_another_release_is_an_error(tmp_path):
    folder = datafiles.write_pgpr(tmp_path / "kg")
    datafiles._write_lines(folder / "brand_p_b.txt.gz", ["0", "1"])
    with pytest.raises(BenchError, match="brand_p_b.txt.gz: 2 lines but product.txt.gz has 3"):
        read_pgpr_kg(folder)


# --- validation: each bad input is one clear error or a counted repair ----------------------

def _truncate_gzip(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_gzip_names_file_and_line(tmp_path):
    raw = datafiles.write_amazon2014(tmp_path / "raw")
    _truncate_gzip(raw / "reviews_Beauty_5.json.gz")
    with pytest.raises(BenchError, match=r"reviews_Beauty_5.json.gz: the gzip stream is truncated "
                                         r"or corrupt after line \d+.*download the file again"):
        _prepare("beauty-raw", tmp_path, f"dataset.raw_dir={raw}")
    assert _left_behind(tmp_path) == []


def test_non_utf8_bytes_name_line_and_column(tmp_path):
    folder = datafiles.write_p5(tmp_path / "p5")
    seq = folder / "user_sequence.txt"
    lines = seq.read_bytes().split(b"\n")
    lines[3] = b"user\xe9 B1 B2 B3 B4 B5"
    seq.write_bytes(b"\n".join(lines))
    with pytest.raises(BenchError, match=r"user_sequence.txt line 4: byte 0xe9 at column 5 is not "
                                         r"valid utf-8; re-save .* or set dataset.encoding"):
        _prepare("beauty", tmp_path, f"dataset.sequences={seq}", "dataset.item_file=null")
    ok = _prepare("beauty", tmp_path, f"dataset.sequences={seq}", "dataset.item_file=null",
                  "dataset.encoding=latin-1")
    assert "useré" in set(ok.interactions["user"])


def test_missing_columns_in_item_file(tmp_path):
    folder = datafiles.write_p5(tmp_path / "p5")
    with pytest.raises(BenchError, match=r"Toy.item: missing column\(s\) description; found item_id"):
        _prepare("beauty", tmp_path, f"dataset.sequences={folder / 'user_sequence.txt'}",
                 f"dataset.item_file={folder / 'Toy.item'}", "dataset.text_fields=[title,description]")


def test_missing_fields_in_raw_reviews(tmp_path):
    raw = datafiles.write_amazon2014(tmp_path / "raw")
    datafiles._write_lines(raw / "reviews_Beauty_5.json.gz",
                           [json.dumps({"reviewerID": "u", "asin": "a", "unixReviewTime": 1}),
                            json.dumps({"user": "u", "item": "b"})])
    with pytest.raises(BenchError, match=r"line 2: missing field\(s\) reviewerID, asin, "
                                         r"unixReviewTime \(found: user, item\); is this the right"):
        _prepare("beauty-raw", tmp_path, f"dataset.raw_dir={raw}")


def test_malformed_llmesr_lines(tmp_path):
    path = tmp_path / "inter.txt"
    path.write_text("1 1\n1 2\nx 3\n")
    with pytest.raises(BenchError, match=r"inter.txt line 3: expected '<user id> <item id>'"):
        _prepare("yelp-llmesr", tmp_path, f"dataset.inter={path}")
    path.write_text("1 1\n2 2\n1 3\n")
    with pytest.raises(BenchError, match="user 1 reappears after other users"):
        _prepare("yelp-llmesr", tmp_path, f"dataset.inter={path}")


def test_duplicate_user_lines_in_a_sequence_file(tmp_path):
    seq = tmp_path / "user_sequence.txt"
    seq.write_text("u1 a b c\nu2 a b c\nu1 d e f\n")
    with pytest.raises(BenchError, match="line 3: user 'u1' already appeared on line 1"):
        _prepare("beauty", tmp_path, f"dataset.sequences={seq}", "dataset.item_file=null")


def test_duplicates_and_short_users_are_counted_repairs(tmp_path):
    path = tmp_path / "inter.txt"
    path.write_text("1 1\n1 2\n1 3\n2 1\n2 2\n3 5\n3 6\n3 7\n3 8\n")
    ds = _prepare("yelp-llmesr", tmp_path, f"dataset.inter={path}")
    repairs = ds.meta["source"]["repairs"]
    assert (repairs["short_users_dropped"], repairs["short_user_interactions_dropped"]) == (1, 2)
    assert ds.meta["n_users"] == 2
    too_low = _dataset("yelp-llmesr", tmp_path, f"dataset.inter={path}", "dataset.min_user_len=2")
    with pytest.raises(BenchError, match="dataset.min_user_len=2: leave-one-out needs at least 3"):
        prepare(too_low, tmp_path / "cache")


def test_empty_text_fields_show_in_coverage(tmp_path):
    folder = datafiles.write_p5(tmp_path / "p5")
    ds = _prepare("beauty", tmp_path, f"dataset.sequences={folder / 'user_sequence.txt'}",
                  f"dataset.item_file={folder / 'Toy.item'}")
    protocols = {p: compose([f"protocol={p}"])["protocol"] for p in ("full", "paper")}
    stats = dataset_stats(ds, protocols, {"item": 4, "user": 9})
    assert stats["text_coverage"]["brand"] == pytest.approx(6 / 8)  # B2 'None', B7 no row
    assert stats["text_coverage"]["title"] == pytest.approx(7 / 8)
    assert stats["repairs"]["items_without_metadata"] == 1


# --- stats and cards ------------------------------------------------------------------------

def test_stats_group_shares_equal_the_run_record(trained, session_dir):
    """``data stats`` numbers items and users as RecBole does, so its shares are a run's."""
    art = trained("sasrec", "full")
    ds = prepare(compose(tiny_overrides(session_dir))["dataset"], session_dir / "cache")
    assert ds.fingerprint == art.record["dataset"]["fingerprint"]
    protocol = compose(["protocol=full"])["protocol"]
    shares = dataset_stats(ds, {"full": protocol}, None)["groups"]["full"]
    test = art.record["metrics"]["test"]
    n = test["overall"]["n"]
    assert shares["tail_test_targets"] * n == pytest.approx(test["tail_item"]["n"])
    assert shares["short_users"] * n == pytest.approx(test["short_user"]["n"])


def test_update_card_replaces_only_that_datasets_section():
    card = ("# Card\n\n<!-- stats:yelp:begin -->\nold\n<!-- stats:yelp:end -->\n\n"
            "<!-- stats:yelp-llmesr:begin -->\nkeep\n<!-- stats:yelp-llmesr:end -->\n## Terms\n")
    new = update_card(card, "yelp", "new table\n")
    assert new == card.replace("old\n", "new table\n")
    assert "<!-- stats:beauty:begin -->\nx\n<!-- stats:beauty:end -->" in update_card("# Bare\n",
                                                                                        "beauty", "x\n")


def test_stats_command_prints_the_card_table(tmp_path, capsys):
    path = datafiles.write_llmesr(tmp_path / "inter.txt")
    assert main(["data", "stats", "fashion-llmesr", f"dataset.inter={path}",
                 f"paths.cache={tmp_path / 'cache'}"]) == 0
    out = capsys.readouterr().out
    assert "| users " in out and "none: ID-only dataset" in out and "| paper " in out
