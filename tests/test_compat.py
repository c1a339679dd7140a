"""One test per RecBole 1.2.1 compatibility problem that bench.compat fixes."""
from __future__ import annotations

import sys

import numpy as np
import torch

from bench.compat import recbole_config
from bench.backbones import Seq2SeqSASRec


def _cfg(tmp_path, **extra):
    return recbole_config(Seq2SeqSASRec, "toy", {"data_path": str(tmp_path), "checkpoint_dir":
                                                 str(tmp_path / "ckpt"), "loss_type": "CE",
                                                 "train_neg_sample_args": None, **extra})


def test_numpy2_aliases_let_recbole_config_build(tmp_path):
    assert np.float_ is np.float64 and np.unicode_ is np.str_
    config = _cfg(tmp_path)
    assert config["model"] == "Seq2SeqSASRec"


def test_recbole_checkpoint_with_pickled_config_loads(tmp_path):
    config = _cfg(tmp_path)
    path = tmp_path / "ckpt.pth"
    torch.save({"config": config, "state_dict": {"w": torch.ones(2)}}, path, pickle_protocol=4)
    loaded = torch.load(path)  # what RecBole's Trainer.evaluate(load_best_model=True) does
    assert loaded["config"]["model"] == "Seq2SeqSASRec"


def test_recbole_quick_start_imports_ray():
    import recbole.quick_start  # noqa: F401  (imports ray: pkg_resources and np.bool8)

    assert np.bool8 is np.bool_


def test_anomaly_mode_is_off_after_recbole_models_import():
    import recbole.model.sequential_recommender.sine  # noqa: F401  (turns it on at import)

    assert not torch.is_anomaly_enabled()


def test_our_command_line_does_not_leak_into_recbole(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench", "--epochs=99", "--learning_rate=5"])
    config = _cfg(tmp_path, epochs=3)
    assert config["epochs"] == 3 and config["learning_rate"] != 5
    assert sys.argv[1] == "--epochs=99"  # restored


def test_training_writes_nothing_into_the_current_directory(tmp_path, monkeypatch, session_dir):
    from bench.config import compose
    from bench.runner import execute

    from conftest import tiny_overrides

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = execute(compose(tiny_overrides(tmp_path, "train.epochs=1")), force=True)
    assert out.record_path.exists()
    assert list(cwd.iterdir()) == []  # no log/, log_tensorboard/ or saved/


def _fresh_python(code: str) -> str:
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_bench_and_its_parser_load_neither_torch_nor_recbole():
    code = ("import sys, bench; from bench.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'recbole', 'sklearn') if m in sys.modules))")
    assert _fresh_python(code) == "[]"  # `python -m bench --help` costs no heavy import


def test_recbole_is_patched_whichever_is_imported_first():
    check = ("import torch, recbole.trainer.trainer as t; "
             "print(torch.is_anomaly_enabled(), type(t.get_tensorboard(None)).__name__)")
    bench_first = "import bench; import recbole.data.interaction; " + check
    recbole_first = "import recbole.model.sequential_recommender.sine; import bench; " + check
    assert _fresh_python(bench_first) == "False NullSummaryWriter"
    assert _fresh_python(recbole_first) == "False NullSummaryWriter"


def test_roofline_parser_lists_every_ranking_kernel():
    from bench.evaluation.ranking import RANKING_KERNELS
    from bench.roofline import _KERNELS

    assert tuple(_KERNELS.split(",")) == RANKING_KERNELS


def test_adapters_know_the_sequential_backbones_without_importing_them():
    from bench.adapters import SEQUENTIAL_BACKBONES
    from bench.backbones import SEQUENTIAL

    assert SEQUENTIAL_BACKBONES == tuple(SEQUENTIAL)
