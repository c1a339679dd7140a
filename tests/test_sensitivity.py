"""Protocol-sensitivity report: rankings under full vs paper, Kendall's tau, flipped pairs."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kendalltau
from test_leaderboard import _record, _users

from bench.cli import main
from bench.leaderboard import build
from bench.leaderboard.load import load_pages
from bench.leaderboard.sensitivity import compare
from bench.records import write_run

# rank multipliers (smaller = better): paper demotes llm_esr below pad; pad is strong on tail
# items (NDCG@10 full: llmemb .24 > llm_esr .10 > pad .06 > id .01; paper: pad > llm_esr)
QUALITY = {"full": {"id": 6, "llm_esr": 2, "pad": 4, "llmemb": 1},
           "paper": {"id": 6, "llm_esr": 3, "pad": 4, "llmemb": 1}}


def _paper(rec: dict) -> dict:
    for node in (rec["protocol"], rec["config"]["protocol"]):
        node.update(name="paper", candidates="sampled", n_negatives=100, negative_seed=0,
                    fingerprint="pfeedfacefeed0001")
    rec["key"]["protocol"] = "paper"
    return rec


def _write(root, protocols=("full", "paper")):
    users = _users()
    head = users["head_item"].to_numpy()
    for protocol in protocols:
        for method, factor in QUALITY[protocol].items():
            for seed in (0, 1):
                rng = np.random.default_rng(10 * seed + factor)
                ranks = rng.integers(1, 20, len(users)) * factor
                if method == "pad":
                    ranks = np.where(head, ranks, np.maximum(1, ranks // 2))
                rec = _record(method, "sasrec", seed)
                rec = _paper(rec) if protocol == "paper" else rec
                write_run(root / "synthetic" / protocol / method / "sasrec" / f"seed-{seed}.json",
                          rec, users.assign(rank=ranks))
    return root


def test_rankings_tau_and_flipped_pairs(tmp_path):
    comparisons = compare(load_pages(_write(tmp_path / "records")))
    protocols = next(c for c in comparisons if c.a == "full")
    assert protocols.methods == ["id", "llm_esr", "llmemb", "pad"]
    ra, rb = protocols.ranks(protocols.scores_a), protocols.ranks(protocols.scores_b)
    assert [m for m, _ in sorted(ra.items(), key=lambda kv: kv[1])] == ["llmemb", "llm_esr", "pad", "id"]
    assert rb["pad"] < rb["llm_esr"]
    assert protocols.flips == [("llm_esr", "pad")]
    tau, p = protocols.tau
    expect = kendalltau([protocols.scores_a[m] for m in protocols.methods],
                        [protocols.scores_b[m] for m in protocols.methods])
    assert tau == pytest.approx(4 / 6) and tau == pytest.approx(expect.statistic)
    assert p == pytest.approx(expect.pvalue)
    head_tail = next(c for c in comparisons if c.a == "head items (full)")
    assert any("pad" in pair for pair in head_tail.flips)  # pad leads on the tail only


def test_the_page_lists_the_flips_and_is_written_by_the_leaderboard_too(tmp_path, capsys):
    records = _write(tmp_path / "records")
    out = tmp_path / "boards"
    assert main(["report", "sensitivity", "--records", str(records), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "synthetic/sasrec full vs paper: tau 0.667" in printed and "1 flipped pairs" in printed
    text = (out / "sensitivity.md").read_text()
    assert "llm_esr > pad under full, reversed under paper" in text
    assert (out / "sensitivity-ranks.png").exists()
    written = build(records, tmp_path / "board2", efficiency_dir=None)
    assert tmp_path / "board2" / "sensitivity.md" in written
    assert "[sensitivity.md](sensitivity.md)" in (tmp_path / "board2" / "README.md").read_text()


def test_one_protocol_only_is_a_clear_error_and_no_page(tmp_path, capsys):
    records = _write(tmp_path / "records", protocols=("full",))
    code = main(["report", "sensitivity", "--records", str(records), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and "both the full and the paper protocol" in err
    assert not (tmp_path / "b").exists()
    build(records, tmp_path / "b2", efficiency_dir=None, with_plots=False)
    assert not (tmp_path / "b2" / "sensitivity.md").exists()
