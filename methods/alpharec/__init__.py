"""``alpharec``: Language Representations Can be What Recommenders Need (Sheng et al., ICLR 2025).
methods.md §3.

Frozen LM vectors of each item's *title* (no prompt, as the original) -> MLP (Linear, LeakyReLU,
Linear) -> item vectors; users start as the mean LM vector of their training items, mapped by the
same MLP. Scores are cosine similarities / ``tau`` and the loss is InfoNCE against
``negatives`` uniformly sampled items (those in the user's window masked out).

Two variants, told apart by the backbone, which every record names:
* ``--backbones lightgcn``: the original, graph collaborative filtering: LightGCN propagation
  (2 layers, mean over layers) of the MLP outputs on the sparse training graph
  (``bench/graph_backbone.py``). Non-sequential; the same leave-one-out split and evaluation.
* ``--backbones sasrec`` (or bert4rec, gru4rec): the sequential adaptation: the MLP item
  encoder is the backbone's item table (input and scoring), users are the backbone's output.
"""
from __future__ import annotations

from typing import Any

import torch

from bench.adapters import BuildContext, MethodAdapter
from bench.encoders.tables import align_to_recbole, item_title_embeddings
from bench.graph_backbone import LightGCN, training_edges
from bench.item_tables import TextItemTable, mapping_dtype, mlp_adapter, precision_label

# The original's MLP width per LM width (methods.md §3): about 5M parameters whatever the LM.
PAPER_HIDDEN = {3072: 1536, 1536: 3072, 768: 6144, 4096: 1152}


def mlp_hidden(lm_dim: int, configured: Any) -> int:
    """``configured``, else the original's width for that LM size, else 8 x the LM width (the
    original's factor for BERT-family encoders, e.g. MiniLM 384 -> 3072)."""
    if configured:
        return int(configured)
    return PAPER_HIDDEN.get(lm_dim, 8 * lm_dim)


def user_means(llm_items: torch.Tensor, users: torch.Tensor, items: torch.Tensor,
               n_users: int) -> torch.Tensor:
    """Each user's mean LM vector over their training items (zero for a user with none)."""
    sums = torch.zeros(n_users, llm_items.size(1)).index_add_(0, users, llm_items[items])
    counts = torch.bincount(users, minlength=n_users).clamp(min=1).unsqueeze(1)
    return sums / counts


class AlphaRec(MethodAdapter):
    name = "alpharec"
    paper = "Sheng et al., Language Representations Can be What Recommenders Need, ICLR 2025"
    backbones = ("lightgcn", "sasrec", "bert4rec", "gru4rec")
    upstream = "github.com/LehengTHU/AlphaRec"
    upstream_commit = "4b6c6cf"
    uses_text = True
    language_model = ("the run's encoder (default all-MiniLM-L6-v2; paper: text-embedding-3-large)"
                      ", frozen; an MLP maps its vectors")
    cold_start = ("its title: the trained MLP over the item's language embedding (no graph "
                  "edges, so no propagated neighbours)")
    text_seen = "item title only (no prompt), as the original"

    def prepare(self, ctx: BuildContext) -> None:
        cfg = ctx.run_cfg
        # checked before any work; build_model reads it
        ctx.extras["mlp_dtype"] = mapping_dtype(str(ctx.method_cfg.get("mlp_dtype", "float32")),
                                                "method.mlp_dtype")
        table = item_title_embeddings(ctx.prepared, cfg["dataset"], cfg["encoder"], ctx.cache_dir,
                                      bool(cfg.get("show_progress", True)))
        ctx.extras.update(llm_table=table.vectors, encoder_id=table.encoder_id,
                          one_off={"embedding": table.info})

    def batch_size(self, ctx: BuildContext) -> int:
        if ctx.backbone is LightGCN and ctx.method_cfg.get("graph_batch_users"):
            return int(ctx.method_cfg["graph_batch_users"])
        return super().batch_size(ctx)

    def build_model(self, ctx: BuildContext):
        m = ctx.method_cfg
        model = ctx.backbone(ctx.recbole_config, ctx.train_dataset)
        llm = align_to_recbole(ctx.extras["llm_table"], ctx.prepared, ctx.train_dataset)
        dim = model.item_embedding.embedding_dim
        n_rows = model.item_embedding.weight.shape[0]
        mlp = mlp_adapter(llm.size(1), mlp_hidden(llm.size(1), m["mlp_hidden"]), dim)
        compute = ctx.extras["mlp_dtype"]
        model.item_embedding = TextItemTable(llm, mlp, dim, extra_rows=n_rows - llm.size(0),
                                             autocast_dtype=compute)
        if isinstance(model, LightGCN):
            users, items = training_edges(ctx.train_dataset)
            means = user_means(llm, users, items, model.n_users)
            # the same MLP maps users
            model.user_embedding = TextItemTable(means, mlp, dim, autocast_dtype=compute)
        model.cosine_tau = float(m["tau"])
        model.sampled_negatives = int(m["negatives"])
        ctx.extras["record_info"] = {
            "variant": "graph" if isinstance(model, LightGCN) else "sequential",
            "mlp_hidden": mlp[0].out_features, "precision": precision_label(compute),
            "tau": model.cosine_tau,
            "negatives": model.sampled_negatives}
        return model

    def encoder_id(self, ctx: BuildContext) -> str | None:
        return ctx.extras.get("encoder_id")


ADAPTER = AlphaRec()
