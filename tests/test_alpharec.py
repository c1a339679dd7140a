"""AlphaRec and the LightGCN backbone: sparse graph, user means, cosine InfoNCE, both variants."""
from __future__ import annotations

import pytest
import torch

from bench.backbones import Seq2SeqMixin
from bench.config import compose
from bench.graph_backbone import normalized_adjacency
from bench.records import read_record
from bench.runner import execute
from methods.alpharec import mlp_hidden, user_means

from conftest import tiny_overrides


def test_adjacency_is_sparse_symmetric_normalised():
    users, items = torch.tensor([1, 1, 2]), torch.tensor([1, 2, 2])
    adj = normalized_adjacency(users, items, n_users=3, n_items=3)
    assert adj.is_sparse
    dense = adj.to_dense()
    assert torch.allclose(dense, dense.T)
    # user 1 (degree 2) - item 1 (degree 1): 1 / sqrt(2 * 1); user 2 (1) - item 2 (2)
    assert dense[1, 3 + 1].item() == pytest.approx(2 ** -0.5)
    assert dense[2, 3 + 2].item() == pytest.approx(2 ** -0.5)
    assert dense[0].abs().sum() == 0  # the padding user has no edges


def test_user_means_and_mlp_width():
    llm = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    means = user_means(llm, torch.tensor([1, 1, 2]), torch.tensor([1, 2, 2]), n_users=4)
    assert torch.allclose(means, torch.tensor([[0, 0], [0.5, 0.5], [0, 1], [0, 0]]))
    assert mlp_hidden(3072, None) == 1536 and mlp_hidden(384, None) == 3072
    assert mlp_hidden(384, 100) == 100


@pytest.fixture(scope="module")
def alpha_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("alpharec")


@pytest.mark.parametrize("backbone,variant,dtype", [("lightgcn", "graph", "float32"),
                                                     ("sasrec", "sequential", "float32"),
                                                     ("sasrec", "sequential", "bfloat16")])
def test_alpharec_variants_end_to_end(alpha_dir, backbone, variant, dtype):
    from bench.adapters import load_adapter
    from bench.data.prepared import export_recbole
    from bench.data.sources import prepare
    from bench.runner import resolve_device, train_and_test

    cfg = compose(tiny_overrides(alpha_dir, "method=alpharec", f"backbone={backbone}",
                                 "train.epochs=2", "method.mlp_hidden=64",
                                 f"method.mlp_dtype={dtype}"))
    cache = alpha_dir / "cache"
    prepared = prepare(cfg["dataset"], cache)
    art = train_and_test(cfg, load_adapter("alpharec"), prepared,
                         export_recbole(prepared, cache / "recbole"), resolve_device("cpu"))
    model = art.model
    assert art.record["method_info"]["variant"] == variant
    assert art.record["method_info"]["precision"] == (
        "float32" if dtype == "float32" else f"float32 weights, {dtype} autocast")
    assert model.item_embedding.adapter[0].weight.dtype == torch.float32  # master weights
    assert not model.item_embedding.llm.requires_grad  # the LM table stays frozen
    model.eval()
    scores = model.full_sort_predict(_eval_batch(model, art.test))
    assert scores.abs().max() <= 1 / 0.15 + 1e-4  # cosine / tau
    if backbone == "lightgcn":
        assert model.user_embedding.adapter is model.item_embedding.adapter  # one MLP for both
        assert model.adjacency.is_sparse
        assert art.record["training"]["batch_size"] == 512


def _eval_batch(model, split):
    from recbole.data.interaction import Interaction

    return Interaction({model.ITEM_SEQ: split.item_seq[:8], model.ITEM_SEQ_LEN: split.item_seq_len[:8],
                        model.USER_ID: split.user[:8]})


def test_id_lightgcn_runs_and_graph_methods_are_refused_where_unsupported(tmp_path):
    out = execute(compose(tiny_overrides(tmp_path, "backbone=lightgcn", "train.epochs=2")))
    rec = read_record(out.record_path)
    assert rec["key"]["backbone"] == "lightgcn" and rec["metrics"]["test"]["overall"]["HR@10"] >= 0
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="does not support backbone 'lightgcn'"):
        execute(compose(tiny_overrides(tmp_path, "method=llm_esr", "backbone=lightgcn")))


def test_served_item_table_is_reused_until_a_parameter_changes():
    """Eval-mode scoring reuses the adapted table; an optimiser step or load_state_dict
    must invalidate it (a stale table would silently score with old weights)."""
    from bench.item_tables import TextItemTable, mlp_adapter

    torch.manual_seed(0)
    table = TextItemTable(torch.randn(30, 16), mlp_adapter(16, 32, 8), 8, extra_rows=2)
    table.eval()
    with torch.no_grad():
        first = table.weight
        assert table.weight is first  # reused
    opt = torch.optim.SGD(table.parameters(), lr=0.5)
    table.train()
    table.weight.sum().backward()
    opt.step()
    table.eval()
    with torch.no_grad():
        after_step = table.weight
        assert not torch.equal(after_step, first)
        assert torch.equal(after_step, table._table())
        state = {k: v.clone() + 1.0 if k.startswith("adapter") else v.clone()
                 for k, v in table.state_dict().items()}
        table.load_state_dict(state)
        assert torch.equal(table.weight, table._table()) and not torch.equal(table.weight,
                                                                             after_step)
    assert table.weight.requires_grad  # with grad enabled it is always recomputed


def test_item_table_under_bfloat16_autocast_keeps_float32_weights_and_output():
    """The mapping computes in bfloat16 (close to float32, not equal: the precision is real),
    while weights, gradients and the table the scores read stay float32."""
    from bench.item_tables import TextItemTable, mapping_dtype, mlp_adapter

    torch.manual_seed(0)
    llm, mlp = torch.randn(40, 16), mlp_adapter(16, 64, 8)
    exact = TextItemTable(llm, mlp, 8)
    fast = TextItemTable(llm, mlp, 8, autocast_dtype=mapping_dtype("bfloat16", "f"))
    ref, low = exact.weight, fast.weight
    assert low.dtype == torch.float32 and ref.dtype == torch.float32
    assert not torch.equal(low, ref) and torch.allclose(low, ref, rtol=0.05, atol=0.05)
    assert fast(torch.tensor([0, 3])).dtype == torch.float32 and fast(torch.tensor([0]))[0].eq(0).all()
    low.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in mlp.parameters())
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="method.mlp_dtype='float16': one of float32, bfloat16"):
        mapping_dtype("float16", "method.mlp_dtype")


class _Softmax:
    """The pieces of a backbone that its sampled softmax reads."""

    ITEM_SEQ = "item_id_list"
    _window, _reduce = Seq2SeqMixin._window, Seq2SeqMixin._reduce
    random_items, sampled_softmax = Seq2SeqMixin.random_items, Seq2SeqMixin._sampled_softmax

    def __init__(self, n_items: int, k: int):
        self.n_items, self.sampled_negatives = n_items, k
        self.negative_pool = self.position_norm = None


def _brute_force_infonce(model, interaction, hidden, table, targets, rows):
    """The definition: every negative compared with every item of the user's window."""
    seen = model._window(interaction)[rows]
    neg = model.random_items((rows.numel(), model.sampled_negatives), rows.device)
    clash = (neg.unsqueeze(-1) == seen.unsqueeze(1)).any(-1)
    pos = (hidden * table[targets]).sum(-1, keepdim=True)
    negs = torch.einsum("pd,pkd->pk", hidden, table[neg]).masked_fill(clash, float("-inf"))
    logits = torch.cat([pos, negs], dim=1)
    return torch.nn.functional.cross_entropy(logits, torch.zeros_like(targets))


@pytest.mark.parametrize("dense", [True, False])
def test_sampled_softmax_equals_its_definition(monkeypatch, dense):
    from recbole.data.interaction import Interaction

    from bench import backbones

    monkeypatch.setattr(backbones, "DENSE_NEGATIVES", 10 ** 6 if dense else 0)
    model = _Softmax(n_items=40, k=16)  # few items: many negatives fall in the window
    gen = torch.Generator().manual_seed(0)
    seq = torch.randint(1, 40, (4, 6), generator=gen)
    seq[0, 4:] = 0
    batch = Interaction({"item_id_list": seq[:, :-1], backbones.TARGET_SEQ: seq[:, 1:]})
    rows = torch.tensor([0, 0, 1, 2, 3, 3])
    targets = seq[rows, 2]
    hidden0, table0 = torch.randn(6, 8, generator=gen), torch.randn(40, 8, generator=gen)
    results = []
    for loss_fn in (model.sampled_softmax, lambda *a: _brute_force_infonce(model, *a)):
        hidden, table = hidden0.clone().requires_grad_(), table0.clone().requires_grad_()
        torch.manual_seed(1)  # the same negatives for both
        loss = loss_fn(batch, hidden, table, targets, rows)
        loss.backward()
        results.append((loss.detach(), hidden.grad, table.grad))
    (loss, g_h, g_t), (ref, r_h, r_t) = results
    assert torch.isfinite(ref) and torch.allclose(loss, ref, atol=1e-6)
    assert torch.allclose(g_h, r_h, atol=1e-6) and torch.allclose(g_t, r_t, atol=1e-6)
