"""Protocol sensitivity: would the papers' protocol have ranked the methods the same way?

For each dataset and backbone with records under both ``full`` (full ranking) and ``paper``
(100 sampled negatives, the papers' thresholds), the methods are ranked by their seed-mean
NDCG@10 under each protocol; Kendall's tau between the two rankings (``scipy.stats.kendalltau``,
tau-b, with its two-sided p-value) says how much they agree, and every pair of methods whose
order flips is listed, overall and on head and on tail items (each protocol's own groups:
quantiles under ``full``, the papers' thresholds under ``paper``; a group that holds every test
user or none on a page, as the papers' tail threshold on a 5-core Beauty, is not ranked, and the
page says so with its n). The same comparison is made
between head-item and tail-item rankings under each protocol: a method can lead on head items and trail on the tail. Where the dataset
also has a ``cold`` page (items held out of training, bench/data/cold.py), the tail-item ranking
under each warm protocol is compared with the cold-item ranking: the papers measure the long tail
and argue for new items; this says whether the one predicts the other. Where a
``full-masked`` page exists (``full`` with the user's history items removed from the
candidates), it is set between the two: ``full`` vs ``full-masked`` is the effect of masking
alone, ``full-masked`` vs ``paper`` that of sampling (``paper``'s negatives exclude history).

A flip between two methods whose difference is noise says nothing about the protocol. So every
flipped pair carries the paired sign-flip randomization p of the difference on each side (per-user
NDCG@10, averaged over seeds, the same test as the dataset pages; Holm-adjusted over all pairs of
that side) and a verdict: *reversed* when both orders are significant at 0.05 (the protocol really
changes the conclusion), *one side only*, or *within noise* on both.

Pure function of the records, like every page: ``python -m bench leaderboard`` writes
``sensitivity.md`` (and ``sensitivity-ranks.png``) whenever some dataset has two of them;
``python -m bench report sensitivity`` writes only these.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, rankdata

from bench.leaderboard.load import Page
from bench.leaderboard.render import MARKER, _table
from bench.leaderboard.stats import holm, sign_flip_p

METRIC = "NDCG@10"
MASKED = "full-masked"  # `full` with history items masked (configs/protocol/full-masked.yaml)
ALPHA = 0.05  # a flipped pair's order counts as established on a side below this adjusted p
PAGE = "sensitivity.md"
PLOT = "sensitivity-ranks.png"


@dataclass
class RankComparison:
    dataset: str
    backbone: str
    a: str  # what the first ranking is ("full", "head items (paper)", ...)
    b: str
    scores_a: dict[str, float]  # method -> seed-mean metric
    scores_b: dict[str, float]
    users_a: dict[str, np.ndarray] = field(default_factory=dict)  # method -> per-user metric
    users_b: dict[str, np.ndarray] = field(default_factory=dict)  # (seed-mean, side's users)
    one_sided: str | None = None  # why a side's group holds no user or every user (not compared)

    @property
    def methods(self) -> list[str]:
        both = set(self.scores_a) & set(self.scores_b)
        return sorted(m for m in both if _finite(self.scores_a[m]) and _finite(self.scores_b[m]))

    def ranks(self, scores: dict[str, float]) -> dict[str, int]:
        """1 = best; tied methods share the better rank (two rows at 0 are both 4th, not 4th
        and 5th), so a tie never shows as a rank change."""
        ranked = rankdata([-scores[m] for m in self.methods], method="min")
        return {m: int(r) for m, r in zip(self.methods, ranked, strict=True)}

    @property
    def tau(self) -> tuple[float, float]:
        """Kendall's tau-b and its p-value; NaN with fewer than 3 methods."""
        if len(self.methods) < 3:
            return float("nan"), float("nan")
        res = kendalltau([self.scores_a[m] for m in self.methods],
                         [self.scores_b[m] for m in self.methods])
        return float(res.statistic), float(res.pvalue)

    @property
    def flips(self) -> list[tuple[str, str]]:
        """Pairs ordered one way by ``a`` and the other way by ``b`` (a tie is no flip)."""
        a, b = self.scores_a, self.scores_b
        return [(x, y) if a[x] > a[y] else (y, x) for x, y in combinations(self.methods, 2)
                if (a[x] - a[y]) * (b[x] - b[y]) < 0]

    def pair_p(self, side: str) -> dict[frozenset[str], float]:
        """Holm-adjusted paired randomization p of every method pair on side ``a`` or ``b``
        (empty when that side has no per-user values)."""
        users = self.users_a if side == "a" else self.users_b
        pairs = [frozenset(p) for p in combinations(self.methods, 2)
                 if all(m in users for m in p)]
        raw = [sign_flip_p(users[min(p)] - users[max(p)]) for p in pairs]
        return dict(zip(pairs, holm(raw), strict=True)) if pairs else {}

    def flip_tests(self) -> list[FlipTest]:
        """Each flipped pair with its adjusted p on both sides and the verdict."""
        flips = self.flips
        if not flips:
            return []
        pa, pb = self.pair_p("a"), self.pair_p("b")
        return [FlipTest(x, y, pa.get(frozenset((x, y)), float("nan")),
                         pb.get(frozenset((x, y)), float("nan"))) for x, y in flips]


@dataclass(frozen=True)
class FlipTest:
    winner: str  # ahead under ``a``
    loser: str  # ahead under ``b``
    p_a: float  # Holm-adjusted paired randomization p on side a (NaN: no per-user values)
    p_b: float

    @property
    def verdict(self) -> str:
        sig_a, sig_b = self.p_a < ALPHA, self.p_b < ALPHA
        if sig_a and sig_b:
            return "reversed"
        if sig_a or sig_b:
            return "one side only"
        return "within noise"


def _finite(x: float) -> bool:
    return x is not None and math.isfinite(x)


def _scores(page: Page, backbone: str, group: str) -> dict[str, float]:
    return {row.method: float(np.mean(row.seed_values[(group, METRIC)]))
            for row in page.rows if row.backbone == backbone}


def _users(page: Page, backbone: str, group: str) -> dict[str, np.ndarray]:
    """Per-user seed-mean metric of each row, restricted to the group's users."""
    mask = page.groups.get(group, np.ones(len(page.users), dtype=bool))
    return {row.method: row.user_values[METRIC][mask]
            for row in page.rows if row.backbone == backbone and METRIC in row.user_values}


def _side(page: Page, backbone: str, group: str) -> tuple[dict, dict]:
    return _scores(page, backbone, group), _users(page, backbone, group)


def _same_data(a: Page | None, b: Page | None) -> bool:
    return a is not None and b is not None and a.source_fingerprint == b.source_fingerprint


def not_compared(pages: list[Page]) -> list[str]:
    """What ``compare`` leaves out, and why: page pairs whose records come from different data
    (a dataset regenerated or re-prepared between runs: a ranking change between them could be
    the data's, not the protocol's), and comparisons with fewer than two methods ranked on both
    sides (named, so a dataset with too few runs does not vanish from the page unexplained)."""
    by_key = {(p.dataset, p.protocol): p for p in pages}
    out = []
    for dataset in sorted({p.dataset for p in pages}):
        full, paper, cold = (by_key.get((dataset, name)) for name in ("full", "paper", "cold"))
        masked = by_key.get((dataset, MASKED))
        for a, b in ((full, paper), (full, masked), (masked, paper), (full, cold),
                     (paper, cold)):
            if a is not None and b is not None and not _same_data(a, b):
                out.append(f"{dataset}: `{a.protocol}` vs `{b.protocol}` not compared: their "
                           f"records come from different data (dataset fingerprint "
                           f"`{a.source_fingerprint}` vs `{b.source_fingerprint}`); rerun one "
                           "protocol's records on the other's data")
    thin: dict[tuple[str, str], list[str]] = {}
    for c in _comparisons(pages):
        if c.one_sided:
            out.append(f"{c.dataset} / {c.backbone}: {c.a} vs {c.b} not compared: "
                       f"{c.one_sided}")
        elif len(c.methods) < 2:
            thin.setdefault((c.dataset, c.backbone), []).append(
                f"{c.a} vs {c.b} ({', '.join(c.methods) or 'none'})")
    for (dataset, backbone), items in sorted(thin.items()):
        out.append(f"{dataset} / {backbone}: not compared for want of two methods ranked on both "
                   f"sides (those ranked on both in brackets): {'; '.join(items)}")
    return out


def compare(pages: list[Page]) -> list[RankComparison]:
    """Every (dataset, backbone): full vs paper (overall, head items, tail items), head vs tail
    per protocol, and, where a ``cold`` page exists, tail items under each warm protocol vs cold
    items. Pages measured on different data are not set side by side, and a comparison needs
    two methods ranked on both sides, and a group that holds every test user or none on a page
    (the papers' tail threshold on a 5-core Beauty) is not a group (``not_compared`` names what
    is left out and why)."""
    return [c for c in _comparisons(pages) if not c.one_sided and len(c.methods) >= 2]


def _comparisons(pages: list[Page]) -> list[RankComparison]:
    """``compare``'s candidates, before the two-method rule."""
    by_key = {(p.dataset, p.protocol): p for p in pages}
    out = []
    for dataset in sorted({p.dataset for p in pages}):
        full, paper, cold = (by_key.get((dataset, name)) for name in ("full", "paper", "cold"))
        masked = by_key.get((dataset, MASKED))
        pairs = [(a, b) for a, b in ((full, paper), (full, masked), (masked, paper))
                 if _same_data(a, b)]
        for backbone in sorted({bb for a, b in pairs for bb in _shared_backbones(a, b)}):
            for a, b in pairs:
                if backbone in _shared_backbones(a, b):
                    out += _between_protocols(dataset, backbone, a, b)
        if full is not None and paper is not None:
            for backbone in _shared_backbones(full, paper):
                for name, page in (("full", full), ("paper", paper)):
                    out.append(_comparison(dataset, backbone,
                                           (f"head items ({name})", page, "head_item"),
                                           (f"tail items ({name})", page, "tail_item")))
        for name, page in (("full", full), ("paper", paper)):
            if not _same_data(page, cold):
                continue
            for backbone in _shared_backbones(page, cold):
                out.append(_comparison(dataset, backbone, (f"tail items ({name})", page,
                                                           "tail_item"),
                                       ("cold items (cold)", cold, "overall")))
    return out


def _between_protocols(dataset: str, backbone: str, a: Page, b: Page) -> list[RankComparison]:
    """Page ``a``'s ranking vs page ``b``'s on one backbone: overall, head and tail items."""
    return [_comparison(dataset, backbone, (a.protocol, a, "overall"), (b.protocol, b, "overall"))
            ] + [_comparison(dataset, backbone, (f"{label} ({a.protocol})", a, group),
                             (f"{label} ({b.protocol})", b, group))
                 for group, label in (("head_item", "head items"), ("tail_item", "tail items"))]


def _shared_backbones(a: Page, b: Page) -> list[str]:
    return sorted({r.backbone for r in a.rows} & {r.backbone for r in b.rows})


def _comparison(dataset: str, backbone: str, a: tuple[str, Page, str],
                b: tuple[str, Page, str]) -> RankComparison:
    """Side = (label, page, user group)."""
    (sa, ua), (sb, ub) = _side(a[1], backbone, a[2]), _side(b[1], backbone, b[2])
    one_sided = "; ".join(filter(None, (_one_sided(*a), _one_sided(*b)))) or None
    return RankComparison(dataset, backbone, a[0], b[0], sa, sb, ua, ub, one_sided)


def _one_sided(label: str, page: Page, group: str) -> str | None:
    """Why ``group`` is no group on ``page``: it holds none of the test users or all of them,
    so its ranking is empty or the page's overall one (the dataset page hides its columns)."""
    if group == "overall" or group in page.shown_groups:
        return None
    n, k = len(page.users), int(page.groups[group].sum())
    return f"{label} holds {k:,} of {n:,} test users on this data"


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if not _finite(x) else f"{x:.{digits}f}"


def _section(c: RankComparison) -> str:
    ra, rb = c.ranks(c.scores_a), c.ranks(c.scores_b)
    rows = [[m, _fmt(c.scores_a[m], 4), ra[m], _fmt(c.scores_b[m], 4), rb[m],
             f"{ra[m] - rb[m]:+d}" if ra[m] != rb[m] else "0"]
            for m in sorted(c.methods, key=lambda m: (ra[m], rb[m], m))]
    tau, p = c.tau
    tests = c.flip_tests()
    parts = [
        f"### {c.dataset} / {c.backbone}: {c.a} vs {c.b}",
        _table(rows, ["method", f"{METRIC} ({c.a})", "rank", f"{METRIC} ({c.b})", "rank",
                      f"places gained under {c.b}"]),
        f"Kendall's tau-b = {_fmt(tau)} (p = {_fmt(p)}, {len(c.methods)} methods"
        f"{'; needs 3 or more' if len(c.methods) < 3 else ''}). "
        f"Flipped pairs: {len(c.flips)} of {len(c.methods) * (len(c.methods) - 1) // 2}"
        + (" (each ahead under one side, behind under the other):" if tests else ".")]
    if tests:
        parts.append(_table(
            [[f"{t.winner} vs {t.loser}", f"{t.winner} ahead", _fmt(t.p_a, 4),
              f"{t.loser} ahead", _fmt(t.p_b, 4), t.verdict] for t in tests],
            ["flipped pair", c.a, "p (Holm)", c.b, "p (Holm)", "verdict"]))
    return "\n\n".join(parts)


def sensitivity_markdown(comparisons: list[RankComparison], plot: str | None,
                         skipped: list[str] | None = None) -> str:
    parts = [MARKER, "# Protocol sensitivity",
             ("Would the papers' protocol (`paper`: 100 sampled negatives, their head/tail "
             "thresholds) have ranked the methods as full ranking over all items (`full`) does? "
             f"Methods are ranked by seed-mean {METRIC} on each dataset page; Kendall's tau-b "
             "(scipy.stats.kendalltau) measures agreement (1 = same order, -1 = reversed), "
             "and every pair whose order flips is listed, overall and on head and tail items "
             "(each protocol's own groups: top-20% quantile under `full`, the papers' "
             "popularity thresholds under `paper`). Head- vs tail-item rankings show "
             "where a method's advantage lives. Where a `cold` page exists (items held out of "
             "training), each warm protocol's tail-item ranking is set beside the cold-item "
             "ranking: would the long tail, which is what the papers measure, have predicted "
             "which method ranks new items best? Where a `full-masked` page exists (full "
             "ranking with the user's history items removed from the candidates, as `paper` "
             "removes them from its negatives), `full` vs `full-masked` is the effect of "
             "masking alone and `full-masked` vs `paper` that of sampling. Rankings come "
             "from the same records as the dataset pages; a method missing under one "
             "protocol is left out of that pair. "
             "Each flipped pair is tested on both sides (paired sign-flip randomization test on "
             f"per-user {METRIC}, seed-averaged, Holm-adjusted over the side's pairs): "
             f"*reversed* = both orders significant at {ALPHA}, *one side only*, or *within "
             "noise* (the flip may be chance).")]
    if plot:
        parts.append(f"![method ranks under both protocols]({plot})")
    if skipped:
        parts.append("**Not compared:**\n\n" + "\n".join(f"- {line}." for line in skipped))
    parts += [_section(c) for c in comparisons]
    return "\n\n".join(parts) + "\n"


def _plotted(comparisons: list[RankComparison]) -> list[RankComparison]:
    """The comparisons the rank plot has a panel for: between protocols, not within one."""
    return [c for c in comparisons if c.a in ("full", MASKED) or c.b.startswith("cold")]


def rank_plot(comparisons: list[RankComparison], path: Path) -> None:
    """One panel per protocol comparison (full vs paper; tail vs cold items) and backbone:
    each method's rank on both sides. Head-vs-tail comparisons stay in the tables."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.leaderboard.plots import _save

    from matplotlib.ticker import MaxNLocator

    pairs = _plotted(comparisons)
    methods = sorted({m for c in pairs for m in c.methods})
    colour = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}  # same colour everywhere
    fig, axes = plt.subplots(1, len(pairs), figsize=(3.6 * len(pairs), 4.2), squeeze=False)
    for ax, c in zip(axes[0], pairs, strict=True):
        ra, rb = c.ranks(c.scores_a), c.ranks(c.scores_b)
        for m in c.methods:
            ax.plot([0, 1], [ra[m], rb[m]], marker="o", color=colour[m])
        for x, ranks, ha in ((-0.07, ra, "right"), (1.07, rb, "left")):
            for rank in sorted(set(ranks.values())):  # tied methods share one label
                names = ", ".join(m for m in c.methods if ranks[m] == rank)
                ax.annotate(names, (x, rank), va="center", ha=ha, fontsize=7)
        ax.set_xticks([0, 1], [c.a.replace(" items", ""), c.b.replace(" items", "")],
                      fontsize=8)
        ax.set_xlim(-0.9, 1.9)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.invert_yaxis()
        ax.set_ylabel("rank (1 = best NDCG@10)")
        ax.set_title(f"{c.dataset} / {c.backbone}", fontsize=9)
        if not c.methods:
            ax.set_axis_off()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def write_sensitivity(pages: list[Page], out_dir: Path, with_plots: bool = True,
                      output=None) -> list[Path]:
    """Write ``sensitivity.md`` (and its plot) when some dataset has a pair to compare;
    ``output``: a ``bench.leaderboard.Output`` (default: write the files)."""
    from bench.leaderboard import Output

    output = output or Output()
    comparisons, skipped = compare(pages), not_compared(pages)
    if not comparisons and not skipped:
        return []
    out_dir = Path(out_dir)
    written = []
    plot = None
    if with_plots and _plotted(comparisons):
        output.plot(rank_plot, out_dir / PLOT, comparisons)
        plot, written = PLOT, [out_dir / PLOT]
    elif with_plots:  # no comparison between protocols: no panel, and no stale plot left
        output.remove(out_dir / PLOT)
    output.text(out_dir / PAGE, sensitivity_markdown(comparisons, plot, skipped))
    return [out_dir / PAGE, *written]
