"""Leaderboards: statistics against hand-computed cases, refusal of mixed records, golden pages.

The golden files under tests/golden/leaderboard/ are the exact pages for the fixed records that
``write_records`` makes. After an intended change to the page layout, regenerate them with
``BENCH_UPDATE_GOLDEN=1 pytest tests/test_leaderboard.py`` and review the diff.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.errors import BenchError
from bench.leaderboard import build
from bench.leaderboard.load import pinned_fingerprint
from bench.leaderboard.render import MARKER
from bench.leaderboard.stats import holm, paired, seed_interval, sign_flip_p
from bench.records import SCHEMA, sidecar_path, write_run

GOLDEN = Path(__file__).resolve().parent / "golden" / "leaderboard"
N_USERS = 300


# ------------------------------------------------------------------------- statistics
def test_seed_interval_is_the_t_interval_and_absent_for_one_seed():
    iv = seed_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, df 2) = 4.302653
    assert iv.mean == 2.0 and math.isclose(iv.half_width, 4.302653 / math.sqrt(3), rel_tol=1e-6)
    assert seed_interval([0.5]).half_width is None


def test_identical_systems_give_p_one_and_an_interval_at_zero():
    x = np.random.default_rng(0).random(500)
    res = paired(x, x.copy())
    assert res.p_t == 1.0 and res.p_rand == 1.0
    assert res.ci_low <= 0.0 <= res.ci_high and res.diff == 0.0


def test_exchangeable_systems_are_not_significant():
    rng = np.random.default_rng(1)
    a, b = rng.random(2000), rng.random(2000)  # same distribution, independent noise
    res = paired(a, b)
    assert res.ci_low < 0.0 < res.ci_high
    assert res.p_t > 0.05 and res.p_rand > 0.05
    assert abs(res.p_t - res.p_rand) < 0.05  # both tests agree at this size


def test_paired_t_and_sign_flip_match_hand_computed_values():
    # d = 1, 2, 3, 4: mean 2.5, sd 1.2910, t = 3.8730 on 3 df -> two-sided p = 0.030466
    res = paired(np.array([1.0, 2.0, 3.0, 4.0]), np.zeros(4))
    assert math.isclose(res.p_t, 0.030466, abs_tol=1e-6)
    assert math.isclose(res.d_z, 2.5 / 1.2909944, rel_tol=1e-6)
    half = 3.182446 * 1.2909944 / 2  # t(0.975, 3) * sd / sqrt(n)
    assert math.isclose(res.ci_low, 2.5 - half, rel_tol=1e-5)
    assert res.rel is None  # the reference mean is 0: no relative difference
    # exact randomization: only 2 of the 16 sign patterns reach |mean| >= 2.5 -> p = 0.125
    assert abs(res.p_rand - 0.125) < 0.01


def test_a_constant_shift_has_tiny_p_and_a_tight_interval():
    rng = np.random.default_rng(2)
    b = rng.random(3000)
    a = b + 0.05 + rng.normal(0, 1e-3, 3000)
    res = paired(a, b)
    assert res.p_t < 1e-12
    assert res.p_rand == pytest.approx(1e-4)  # the smallest p that 9,999 permutations give
    assert abs(res.diff - 0.05) < 1e-4 and res.ci_high - res.ci_low < 1e-3
    assert math.isclose(res.rel, 0.05 / b.mean(), rel_tol=0.01)


def test_sign_flip_is_seeded():
    d = np.random.default_rng(3).normal(0.02, 1, 800)
    assert sign_flip_p(d) == sign_flip_p(d)
    assert sign_flip_p(d, seed=1) != sign_flip_p(d)


def test_holm_matches_hand_computed_values_and_is_monotone():
    # sorted p: .005*4 = .02, .01*3 = .03, .03*2 = .06, .04*1 = .04 -> running max .06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    p = np.random.default_rng(4).random(20)
    adj = np.array(holm(p))
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0) and np.all(adj >= p)


# ------------------------------------------------------------------------- records
# The records are "synthetic" ones on the data configs/dataset/synthetic.yaml pins: pages that
# match it carry no stale-data warning (test_stale_data_is_flagged covers the other case).
SYNTHETIC_FP = pinned_fingerprint("synthetic")


def _record(method: str, backbone: str, seed: int, *, dataset_fp: str = SYNTHETIC_FP,
            loss_reduction: str = "constant") -> dict:
    protocol = {"name": "full", "candidates": "all", "n_negatives": None, "negative_seed": None,
                "max_seq_length": 50, "loss": "ce", "groups": "quantile", "head_fraction": 0.2,
                "ks": [5, 10, 20], "mrr_k": 10, "valid_metric": "NDCG@10",
                "fingerprint": "p0a1b2c3d4e5f607"}
    train = {"epochs": 200, "patience": 20, "batch_size": 128, "learning_rate": 0.001,
             "loss_reduction": loss_reduction}
    dataset = {"name": "synthetic", "fingerprint": dataset_fp, "n_users": N_USERS,
               "n_items": 120, "n_interactions": 3000, "paper_thresholds": None}
    config = {"dataset": {"name": "synthetic"}, "protocol": protocol, "train": train,
              "device": "auto", "method": {"name": method}, "backbone": {"name": backbone},
              "seed": seed, "paths": {"runs": "x"}, "show_progress": False}
    device = "cpu: Test CPU (2 threads)"
    return {"schema": SCHEMA,
            "key": {"method": method, "backbone": backbone, "dataset": "synthetic",
                    "protocol": "full", "seed": seed},
            "protocol": protocol, "dataset": dataset, "config": config,
            "training": {"epochs_run": 30 + seed, "best_epoch": 10 + seed},
            "efficiency": {"device": device, "epoch_seconds_median": 2.0 + 0.5 * seed,
                           "train_seconds": 60.0 + 10 * seed + (100 if method != "id" else 0),
                           **({"peak_memory_train": {"mib": 500.0 + seed},
                               "inference": {"latency_ms": {"p50": 1.5 + seed, "p99": 9.0},
                                             "throughput": {"users_per_second": 900.0 + seed,
                                                            "batch_size": 1024}}}
                              if method == "id" else {})},
            "method_info": ({"variant": "graph", "tau": 0.15} if method == "alpharec" else {}),
            "provenance": {"device": device, "encoder": None if method == "id" else "minilm",
                           "git": {"commit": "0123456789abcdef", "dirty": False}}}


def _ranks(method: str, seed: int, head: np.ndarray) -> np.ndarray:
    """Ranks of the target among 120 items: ``better`` methods rank tail targets higher."""
    rng = np.random.default_rng(100 * seed + len(method))
    base = rng.integers(1, 60, N_USERS)
    if method == "llmemb":
        base = np.where(head, base, np.maximum(1, base // 3))
    if method == "pad":  # worse everywhere: every target ranked 4 places lower
        base = base + 4
    return base


def _users() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({"user": [f"u{i:04d}" for i in range(N_USERS)],
                         "head_item": rng.random(N_USERS) < 0.7,
                         "long_user": rng.random(N_USERS) < 0.2})


def write_records(root: Path, rows=(("id", "sasrec", (0, 1, 2)), ("llmemb", "sasrec", (0, 1, 2)),
                                    ("alpharec", "lightgcn", (0,)))) -> Path:
    users = _users()
    for method, backbone, seeds in rows:
        for seed in seeds:
            rec = _record(method, backbone, seed)
            side = users.assign(rank=_ranks(method, seed, users["head_item"].to_numpy()))
            path = root / "synthetic" / "full" / method / backbone / f"seed-{seed}.json"
            write_run(path, rec, side)
    return root


def _rewrite(path: Path, **changes) -> None:
    rec = json.loads(path.read_text())
    for dotted, value in changes.items():
        node = rec
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    path.write_text(json.dumps(rec))


# ------------------------------------------------------------------------- pages
def test_pages_match_the_golden_files(tmp_path):
    records = write_records(tmp_path / "records")
    out = tmp_path / "boards"
    written = build(records, out)
    assert sorted(p.name for p in written) == ["README.md", "synthetic-full-cost.png",
                                                "synthetic-full-head-tail.png",
                                                "synthetic-full.md"]
    for name in ("synthetic-full.md", "README.md"):
        got = (out / name).read_text(encoding="utf-8")
        if os.environ.get("BENCH_UPDATE_GOLDEN"):
            GOLDEN.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_text(got, encoding="utf-8")
        assert got == (GOLDEN / name).read_text(encoding="utf-8"), f"{name} differs from golden"


def test_regeneration_restores_pages_byte_for_byte(tmp_path):
    records = write_records(tmp_path / "records")
    out = tmp_path / "boards"
    build(records, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for page in out.glob("*.md"):
        page.unlink()
    (out / "synthetic-full-cost.png").unlink()
    build(records, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_check_names_every_file_that_is_not_what_the_records_give(tmp_path, capsys):
    records = write_records(tmp_path / "records")
    out = tmp_path / "boards"
    build(records, out)
    argv = ["leaderboard", "--records", str(records), "--out", str(out), "--efficiency-records",
            str(tmp_path / "none")]
    assert main([*argv, "--check"]) == 0
    assert "what the records give" in capsys.readouterr().out
    page = out / "synthetic-full.md"
    page.write_text(page.read_text().replace("0.", "0,", 1))  # a hand edit
    (out / "synthetic-full-cost.png").unlink()
    (out / "synthetic-paper.md").write_text(MARKER + "\nleft from a record since deleted\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main([*argv, "--check"]) == 1
    report = capsys.readouterr().out
    assert f"out of date: {page}: differs from what its records give" in report
    assert f"out of date: {out / 'synthetic-full-cost.png'}: missing" in report
    assert f"out of date: {out / 'synthetic-paper.md'}: stale" in report
    assert "README.md" not in report
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written


def test_the_committed_leaderboards_are_what_their_records_give(capsys):
    """``leaderboards/`` is generated: a hand edit, or records committed without rerunning
    ``python -m bench leaderboard``, would publish numbers the records do not give."""
    repo = Path(__file__).resolve().parent.parent
    board = repo / "leaderboards"
    code = main(["leaderboard", "--check", "--records", str(board / "records"), "--out",
                 str(board), "--efficiency-records", str(board / "efficiency-records")])
    assert code == 0, capsys.readouterr().out


def test_page_content_follows_the_records(tmp_path):
    records = write_records(tmp_path / "records")
    build(records, tmp_path / "boards", with_plots=False)
    page = (tmp_path / "boards" / "synthetic-full.md").read_text()
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")]
            for ln in page.splitlines() if ln.startswith("|")]
    alpharec = next(r for r in rows if r[:2] == ["alpharec", "lightgcn"])
    assert alpharec[2] == "1" and all(c.endswith("†") for c in alpharec[3:])  # no interval
    assert "![" not in page  # no plots asked for
    # llmemb ranks tail targets 3x higher: its tail-item gain over id is positive and significant
    tail = next(r for r in rows if r[:3] == ["llmemb", "sasrec", "tail items"])
    assert float(tail[4]) > 0 and tail[8] == "<0.0001" and float(tail[9]) < 0.001


def test_rows_without_an_id_row_on_their_backbone_are_named_not_dropped(tmp_path):
    """alpharec/lightgcn has no id/lightgcn to be compared with: the page says so under the
    Δ-vs-ID tables, and says nothing once the reference row is there."""
    records = write_records(tmp_path / "records")
    build(records, tmp_path / "boards", with_plots=False)
    page = (tmp_path / "boards" / "synthetic-full.md").read_text()
    vs_id = page.split("## Δ HR@10 vs the same backbone's ID-only row")[1].split("## ")[0]
    assert "`alpharec / lightgcn`" in vs_id and "--backbones lightgcn" in vs_id
    assert "| alpharec " not in vs_id  # still no comparison row for it

    records = write_records(tmp_path / "records2", rows=(("id", "lightgcn", (0,)),
                                                         ("alpharec", "lightgcn", (0,))))
    build(records, tmp_path / "boards2", with_plots=False)
    page = (tmp_path / "boards2" / "synthetic-full.md").read_text()
    assert "Not in the Δ-vs-ID tables" not in page
    assert "| alpharec | lightgcn   | overall" in page


def test_a_variant_is_compared_with_its_base_method(tmp_path):
    """A named variant (config ``adapter`` = another method) gets a Δ table against its base
    method on the same backbone; methods' own rows are not in it."""
    records = write_records(tmp_path / "records")
    users = _users()
    for seed in (0, 1, 2):
        rec = _record("llmemb-noalign", "sasrec", seed)
        rec["config"]["method"]["adapter"] = "llmemb"
        worse = _ranks("llmemb", seed, users["head_item"].to_numpy()) + 4  # below llmemb
        write_run(records / "synthetic" / "full" / "llmemb-noalign" / "sasrec" /
                  f"seed-{seed}.json", rec, users.assign(rank=worse))
    build(records, tmp_path / "boards", with_plots=False)
    page = (tmp_path / "boards" / "synthetic-full.md").read_text()
    section = page.split("## Δ NDCG@10 of each variant vs its base method")[1].split("## ")[0]
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")]
            for ln in section.splitlines() if ln.startswith("|")][2:]
    assert {tuple(r[:3]) for r in rows} == {("llmemb-noalign", "llmemb", "sasrec")}
    overall = next(r for r in rows if r[3] == "overall")
    assert float(overall[5]) < 0 and overall[9] == "<0.0001"


def test_the_cost_table_names_the_hardware_of_a_resumed_runs_earlier_epochs(tmp_path):
    """A run resumed on other hardware mixes two devices' epoch times: its row says so, and
    a record from before the stretches were labelled says they are not recorded."""
    records = write_records(tmp_path / "records")
    runs = records / "synthetic" / "full" / "llmemb" / "sasrec"
    device = "cpu: Test CPU (2 threads)"
    _rewrite(runs / "seed-1.json", **{
        "training.resumed_at_epochs": [5],
        "training.segments": [{"from_epoch": 0, "device": "cpu: Other CPU (1 threads)"},
                              {"from_epoch": 5, "device": device}]})
    _rewrite(runs / "seed-2.json", **{"training.resumed_at_epochs": [7]})
    _rewrite(records / "synthetic" / "full" / "id" / "sasrec" / "seed-0.json", **{
        "training.resumed_at_epochs": [4],
        "training.segments": [{"from_epoch": 0, "device": device},
                              {"from_epoch": 4, "device": device}]})  # same hardware: no note
    build(records, tmp_path / "boards", with_plots=False)
    page = (tmp_path / "boards" / "synthetic-full.md").read_text()
    section = page.split("## Cost of these accuracy runs")[1].split("## ")[0]
    cells = {r[0]: r[-1] for r in ([c.strip() for c in ln.strip().strip("|").split("|")]
                                    for ln in section.splitlines() if ln.startswith("| "))}
    assert cells["id"] == device
    assert cells["llmemb"] == (f"{device} (resumed: 2 of 3 runs also on "
                               "cpu: Other CPU (1 threads), hardware not recorded)")


def _summary(index: str) -> dict[str, list[str]]:
    section = index.split("## Where does each method help?")[1]
    lines = [ln for ln in section.splitlines() if ln.startswith("| synthetic")]
    return {cells[2]: cells[4:] for cells in
            ([c.strip() for c in ln.strip("|").split("|")] for ln in lines)}


def test_the_index_summary_reads_the_pages_tests(tmp_path):
    rows = (("id", "sasrec", (0, 1, 2)), ("llmemb", "sasrec", (0, 1, 2)), ("pad", "sasrec", (0,)),
            ("alpharec", "lightgcn", (0,)))
    build(write_records(tmp_path / "records", rows), tmp_path / "boards", with_plots=False)
    summary = _summary((tmp_path / "boards" / "README.md").read_text())
    assert set(summary) == {"llmemb", "pad"}  # alpharec/lightgcn has no ID row to compare with
    seeds, overall, head = summary["pad"][:3]
    assert seeds == "1 †" and overall.endswith("▼") and head.endswith("▼")
    assert summary["llmemb"][0] == "3" and summary["llmemb"][3].endswith("▲")  # tail items
    page = (tmp_path / "boards" / "synthetic-full.md").read_text()
    delta = page.split("## Δ NDCG@10 vs the same backbone's ID-only row")[1]
    row = next(ln for ln in delta.splitlines() if ln.startswith("| pad") and "| overall" in ln)
    assert overall.split()[0] == row.split("|")[7].split()[0]  # the page's relative Δ


def test_learned_tables_are_averaged_over_seeds_in_their_own_section(tmp_path):
    records = write_records(tmp_path / "records")
    for seed, w in ((0, [0.2, 0.6]), (1, [0.4, 0.8]), (2, [0.3, 0.7])):
        _rewrite(records / "synthetic" / "full" / "llmemb" / "sasrec" / f"seed-{seed}.json",
                 method_info={"gates": {"bin": [1, 2], "items": [5, 9], "text": w},
                              "mmd": {"weight": 0.2}})
    build(records, tmp_path / "boards", with_plots=False)
    page = (tmp_path / "boards" / "synthetic-full.md").read_text()
    section = page.split("## What the trained models learned")[1].split("\n## ")[0]
    assert "llmemb / sasrec · `gates` (mean over seeds 0, 1, 2)" in section
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")]
            for ln in section.splitlines() if ln.startswith("|")]
    assert rows[0] == ["bin", "items", "text"]
    assert rows[2:] == [["1", "5", "0.3000"], ["2", "9", "0.7000"]]
    assert "mmd" not in section  # a dict of scalars is a setting, not a table
    ran = page.split("## What each row ran")[1].split("\n## ")[0]
    assert "mmd: weight 0.2" in ran and "gates" not in ran


def test_learned_tables_of_different_shapes_are_not_averaged(tmp_path):
    records = write_records(tmp_path / "records")
    for seed in (0, 1, 2):
        _rewrite(records / "synthetic" / "full" / "llmemb" / "sasrec" / f"seed-{seed}.json",
                 method_info={"gates": {"bin": list(range(2 + (seed == 1)))}})
    build(records, tmp_path / "boards", with_plots=False)
    page = (tmp_path / "boards" / "synthetic-full.md").read_text()
    assert "llmemb / sasrec · `gates`**\n\nthe seeds' tables differ in shape" in page


def test_pages_without_learned_tables_have_no_such_section(tmp_path):
    build(write_records(tmp_path / "records"), tmp_path / "boards", with_plots=False)
    assert "What the trained models learned" not in \
        (tmp_path / "boards" / "synthetic-full.md").read_text()


def test_runs_stopped_by_the_epoch_cap_are_named_in_the_cost_table(tmp_path):
    records = write_records(tmp_path / "records")
    llmemb = records / "synthetic" / "full" / "llmemb" / "sasrec"
    _rewrite(llmemb / "seed-0.json", training={"epochs_run": 200, "best_epoch": 190})
    # 200 epochs, best at 178: early stopping ends it at exactly the cap (178 + 20 + 2)
    _rewrite(llmemb / "seed-1.json", training={"epochs_run": 200, "best_epoch": 178})
    build(records, tmp_path / "boards", with_plots=False)
    page = (tmp_path / "boards" / "synthetic-full.md").read_text()
    cost = page.split("## Cost of these accuracy runs")[1].split("\n## ")[0]
    rows = {tuple(c.strip() for c in ln.strip().strip("|").split("|")[:2]):
            [c.strip() for c in ln.strip().strip("|").split("|")]
            for ln in cost.splitlines() if ln.startswith("|")}
    assert rows[("llmemb", "sasrec")][3] == "144.0 (1 of 3 at the cap)"
    assert rows[("id", "sasrec")][3] == "31.0"
    from bench.leaderboard.costs import epochs_to_stop
    from bench.leaderboard.load import find_runs
    stops = epochs_to_stop(find_runs(records))
    assert stops[("llmemb", "sasrec")] == (144.0, True) and stops[("id", "sasrec")] == (31.0, False)


def test_stale_generated_pages_are_removed(tmp_path):
    records = write_records(tmp_path / "records")
    out = tmp_path / "boards"
    build(records, out)
    (out / "notes.md").write_text("hand-written, kept\n")
    shutil.rmtree(records / "synthetic")
    build(records, out)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "notes.md"]
    assert "No records yet" in (out / "README.md").read_text()


def test_mismatched_dataset_fingerprints_are_refused_naming_the_files(tmp_path):
    records = write_records(tmp_path / "records")
    odd = records / "synthetic/full/llmemb/sasrec/seed-1.json"
    _rewrite(odd, **{"dataset.fingerprint": "ffffffffffffffff"})
    with pytest.raises(BenchError, match="dataset fingerprints") as err:
        build(records, tmp_path / "boards")
    assert str(odd) in str(err.value)
    assert not (tmp_path / "boards").exists()  # nothing half-written


def test_stale_data_is_flagged_and_the_pin_is_not_a_setting(tmp_path):
    """Records on data other than what the dataset's config pins today get a warning row naming
    both fingerprints (they were measured on a superseded generator's output); a record whose
    config carries the pin sits on one page with records made before configs had it."""
    records = write_records(tmp_path / "records")
    build(records, tmp_path / "fresh")
    assert "stale data" not in (tmp_path / "fresh" / "synthetic-full.md").read_text()
    for path in sorted(records.rglob("seed-*.json")):
        _rewrite(path, **{"dataset.fingerprint": "c74d18ea5aba9443"})
    _rewrite(records / "synthetic/full/id/sasrec/seed-0.json",
             **{"config.dataset": {"name": "synthetic", "fingerprint": SYNTHETIC_FP}})
    build(records, tmp_path / "boards")
    page = (tmp_path / "boards" / "synthetic-full.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| ⚠ stale data"))
    assert (f"these records were measured on data `c74d18ea5aba9443`; "
            f"`configs/dataset/synthetic.yaml` now pins `{SYNTHETIC_FP}`") in row
    index = (tmp_path / "boards" / "README.md").read_text()
    assert f"`c74d18ea5aba9443` ⚠ stale (config pins `{SYNTHETIC_FP}`)" in index


def test_training_settings_must_match_across_a_page(tmp_path):
    records = write_records(tmp_path / "records")
    _rewrite(records / "synthetic/full/id/sasrec/seed-2.json",
             **{"config.train.loss_reduction": "batch_mean"})
    with pytest.raises(BenchError, match="train.loss_reduction: constant vs batch_mean"):
        build(records, tmp_path / "boards")


def test_seeds_of_a_row_must_share_their_method_config(tmp_path):
    records = write_records(tmp_path / "records")
    _rewrite(records / "synthetic/full/llmemb/sasrec/seed-2.json",
             **{"config.method.align": False})
    with pytest.raises(BenchError, match="llmemb / sasrec.*method.align"):
        build(records, tmp_path / "boards")


def test_a_corrupted_sidecar_is_named(tmp_path):
    records = write_records(tmp_path / "records")
    side = sidecar_path(records / "synthetic/full/id/sasrec/seed-0.json")
    side.write_bytes(b"not parquet")
    with pytest.raises(BenchError, match="seed-0.users.parquet"):
        build(records, tmp_path / "boards")


def test_cli_lists_the_pages_written(tmp_path, capsys):
    records = write_records(tmp_path / "records")
    code = main(["leaderboard", "--records", str(records), "--out", str(tmp_path / "b"),
                 "--efficiency-records", str(tmp_path / "none"), "--no-plots"])
    out = capsys.readouterr().out
    assert code == 0 and "synthetic-full.md" in out and "README.md" in out


# ------------------------------------------------------------------------- efficiency tables
def _efficiency_record(method: str, device: str, *, cached: bool = False) -> dict:
    rec = _record(method, "sasrec", 0)
    rec["config"]["train"].update(epochs=3, patience=3)
    built = {"seconds": 12.5, "texts_per_second": 400.0, "device": "cuda"}
    rec["efficiency"] = {
        "device": device.split(":")[0], "epoch_seconds": [2.0, 2.0, 2.0],
        "epoch_seconds_median": 2.0, "valid_seconds_median": 0.5,
        "train_sequences_per_second": 1500.0, "train_seconds": 7.5,
        "parameters": {"total": 2_000_000, "trainable": 500_000, "frozen": 1_500_000},
        "peak_memory_train": {"mib": 812.0},
        "inference": {"dtype": "float32",
                      "latency_ms": {"batch_size": 1, "p50": 1.25, "p95": 2.5, "p99": 3.75},
                      "throughput": {"batch_size": 1024, "users_per_second": 50_000.0},
                      "peak_memory": {"mib": 300.0}},
        "one_off": {} if method == "id" else {
            "embedding": {"cache_hit": True, "built": built} if cached else
            {"cache_hit": False, **built}}}
    rec["provenance"]["device"] = device
    return rec


def write_efficiency(root: Path, rows) -> Path:
    for method, device, slug, cached in rows:
        path = root / slug / "synthetic" / "full" / method / "sasrec" / "seed-0.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_efficiency_record(method, device, cached=cached)))
    return root


def test_efficiency_tables_join_devices_and_estimate_convergence(tmp_path):
    records = write_records(tmp_path / "records")
    eff = write_efficiency(tmp_path / "eff", [
        ("id", "cpu: Test CPU (2 threads)", "cpu", False),
        ("id", "cuda: NVIDIA H200", "cuda-nvidia-h200", False),
        ("llmemb", "cuda: NVIDIA H200", "cuda-nvidia-h200", True)])
    _rewrite(eff / "cuda-nvidia-h200" / "synthetic" / "full" / "llmemb" / "sasrec" / "seed-0.json",
             **{"efficiency.epoch_seconds_median": 3.0, "efficiency.peak_memory_train.mib": 1218.0})
    out = tmp_path / "boards"
    build(records, out, with_plots=False, efficiency_dir=eff)
    page = (out / "synthetic-full.md").read_text()
    table = page.split("## Efficiency")[1]
    lines = [ln for ln in table.splitlines() if ln.startswith(("| id", "| llmemb"))]
    assert len(lines) == 3 and "Test CPU" in lines[0] and "H200" in lines[1]  # CPU rows first
    # id's accuracy runs stopped after 30, 31, 32 epochs: 31 x (2.0 s + 0.5 s validation)
    assert "≈ 78 (31 ep)" in lines[0]
    # llmemb's seed 0 (30 epochs, best 10) early-stopped: an estimate, not a bound
    assert "≈ " in lines[2] and "≥ " not in lines[2]
    assert "1.25 / 2.50 / 3.75" in lines[0] and "50,000 (b 1024)" in lines[0]
    assert "0.50M / 2.00M" in lines[0] and lines[0].rstrip(" |").endswith("0123456")
    assert "embedding 12.5 s (400 texts/s, on cuda) (cached)" in lines[2]
    # cost over the same backbone's id row on the same device
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    assert cells[0][5] == "2.00 (× 1.00)" and cells[2][5] == "3.00 (× 1.50)"
    assert cells[2][7] == "1,218 (× 1.50)"
    index = (out / "README.md").read_text()
    assert "efficiency.md" in index and (out / "efficiency.md").read_text().count("| id") == 2


def test_a_cost_without_an_id_row_on_its_device_has_no_ratio():
    from bench.leaderboard.costs import CostRow, cost_rows

    def row(method, device):
        return CostRow(method, "sasrec", device, _efficiency_record(method, device), Path("x"))

    rows = cost_rows([row("id", "cuda: A"), row("llmemb", "cuda: B")], {})
    assert rows[0][5] == "2.00 (× 1.00)" and rows[1][5] == "2.00" and rows[1][7] == "812"


def test_two_efficiency_records_for_one_device_are_refused(tmp_path):
    records = write_records(tmp_path / "records")
    eff = write_efficiency(tmp_path / "eff", [("id", "cpu: A", "cpu", False),
                                              ("id", "cpu: A", "cpu-again", False)])
    with pytest.raises(BenchError, match="two efficiency records.*cpu-again"):
        build(records, tmp_path / "boards", with_plots=False, efficiency_dir=eff)


def test_device_slugs_name_one_folder_per_device_kind():
    from bench.leaderboard.costs import device_slug

    assert device_slug("cuda: NVIDIA H200") == "cuda-nvidia-h200"
    assert device_slug("cpu: Intel(R) Xeon(R) Processor (2 threads)") == "cpu"


def test_a_group_empty_on_this_data_is_named_not_silently_dropped(tmp_path):
    """The papers' Beauty threshold (popularity < 4) finds no tail item in a 5-core copy: the
    page drops the item-group columns and its header says why, with the n."""
    users = _users().assign(head_item=True)
    for method in ("id", "llmemb"):
        write_run(tmp_path / "records" / "synthetic" / "full" / method / "sasrec" / "seed-0.json",
                  _record(method, "sasrec", 0), users.assign(rank=_ranks(method, 0, users[
                      "head_item"].to_numpy())))
    build(tmp_path / "records", tmp_path / "boards")
    page = (tmp_path / "boards" / "synthetic-full.md").read_text()
    groups = next(line for line in page.splitlines() if line.startswith("| groups"))
    assert (f"Not shown, one-sided on this data: head items n = {N_USERS:,} of {N_USERS:,}; "
            f"tail items n = 0 of {N_USERS:,}") in groups
    assert "tail items (n=" not in page
