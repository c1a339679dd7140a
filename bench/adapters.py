"""The method-adapter contract and the registry of methods, backbones and datasets.

A method is one module ``methods/<name>.py`` defining ``ADAPTER`` (a ``MethodAdapter``) plus one
config ``configs/method/<name>.yaml``; nothing else needs editing. The adapter receives the
prepared dataset (with item text), the RecBole config and training split, and the backbone class,
and returns a RecBole ``SequentialRecommender`` that the harness trains and evaluates.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.backbones import SEQUENTIAL
from bench.data.prepared import PreparedDataset
from bench.errors import BenchError, unknown_name

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class BuildContext:
    """Everything an adapter may use to build its model."""

    recbole_config: Any  # recbole.config.Config
    train_dataset: Any  # RecBole training split (ids, item_num, field2id_token)
    backbone: type  # one of bench.backbones.BACKBONES
    prepared: PreparedDataset  # interactions + item text
    method_cfg: dict[str, Any]
    cache_dir: Path
    run_cfg: dict[str, Any] = field(default_factory=dict)  # the whole resolved run config
    device: Any = "cpu"  # torch.device the model will train on
    # adapter state; "one_off" -> record["efficiency"]["one_off"] (one-off stages and their
    # costs), "record_info" -> record["method_info"] (e.g. which variant of a method ran)
    extras: dict[str, Any] = field(default_factory=dict)


class MethodAdapter:
    """Base class: subclass it in ``methods/<name>.py`` and set ``ADAPTER = YourAdapter()``."""

    name: str = ""
    paper: str = ""
    backbones: tuple[str, ...] = tuple(SEQUENTIAL)  # sequence models; add "lightgcn" if graph CF works
    uses_text: bool = False

    def prepare(self, ctx: BuildContext) -> None:
        """One-off stages before the model is built (LLM fine-tuning, embedding extraction, a
        teacher model), cached by the adapter. Called before the run's seed is set, so caching
        cannot change the model's initialisation. Put their costs in ``ctx.extras["one_off"]``."""

    def batch_size(self, ctx: BuildContext) -> int:
        """Training windows (users) per step; the protocol's ``train.batch_size`` unless a
        method's native training says otherwise (the record keeps the value used)."""
        return int(ctx.run_cfg["train"]["batch_size"])

    def build_model(self, ctx: BuildContext):
        raise NotImplementedError(f"{type(self).__name__}.build_model")

    def encoder_id(self, ctx: BuildContext) -> str | None:
        """The language model behind the item representation (provenance); None if unused."""
        return None


def config_names(group: str) -> list[str]:
    """Option names of a Hydra config group, e.g. ``config_names("dataset")``."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def check_name(group: str, name: str) -> str:
    if name not in config_names(group):
        raise unknown_name(group, name, config_names(group))
    return name


def load_adapter(name: str) -> MethodAdapter:
    check_name("method", name)
    try:
        module = importlib.import_module(f"methods.{name}")
    except ModuleNotFoundError as exc:
        raise BenchError(f"method '{name}' has a config but no module methods/{name}.py "
                         f"({exc}); add the module or remove configs/method/{name}.yaml") from None
    adapter = getattr(module, "ADAPTER", None)
    if not isinstance(adapter, MethodAdapter):
        raise BenchError(f"methods/{name}.py must define ADAPTER = <MethodAdapter subclass>()")
    return adapter
