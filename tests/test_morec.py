"""MoRec: layer freezing, per-batch encoding, end-to-end fine-tuning, the two-stage variant.

The end-to-end path runs on a tiny random Llama (``tiny_llama_dir``) so it stays fast; the
default MiniLM takes the same code path (``freeze_below_top`` finds either's blocks).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides

from bench.config import compose


def _artifacts(tmp: Path, *extra: str):
    from bench.adapters import load_adapter
    from bench.data.prepared import export_recbole
    from bench.data.sources import prepare
    from bench.runner import resolve_device, train_and_test

    cfg = compose(tiny_overrides(tmp, "train.epochs=1", *extra))
    cache = Path(cfg["paths"]["cache"])
    prepared = prepare(cfg["dataset"], cache)
    return train_and_test(cfg, load_adapter(cfg["method"].get("adapter") or "morec"), prepared,
                          export_recbole(prepared, cache / "recbole"), resolve_device("cpu"))


def _llama(tiny_llama_dir: Path) -> list[str]:
    return ["method=morec", "encoder=hf", f"encoder.path={tiny_llama_dir}",
            "encoder.pooling=last", "method.tune_layers=1"]


def test_freeze_below_top_tunes_only_the_top_blocks(tiny_llama_dir):
    from transformers import AutoModel

    from methods.morec.model import freeze_below_top

    model = AutoModel.from_pretrained(tiny_llama_dir)
    counts = freeze_below_top(model, 1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("layers.1.", "norm")) for n in trainable)
    assert not any(n.startswith("layers.0.") or "embed" in n for n in trainable)
    assert counts["trainable"] + counts["frozen"] == sum(p.numel() for p in model.parameters())


def test_end_to_end_training_updates_only_the_tuned_blocks(tmp_path, tiny_llama_dir):
    from transformers import AutoModel

    art = _artifacts(tmp_path, *_llama(tiny_llama_dir))
    trained = dict(art.model.item_embedding.lm.named_parameters())
    original = dict(AutoModel.from_pretrained(tiny_llama_dir).named_parameters())
    changed = {n for n in original if not torch.equal(original[n], trained[n].detach().cpu())}
    assert changed and all(n.startswith(("layers.1.", "norm")) for n in changed)
    info = art.record["method_info"]
    assert info["variant"] == "end-to-end" and info["tune_layers"] == 1
    assert art.record["metrics"]["test"]["overall"]["n"] > 0


def test_a_step_encodes_only_the_items_its_batch_needs(tmp_path, tiny_llama_dir):
    from bench.training import Seq2SeqTrainLoader

    art = _artifacts(tmp_path, *_llama(tiny_llama_dir))
    model, table = art.model, art.model.item_embedding
    encoded: list[int] = []
    original = table.encode
    table.encode = lambda ids: (encoded.append(ids.numel()), original(ids))[1]
    loader = Seq2SeqTrainLoader(art.splits[0], 8, "causal", 0, 1)
    batch = next(iter(loader))
    model.train()
    model.calculate_loss(batch).backward()
    window = model._window(batch)  # the inputs and the targets of every position
    assert sum(encoded) == torch.unique(window[window > 0]).numel() < table.n_text_rows - 1
    encoded.clear()
    model.eval()
    first = table.weight
    assert sum(encoded) == table.n_text_rows - 1 and table.weight is first  # once per evaluation


def test_length_sorted_chunks_give_each_item_its_own_vector(tmp_path, tiny_llama_dir):
    """Chunks run in length order; every vector must still land on its own id."""
    art = _artifacts(tmp_path, *_llama(tiny_llama_dir))
    table = art.model.item_embedding
    table.eval()
    ids = torch.randperm(table.n_text_rows - 1, generator=torch.Generator().manual_seed(0))[:40] + 1
    lengths = table.attention[ids].sum(1)
    assert lengths.unique().numel() > 1  # the test needs titles of several lengths
    with torch.no_grad():
        table.chunk = 7
        chunked = table.encode(ids)
        alone = torch.cat([table.encode(ids[i: i + 1]) for i in range(ids.numel())])
    assert torch.allclose(chunked, alone, atol=1e-5)  # each item alone: no padding, no order


def test_two_stage_variant_trains_an_mlp_on_frozen_features(tmp_path):
    art = _artifacts(tmp_path, "method=morec-2stage")
    info = art.record["method_info"]
    assert info["variant"] == "two-stage" and info["mlp_layers"] == 8
    assert art.record["efficiency"]["parameters"]["frozen"] > 0  # the frozen LM table


def test_bfloat16_weights_would_lose_morecs_fine_tuning_updates():
    """Why the encoder keeps float32 weights: an Adam step at MoRec's encoder_lr (5e-5) is below
    half a bfloat16 ulp of a typical weight (|w| ~ 0.05), so most bf16 weights never move."""
    torch.manual_seed(0)
    moved = {}
    for dtype in (torch.float32, torch.bfloat16):
        w = torch.nn.Parameter((torch.randn(64, 64) * 0.05).to(dtype))
        before = w.detach().clone()
        opt = torch.optim.AdamW([w], lr=5e-5)
        for _ in range(5):
            opt.zero_grad()
            (w.float() * torch.randn(64, 64)).sum().backward()
            opt.step()
        moved[dtype] = (w.detach() != before).float().mean().item()
    assert moved[torch.float32] == 1.0 and moved[torch.bfloat16] < 0.5


def test_a_lower_encoder_dtype_trains_float32_weights_under_autocast(tmp_path, tiny_llama_dir):
    from bench.efficiency import model_precision

    art = _artifacts(tmp_path, *_llama(tiny_llama_dir), "encoder.dtype=bfloat16")
    table = art.model.item_embedding
    assert {p.dtype for p in table.lm.parameters()} == {torch.float32}  # master weights
    assert table.autocast_dtype == torch.bfloat16
    assert art.record["method_info"]["precision"] == "float32 weights, bfloat16 autocast"
    assert art.record["provenance"]["encoder"].endswith("/bfloat16")
    assert model_precision(art.model) == "float32 (bfloat16 autocast)"
    seen = []
    hook = table.lm.layers[-1].mlp.down_proj.register_forward_hook(
        lambda mod, args, out: seen.append(out.dtype))
    model = art.model
    model.train()
    ids = torch.arange(1, 9)
    table.encode(ids).sum().backward()
    hook.remove()
    assert seen == [torch.bfloat16]  # the forward ran in bf16 ...
    grads = [p.grad for p in table.lm.layers[-1].parameters() if p.requires_grad]
    assert grads and all(g is not None and g.dtype == torch.float32 for g in grads)  # ... not the weights


def test_float32_is_the_default_precision_on_a_cpu(tmp_path, tiny_llama_dir):
    art = _artifacts(tmp_path, *_llama(tiny_llama_dir))
    assert art.record["method_info"]["precision"] == "float32"
    assert art.model.item_embedding.autocast_dtype == torch.float32


def _tiny_lm(arch: str) -> torch.nn.Module:
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaModel

    torch.manual_seed(0)
    if arch == "bert":  # MiniLM's architecture (the default encoder)
        return BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3,
                                    num_attention_heads=4, intermediate_size=64))
    return LlamaModel(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=3, num_attention_heads=4,
                                  num_key_value_heads=2, attention_dropout=0.1))


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_evaluation_replays_the_frozen_blocks_bit_for_bit(arch):
    """The evaluation table after the tuned block changed equals the one computed without the
    frozen-prefix cache, exactly, and the frozen blocks did not run again to get it."""
    from types import SimpleNamespace

    from methods.morec.model import EndToEndItemTable, freeze_below_top, transformer_layers

    model = _tiny_lm(arch)
    freeze_below_top(model, 1)
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 12, (40,), generator=gen)
    tokens = torch.randint(1, 100, (40, 12), generator=gen)
    mask = (torch.arange(12)[None, :] < lengths[:, None]).long()
    tokens = tokens * mask  # padding after each length
    table = EndToEndItemTable(SimpleNamespace(model=model, pooling="mean", dim=32), tokens,
                              mask, 16, chunk=8, frozen_blocks=2)
    blocks = transformer_layers(model, 3)[1]
    calls = []
    blocks[0].register_forward_hook(lambda *_: calls.append(1))

    table.eval()
    first = table.weight.clone()
    assert calls  # the first evaluation runs every block
    table.train()
    with torch.no_grad():  # what a training step does to the tuned block
        for p in blocks[2].parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    table.eval()
    calls.clear()
    replayed = table.weight
    assert not calls  # the frozen blocks were replayed, not run
    table.train()
    table.eval()
    table._frozen.frozen_blocks = 0  # the reference: every block run
    reference = table.weight
    assert calls and torch.equal(replayed, reference)
    assert not torch.allclose(replayed, first)  # the tuned block's change is in the table

    table._frozen.frozen_blocks = 2
    calls.clear()
    table.train()
    table.encode(torch.arange(1, 9))  # training: the frozen blocks run (and drop out)
    assert calls
    table.eval()
    next(blocks[0].parameters()).requires_grad_(True)  # a lower block that trains: no replay
    calls.clear()
    table.weight
    assert calls
