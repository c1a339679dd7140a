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


class Output:
    """Where ``build``'s files go. Written (the default), or with ``check=True`` compared with
    the files already there, nothing written: a markdown page must match byte for byte; a plot
    must exist (its bytes are matplotlib's, which differ across its versions)."""

    def __init__(self, check: bool = False):
        self.check = check
        self.produced: list[Path] = []
        self.problems: list[str] = []  # "<path>: <what is wrong>", check mode only

    def text(self, path: Path, content: str) -> None:
        self.produced.append(path)
        if not self.check:
            write_text_atomic(path, content)
        elif not path.exists():
            self.problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != content:
            self.problems.append(f"{path}: differs from what its records give")

    def plot(self, draw, path: Path, *args) -> None:
        self.produced.append(path)
        if not self.check:
            draw(*args, path)
        elif not path.exists():
            self.problems.append(f"{path}: missing")

    def remove(self, path: Path) -> None:
        if not self.check:
            path.unlink(missing_ok=True)
        elif path.exists():
            self.problems.append(f"{path}: stale (no records give it any more)")


def _plots(page: Page, out_dir: Path, with_plots: bool, output: Output) -> dict[str, str]:
    if not with_plots:
        return {}
    names = {}
    if {"head_item", "tail_item"} <= set(page.shown_groups):
        names["tail vs head items"] = f"{page.slug}-head-tail.png"
        output.plot(head_tail_plot, out_dir / names["tail vs head items"], page)
    else:
        names["overall per row"] = f"{page.slug}-overall.png"
        output.plot(overall_plot, out_dir / names["overall per row"], page)
    names["accuracy vs training cost"] = f"{page.slug}-cost.png"
    output.plot(cost_plot, out_dir / names["accuracy vs training cost"], page)
    return names


def build(records_dir: Path, out_dir: Path, with_plots: bool = True,
          efficiency_dir: Path | None = None, output: Output | None = None) -> list[Path]:
    """Write one page per (dataset, protocol), the efficiency page (when there are efficiency
    records) and the index; remove generated pages whose records are gone. Returns the files
    written. With ``output=Output(check=True)`` nothing is written: ``output.problems`` lists
    the files that are not what the records give (``bench leaderboard --check``)."""
    out_dir = Path(out_dir)
    output = output or Output()
    pages = load_pages(Path(records_dir))  # every check runs before anything is written
    costs = load_costs(Path(efficiency_dir)) if efficiency_dir is not None else {}
    epochs = {(p.dataset, p.protocol): epochs_to_stop(p.runs) for p in pages}
    files = {}
    for page in pages:
        path = out_dir / f"{page.slug}.md"
        plots = _plots(page, out_dir, with_plots, output)
        rows = costs.get((page.dataset, page.protocol))
        table = efficiency_table(rows, epochs[(page.dataset, page.protocol)]) if rows else None
        output.text(path, page_markdown(page, plots, table))
        files[page.slug] = path.name
    sensitivity = write_sensitivity(pages, out_dir, with_plots, output)
    eff_rel = None
    if costs:
        output.text(out_dir / "efficiency.md", efficiency_markdown(costs, epochs, MARKER))
        eff_rel = Path(os.path.relpath(efficiency_dir, out_dir)).as_posix()
    for stale in out_dir.glob("*.md"):
        if stale.name != "README.md" and stale not in output.produced and \
                stale.read_text(encoding="utf-8").startswith(MARKER):
            output.remove(stale)
            for png in out_dir.glob(f"{stale.stem}-*.png"):
                output.remove(png)
    records = Path(os.path.relpath(records_dir, out_dir)).as_posix()
    output.text(out_dir / "README.md", index_markdown(pages, files, records, eff_rel,
                                                      PAGE if sensitivity else None))
    return list(output.produced)
