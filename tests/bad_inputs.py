"""The bad-input corpus: malformed inputs across every surface a user touches.

Each case builds its inputs in a fresh folder and names the command line that must fail with
one ``error:`` line naming the file, field or value and the fix, exit code 2, no traceback, and
nothing written half-way (``test_bad_input_corpus.py``). ``python tests/bad_inputs.py`` prints
the table of cases and the messages the suite gives today.
"""
from __future__ import annotations

import json
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from conftest import tiny_overrides  # noqa: E402


@dataclass
class Case:
    id: str
    surface: str
    build: Callable[[Path], list[str]]  # folder -> argv for ``bench.cli.main``
    expect: str  # a fragment of the message


def _run(*flags: str, extra: tuple[str, ...] = ()) -> Callable[[Path], list[str]]:
    return lambda tmp: ["run", "--datasets", "synthetic-tiny", *flags, *tiny_overrides(tmp)[1:],
                        *extra]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


GOOD_ITEMS = ("item_id:token\ttitle:token_seq\tbrand:token\tcategories:token_seq\tprice:float\n"
              "1\tRose Lip Balm\tAcme\tLips\t4.5\n2\tNight Cream\tAcme\tSkin\t12\n")
GOOD_SEQS = "1 1 2 1\n2 2 1 2\n3 1 2 2\n"


def _beauty(seqs: str = GOOD_SEQS, items: str = GOOD_ITEMS,
            *extra: str) -> Callable[[Path], list[str]]:
    """``data prepare beauty`` on small files this case writes (the shared copy untouched)."""
    def build(tmp: Path) -> list[str]:
        s, i = _write(tmp / "in" / "user_sequence.txt", seqs), _write(tmp / "in" / "b.item", items)
        return ["data", "prepare", "beauty", f"dataset.sequences={s}", f"dataset.item_file={i}",
                f"paths.cache={tmp / 'cache'}", *extra]
    return build


def _damaged_prepared(damage: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        from bench.config import compose
        from bench.data.sources import prepare

        cfg = compose(tiny_overrides(tmp))
        damage(prepare(cfg["dataset"], Path(cfg["paths"]["cache"])).path)
        return _run("--methods", "id")(tmp)
    return build


def _append(name: str, text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_text((folder / name).read_text() + text)


def _precomputed(write: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        path = tmp / "in" / "emb.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
        return _run("--methods", "llm_esr", extra=("encoder=precomputed",
                                                   f"encoder.path={path}"))(tmp)
    return build


class _RunsCode:
    def __reduce__(self):
        import os
        return (os.system, ("echo this would have run",))


def _pickle(obj) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(pickle.dumps(obj))


def _records(damage: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        from test_leaderboard import write_records

        records = write_records(tmp / "records")
        damage(records / "synthetic" / "full" / "id" / "sasrec")
        return ["leaderboard", "--records", str(records), "--out", str(tmp / "boards"),
                "--efficiency-records", str(tmp / "none"), "--no-plots"]
    return build


def _edit_json(name: str, **changes) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        rec = json.loads((folder / name).read_text())
        for dotted, value in changes.items():
            *parents, last = dotted.split(".")
            node = rec
            for key in parents:
                node = node[key]
            node[last] = value
        (folder / name).write_text(json.dumps(rec))
    return damage


def _plugin(text: str | None) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        path = tmp / "in" / "my_adapter.py"
        if text is not None:
            _write(path, text)
        return ["run", "--include", str(path), "--methods", "my_method",
                *tiny_overrides(tmp)]
    return build


def _model_dir(files: dict[str, str]) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        folder = tmp / "in" / "model"
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            _write(folder / name, text)
        return _run("--methods", "llmemb", extra=("encoder=hf", f"encoder.path={folder}"))(tmp)
    return build


CASES = [
    # --- names, seed lists, config keys and values (CLI and Hydra overrides)
    Case("unknown-method", "cli", _run("--methods", "idd"), "unknown method 'idd' (did you mean 'id'?)"),
    Case("unknown-backbone", "cli", _run("--backbones", "sasrek"), "did you mean 'sasrec'?"),
    Case("unknown-protocol", "cli", _run("--protocol", "papr"), "did you mean 'paper'?"),
    Case("unknown-dataset", "cli", lambda t: ["run", "--datasets", "synthetc"], "did you mean 'synthetic'?"),
    Case("malformed-seeds", "cli", _run("--seeds", "0,x"), "malformed seed list '0,x'"),
    Case("duplicate-seeds", "cli", _run("--seeds", "2,2"), "seeds must be distinct"),
    Case("unknown-config-key", "config", _run(extra=("train.epoch=3",)), "did you mean 'train.epochs'?"),
    Case("override-without-value", "config", _run(extra=("seed",)), "expected key=value"),
    Case("zero-epochs", "config", _run(extra=("train.epochs=0",)), "train.epochs=0: a positive integer"),
    Case("unknown-loss", "config", _run(extra=("protocol.loss=mse",)), "protocol.loss='mse': ce or bce"),
    Case("unknown-device", "config", _run(extra=("device=tpu",)), "device='tpu': auto, cpu or cuda"),
    Case("negative-learning-rate", "config", _run(extra=("train.learning_rate=-1",)), "train.learning_rate=-1"),
    Case("resume-not-boolean", "config", _run(extra=("resume=maybe",)), "resume='maybe': true or false"),
    Case("force-not-boolean", "config", _run(extra=("force=maybe",)), "force='maybe': true or false"),
    Case("min-user-len-1", "config", _beauty(GOOD_SEQS, GOOD_ITEMS, "dataset.min_user_len=1"),
         "dataset.min_user_len=1"),
    Case("unknown-mlp-dtype", "config", _run("--methods", "alpharec", extra=("method.mlp_dtype=fp8",)),
         "method.mlp_dtype='fp8': one of float32, bfloat16"),
    Case("unsupported-backbone", "config", _run("--methods", "pad", "--backbones", "bert4rec"),
         "does not support backbone 'bert4rec'"),
    Case("launcher-setting-without-launcher", "sweep", _run(extra=("hydra.launcher.n_jobs=2",)),
         "add --launcher"),
    Case("unknown-launcher", "sweep", _run("--launcher", "slurmm"), "unknown launcher 'slurmm'"),
    # --- dataset files
    Case("missing-data-file", "dataset", lambda t: _beauty()(t)[:3] + [
        f"dataset.sequences={t / 'nowhere.txt'}", f"paths.cache={t / 'cache'}"], "not found"),
    Case("user-without-items", "dataset", _beauty(GOOD_SEQS + "4\n"), "line 4: user '4' has no items"),
    Case("user-repeated", "dataset", _beauty(GOOD_SEQS + "1 2 1\n"), "already appeared on line 1"),
    Case("item-row-field-count", "dataset", _beauty(items=GOOD_ITEMS + "3\tToner\n"), "line 4: 2 fields"),
    Case("item-file-without-id", "dataset", _beauty(items="title:token\nBalm\n"), "no item_id column"),
    Case("missing-item-text-field", "item text", _beauty(GOOD_SEQS, GOOD_ITEMS,
         "dataset.text_fields=[title,colour]"), "colour"),
    Case("corrupted-prepared-file", "dataset", _damaged_prepared(_append("items.tsv", "x\n")),
         "does not match its checksum"),
    Case("corrupted-prepared-meta", "dataset", _damaged_prepared(
        lambda f: (f / "meta.json").write_text("{not json")), "meta.json"),
    # --- language models and embeddings brought by the user
    Case("missing-model-dir", "model", lambda t: _run("--methods", "llmemb", extra=(
        "encoder=hf", f"encoder.path={t / 'no-model'}"))(t), "does not exist"),
    Case("model-dir-without-config", "model", _model_dir({"README.md": "weights elsewhere"}),
         "has no config.json"),
    Case("model-dir-without-weights", "model", _model_dir({"config.json": "{}"}), "no weight files"),
    Case("unknown-pooling", "model", _run("--methods", "llmemb", extra=("encoder.pooling=max",)),
         "encoder.pooling='max'"),
    Case("precomputed-missing", "embeddings", lambda t: _run("--methods", "llm_esr", extra=(
        "encoder=precomputed", f"encoder.path={t / 'none.npy'}"))(t), "not found"),
    Case("precomputed-missing-items", "embeddings", _precomputed(_pickle({"i000001": np.ones(8)})),
         "items have no embedding"),
    Case("precomputed-array-for-string-ids", "embeddings", _precomputed(_pickle(np.ones((3, 8)))),
         "give a dict keyed by id"),
    Case("precomputed-nan", "embeddings", _precomputed(_pickle(
        {f"i{k:06d}": np.full(8, np.nan) for k in range(100000)})), "NaN or inf"),
    Case("precomputed-pickle-runs-code", "embeddings", _precomputed(_pickle(_RunsCode())),
         "refused: unpickling it could run code"),
    Case("precomputed-truncated", "embeddings", _precomputed(
        lambda p: p.write_bytes(pickle.dumps(np.ones((5000, 8)))[:100])), "cannot read"),
    # --- records fed to the leaderboard
    Case("record-truncated", "records", _records(
        lambda f: (f / "seed-0.json").write_text('{"schema": "llmrec')), "unreadable"),
    Case("record-other-schema", "records", _records(_edit_json("seed-0.json", schema="v0")),
         "is not a run record of schema"),
    Case("record-other-dataset", "records", _records(
        _edit_json("seed-1.json", **{"dataset.fingerprint": "ffffffffffffffff"})),
         "dataset fingerprints"),
    Case("sidecar-corrupted", "records", _records(
        lambda f: (f / "seed-0.users.parquet").write_bytes(b"not parquet")), "seed-0.users.parquet"),
    Case("sidecar-missing", "records", _records(
        lambda f: (f / "seed-2.users.parquet").unlink()), "missing or unreadable"),
    # --- adapter plugins
    Case("plugin-missing-file", "adapter", _plugin(None), "no such file"),
    Case("plugin-syntax-error", "adapter", _plugin("def broken(:\n"), "failed to import: SyntaxError"),
    Case("plugin-without-adapter", "adapter", _plugin("X = 1\n"), "must define ADAPTER"),
    Case("adapter-bad-name", "adapter", lambda t: ["adapter", "new", "My-Method", "--root", str(t)],
         "My-Method"),
]


def message(case: Case, tmp: Path) -> tuple[int, str]:
    """Run one case's command in-process; its exit code and stderr."""
    import contextlib
    import io

    from bench.cli import main

    argv = case.build(tmp)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue().strip()


if __name__ == "__main__":
    import tempfile

    print("| # | surface | case | message |\n|---|---|---|---|")
    for n, case in enumerate(CASES, 1):
        with tempfile.TemporaryDirectory() as tmp:
            code, err = message(case, Path(tmp))
        text = err.replace(tmp, "<tmp>").replace("|", "\\|")
        print(f"| {n} | {case.surface} | {case.id} | {text} (exit {code}) |")
