"""Protocol-sensitivity report: rankings under full vs paper, Kendall's tau, flipped pairs."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kendalltau
from test_leaderboard import _record, _rewrite, _users

from bench.cli import main
from bench.leaderboard import build
from bench.leaderboard.load import load_pages
from bench.leaderboard.sensitivity import RankComparison, compare, not_compared
from bench.leaderboard.stats import sign_flip_p
from bench.records import write_run

# rank multipliers (smaller = better): paper demotes llm_esr below pad; pad is strong on tail
# items (NDCG@10 full: llmemb .24 > llm_esr .10 > pad .06 > id .01; paper: pad > llm_esr)
QUALITY = {"full": {"id": 6, "llm_esr": 2, "pad": 4, "llmemb": 1},
           "paper": {"id": 6, "llm_esr": 3, "pad": 4, "llmemb": 1}}
QUALITY["full-masked"] = QUALITY["paper"]  # masking alone makes paper's flip


def _paper(rec: dict) -> dict:
    for node in (rec["protocol"], rec["config"]["protocol"]):
        node.update(name="paper", candidates="sampled", n_negatives=100, negative_seed=0,
                    fingerprint="pfeedfacefeed0001")
    rec["key"]["protocol"] = "paper"
    return rec


def _masked(rec: dict) -> dict:
    for node in (rec["protocol"], rec["config"]["protocol"]):
        node.update(name="full-masked", exclude_history=True, fingerprint="pmasked0masked001")
    rec["key"]["protocol"] = "full-masked"
    return rec


def _write(root, protocols=("full", "paper"), paper_tail: bool = True):
    """``paper_tail=False``: every paper test target is a head item (the papers' threshold,
    popularity < 4, on a 5-core dataset)."""
    users = _users()
    head = users["head_item"].to_numpy()
    for protocol in protocols:
        for method, factor in QUALITY[protocol].items():
            for seed in (0, 1):
                rng = np.random.default_rng(10 * seed + factor)
                ranks = rng.integers(1, 20, len(users)) * factor
                if method == "pad":
                    ranks = np.where(head, ranks, np.maximum(1, ranks // 2))
                rec = {"full": dict, "paper": _paper, "full-masked": _masked}[protocol](
                    _record(method, "sasrec", seed))
                side = users if protocol != "paper" or paper_tail else users.assign(head_item=True)
                write_run(root / "synthetic" / protocol / method / "sasrec" / f"seed-{seed}.json",
                          rec, side.assign(rank=ranks))
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
    head_tail = next(c for c in comparisons
                     if (c.a, c.b) == ("head items (full)", "tail items (full)"))
    assert any("pad" in pair for pair in head_tail.flips)  # pad leads on the tail only
    # full vs paper per item group too: on tail items pad leads under both protocols
    tails = next(c for c in comparisons if (c.a, c.b) == ("tail items (full)", "tail items (paper)"))
    assert tails.ranks(tails.scores_a)["pad"] <= 2 and tails.ranks(tails.scores_b)["pad"] <= 2
    assert [(c.a, c.b) for c in comparisons][:3] == [
        ("full", "paper"), ("head items (full)", "head items (paper)"),
        ("tail items (full)", "tail items (paper)")]


def test_a_group_holding_every_user_or_none_is_not_ranked_and_the_page_says_why(tmp_path):
    """Paper groups on a 5-core dataset: tail n = 0, head = every user. "head items (paper)" is
    then the overall paper ranking again, and the tail one is empty: neither is compared, and
    the page names each with its n instead of "for want of two methods"."""
    pages = load_pages(_write(tmp_path / "records", paper_tail=False))
    assert [(c.a, c.b) for c in compare(pages)] == [
        ("full", "paper"), ("head items (full)", "tail items (full)")]
    users = len(_users())
    skipped = not_compared(pages)
    assert (f"synthetic / sasrec: head items (full) vs head items (paper) not compared: "
            f"head items (paper) holds {users:,} of {users:,} test users on this data") in skipped
    assert any(line.startswith("synthetic / sasrec: head items (paper) vs tail items (paper) "
                               "not compared: head items (paper) holds") and
               "tail items (paper) holds 0 of" in line for line in skipped)
    assert not any("for want of two methods" in line for line in skipped)


def test_the_page_lists_the_flips_and_is_written_by_the_leaderboard_too(tmp_path, capsys):
    records = _write(tmp_path / "records")
    out = tmp_path / "boards"
    assert main(["report", "sensitivity", "--records", str(records), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "synthetic/sasrec full vs paper: tau 0.667" in printed and "1 flipped pairs" in printed
    text = (out / "sensitivity.md").read_text()
    assert "| llm_esr vs pad | llm_esr ahead" in text and "| pad ahead" in text
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


def _comparison(shift_a: float, shift_b: float) -> RankComparison:
    """x leads y by ``shift_a`` per user on side a and trails by ``shift_b`` on side b."""
    rng = np.random.default_rng(0)
    base = rng.random(400)

    def noise() -> np.ndarray:  # mean exactly 0: the means differ by exactly the shift
        n = rng.normal(0, 0.2, 400)
        return n - n.mean()

    users_a = {"x": base + shift_a + noise(), "y": base + noise()}
    users_b = {"x": base + noise(), "y": base + shift_b + noise()}
    # a third method far behind keeps x/y the only flipped pair
    users_a["z"], users_b["z"] = base - 5, base - 5
    means = [{m: float(v.mean()) for m, v in d.items()} for d in (users_a, users_b)]
    return RankComparison("synthetic", "sasrec", "full", "paper", *means, users_a, users_b)


@pytest.mark.parametrize(("shift_a", "shift_b", "verdict"), [
    (0.2, 0.2, "reversed"), (0.2, 0.001, "one side only"), (0.001, 0.001, "within noise")])
def test_a_flip_is_called_reversed_only_when_both_orders_are_significant(shift_a, shift_b,
                                                                         verdict):
    c = _comparison(shift_a, shift_b)
    assert c.flips == [("x", "y")]
    (test,) = c.flip_tests()
    assert (test.winner, test.loser, test.verdict) == ("x", "y", verdict)
    # Holm over the side's 3 pairs: never below the raw randomization p
    assert test.p_a >= sign_flip_p(c.users_a["x"] - c.users_a["y"])


def test_the_page_carries_each_flips_p_values_and_verdict(tmp_path):
    out = tmp_path / "boards"
    assert main(["report", "sensitivity", "--records", str(_write(tmp_path / "records")),
                 "--out", str(out), "--no-plots"]) == 0
    text = (out / "sensitivity.md").read_text()
    assert "| flipped pair" in text and "| llm_esr vs pad" in text
    assert any(v in text for v in ("reversed", "one side only", "within noise"))


def _cold(rec: dict) -> dict:
    for node in (rec["protocol"], rec["config"]["protocol"]):
        node.update(name="cold", cold_fraction=0.1, cold_seed=0, fingerprint="pc01dc01dc01d0001")
    rec["key"]["protocol"] = "cold"
    return rec


def test_tail_items_are_set_beside_cold_items_when_a_cold_page_exists(tmp_path):
    """On new items llm_esr beats llmemb, the reverse of its tail-item order under full."""
    root = _write(tmp_path / "records", protocols=("full",))
    users = _users().assign(head_item=False)  # every cold target is a cold (tail) item
    for method, factor in {"id": 20, "llm_esr": 1, "llmemb": 3, "pad": 20}.items():
        rng = np.random.default_rng(factor)
        ranks = rng.integers(1, 20, len(users)) * factor
        write_run(root / "synthetic" / "cold" / method / "sasrec" / "seed-0.json",
                  _cold(_record(method, "sasrec", 0)), users.assign(rank=ranks))
    (c,) = compare(load_pages(root))  # full and cold only: no full-vs-paper section
    assert (c.a, c.b) == ("tail items (full)", "cold items (cold)")
    assert ("llmemb", "llm_esr") in c.flips
    assert c.ranks(c.scores_b)["llm_esr"] == 1
    out = tmp_path / "boards"
    assert main(["report", "sensitivity", "--records", str(root), "--out", str(out)]) == 0
    text = (out / "sensitivity.md").read_text()
    assert "tail items (full) vs cold items (cold)" in text
    assert (out / "sensitivity-ranks.png").exists()


def test_pages_measured_on_different_data_are_not_ranked_against_each_other(tmp_path, capsys):
    """Records on other data (once: synthetic records from a stale copy of the first
    generator's data): full vs paper across two datasets would blame the protocol for the
    data. Head vs tail within a page still holds."""
    root = _write(tmp_path / "records")
    for path in (root / "synthetic" / "paper").rglob("seed-*.json"):
        _rewrite(path, **{"dataset.fingerprint": "ffffffffffffffff"})
    comparisons = compare(load_pages(root))
    assert [(c.a, c.b) for c in comparisons] == [
        ("head items (full)", "tail items (full)"), ("head items (paper)", "tail items (paper)")]
    out = tmp_path / "boards"
    assert main(["report", "sensitivity", "--records", str(root), "--out", str(out)]) == 0
    assert "`full` vs `paper` not compared" in capsys.readouterr().out
    assert not (out / "sensitivity-ranks.png").exists()  # no comparison between protocols
    text = (out / "sensitivity.md").read_text()
    assert "**Not compared:**\n\n- synthetic: `full` vs `paper` not compared" in text
    assert "ffffffffffffffff" in text and "### synthetic / sasrec: full vs paper" not in text


def test_a_comparison_needs_two_methods_ranked_on_both_sides(tmp_path):
    """A cold page with only the ID baseline shares one method with the full page: no order to
    compare, so no section (it showed a one-row table and an empty tau)."""
    root = _write(tmp_path / "records", protocols=("full",))
    users = _users().assign(head_item=False)
    write_run(root / "synthetic" / "cold" / "id" / "sasrec" / "seed-0.json",
              _cold(_record("id", "sasrec", 0)), users.assign(rank=np.arange(len(users)) + 1))
    assert compare(load_pages(root)) == []
    (line,) = not_compared(load_pages(root))  # said on the page, not silently dropped
    assert line.startswith("synthetic / sasrec: not compared for want of two methods")
    assert "tail items (full) vs cold items (cold) (id)" in line
    write_run(root / "synthetic" / "cold" / "pad" / "sasrec" / "seed-0.json",
              _cold(_record("pad", "sasrec", 0)), users.assign(rank=np.arange(len(users)) + 2))
    (c,) = compare(load_pages(root))
    assert c.methods == ["id", "pad"] and (c.a, c.b) == ("tail items (full)", "cold items (cold)")


def test_a_full_masked_page_sits_between_full_and_paper(tmp_path):
    """Masking history lifts pad above llm_esr (as it does under paper): full vs full-masked
    shows the flip masking alone makes, full-masked vs paper what sampling adds (nothing)."""
    root = _write(tmp_path / "records", protocols=("full", "paper", "full-masked"))
    by_pair = {(c.a, c.b): c for c in compare(load_pages(root))}
    assert {("full", "paper"), ("full", "full-masked"), ("full-masked", "paper"),
            ("tail items (full)", "tail items (full-masked)")} <= set(by_pair)
    assert by_pair[("full", "full-masked")].flips == by_pair[("full", "paper")].flips
    assert by_pair[("full-masked", "paper")].flips == []
    out = tmp_path / "boards"
    assert main(["report", "sensitivity", "--records", str(root), "--out", str(out)]) == 0
    text = (out / "sensitivity.md").read_text()
    assert "### synthetic / sasrec: full vs full-masked" in text
    assert "### synthetic / sasrec: full-masked vs paper" in text
