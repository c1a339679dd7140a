"""Make RecBole 1.2.1 run on the pinned stack (numpy 2, torch 2.13, setuptools 80).

Import this module before anything imports ``recbole``; ``bench/__init__.py`` does so. Fixes
(5) and (8) patch RecBole's own modules, so they run from an import hook the moment ``recbole``
is first imported (``import bench`` stays light: no torch, no RecBole). Each fix below is the
smallest one that works, and each has a test in ``tests/test_compat.py``.
See ``../shared/spec/dependencies.md`` section 3 for the errors they prevent.

1. numpy 2 removed ``np.float_``/``np.complex_``/``np.unicode_`` that ``Config`` re-aliases.
2. ray (imported only by ``recbole.quick_start``) needs ``pkg_resources``; without it we put a
   tiny stand-in for ``ray.tune`` in ``sys.modules`` (ray is only used for hyper-parameter tuning).
3. ray's tensorboard logger uses ``np.bool8``.
4. RecBole checkpoints pickle its ``Config``, which torch>=2.6 refuses under ``weights_only``.
   ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` changes only the *default* (call sites that pass no
   ``weights_only``, as RecBole's do); the suite's own ``torch.load`` calls always pass it.
5. ``sine.py`` turns on autograd anomaly mode at import time (1.3-2x slower epochs).
6. ``Config`` parses ``sys.argv``: a ``--foo`` of ours would leak into RecBole's config.
7. Known-harmless FutureWarnings from RecBole's pandas calls and its GradScaler are silenced
   (scoped to RecBole's modules, so our own code still warns).
8. RecBole writes ``log/``, ``log_tensorboard/`` and ``saved/`` into the current directory; the
   suite never calls ``init_logger``, points ``checkpoint_dir`` into the run directory and
   replaces the tensorboard writer with a null one.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import types
import warnings
from typing import Any, Iterator

import numpy as np

# (1) and (3): numpy 2 aliases used by RecBole's Config and by ray.
for _alias, _target in (("float_", np.float64), ("complex_", np.complex128),
                        ("unicode_", np.str_), ("bool8", np.bool_)):
    if not hasattr(np, _alias):
        setattr(np, _alias, _target)

# (7): harmless FutureWarnings raised from RecBole's own modules (pandas chained fillna, GradScaler).
warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole(\.|$)")

# (4): RecBole's checkpoints are our own files; let RecBole's torch.load read them.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

# Never wait on a model hub: every model this suite loads is local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _stub_ray_if_unimportable() -> None:
    """(2) ray needs pkg_resources (setuptools<81). If either is missing, stub ``ray.tune``.

    ray is missing where RecBole was installed without its dependencies (a GPU image that
    carries RecBole as a wheel, say); tuning is then unavailable but nothing else needs ray.
    """
    if "ray" in sys.modules:
        return
    if importlib.util.find_spec("ray") is not None and importlib.util.find_spec("pkg_resources"):
        return
    ray = types.ModuleType("ray")
    tune = types.ModuleType("ray.tune")
    tune.report = lambda **_: None  # type: ignore[attr-defined]
    ray.tune = tune  # type: ignore[attr-defined]
    sys.modules["ray"], sys.modules["ray.tune"] = ray, tune


_stub_ray_if_unimportable()


class NullSummaryWriter:
    """(8) Stands in for tensorboard's SummaryWriter so RecBole writes no ``log_tensorboard/``."""

    def __getattr__(self, _name: str) -> Any:
        return lambda *args, **kwargs: None


def _patch_recbole() -> None:
    """(5) and (8), which need RecBole's own modules: import the model zoo (``sine.py`` turns
    anomaly mode on at import), turn anomaly mode off again, and swap the tensorboard writer."""
    import recbole.model.sequential_recommender  # noqa: F401  (5) imports sine.py
    import recbole.trainer.trainer as recbole_trainer
    import torch

    torch.autograd.set_detect_anomaly(False)
    recbole_trainer.get_tensorboard = lambda logger: NullSummaryWriter()  # (8)


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Runs ``_patch_recbole`` right after the ``recbole`` package is first imported, whoever
    imports it. Why a hook rather than importing RecBole here: RecBole pulls in torch, scipy
    and scikit-learn (3 s), and ``import bench`` is also what ``python -m bench --help`` and
    the leaderboard commands pay, which need none of them."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "recbole":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        real_exec = spec.loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            real_exec(module)
            _patch_recbole()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if "recbole" in sys.modules:  # imported before bench: patch now
    _patch_recbole()
elif not any(isinstance(f, _PatchAfterImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _PatchAfterImport())


@contextlib.contextmanager
def isolated_argv() -> Iterator[None]:
    """(6) Hide our command line from RecBole's ``Config`` (it parses ``--key=value``)."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def recbole_config(model: Any, dataset: str, config_dict: dict[str, Any]):
    """Build a RecBole ``Config`` from an explicit dict, immune to ``sys.argv``."""
    import torch
    from recbole.config import Config

    with isolated_argv():
        config = Config(model=model, dataset=dataset, config_dict=config_dict)
    torch.autograd.set_detect_anomaly(False)
    return config
