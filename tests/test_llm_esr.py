"""LLM-ESR: similar-user retrieval, user prompts, the dual-view model, distillation, end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.adapters import BuildContext, load_adapter
from bench.backbones import BACKBONES
from bench.compat import recbole_config
from bench.config import compose
from bench.data.prepared import export_recbole
from bench.data.sources import prepare
from bench.encoders.prompts import user_prompts
from bench.encoders.similar import top_k_cosine
from bench.records import read_record
from bench.runner import _recbole_dict, execute
from bench.training import Seq2SeqTrainLoader
from methods.llm_esr.model import CrossAttention

from conftest import tiny_overrides


def test_top_k_cosine_matches_brute_force_and_never_returns_self():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    x[7] = x[3]  # identical users: each must find the other, never itself
    got = top_k_cosine(x, 5, chunk=7)
    assert not (got == np.arange(50)[:, None]).any()
    assert got[3, 0] == 7 and got[7, 0] == 3
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = xn @ xn.T
    np.fill_diagonal(sims, -np.inf)
    want = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    assert (got == want).all()
    assert (top_k_cosine(x, 5, chunk=50) == got).all()  # chunking changes nothing


def test_user_prompt_lists_training_item_names_in_order():
    [p] = user_prompts([["a", "b"]], {"a": "Red  Lipstick", "b": ""}, {"prompt_domain": "poi"}, 8000)
    assert p == ("The user has visited following point of interests: \nRed Lipstick, unknown \n"
                 "please conclude the user's perference.")
    [short] = user_prompts([["a"] * 100], {"a": "xyz"}, {}, 20)
    assert short.split("\n")[1].strip() == "xyz, xyz, xyz, xyz, xyz, xyz"[-20:].strip()


def test_cross_attention_is_causal_for_causal_backbones():
    torch.manual_seed(0)
    ca = CrossAttention(8, 2).eval()
    q, kv = torch.randn(1, 5, 8), torch.randn(1, 5, 8)
    pad = torch.zeros(1, 5, dtype=torch.bool)
    kv2 = kv.clone()
    kv2[0, 3:] += 1.0  # change the future
    a, b = ca(q, kv, pad, causal=True), ca(q, kv2, pad, causal=True)
    assert torch.allclose(a[0, :3], b[0, :3]) and not torch.allclose(a[0, 3:], b[0, 3:])
    c, d = ca(q, kv, pad, causal=False), ca(q, kv2, pad, causal=False)
    assert not torch.allclose(c[0, :3], d[0, :3])


@pytest.fixture(scope="module")
def esr_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("llm_esr")  # one embedding cache for the module


@pytest.fixture(scope="module")
def built(esr_dir):
    """``built(backbone, method)`` -> (model, ctx) of the LLM-ESR adapter on synthetic-tiny."""
    tmp = esr_dir
    done = {}

    def get(backbone="sasrec", method="llm_esr"):
        if (backbone, method) not in done:
            cfg = compose(tiny_overrides(tmp, f"method={method}", f"backbone={backbone}"))
            cache = Path(cfg["paths"]["cache"])
            prepared = prepare(cfg["dataset"], cache)
            data_path = export_recbole(prepared, cache / "recbole")
            cls = BACKBONES[backbone]
            rb = recbole_config(cls, prepared.name, _recbole_dict(cfg, data_path, tmp, torch.device("cpu")))
            from recbole.data import create_dataset

            splits = create_dataset(rb).build()
            ctx = BuildContext(rb, splits[0], cls, prepared, cfg["method"], cache, run_cfg=cfg)
            adapter = load_adapter(cfg["method"].get("adapter") or method)
            adapter.prepare(ctx)
            torch.manual_seed(0)
            done[(backbone, method)] = (adapter.build_model(ctx), ctx, splits)
        return done[(backbone, method)]

    return get


@pytest.mark.parametrize("backbone", ["sasrec", "bert4rec", "gru4rec"])
def test_dual_view_scores_are_the_sum_of_both_views(built, backbone):
    model, ctx, splits = built(backbone)
    model.eval()
    loader = Seq2SeqTrainLoader(splits[0], 8, model.objective, seed=0)
    batch = next(iter(loader))
    d = model.item_embedding.embedding_dim
    with torch.no_grad():
        user = model.user_vector(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
        scores = model.full_sort_predict(batch)
        id_part = user[:, :d] @ model.item_embedding.weight[: model.n_items].T
        llm_part = user[:, d:] @ model.llm_items.weight[: model.n_items].T
        bias = getattr(model, "output_bias", None)
        want = id_part + llm_part + (0 if bias is None else bias)
    assert user.shape[1] == 2 * d and torch.allclose(scores, want, atol=1e-5)


def test_pca_init_frozen_table_and_distillation_gradient(built):
    model, ctx, splits = built("sasrec")
    from bench.encoders.tables import align_to_recbole, pca

    want = align_to_recbole(pca(ctx.extras["llm_table"], 64), ctx.prepared, ctx.train_dataset)
    assert torch.allclose(model.item_embedding.weight[1:], want[1:])
    assert not model.llm_items.llm.requires_grad
    frozen = model.llm_items.llm.detach().clone()
    model.train()
    batch = next(iter(Seq2SeqTrainLoader(splits[0], 16, "causal", seed=0)))
    anchor = model.gather_indexes(model.sequence_output(batch[model.ITEM_SEQ]),
                                  batch[model.ITEM_SEQ_LEN] - 1)
    sd = model.distillation_loss(batch[model.USER_ID], anchor)
    assert sd.item() > 0
    sd.backward()
    assert model.llm_items.adapter[0].weight.grad.abs().sum() > 0
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    opt.zero_grad()
    model.calculate_loss(batch).backward()
    opt.step()
    assert torch.equal(model.llm_items.llm, frozen)
    # neighbours are other users, from the cached retrieval
    nbr = model.sd_neighbours[1:]
    assert (nbr != torch.arange(1, nbr.size(0) + 1).unsqueeze(1)).all()


def test_ablation_switches(built):
    noca, _, _ = built("sasrec", "llm_esr-noca")
    rand, ctx, _ = built("sasrec", "llm_esr-randinit")
    nosd, _, _ = built("sasrec", "llm_esr-nosd")
    assert noca.cross is None and rand.cross is not None
    from bench.encoders.tables import align_to_recbole, pca

    pca_rows = align_to_recbole(pca(ctx.extras["llm_table"], 64), ctx.prepared, ctx.train_dataset)
    assert not torch.allclose(rand.item_embedding.weight[1:], pca_rows[1:])
    assert nosd.sd_alpha == 0 and not hasattr(nosd, "sd_neighbours")


def test_nomask_is_the_originals_unmasked_cross_attention(built):
    full, full_ctx, _ = built("sasrec")
    nomask, ctx, _ = built("sasrec", "llm_esr-nomask")
    assert full.cross_causal and not nomask.cross_causal
    assert full_ctx.extras["record_info"]["cross_attention"] == "causal"
    assert ctx.extras["record_info"]["cross_attention"] == "bidirectional"
    # unmasked, a position's output depends on the items after it: its own target included
    seq = torch.tensor([[5, 9, 12, 7, 3, 0]])
    later = torch.tensor([[5, 9, 4, 8, 11, 0]])  # the same first two items, others after them
    for model, leaks in ((full, False), (nomask, True)):
        model.eval()
        with torch.no_grad():
            a, b = model.sequence_output(seq)[0, :2], model.sequence_output(later)[0, :2]
        assert torch.allclose(a, b) != leaks


def test_llm_esr_end_to_end_record(esr_dir, built):
    built("sasrec")  # the embeddings are cached by now
    cfg = compose(tiny_overrides(esr_dir, "method=llm_esr", "train.epochs=2"))
    out = execute(cfg)
    rec = read_record(out.record_path)
    assert rec["key"]["method"] == "llm_esr"
    assert rec["metrics"]["test"]["overall"]["NDCG@10"] is not None
    one_off = rec["efficiency"]["one_off"]
    assert one_off["similar_users"]["cache_hit"] and one_off["embedding"]["cache_hit"]
    assert one_off["user_embedding"]["cache_hit"]
    assert rec["provenance"]["encoder"].startswith("minilm@")
    assert rec["method_info"]["cross_attention"] == "causal"  # the departure is on record
    again = execute(compose(tiny_overrides(esr_dir, "method=llm_esr", "train.epochs=2")), force=True)
    assert again.record["efficiency"]["one_off"]["similar_users"]["cache_hit"] is True
    assert again.record["metrics"] == rec["metrics"]  # cached stages do not change the numbers
