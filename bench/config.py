"""Compose a run's configuration with Hydra and check it, turning every mistake into one line.

``compose(["dataset=beauty", "train.epochs=3"])`` returns a plain dict. Hydra's own errors
(unknown key, unknown option, malformed override) become ``BenchError`` with a "did you mean".
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench.adapters import CONFIG_DIR, check_name, config_names
from bench.errors import BenchError, unknown_name

# ``protocol.training``: how the training part becomes windows (``bench.training.training_windows``)
TRAINING_MODES = ("seq2seq", "seq2seq-tiled", "prefix")

GROUPS = ("dataset", "method", "backbone", "protocol", "encoder")


def _flat_keys(cfg: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items():
        keys.append(prefix + k)
        if isinstance(v, dict):
            keys.extend(_flat_keys(v, prefix + k + "."))
    return keys


def _override_error(override: str, exc: Exception, base: dict[str, Any]) -> BenchError:
    key = override.split("=", 1)[0].lstrip("+~")
    if re.search(r"Could not override|not in struct|Key .* is not in", str(exc)):
        parent = key.rpartition(".")[0]
        keys = [k for k in _flat_keys(base) if k.rpartition(".")[0] == parent]
        return unknown_name("config key", key, keys or _flat_keys(base))
    first = str(exc).strip().splitlines()[0]
    return BenchError(f"bad override '{override}': {first}")


@contextmanager
def _hydra_set_aside() -> Iterator[None]:
    """Inside a running Hydra app (a sweep job, ``bench.sweep``) Hydra is already initialised;
    a method composing another config (a teacher's, a phase's) sets that state aside for the
    call and puts it back after."""
    running = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        yield
    finally:  # initialize_config_dir swaps the singleton itself: restore on the current one
        GlobalHydra.instance().hydra = running


def compose(overrides: list[str]) -> dict[str, Any]:
    """Compose ``configs/config.yaml`` with ``overrides`` and validate the result."""
    for ov in overrides:
        if "=" not in ov and not ov.startswith("~"):
            raise BenchError(f"malformed override '{ov}': expected key=value, e.g. train.epochs=5")
    for ov in overrides:  # unknown group options: give the list and a suggestion
        key, _, value = ov.partition("=")
        if key.lstrip("+") in GROUPS and value:
            check_name(key.lstrip("+"), value)
    with _hydra_set_aside(), initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        base = OmegaConf.to_container(hydra_compose(config_name="config"), resolve=True)
        try:
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
            cfg = OmegaConf.to_container(cfg, resolve=True)
        except (HydraException, OmegaConfBaseException, ValueError) as exc:
            named = [o for o in overrides if f"'{o.split('=', 1)[0].lstrip('+~')}'" in str(exc)]
            bad = named[-1] if named else overrides[-1]
            raise _override_error(bad, exc, base) from None
    validate(cfg)
    return cfg


def _require(cond: bool, key: str, value: Any, what: str) -> None:
    if not cond:
        raise BenchError(f"bad config value {key}={value!r}: {what}")


def validate(cfg: dict[str, Any]) -> None:
    """Check the values a run depends on, naming the key and what is allowed."""
    for group in ("dataset", "method", "backbone", "protocol"):
        name = cfg[group].get("name")
        if name not in config_names(group):
            raise unknown_name(group, str(name), config_names(group))
    t = cfg["train"]
    for key in ("epochs", "batch_size", "eval_batch_size", "bucket_batches"):
        _require(isinstance(t[key], int) and t[key] >= 1, f"train.{key}", t[key], "a positive integer")
    _require(isinstance(t["patience"], int) and t["patience"] >= 0, "train.patience",
             t["patience"], "an integer >= 0")
    _require(isinstance(t["learning_rate"], (int, float)) and t["learning_rate"] > 0,
             "train.learning_rate", t["learning_rate"], "a number > 0")
    _require(isinstance(t["weight_decay"], (int, float)) and t["weight_decay"] >= 0,
             "train.weight_decay", t["weight_decay"], "a number >= 0")
    _require(t["loss_reduction"] in ("batch_mean", "constant"), "train.loss_reduction",
             t["loss_reduction"], "batch_mean or constant")
    e = cfg.get("efficiency") or {}
    for key in ("latency_users", "throughput_batch", "repeats"):
        if key in e:
            _require(isinstance(e[key], int) and e[key] >= 1, f"efficiency.{key}", e[key],
                     "a positive integer")
    _require(isinstance(cfg["seed"], int) and cfg["seed"] >= 0, "seed", cfg["seed"], "an integer >= 0")
    for key in ("resume", "force"):
        _require(isinstance(cfg.get(key, False), bool), key, cfg.get(key), "true or false")
    _require(cfg["device"] in ("auto", "cpu", "cuda"), "device", cfg["device"], "auto, cpu or cuda")
    _require(cfg.get("ranking_kernel", "eager") in ("eager", "compiled"), "ranking_kernel",
             cfg.get("ranking_kernel"), "eager or compiled")
    p = cfg["protocol"]
    _require(p["candidates"] in ("all", "sampled"), "protocol.candidates", p["candidates"], "all or sampled")
    if p["candidates"] == "sampled":
        _require(isinstance(p["n_negatives"], int) and p["n_negatives"] >= 1, "protocol.n_negatives",
                 p["n_negatives"], "a positive integer")
        _require(isinstance(p["negative_seed"], int), "protocol.negative_seed", p["negative_seed"],
                 "an integer")
    _require(p["loss"] in ("ce", "bce"), "protocol.loss", p["loss"], "ce or bce")
    _require(p["training"] in TRAINING_MODES, "protocol.training", p["training"],
             "seq2seq, seq2seq-tiled or prefix")
    _require(p["groups"] in ("quantile", "threshold"), "protocol.groups", p["groups"],
             "quantile or threshold")
    _require(isinstance(p["max_seq_length"], int) and p["max_seq_length"] >= 2,
             "protocol.max_seq_length", p["max_seq_length"], "an integer >= 2")
    _require(p["valid_metric"] == "NDCG@10", "protocol.valid_metric", p["valid_metric"], "NDCG@10")
    _require(10 in p["ks"], "protocol.ks", p["ks"], "a list of cutoffs that includes 10")
    if p.get("cold_fraction") is not None:  # the cold-start protocol (bench.data.cold)
        f = p["cold_fraction"]
        _require(isinstance(f, (int, float)) and 0 < f < 1, "protocol.cold_fraction", f,
                 "a share of the items strictly between 0 and 1, e.g. 0.1")
        _require(isinstance(p.get("cold_seed"), int), "protocol.cold_seed", p.get("cold_seed"),
                 "an integer")
        _require(float(t["weight_decay"]) == 0.0, "train.weight_decay", t["weight_decay"],
                 "0 under the cold protocol (Adam's decay would shrink the untrained cold-item "
                 "rows, which no gradient touches)")
