"""Protocol sensitivity: would the papers' protocol have ranked the methods the same way?

For each dataset and backbone with records under both ``full`` (full ranking) and ``paper``
(100 sampled negatives, the papers' thresholds), the methods are ranked by their seed-mean
NDCG@10 under each protocol; Kendall's tau between the two rankings (``scipy.stats.kendalltau``,
tau-b, with its two-sided p-value) says how much they agree, and every pair of methods whose
order flips is listed. The same comparison is made between head-item and tail-item rankings
under each protocol: a method can lead on head items and trail on the tail.

Pure function of the records, like every page: ``python -m bench leaderboard`` writes
``sensitivity.md`` (and ``sensitivity-ranks.png``) whenever some dataset has both protocols;
``python -m bench report sensitivity`` writes only these.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from bench.leaderboard.load import Page
from bench.leaderboard.render import MARKER, _table

METRIC = "NDCG@10"
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

    @property
    def methods(self) -> list[str]:
        both = set(self.scores_a) & set(self.scores_b)
        return sorted(m for m in both if _finite(self.scores_a[m]) and _finite(self.scores_b[m]))

    def ranks(self, scores: dict[str, float]) -> dict[str, int]:
        order = sorted(self.methods, key=lambda m: (-scores[m], m))
        return {m: i + 1 for i, m in enumerate(order)}

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


def _finite(x: float) -> bool:
    return x is not None and math.isfinite(x)


def _scores(page: Page, backbone: str, group: str) -> dict[str, float]:
    return {row.method: float(np.mean(row.seed_values[(group, METRIC)]))
            for row in page.rows if row.backbone == backbone}


def compare(pages: list[Page]) -> list[RankComparison]:
    """Every (dataset, backbone): full vs paper (overall), then head vs tail per protocol."""
    by_key = {(p.dataset, p.protocol): p for p in pages}
    out = []
    for dataset in sorted({p.dataset for p in pages}):
        full, paper = by_key.get((dataset, "full")), by_key.get((dataset, "paper"))
        if full is None or paper is None:
            continue
        for backbone in sorted({r.backbone for r in full.rows} & {r.backbone for r in paper.rows}):
            out.append(RankComparison(dataset, backbone, "full", "paper",
                                      _scores(full, backbone, "overall"),
                                      _scores(paper, backbone, "overall")))
            for name, page in (("full", full), ("paper", paper)):
                out.append(RankComparison(dataset, backbone, f"head items ({name})",
                                          f"tail items ({name})",
                                          _scores(page, backbone, "head_item"),
                                          _scores(page, backbone, "tail_item")))
    return out


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if not _finite(x) else f"{x:.{digits}f}"


def _section(c: RankComparison) -> str:
    ra, rb = c.ranks(c.scores_a), c.ranks(c.scores_b)
    rows = [[m, _fmt(c.scores_a[m], 4), ra[m], _fmt(c.scores_b[m], 4), rb[m],
             f"{ra[m] - rb[m]:+d}" if ra[m] != rb[m] else "0"]
            for m in sorted(c.methods, key=lambda m: ra[m])]
    tau, p = c.tau
    flips = ", ".join(f"{x} > {y} under {c.a}, reversed under {c.b}" for x, y in c.flips)
    return "\n\n".join([
        f"### {c.dataset} / {c.backbone}: {c.a} vs {c.b}",
        _table(rows, ["method", f"{METRIC} ({c.a})", "rank", f"{METRIC} ({c.b})", "rank",
                      "rank change"]),
        f"Kendall's tau-b = {_fmt(tau)} (p = {_fmt(p)}, {len(c.methods)} methods"
        f"{'; needs 3 or more' if len(c.methods) < 3 else ''}). "
        f"Flipped pairs: {len(c.flips)} of {len(c.methods) * (len(c.methods) - 1) // 2}"
        + (f": {flips}." if flips else ".")])


def sensitivity_markdown(comparisons: list[RankComparison], plot: str | None) -> str:
    parts = [MARKER, "# Protocol sensitivity",
             "Would the papers' protocol (`paper`: 100 sampled negatives, their head/tail "
             "thresholds) have ranked the methods as full ranking over all items (`full`) does? "
             f"Methods are ranked by seed-mean {METRIC} on each dataset page; Kendall's tau-b "
             "(scipy.stats.kendalltau) measures agreement (1 = same order, -1 = reversed), "
             "and every pair whose order flips is listed. Head- vs tail-item rankings show "
             "where a method's advantage lives. Rankings come from the same records as the "
             "dataset pages; a method missing under one protocol is left out of that pair."]
    if plot:
        parts.append(f"![method ranks under both protocols]({plot})")
    parts += [_section(c) for c in comparisons]
    return "\n\n".join(parts) + "\n"


def rank_plot(comparisons: list[RankComparison], path: Path) -> None:
    """One panel per (dataset, backbone): each method's rank under full and under paper."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.leaderboard.plots import _save

    pairs = [c for c in comparisons if c.a == "full"]
    fig, axes = plt.subplots(1, len(pairs), figsize=(3.6 * len(pairs), 4.2), squeeze=False)
    for ax, c in zip(axes[0], pairs, strict=True):
        ra, rb = c.ranks(c.scores_a), c.ranks(c.scores_b)
        for m in c.methods:
            ax.plot([0, 1], [ra[m], rb[m]], marker="o")
            ax.annotate(m, (1.03, rb[m]), va="center", fontsize=8)
        ax.set_xticks([0, 1], ["full", "paper"])
        ax.set_xlim(-0.2, 1.6)
        ax.invert_yaxis()
        ax.set_ylabel("rank")
        ax.set_title(f"{c.dataset} / {c.backbone}", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def write_sensitivity(pages: list[Page], out_dir: Path, with_plots: bool = True) -> list[Path]:
    """Write ``sensitivity.md`` (and its plot) when some dataset has both protocols."""
    from bench.records import write_text_atomic

    comparisons = compare(pages)
    if not comparisons:
        return []
    out_dir = Path(out_dir)
    written = []
    plot = None
    if with_plots:
        rank_plot(comparisons, out_dir / PLOT)
        plot, written = PLOT, [out_dir / PLOT]
    write_text_atomic(out_dir / PAGE, sensitivity_markdown(comparisons, plot))
    return [out_dir / PAGE, *written]
