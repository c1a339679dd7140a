"""``python -m bench leaderboard``: run records -> markdown pages, plots and an index.

Data flow: ``load`` (records -> pages, refusing mixtures) -> ``stats`` (intervals, paired tests,
Holm) -> ``render`` (markdown) and ``plots`` (PNG). The output is a pure function of the
records: no training, and rerunning it on the same records rewrites the same bytes.
"""
from __future__ import annotations

import os
from pathlib import Path

from bench.leaderboard.costs import (
    efficiency_markdown,
    efficiency_table,
    epochs_to_stop,
    load_costs,
)
from bench.leaderboard.load import Page, load_pages
from bench.leaderboard.plots import cost_plot, head_tail_plot, overall_plot
from bench.leaderboard.render import MARKER, index_markdown, page_markdown
from bench.leaderboard.sensitivity import PAGE, write_sensitivity
from bench.records import write_text_atomic


def _plots(page: Page, out_dir: Path, with_plots: bool) -> dict[str, str]:
    if not with_plots:
        return {}
    names = {}
    if {"head_item", "tail_item"} <= set(page.shown_groups):
        names["tail vs head items"] = f"{page.slug}-head-tail.png"
        head_tail_plot(page, out_dir / names["tail vs head items"])
    else:
        names["overall per row"] = f"{page.slug}-overall.png"
        overall_plot(page, out_dir / names["overall per row"])
    names["accuracy vs training cost"] = f"{page.slug}-cost.png"
    cost_plot(page, out_dir / names["accuracy vs training cost"])
    return names


def build(records_dir: Path, out_dir: Path, with_plots: bool = True,
          efficiency_dir: Path | None = None) -> list[Path]:
    """Write one page per (dataset, protocol), the efficiency page (when there are efficiency
    records) and the index; remove generated pages whose records are gone. Returns the files
    written."""
    out_dir = Path(out_dir)
    pages = load_pages(Path(records_dir))  # every check runs before anything is written
    costs = load_costs(Path(efficiency_dir)) if efficiency_dir is not None else {}
    epochs = {(p.dataset, p.protocol): epochs_to_stop(p.runs) for p in pages}
    written, files = [], {}
    for page in pages:
        path = out_dir / f"{page.slug}.md"
        plots = _plots(page, out_dir, with_plots)
        rows = costs.get((page.dataset, page.protocol))
        table = efficiency_table(rows, epochs[(page.dataset, page.protocol)]) if rows else None
        write_text_atomic(path, page_markdown(page, plots, table))
        written += [path] + [out_dir / name for name in plots.values()]
        files[page.slug] = path.name
    sensitivity = write_sensitivity(pages, out_dir, with_plots)
    written += sensitivity
    eff_rel = None
    if costs:
        path = out_dir / "efficiency.md"
        write_text_atomic(path, efficiency_markdown(costs, epochs, MARKER))
        written.append(path)
        eff_rel = Path(os.path.relpath(efficiency_dir, out_dir)).as_posix()
    for stale in out_dir.glob("*.md"):
        if stale.name != "README.md" and stale not in written and \
                stale.read_text(encoding="utf-8").startswith(MARKER):
            stale.unlink()
            for png in out_dir.glob(f"{stale.stem}-*.png"):
                png.unlink()
    index = out_dir / "README.md"
    records = Path(os.path.relpath(records_dir, out_dir)).as_posix()
    write_text_atomic(index, index_markdown(pages, files, records, eff_rel,
                                            PAGE if sensitivity else None))
    return written + [index]
