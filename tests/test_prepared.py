"""Prepared-dataset format: canonical, fingerprinted, verified on load."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.data.cold import cold_view
from bench.data.prepared import builder_digest, load_prepared, write_prepared
from bench.data.sources import prepare
from bench.errors import BenchError


def _toy():
    inter = pd.DataFrame({"user": ["u2", "u1", "u1", "u1", "u2", "u2"],
                          "item": ["b", "a", "b", "c", "c", "a"], "ts": [0, 0, 1, 2, 1, 2]})
    items = pd.DataFrame({"item": ["c", "b", "a"], "title": ["Tea\tKettle", "Mug", "Pot\nLid"]})
    return inter, items


def test_fingerprint_is_stable_and_order_independent(tmp_path):
    inter, items = _toy()
    a = write_prepared(tmp_path / "a", "toy", inter, items, {"loader": "test"})
    b = write_prepared(tmp_path / "b", "toy", inter.sample(frac=1, random_state=3),
                       items.iloc[::-1], {"loader": "test"})
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16
    assert a.items.loc[a.items["item"] == "a", "title"].item() == "Pot Lid"  # tabs/newlines cleaned
    changed = inter.copy()
    changed.loc[0, "item"] = "a"
    assert write_prepared(tmp_path / "c", "toy", changed, items, {}).fingerprint != a.fingerprint


def test_interactions_without_item_rows_are_an_error(tmp_path):
    inter, items = _toy()
    with pytest.raises(BenchError, match="no row in the item table"):
        write_prepared(tmp_path / "x", "toy", inter, items[items["item"] != "c"], {})
    assert not (tmp_path / "x").exists()


def test_corrupted_file_is_detected(tmp_path):
    inter, items = _toy()
    ds = write_prepared(tmp_path / "d", "toy", inter, items, {})
    path = ds.path / "interactions.tsv"
    path.write_text(path.read_text().replace("u1\ta", "u1\tz"))
    with pytest.raises(BenchError, match="interactions.tsv does not match its checksum"):
        load_prepared(ds.path)


def test_malformed_row_names_file_and_line(tmp_path):
    inter, items = _toy()
    ds = write_prepared(tmp_path / "d", "toy", inter, items, {})
    path = ds.path / "interactions.tsv"
    path.write_text(path.read_text().replace("u1\ta\t0", "u1\ta\tnoon"))
    meta = json.loads((ds.path / "meta.json").read_text())
    from bench.data.prepared import sha256_file
    meta["sha256"]["interactions.tsv"] = sha256_file(path)  # a consistent but malformed copy
    (ds.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BenchError, match=r"interactions.tsv line 2: ts 'noon' is not an integer"):
        load_prepared(ds.path)


def test_corrupted_meta_is_detected(tmp_path):
    inter, items = _toy()
    ds = write_prepared(tmp_path / "d", "toy", inter, items, {})
    (ds.path / "meta.json").write_text("{not json")
    with pytest.raises(BenchError, match="corrupted .*meta.json"):
        load_prepared(ds.path)


def test_prepare_reuses_copy_and_rebuilds_when_recipe_changes(tmp_path):
    cfg = {"name": "synthetic-tiny", "loader": "synthetic", "preset": "tiny", "generator_seed": 0}
    first = prepare(cfg, tmp_path)
    mtime = (first.path / "meta.json").stat().st_mtime_ns
    assert prepare({**cfg, "paper_thresholds": {"item": 3}}, tmp_path).fingerprint == first.fingerprint
    assert (first.path / "meta.json").stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert prepare({**cfg, "generator_seed": 1}, tmp_path).fingerprint != first.fingerprint


TINY = {"name": "synthetic-tiny", "loader": "synthetic", "preset": "tiny", "generator_seed": 0}


def _as_if_written_by_older_code(ds) -> None:
    """Drop the builder digest from a copy's meta.json, as code before it wrote them."""
    meta = json.loads((ds.path / "meta.json").read_text())
    del meta["builder"]
    (ds.path / "meta.json").write_text(json.dumps(meta))


def _meta_mtime(ds) -> int:
    return (ds.path / "meta.json").stat().st_mtime_ns


def test_a_copy_built_by_other_code_is_rebuilt_once(tmp_path):
    """A cached copy is keyed on the code that builds it, not only on the config: a copy an
    older generator left (other titles, same recipe) is replaced, so every machine measures
    the data today's code makes."""
    fresh = prepare(TINY, tmp_path)
    stale_items = fresh.items.assign(title=fresh.items["title"] + ", Pack of 2")
    stale = write_prepared(fresh.path, fresh.name, fresh.interactions, stale_items,
                           fresh.meta["source"])
    _as_if_written_by_older_code(stale)
    assert stale.fingerprint != fresh.fingerprint
    rebuilt = prepare(TINY, tmp_path)
    assert rebuilt.fingerprint == fresh.fingerprint
    assert rebuilt.meta["builder"] == builder_digest()
    mtime = _meta_mtime(rebuilt)
    assert prepare(TINY, tmp_path).fingerprint == fresh.fingerprint
    assert _meta_mtime(rebuilt) == mtime  # reused from now on, not rebuilt on every call


def test_same_data_from_changed_code_keeps_its_fingerprint_and_cold_view(tmp_path):
    fresh = prepare(TINY, tmp_path)
    view = cold_view(fresh, {"cold_fraction": 0.1, "cold_seed": 0}, tmp_path)
    for ds in (fresh, view):
        _as_if_written_by_older_code(ds)
    again = prepare(TINY, tmp_path)
    again_view = cold_view(again, {"cold_fraction": 0.1, "cold_seed": 0}, tmp_path)
    assert (again.fingerprint, again_view.fingerprint) == (fresh.fingerprint, view.fingerprint)
    assert again.meta["builder"] == again_view.meta["builder"] == builder_digest()


def test_data_other_than_the_pinned_fingerprint_is_reported(tmp_path, capsys):
    ds = prepare({**TINY, "fingerprint": "ffffffffffffffff"}, tmp_path)
    err = capsys.readouterr().err
    assert f"dataset 'synthetic-tiny' has fingerprint {ds.fingerprint}, not the " \
           "ffffffffffffffff that configs/dataset/synthetic-tiny.yaml pins" in err
    prepare({**TINY, "fingerprint": ds.fingerprint}, tmp_path)
    assert capsys.readouterr().err == ""


def test_recbole_export_matches_interactions(tmp_path):
    from bench.data.prepared import export_recbole

    inter, items = _toy()
    ds = write_prepared(tmp_path / "d", "toy", inter, items, {})
    data_path = export_recbole(ds, tmp_path / "rb")
    lines = (data_path / "toy" / "toy.inter").read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float"
    assert lines[1:4] == ["u1\ta\t0", "u1\tb\t1", "u1\tc\t2"]
