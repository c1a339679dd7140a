"""Leaderboard plots (matplotlib, Agg, PNG without a version stamp so reruns are identical)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.leaderboard.load import Page
from bench.leaderboard.stats import seed_interval


def _save(fig, path: Path) -> None:
    from bench.records import _atomic_write

    _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110,
                                                metadata={"Software": None}))


def _interval(values: list[float]) -> tuple[float, float]:
    iv = seed_interval(values)
    return iv.mean, (iv.half_width or 0.0)


def head_tail_plot(page: Page, path: Path, metric: str = "NDCG@10") -> None:
    """Tail-item against head-item metric per row, with 95% intervals over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for row in page.rows:
        hx, hw = _interval(row.seed_values[("head_item", metric)])
        ty, tw = _interval(row.seed_values[("tail_item", metric)])
        ax.errorbar(hx, ty, xerr=hw, yerr=tw, fmt="o", capsize=3, label=row.name)
    ax.set_xlabel(f"head-item {metric}")
    ax.set_ylabel(f"tail-item {metric}")
    ax.set_title(f"{page.dataset} ({page.protocol}): tail vs head items, 95% CI over seeds",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def overall_plot(page: Page, path: Path, metric: str = "NDCG@10") -> None:
    """Overall metric per row with 95% intervals over seeds: for pages without item groups
    (``cold``, where every test target is an item no row trained on)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.45 * len(page.rows)))
    names = [row.name for row in page.rows]
    means, widths = zip(*(_interval(row.seed_values[("overall", metric)]) for row in page.rows))
    ax.barh(range(len(names)), means, xerr=widths, capsize=3, color="#4c72b0")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (n={len(page.users):,} test users)")
    ax.set_title(f"{page.dataset} ({page.protocol}): {metric} per row, 95% CI over seeds",
                 fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def cost_plot(page: Page, path: Path, metric: str = "NDCG@10") -> None:
    """Overall metric against training time to convergence (log scale), device in the label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for row in page.rows:
        seconds = float(np.mean([r.record["efficiency"]["train_seconds"] for r in row.runs]))
        y, yw = _interval(row.seed_values[("overall", metric)])
        ax.errorbar(seconds, y, yerr=yw, fmt="o", capsize=3, label=row.name)
    devices = sorted({r.record["provenance"]["device"] for r in page.runs})
    ax.set_xscale("log")
    ax.set_xlabel("training time to early stop, s (" + "; ".join(devices) + ")", fontsize=8)
    ax.set_ylabel(f"overall {metric}")
    ax.set_title(f"{page.dataset} ({page.protocol}): accuracy vs training cost", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
