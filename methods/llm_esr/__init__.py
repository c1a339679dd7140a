"""``llm_esr``: Large Language Models Enhancement for Long-tailed Sequential Recommendation
(Liu et al., NeurIPS 2024). methods.md §2.

One-off stages, cached: LM embeddings of every item's prompt (frozen) and, for the
self-distillation, LM embeddings of every user's prompt (the names of their training items) and
each user's ``sd_neighbours`` most similar other users. The model (``model.py``) is the dual
view (semantic: frozen LM -> adapter; collaborative: ID table initialised by PCA of the LM
vectors) over one shared backbone, with cross-attention between the views.

Ablations (the paper's Table 2): ``sd=false`` (no self-distillation, llm_esr-nosd),
``cross_attention=false`` (llm_esr-noca), ``pca_init=false`` (random init of the ID view,
llm_esr-randinit). ``cross_attention_mask=none`` (llm_esr-nomask) is the original's unmasked
cross-attention, to measure the suite's one departure (see model.py).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.adapters import BuildContext, MethodAdapter
from bench.encoders.cache import ArrayCache, cache_key
from bench.encoders.similar import top_k_cosine
from bench.encoders.tables import align_to_recbole, item_embeddings, pca, user_embeddings
from bench.errors import BenchError
from bench.training import training_windows
from methods.llm_esr.model import dual_view_class


class LLMESR(MethodAdapter):
    name = "llm_esr"
    paper = ("Liu et al., Large Language Models Enhancement for Long-tailed Sequential "
             "Recommendation, NeurIPS 2024")
    upstream = "github.com/liuqidong07/LLM-ESR"
    upstream_commit = "e5dc388"
    uses_text = True
    language_model = ("the run's encoder (default all-MiniLM-L6-v2; paper: text-embedding-ada-002)"
                      ", frozen; item vectors via a 2-layer adapter, PCA of them initialises the "
                      "ID view")
    cold_start = ("semantic view: the trained adapter over the item's frozen LLM embedding; "
                  "collaborative view: its PCA initialisation, untrained")
    text_seen = ("item prompt (the dataset's LLM-ESR template over its text fields); user prompt "
                 "from the titles of the training part of each sequence (self-distillation)")

    def prepare(self, ctx: BuildContext) -> None:
        m, cfg = ctx.method_cfg, ctx.run_cfg
        progress = bool(cfg.get("show_progress", True))
        items = item_embeddings(ctx.prepared, cfg["dataset"], cfg["encoder"], ctx.cache_dir,
                                progress, stage="raw")
        one_off: dict[str, Any] = {"embedding": items.info}
        ctx.extras.update(llm_table=items.vectors, encoder_id=items.encoder_id, one_off=one_off)
        if m["sd"]:
            ctx.extras["neighbours"] = self._neighbours(ctx, progress, one_off)

    def _neighbours(self, ctx: BuildContext, progress: bool, one_off: dict[str, Any]) -> torch.Tensor:
        """(n_users, k) RecBole user ids of each user's most similar users (-1 where none)."""
        m, cfg = ctx.method_cfg, ctx.run_cfg
        k = int(m["sd_neighbours"])
        users, table = user_embeddings(ctx.prepared, cfg["dataset"], cfg["encoder"], ctx.cache_dir,
                                       progress, int(m["user_history_chars"]))
        one_off["user_embedding"] = table.info
        key = cache_key(users=table.encoder_id, info=table.info.get("cache_key"),
                        dataset=ctx.prepared.fingerprint, k=k)
        store = ArrayCache(Path(ctx.cache_dir) / "llm_esr")
        near = store.load("similar_users", key)
        if near is None:
            start = time.perf_counter()
            near = top_k_cosine(table.vectors, k, progress=progress)
            seconds = time.perf_counter() - start
            store.save("similar_users", key, near, {"users": table.encoder_id, "k": k},
                       {"seconds": seconds, "n_users": len(users)})
            one_off["similar_users"] = {"cache_hit": False, "seconds": seconds}
        else:
            one_off["similar_users"] = {"cache_hit": True, "built": store.figures("similar_users", key)}
        ds = ctx.train_dataset
        token_to_uid = ds.field2token_id[ds.uid_field]
        uid_of = np.array([token_to_uid[u] for u in users])
        out = torch.full((ds.user_num, k), -1, dtype=torch.long)
        out[torch.from_numpy(uid_of)] = torch.from_numpy(uid_of[near])
        return out

    def build_model(self, ctx: BuildContext):
        m, x = ctx.method_cfg, ctx.extras
        model = dual_view_class(ctx.backbone)(ctx.recbole_config, ctx.train_dataset)
        dim = model.item_embedding.embedding_dim
        llm = align_to_recbole(x["llm_table"], ctx.prepared, ctx.train_dataset)
        pca_table = (align_to_recbole(pca(x["llm_table"], dim), ctx.prepared, ctx.train_dataset)
                     if m["pca_init"] else None)
        hidden = int(m["adapter_hidden"] or max(1, llm.size(1) // 2))
        mask = m.get("cross_attention_mask", "auto")  # only llm_esr-nomask sets it
        if mask not in ("auto", "none"):
            raise BenchError(f"bad config value method.cross_attention_mask={mask!r}: auto (causal "
                             "on causal backbones) or none (the original's unmasked form)")
        model.setup_views(llm, pca_table, hidden, bool(m["cross_attention"]), int(m["heads"]),
                          causal_cross=False if mask == "none" else None)
        ctx.extras["record_info"] = {
            "cross_attention": ("off" if not m["cross_attention"] else
                                "causal" if model.cross_causal else "bidirectional"),
            "id_view_init": "pca" if m["pca_init"] else "random", "adapter_hidden": hidden,
            "self_distillation": bool(m["sd"])}
        if m["sd"]:
            users, windows, lengths = training_windows(ctx.train_dataset)
            model.setup_distillation(float(m["sd_alpha"]), x["neighbours"], users, windows,
                                     torch.from_numpy(lengths))
        return model

    def encoder_id(self, ctx: BuildContext) -> str | None:
        return ctx.extras.get("encoder_id")


ADAPTER = LLMESR()
