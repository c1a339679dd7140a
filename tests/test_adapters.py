"""Submitting an adapter: registry (in tree, entry points, --include), scaffold, conformance check.

The worked example of an out-of-tree submission is ``test_an_installed_plugin_passes_the_check``:
a package advertised through the ``llmrec_bench.methods`` entry-point group, found without any
edit to the suite, trained and checked.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import bench.adapters as adapters
from bench.adapters import include, load_adapter
from bench.cli import main
from bench.config import compose
from bench.conformance import check, perturbed_view, validate_record
from bench.errors import BenchError
from bench.scaffold import new_adapter

ROOT = Path(__file__).resolve().parent.parent

PLUGIN = '''
from bench.adapters import BuildContext, MethodAdapter


class PlugDemo(MethodAdapter):
    name = "plugdemo"
    paper = "A worked example of an out-of-tree adapter"
    backbones = ("sasrec", "gru4rec")
    default_config = {"name": "plugdemo", "init_std": 0.02}

    def build_model(self, ctx: BuildContext):
        model = ctx.backbone(ctx.recbole_config, ctx.train_dataset)
        model.item_embedding.weight.data.normal_(0.0, float(ctx.method_cfg["init_std"]))
        return model


ADAPTER = PlugDemo()
'''

LEAKY = '''
import numpy as np

from bench.adapters import BuildContext, MethodAdapter


class Leaky(MethodAdapter):
    """Boosts the items that are somebody's *test* target: exactly what must never happen."""
    name = "leaky"
    default_config = {"name": "leaky"}

    def build_model(self, ctx: BuildContext):
        model = ctx.backbone(ctx.recbole_config, ctx.train_dataset)
        inter = ctx.prepared.interactions
        last = inter.groupby("user", sort=False)["item"].last()
        ids = ctx.train_dataset.token2id(ctx.train_dataset.iid_field, last.to_numpy())
        model.item_embedding.weight.data[np.unique(ids)] *= 2.0
        return model


ADAPTER = Leaky()
'''


@pytest.fixture
def clean_registry(monkeypatch):
    """Out-of-tree registrations made by a test do not leak into the others."""
    from hydra.core.config_store import ConfigStore

    monkeypatch.setattr(adapters, "_EXTERNAL", {})
    monkeypatch.setattr(adapters, "_ENTRY_POINTS_LOADED", False)
    yield
    repo = ConfigStore.instance().repo.get("method")
    if isinstance(repo, dict):
        for key in [k for k in repo if k.removesuffix(".yaml") in ("plugdemo", "leaky", "demo")]:
            del repo[key]


def _install_plugin(tmp_path: Path, monkeypatch) -> None:
    """A package with an entry point, visible to importlib.metadata through sys.path."""
    site = tmp_path / "site"
    (site / "plugdemo_pkg").mkdir(parents=True)
    (site / "plugdemo_pkg" / "__init__.py").write_text(PLUGIN)
    info = site / "plugdemo_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugdemo-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[llmrec_bench.methods]\nplugdemo = plugdemo_pkg:ADAPTER\n")
    monkeypatch.syspath_prepend(str(site))


def test_every_builtin_adapter_declares_its_metadata():
    for name in ("id", "llmemb", "llm_esr", "alpharec"):
        meta = load_adapter(name).metadata()
        assert meta["name"] == name and meta["paper"] and meta["upstream"]
        assert meta["upstream_commit"] and meta["backbones"]
        if meta["uses_text"]:
            assert meta["language_model"] != "none" and meta["text_seen"] != "none"


def test_unknown_method_gets_did_you_mean():
    with pytest.raises(BenchError, match="did you mean 'llm_esr'"):
        load_adapter("llm_ser")


def test_an_installed_plugin_passes_the_check(tmp_path, monkeypatch, clean_registry):
    _install_plugin(tmp_path, monkeypatch)
    assert "plugdemo" in adapters.config_names("method")
    assert adapters.method_source("plugdemo") == "entry point plugdemo_pkg:ADAPTER"
    cfg = compose(["method=plugdemo", "method.init_std=0.05"])
    assert cfg["method"] == {"name": "plugdemo", "init_std": 0.05}
    findings, _ = check("plugdemo", backbones=["sasrec"])
    assert [f.check for f in findings] == ["record", "same seed", "eval batch", "test targets",
                                           "validation targets"]
    assert all(f.passed for f in findings), findings


def test_a_builtin_name_wins_a_clash_with_a_warning(clean_registry):
    class Impostor(adapters.MethodAdapter):
        name = "llmemb"

    with pytest.warns(UserWarning, match="built-in is used"):
        assert adapters.register(Impostor(), "entry point evil:ADAPTER") is None
    assert type(load_adapter("llmemb")).__name__ == "LLMEmb"


def test_a_leaky_adapter_fails_the_check_with_a_clear_message(tmp_path, clean_registry):
    path = tmp_path / "leaky.py"
    path.write_text(LEAKY)
    assert include(path) == "leaky"
    findings, _ = check("leaky", backbones=["sasrec"], checks=("test targets",))
    (finding,) = findings
    assert not finding.passed
    assert "training changed when test targets were replaced" in finding.detail
    assert "reads held-out interactions" in finding.detail


def test_scaffolded_adapter_is_two_files_plus_a_test_and_runs(tmp_path, clean_registry):
    written = new_adapter("demo", tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "configs/method/demo.yaml", "methods/demo.py", "tests/test_method_demo.py"]
    with pytest.raises(BenchError, match="refusing to overwrite"):
        new_adapter("demo", tmp_path)
    with pytest.raises(BenchError, match="must be a Python identifier"):
        new_adapter("My-Method", tmp_path)
    assert include(tmp_path / "methods" / "demo.py") == "demo"  # YAML found in configs/method
    assert compose(["method=demo"])["method"]["hidden"] == 256
    findings, _ = check("demo", backbones=["sasrec"], checks=("record", "eval batch"))
    assert all(f.passed for f in findings), findings


def test_include_errors_name_the_file(tmp_path, clean_registry):
    with pytest.raises(BenchError, match="no such file"):
        include(tmp_path / "absent.py")
    bad = tmp_path / "bad.py"
    bad.write_text("ADAPTER = 3\n")
    with pytest.raises(BenchError, match="bad.py must define ADAPTER"):
        include(bad)


def test_perturbed_view_keeps_recbole_ids_and_training_parts(tmp_path):
    from bench.data.sources import prepare

    cfg = compose(["dataset=synthetic-tiny"])
    prepared = prepare(cfg["dataset"], tmp_path)
    for which, offset in (("test", 0), ("valid", 1)):
        view = perturbed_view(prepared, which)
        a, b = prepared.interactions, view.interactions
        from_end = a.groupby("user", sort=False).cumcount(ascending=False).to_numpy()
        changed = (a["item"].to_numpy() != b["item"].to_numpy())
        assert changed.sum() > 0.5 * a["user"].nunique()  # most held-out items replaced
        assert np.all(from_end[changed] == offset)  # nothing else touched
        assert list(a["item"].unique()) == list(b["item"].unique())  # same first appearances
        assert view.fingerprint != prepared.fingerprint


def test_record_schema_rejects_a_broken_record(trained):
    record = dict(trained("sasrec", "full").record)
    record["sidecar"] = "seed-0.users.parquet"
    validate_record(record)
    del record["metrics"]
    with pytest.raises(BenchError, match="'metrics' is a required property"):
        validate_record(record)


def test_cli_adapter_new_then_check_help(tmp_path, capsys):
    assert main(["adapter", "new", "demo_cli", "--root", str(tmp_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "methods" / "demo_cli.py").is_file()
    with pytest.raises(SystemExit):
        main(["adapter", "check", "--help"])
    assert "bit-identical" in capsys.readouterr().out


def test_a_variant_is_checked_through_its_adapter():
    findings, _ = check("llm_esr-nosd", backbones=["sasrec"], checks=("eval batch",))
    assert [f.check for f in findings] == ["eval batch"] and findings[0].passed
