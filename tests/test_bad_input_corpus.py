"""Every case of the bad-input corpus (``bad_inputs.py``): one ``error:`` line that names the
problem, exit code 2, no traceback, and nothing half-written: no record, no sidecar, no
temporary file left anywhere under the case's folder."""
from __future__ import annotations

import pytest
from bad_inputs import CASES, message


def _files(root):
    return {p for p in root.rglob("*") if p.is_file()}


def test_the_corpus_covers_every_surface_with_at_least_25_cases():
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)
    assert {c.surface for c in CASES} >= {"cli", "config", "dataset", "item text", "model",
                                          "embeddings", "records", "adapter", "sweep"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_clear_line_and_exit_code_2(case, tmp_path):
    code, err = message(case, tmp_path)
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert case.expect in err, err
    assert not (tmp_path / "runs").exists() or not _files(tmp_path / "runs")  # no record, sidecar
    assert not [p for p in _files(tmp_path) if p.name.startswith(".")]  # nor any temp file
    assert not (tmp_path / "boards").exists()
