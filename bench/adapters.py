"""The method-adapter contract and the registry of methods, backbones and datasets.

The contract (CONTRIBUTING.md walks through it). An adapter *receives* a ``BuildContext``: the
prepared dataset with its item text, the RecBole config and *training* split, the backbone class
the run asked for, its own method config, the cache directory shared by the encoders (text ->
embeddings, content-addressed) and the device. It *returns*, from ``build_model``, a RecBole
model built on that backbone (``bench.backbones``) that the harness trains with RecBole's
trainer and scores for full ranking (``full_sort_predict``) and sampled candidates
(``predict``). Validation and test targets never reach it: the training split holds only each
user's training part, and ``python -m bench adapter check`` verifies it by perturbing them.
Its *metadata* (class attributes) says what it is: paper, upstream repository and commit, the
language model and the text it reads, supported backbones; the defaults are its YAML config.

Where adapters come from (``method_names``):
* in tree: ``methods/<name>.py`` (or a package) defining ``ADAPTER`` plus
  ``configs/method/<name>.yaml``; nothing else is edited;
* installed packages: an entry point in the group ``llmrec_bench.methods`` whose value is the
  ``ADAPTER`` object (``pkg.module:ADAPTER``); its defaults are ``ADAPTER.default_config``;
* one file: ``python -m bench run --include path/to/adapter.py`` (defaults from
  ``adapter.yaml`` beside it, ``../configs/method/<name>.yaml``, or ``default_config``).
Built-in names win a clash, with a warning.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


# The names of ``bench.backbones.SEQUENTIAL`` (a test keeps them equal): importing the models
# here would load torch and RecBole for `bench list` and for every name check.
SEQUENTIAL_BACKBONES = ("sasrec", "bert4rec", "gru4rec")


class MethodAdapter:
    """Base class: subclass it in ``methods/<name>.py`` and set ``ADAPTER = YourAdapter()``."""

    name: str = ""
    paper: str = ""  # citation: authors, title, venue year
    upstream: str = ""  # the original code, e.g. "github.com/owner/repo"
    upstream_commit: str = ""  # the commit the adapter was checked against
    # sequence models; add "lightgcn" if graph CF works
    backbones: tuple[str, ...] = SEQUENTIAL_BACKBONES
    uses_text: bool = False
    language_model: str = "none"  # which LM, how it is used (frozen, fine-tuned, ...)
    text_seen: str = "none"  # which text the LM reads (item prompt fields, user histories)
    # How the adapter's own stages use validation targets, if they do (e.g. early stopping of a
    # teacher model trained under the protocol). None: not at all; the check enforces it.
    validation_use: str | None = None
    # How the method scores an item that had no interaction in training (``protocol=cold``):
    # None = it cannot; such an item keeps its untrained ID embedding, and the run shows the
    # floor. Otherwise one line on where a cold item's vector comes from.
    cold_start: str | None = None
    default_config: dict[str, Any] | None = None  # out-of-tree adapters: their method config

    def metadata(self) -> dict[str, Any]:
        """What a record and a submission say about the method (the config holds defaults)."""
        return {"name": self.name, "paper": self.paper, "upstream": self.upstream,
                "upstream_commit": self.upstream_commit, "backbones": list(self.backbones),
                "uses_text": self.uses_text, "language_model": self.language_model,
                "text_seen": self.text_seen, "validation_use": self.validation_use,
                "cold_start": self.cold_start}

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

    def trained_info(self, ctx: BuildContext, model) -> dict[str, Any]:
        """What the trained model says about itself (e.g. learned gate weights), merged into
        the record's ``method_info`` after training with the best weights restored."""
        return {}

    def encoder_id(self, ctx: BuildContext) -> str | None:
        """The language model behind the item representation (provenance); None if unused."""
        return None

    def run_lock(self, cfg: dict[str, Any], prepared) -> AbstractContextManager[None]:
        """Held while ``execute`` trains a run of this method; none by default. An adapter
        whose trained model other runs look up (``id``: LLMEmb's teacher, PAD's phase 1) takes
        the lock those lookups wait on, so jobs running side by side train it once."""
        return nullcontext()


ENTRY_POINT_GROUP = "llmrec_bench.methods"


def config_names(group: str) -> list[str]:
    """Option names of a Hydra config group, e.g. ``config_names("dataset")``; for ``method``
    the built-in configs plus registered out-of-tree adapters."""
    names = {p.stem for p in (CONFIG_DIR / group).glob("*.yaml")}
    if group == "method":
        _load_entry_points()
        names |= set(_EXTERNAL)
    return sorted(names)


def check_name(group: str, name: str) -> str:
    if name not in config_names(group):
        raise unknown_name(group, name, config_names(group))
    return name


@dataclass
class _External:
    adapter: MethodAdapter
    source: str  # "entry point pkg.mod:ADAPTER" or "file path/to/adapter.py"


_EXTERNAL: dict[str, _External] = {}
_ENTRY_POINTS_LOADED = False


def _builtin_methods() -> set[str]:
    return {p.stem for p in (CONFIG_DIR / "method").glob("*.yaml")}


def method_source(name: str) -> str:
    """``built-in`` or where an out-of-tree adapter came from."""
    return _EXTERNAL[name].source if name in _EXTERNAL else "built-in"


def register(adapter: Any, source: str, config: dict[str, Any] | None = None) -> str | None:
    """Make an out-of-tree adapter runnable by name: its config joins the Hydra ``method``
    group (ConfigStore). Returns the name, or None when a built-in of that name wins."""
    if not isinstance(adapter, MethodAdapter) or not adapter.name:
        raise BenchError(f"{source} must provide ADAPTER = <MethodAdapter subclass>() with a name")
    name = adapter.name
    if name in _builtin_methods():
        warnings.warn(f"method '{name}' from {source} clashes with the built-in '{name}'; the "
                      "built-in is used. Rename the plugin's adapter to run it.", stacklevel=2)
        return None
    known = _EXTERNAL.get(name)
    if known and known.source != source:
        raise BenchError(f"method '{name}' is provided twice: by {known.source} and {source}; "
                         "rename one of them")
    from hydra.core.config_store import ConfigStore

    node = dict(config if config is not None else adapter.default_config or {})
    if node.get("name", name) != name:
        raise BenchError(f"{source}: config name '{node['name']}' differs from ADAPTER.name "
                         f"'{name}'")
    ConfigStore.instance().store(group="method", name=name, node={**node, "name": name})
    _EXTERNAL[name] = _External(adapter, source)
    return name


def _load_entry_points() -> None:
    """Register every adapter advertised in the ``llmrec_bench.methods`` entry-point group once.
    A plugin that fails to import is skipped with a warning naming it (other runs go on)."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            adapter = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break other runs
            warnings.warn(f"method plugin '{ep.name}' ({ep.value}) failed to load: {exc}; "
                          "skipped", stacklevel=2)
            continue
        if getattr(adapter, "name", None) != ep.name:
            warnings.warn(f"method plugin entry point '{ep.name}' ({ep.value}) names an adapter "
                          f"called {getattr(adapter, 'name', None)!r}; skipped", stacklevel=2)
            continue
        register(adapter, f"entry point {ep.value}")


def _include_config(path: Path, name: str) -> dict[str, Any] | None:
    from omegaconf import OmegaConf

    for candidate in (path.with_suffix(".yaml"),
                      path.parent.parent / "configs" / "method" / f"{name}.yaml"):
        if candidate.is_file():
            try:
                return OmegaConf.to_container(OmegaConf.load(candidate), resolve=True)
            except Exception as exc:  # noqa: BLE001 - any YAML error is the same user error
                raise BenchError(f"method config {candidate} is not valid YAML ({exc})") from None
    return None


def include(path: str | Path) -> str | None:
    """Load one adapter file (``--include``) and register its ``ADAPTER``."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise BenchError(f"--include {path}: no such file; give the path of an adapter module")
    module_name = f"bench_included_{path.stem}_{abs(hash(str(path))) % 10**8}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise BenchError(f"--include {path} failed to import: {type(exc).__name__}: {exc}") from exc
    adapter = getattr(module, "ADAPTER", None)
    if not isinstance(adapter, MethodAdapter):
        raise BenchError(f"--include {path} must define ADAPTER = <MethodAdapter subclass>()")
    return register(adapter, f"file {path}", _include_config(path, adapter.name))


def load_adapter(name: str) -> MethodAdapter:
    check_name("method", name)
    if name not in _builtin_methods():
        return _EXTERNAL[name].adapter
    try:
        module = importlib.import_module(f"methods.{name}")
    except ModuleNotFoundError as exc:
        raise BenchError(f"method '{name}' has a config but no module methods/{name}.py "
                         f"({exc}); add the module or remove configs/method/{name}.yaml") from None
    adapter = getattr(module, "ADAPTER", None)
    if not isinstance(adapter, MethodAdapter):
        raise BenchError(f"methods/{name}.py must define ADAPTER = <MethodAdapter subclass>()")
    return adapter
