"""Command line: ``python -m bench run|list|data|adapter|leaderboard|report|speed|...``
(``--help`` on each).

Every user mistake (unknown name, malformed seed list, bad override, corrupted data file) is
printed as one line starting with ``error:`` and exits with code 2, with no traceback and no
partial record.
"""
from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bench.errors import BenchError

DEMO = {"methods": "id", "backbones": "sasrec,bert4rec,gru4rec", "datasets": "synthetic",
        "seeds": "0", "protocol": "full"}


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` or a mix; each seed a non-negative integer."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not (lo.isdigit() and (not sep or hi.isdigit())):
            raise BenchError(f"malformed seed list '{text}': use integers like 0,1,2 or a range 0-4")
        seeds.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    if not seeds or len(set(seeds)) != len(seeds):
        raise BenchError(f"malformed seed list '{text}': seeds must be distinct")
    return seeds


def _names(group: str, text: str) -> list[str]:
    from bench.adapters import check_name

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise BenchError(f"no {group} given")
    return [check_name(group, n) for n in names]


def _include(paths: list[str] | None) -> None:
    from bench.adapters import include

    for path in paths or []:
        include(path)


def cmd_run(args: argparse.Namespace) -> int:
    from bench.config import compose

    _include(args.include)
    for key in ("methods", "backbones", "datasets", "seeds", "protocol"):
        if getattr(args, key) is None:
            setattr(args, key, DEMO[key])
    methods, backbones = _names("method", args.methods), _names("backbone", args.backbones)
    datasets, protocols = _names("dataset", args.datasets), _names("protocol", args.protocol)
    seeds = parse_seeds(args.seeds)
    # hydra.* / hydra/... overrides configure a sweep's launcher, not a run
    launcher_overrides = [o for o in args.overrides
                          if o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    overrides = [o for o in args.overrides if o not in launcher_overrides]
    if launcher_overrides and args.launcher is None:
        raise BenchError(f"'{launcher_overrides[0]}' configures a sweep's launcher; add "
                         "--launcher joblib|submitit_local|slurm (or drop it)")
    jobs = [[f"dataset={d}", f"protocol={p}", f"method={m}", f"backbone={b}", f"seed={s}",
             *overrides]
            for d in datasets for p in protocols for m in methods for b in backbones for s in seeds]
    configs = [compose(job) for job in jobs]  # check every config before training anything
    if args.launcher is not None:
        from bench.sweep import launch

        axes = {"dataset": datasets, "protocol": protocols, "method": methods,
                "backbone": backbones, "seed": seeds}
        return launch(axes, overrides + launcher_overrides, args.launcher, args.force,
                      Path(configs[0]["paths"]["runs"]), args.include or [])
    from bench.runner import execute_all  # torch and RecBole: only once the names are checked

    outcomes = execute_all(configs, force=args.force)
    print(summary_table(outcomes))
    return 0


def summary_table(outcomes) -> str:
    from tabulate import tabulate

    from bench.records import read_record

    rows = []
    for o in outcomes:
        rec = o.record or read_record(o.record_path)
        m = rec["metrics"]["test"]

        def fmt(g: str, k: str, m=m) -> str:
            return "-" if m[g][k] is None else f"{m[g][k]:.4f}"
        rows.append([o.key.dataset, o.key.protocol, o.key.method, o.key.backbone, o.key.seed,
                     fmt("overall", "NDCG@10"), fmt("head_item", "NDCG@10"),
                     fmt("tail_item", "NDCG@10"), fmt("overall", "HR@10"),
                     f"{m['head_item']['n']}/{m['tail_item']['n']}",
                     rec["training"]["epochs_run"], f"{rec['efficiency']['train_seconds']:.0f}s",
                     str(o.record_path)])
    headers = ["dataset", "protocol", "method", "backbone", "seed", "NDCG@10", "head", "tail",
               "HR@10", "n head/tail", "epochs", "train", "record"]
    return tabulate(rows, headers=headers, tablefmt="github")


def cmd_list(args: argparse.Namespace) -> int:
    from bench.adapters import config_names

    group = {"methods": "method", "datasets": "dataset", "backbones": "backbone",
             "protocols": "protocol", "encoders": "encoder"}[args.what]
    if group == "method":
        from bench.adapters import method_source

        _include(args.include)
        for name in config_names(group):
            source = method_source(name)
            print(name if source == "built-in" else f"{name}  ({source})")
        return 0
    print("\n".join(config_names(group)))
    return 0


RAW_LOADERS = ("amazon", "yelp")


def _dataset_config(name: str, raw: str | None, overrides: list[str], recipe: bool = False
                    ) -> dict:
    """Compose a dataset's config; with ``--raw DIR`` (or ``recipe``) use its raw recipe
    (``<name>-raw``)."""
    from bench.adapters import check_name, config_names
    from bench.config import compose

    name = check_name("dataset", name)
    if raw is not None or recipe:
        cfg = compose([f"dataset={name}"])
        if cfg["dataset"]["loader"] not in RAW_LOADERS:
            if f"{name}-raw" not in config_names("dataset"):
                recipes = [n for n in config_names("dataset") if n.endswith("-raw")]
                raise BenchError(f"dataset '{name}' has no raw recipe; raw recipes: "
                                 f"{', '.join(recipes)}")
            name = f"{name}-raw"
        if raw is not None:
            overrides = [f"dataset.raw_dir={Path(raw).expanduser().resolve()}", *overrides]
    return compose([f"dataset={name}", *overrides])


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from bench.data.sources import prepare

    cfg = _dataset_config(args.name, args.raw, args.overrides)
    ds = prepare(cfg["dataset"], Path(cfg["paths"]["cache"]), force=args.force)
    m = ds.meta
    print(f"{ds.name}: {m['n_users']} users, {m['n_items']} items, {m['n_interactions']} "
          f"interactions; fingerprint {ds.fingerprint}; at {ds.path}")
    if not ds.text_fields:
        print(f"note: {ds.name} has no item text: it is an ID-only dataset (ID baselines only)")
    for what in ("counts", "repairs"):  # what the recipe filtered and what was repaired
        done = {k: v for k, v in m["source"].get(what, {}).items() if v}
        if done:
            print(f"{'filtering' if what == 'counts' else what}: "
                  + ", ".join(f"{k} {v:,}" for k, v in done.items()))
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    import json

    from bench.config import compose
    from bench.data.sources import prepare
    from bench.data.stats import dataset_stats, stats_markdown, update_card
    from bench.records import write_text_atomic

    cfg = _dataset_config(args.name, args.raw, args.overrides)
    ds = prepare(cfg["dataset"], Path(cfg["paths"]["cache"]))
    protocols = {p: compose([f"protocol={p}"])["protocol"] for p in ("full", "paper")}
    stats = dataset_stats(ds, protocols, cfg["dataset"].get("paper_thresholds"))
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    section = stats_markdown(stats)
    print(f"# {ds.name}\n\n{section}")
    if args.update_card:
        card = Path(__file__).resolve().parent.parent / "datasets" / \
            cfg["dataset"].get("card", ds.name) / "README.md"
        if not card.is_file():
            raise BenchError(f"no dataset card at {card}; create it first")
        write_text_atomic(card, update_card(card.read_text(encoding="utf-8"), ds.name,
                                            section))
        print(f"updated {card}")
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from bench.data.download import download

    cfg = _dataset_config(args.name, args.raw, [], recipe=True)["dataset"]
    download(cfg, Path(cfg["raw_dir"]), force=args.force)
    print(f"next: python -m bench data prepare {cfg['name']} --raw {cfg['raw_dir']}")
    return 0


def cmd_adapter_new(args: argparse.Namespace) -> int:
    from bench.scaffold import new_adapter

    for path in new_adapter(args.name, Path(args.root)):
        print(f"wrote {path}")
    print(f"next: edit them, then python -m bench adapter check {args.name}")
    return 0


def cmd_adapter_check(args: argparse.Namespace) -> int:
    from bench.conformance import check, report

    _include(args.include)
    backbones = _names("backbone", args.backbones) if args.backbones else None
    findings, seconds = check(args.name, backbones, args.epochs, args.overrides)
    text = report(args.name, findings, seconds)
    print(text)
    if args.report:
        from bench.records import write_text_atomic

        write_text_atomic(Path(args.report), text + "\n")
    return 0 if all(f.passed for f in findings) else 1


def cmd_report_sensitivity(args: argparse.Namespace) -> int:
    from bench.leaderboard.load import load_pages
    from bench.leaderboard.sensitivity import compare, not_compared, write_sensitivity

    pages = load_pages(Path(args.records))
    written = write_sensitivity(pages, Path(args.out), with_plots=not args.no_plots)
    if not written:
        have = ", ".join(sorted(f"{p.dataset}/{p.protocol}" for p in pages)) or "none"
        raise BenchError(f"no dataset in {args.records} has records under both the full and the "
                         f"paper protocol, or under full or paper and cold (pages: {have}); run "
                         "the same methods with --protocol full,paper (or cold)")
    for c in compare(pages):
        tau, p = c.tau
        reversed_ = sum(t.verdict == "reversed" for t in c.flip_tests())
        print(f"{c.dataset}/{c.backbone} {c.a} vs {c.b}: tau {tau:.3f} (p {p:.3f}), "
              f"{len(c.flips)} flipped pairs of {len(c.methods)} methods "
              f"({reversed_} significant both ways)")
    for line in not_compared(pages):
        print(f"note: {line}")
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    import time

    from bench.leaderboard import Output, build

    start = time.perf_counter()
    output = Output(check=args.check)
    written = build(Path(args.records), Path(args.out), with_plots=not args.no_plots,
                    efficiency_dir=Path(args.efficiency_records), output=output)
    if args.check:
        for problem in output.problems:
            print(f"out of date: {problem}")
        verdict = ("not what the records give: run python -m bench leaderboard"
                   if output.problems else "what the records give")
        print(f"{args.out}: {len(written)} files checked against the records in {args.records} "
              f"in {time.perf_counter() - start:.1f} s; {verdict}")
        return 1 if output.problems else 0
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} files from the records in {args.records} in "
          f"{time.perf_counter() - start:.1f} s")
    return 0


def cmd_speed(args: argparse.Namespace) -> int:
    from bench.speed import main as speed_main

    return speed_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run LLM-enhanced sequential recommenders side by side under one protocol.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="train and evaluate; write one record per run",
                         description="Train and evaluate every (dataset, protocol, method, backbone,"
                         " seed) combination. With no options: the demo (ID-only SASRec, BERT4Rec "
                         "and GRU4Rec on the synthetic dataset, seed 0, full protocol).",
                         epilog="Overrides: any config key, e.g. train.epochs=20 "
                         "train.batch_size=128 device=cpu paths.runs=my-runs. "
                         "Lists: python -m bench list methods|datasets|backbones|protocols.")
    run.add_argument("--methods", help=f"comma list (demo: {DEMO['methods']})")
    run.add_argument("--backbones", help=f"comma list (demo: {DEMO['backbones']})")
    run.add_argument("--datasets", help=f"comma list (demo: {DEMO['datasets']})")
    run.add_argument("--seeds", help="comma list or range, e.g. 0,1,2 or 0-4 (demo: 0)")
    run.add_argument("--protocol", help="full (default), paper (sampled, the papers' setting) "
                     "or cold (held-out cold-start items); a comma list runs several")
    run.add_argument("--force", action="store_true", help="rerun runs whose record exists")
    run.add_argument("--include", action="append", metavar="FILE",
                     help="load a method adapter from this Python file (repeatable)")
    run.add_argument("--launcher", metavar="NAME",
                     help="run the grid as a Hydra multirun sweep, one job per run: joblib "
                     "(local processes; hydra.launcher.n_jobs=N), submitit_local, slurm "
                     "(configs/hydra/launcher/slurm.yaml; e.g. hydra.launcher.partition=gpu) "
                     "or basic (one after another)")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    run.set_defaults(func=cmd_run)

    lst = sub.add_parser("list", help="list available names", description="List available names.")
    lst.add_argument("what", choices=["methods", "datasets", "backbones", "protocols", "encoders"])
    lst.add_argument("--include", action="append", metavar="FILE",
                     help="also load a method adapter from this Python file")
    lst.set_defaults(func=cmd_list)

    data = sub.add_parser("data", help="prepare datasets", description="Dataset commands.")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    prep = data_sub.add_parser("prepare", help="build the prepared copy of a dataset",
                               description="Build (or verify) the prepared copy of a dataset and "
                               "print its size, fingerprint and any counted repairs.")
    prep.add_argument("name", help="dataset name (python -m bench list datasets)")
    prep.add_argument("--raw", metavar="DIR", help="build from the public raw files in DIR with "
                      "the dataset's raw recipe (<name>-raw; see its card)")
    prep.add_argument("--force", action="store_true", help="rebuild even if a copy exists")
    prep.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                      help="dataset config overrides, e.g. dataset.user_core=10")
    prep.set_defaults(func=cmd_data_prepare)

    stats = data_sub.add_parser("stats", help="statistics for a dataset card",
                                description="Users, items, interactions, lengths, density, text "
                                "coverage per field, repairs, and the share of tail items / short "
                                "users under the full and paper group definitions.")
    stats.add_argument("name", help="dataset name (python -m bench list datasets)")
    stats.add_argument("--raw", metavar="DIR", help="the raw-recipe copy built from DIR")
    stats.add_argument("--json", action="store_true", help="print the numbers as JSON")
    stats.add_argument("--update-card", action="store_true",
                       help="write the statistics into datasets/<card>/README.md")
    stats.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    stats.set_defaults(func=cmd_data_stats)

    down = data_sub.add_parser("download", help="fetch a raw recipe's public files",
                               description="Download the public raw files of a dataset's raw "
                               "recipe into DIR (default: paths.raw/<name>). Needs network access; "
                               "without it, says which files to fetch by hand.")
    down.add_argument("name", help="dataset name, e.g. beauty (uses beauty-raw)")
    down.add_argument("--raw", metavar="DIR", help="where to put the files")
    down.add_argument("--force", action="store_true", help="download again even if present")
    down.set_defaults(func=cmd_data_download)

    adapter = sub.add_parser("adapter", help="scaffold and check method adapters",
                             description="Method adapters: scaffold a new one, check one. "
                             "CONTRIBUTING.md walks through a submission.")
    adapter_sub = adapter.add_subparsers(dest="adapter_command", required=True,
                                         metavar="ADAPTER_COMMAND")
    new = adapter_sub.add_parser("new", help="write a new adapter, its config and a test",
                                 description="Write methods/NAME.py, configs/method/NAME.yaml and "
                                 "tests/test_method_NAME.py from the template: a working minimal "
                                 "adapter (frozen LM item vectors -> linear map -> the backbone).")
    new.add_argument("name", help="lower-case identifier, e.g. my_method")
    new.add_argument("--root", default=str(Path(__file__).resolve().parent.parent),
                     help="repository root to write into (default: this checkout)")
    new.set_defaults(func=cmd_adapter_new)
    chk = adapter_sub.add_parser("check", help="conformance check of an adapter",
                                 description="Train the adapter on the tiny synthetic dataset "
                                 "for each backbone it declares, in fresh caches, and check: the "
                                 "record validates against the schema; the same seed gives "
                                 "bit-identical results; ranks do not depend on the eval batch "
                                 "size; replacing test (and validation) targets leaves training "
                                 "unchanged. Exit code 1 if a check fails.")
    chk.add_argument("name", help="method name (python -m bench list methods)")
    chk.add_argument("--include", action="append", metavar="FILE",
                     help="load the adapter from this Python file first (repeatable)")
    chk.add_argument("--backbones", help="comma list (default: every backbone it declares)")
    chk.add_argument("--epochs", type=int, default=2, help="epochs per run (default 2)")
    chk.add_argument("--report", metavar="FILE", help="also write the report to FILE")
    chk.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    chk.set_defaults(func=cmd_adapter_check)

    board = sub.add_parser("leaderboard", help="regenerate the markdown leaderboards from records",
                           description="Regenerate leaderboards/: one page per (dataset, protocol) "
                           "from the run records (no training), with a protocol header, mean ± "
                           "95% interval over seeds, paired t and sign-flip randomization tests "
                           "(Holm-adjusted) against the ID-only backbone and the best row, and "
                           "plots. Records that must not be mixed are refused with the files "
                           "named.",
                           epilog="Publish runs to the committed leaderboard with "
                           "python -m bench run ... paths.runs=leaderboards/records")
    board.add_argument("--records", default="leaderboards/records",
                       help="folder of run records (default leaderboards/records; e.g. runs)")
    board.add_argument("--efficiency-records", default="leaderboards/efficiency-records",
                       help="folder of efficiency records from `bench efficiency` (default "
                       "leaderboards/efficiency-records; absent = no efficiency tables)")
    board.add_argument("--out", default="leaderboards", help="where pages go (default leaderboards)")
    board.add_argument("--no-plots", action="store_true", help="markdown only, no PNG plots")
    board.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if a page under --out is not what the records "
                       "give (differs, missing or stale; plots: present), e.g. in CI")
    board.set_defaults(func=cmd_leaderboard)

    report = sub.add_parser("report", help="analyses of the records (sensitivity)",
                            description="Analyses computed from run records.")
    report_sub = report.add_subparsers(dest="report_command", required=True,
                                       metavar="REPORT")
    sens = report_sub.add_parser(
        "sensitivity", help="method rankings under full vs paper protocol (Kendall's tau)",
        description="For each dataset and backbone with records under both protocols: the "
        "ranking of methods by NDCG@10 under full ranking and under the papers' sampled "
        "protocol, Kendall's tau-b with its p-value and the pairs whose order flips, each tested "
        "on both sides (paired randomization test, Holm-adjusted) to tell a real reversal from "
        "noise; the same for head- versus tail-item rankings, and tail-item versus cold-item "
        "rankings where a cold page exists. Writes sensitivity.md and a rank plot (also "
        "written by `bench leaderboard`).")
    sens.add_argument("--records", default="leaderboards/records",
                      help="folder of run records (default leaderboards/records)")
    sens.add_argument("--out", default="leaderboards", help="where the page goes")
    sens.add_argument("--no-plots", action="store_true", help="markdown only")
    sens.set_defaults(func=cmd_report_sensitivity)

    speed = sub.add_parser("speed", help="suite vs bare RecBole: epoch time ratio and accuracy",
                           description="Benchmark: per-epoch time of ID-only SASRec through the "
                           "suite divided by bare RecBole's (with and without its anomaly mode) "
                           "on the same data and model config; optionally both trained to "
                           "convergence with their validation NDCG@10.")
    speed.add_argument("--dataset", default="synthetic", help="dataset name (default synthetic)")
    speed.add_argument("--epochs", type=int, default=2, help="epochs timed per variant (default 2)")
    speed.add_argument("--converge", action="store_true",
                       help="also train suite and bare RecBole to convergence (slow on big data)")
    speed.add_argument("--max-epochs", type=int, default=200, help="cap for --converge")
    speed.add_argument("--patience", type=int, default=10, help="early stopping for --converge")
    speed.add_argument("--variants", default="suite,bare,bare-anomaly",
                       help="comma list of suite, bare, bare-anomaly (default: all three, in order)")
    speed.add_argument("--skip-anomaly", action="store_true",
                       help="do not time bare RecBole with anomaly mode on")
    speed.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    speed.set_defaults(func=cmd_speed)

    from bench.efficiency_runs import add_parser as add_efficiency
    from bench.roofline import add_parser as add_roofline
    from bench.speed_encode import add_parser as add_speed_encode
    from bench.status import add_parser as add_status
    from bench.verify import add_parser as add_verify

    add_efficiency(sub)
    add_roofline(sub)
    add_status(sub)
    add_verify(sub)

    add_speed_encode(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may follow options (``data prepare beauty --raw d paths.cache=c``)
    if extra and hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        with _terminate_as_interrupt():
            return func(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated (SIGTERM): no partial record was written; a run with an epoch "
              "checkpoint resumes from it when its command is run again", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted: no partial record was written", file=sys.stderr)
        return 130


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, as Ctrl-C is.

    Why: a scheduler or ``kill`` stops a job with SIGTERM, whose default action ends Python
    at once: no ``finally`` runs, so a half-written checkpoint's temp file and the run's
    temporary directory stay behind. As an exception it unwinds like Ctrl-C: every atomic
    writer removes its temp file and every ``TemporaryDirectory`` is deleted."""


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` inside the block (main thread only; restored after)."""
    def handler(signum, frame):
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
