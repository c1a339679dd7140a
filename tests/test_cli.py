"""Bad input: one clear line on stderr, exit code 2, no traceback and no partial record.

The corpus of malformed inputs across every surface is ``bad_inputs.py``; here: the CLI's own
behaviour (suggestions, a real process's exit code, help on every command, SIGTERM)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, tiny_overrides

from bench.cli import main, parse_seeds
from bench.data.sources import prepare
from bench.errors import BenchError


def _run(capsys, tmp_path, flags=(), overrides=()):
    code = main(["run", "--datasets", "synthetic-tiny", *flags, *tiny_overrides(tmp_path)[1:],
                 *overrides])
    return code, capsys.readouterr().err.strip()


def test_unknown_dataset_suggests_the_close_name(capsys):
    assert main(["run", "--datasets", "synthetc"]) == 2
    assert "did you mean 'synthetic'?" in capsys.readouterr().err


def test_corrupted_prepared_dataset_is_reported_not_used(capsys, tmp_path):
    cfg = {"name": "synthetic-tiny", "loader": "synthetic", "preset": "tiny", "generator_seed": 0}
    ds = prepare(cfg, tmp_path / "cache")
    with open(ds.path / "items.tsv", "a", encoding="utf-8") as f:
        f.write("i999999\tA new title\n")
    code, err = _run(capsys, tmp_path)
    assert code == 2 and "items.tsv does not match its checksum" in err and "--force" in err
    assert not (tmp_path / "runs").exists()


def test_parse_seeds_accepts_lists_and_ranges():
    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds("0-2,5") == [0, 1, 2, 5]
    with pytest.raises(BenchError):
        parse_seeds("")


def test_real_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--methods", "llmem"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "Traceback" not in proc.stderr and "unknown method 'llmem'" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_every_command_has_help(capsys):
    for argv in (["--help"], ["run", "--help"], ["list", "--help"], ["data", "prepare", "--help"],
                 ["speed", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0 and "usage:" in capsys.readouterr().out


def test_sigterm_unwinds_like_ctrl_c(tmp_path, monkeypatch, capsys):
    """A scheduler's SIGTERM leaves no temporary directory or temp file behind and exits 143;
    the process's own SIGTERM handling is restored afterwards."""
    import argparse
    import os
    import signal
    import tempfile
    import time

    from bench import cli

    def job(args) -> int:
        with tempfile.TemporaryDirectory(prefix="bench-run-", dir=tmp_path) as work:
            (Path(work) / "half-written").write_text("x")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # the signal interrupts this
        return 0

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=job)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    before = signal.getsignal(signal.SIGTERM)
    start = time.perf_counter()
    assert main([]) == 143
    assert time.perf_counter() - start < 5
    assert list(tmp_path.iterdir()) == []
    assert "terminated (SIGTERM): no partial record" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before
