"""``id``: the ID-only backbone, the reference every LLM-enhanced method is compared against.

A plain RecBole backbone (SASRec, BERT4Rec or GRU4Rec) with a learned item-ID embedding table,
trained under exactly the same protocol and budget as the LLM methods.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from bench.adapters import BuildContext, MethodAdapter
from bench.id_models import file_model, id_model_lock


class IdOnly(MethodAdapter):
    name = "id"
    paper = ("Kang & McAuley 2018 (SASRec); Sun et al. 2019 (BERT4Rec); Hidasi et al. 2016 "
             "(GRU4Rec); He et al. 2020 (LightGCN)")
    backbones = ("sasrec", "bert4rec", "gru4rec", "lightgcn")
    upstream = "github.com/RUCAIBox/RecBole (the backbones' implementations)"
    upstream_commit = "v1.2.1"

    def build_model(self, ctx: BuildContext):
        return ctx.backbone(ctx.recbole_config, ctx.train_dataset)

    def run_lock(self, cfg: dict[str, Any], prepared) -> AbstractContextManager[None]:
        """The shared ID-model cache's lock for this model: a teacher or phase 1 of the same
        inputs, started beside this run, waits for it instead of training a copy."""
        if not cfg.get("paths", {}).get("cache"):
            return nullcontext()
        return id_model_lock(cfg, prepared.fingerprint)

    def trained_info(self, ctx: BuildContext, model) -> dict[str, Any]:
        """File the trained model (best weights) in the shared ID-model cache, so LLMEmb's
        teacher and PAD's phase 1 reuse it instead of training the same model again."""
        cfg = ctx.run_cfg
        if not cfg.get("paths", {}).get("cache"):
            return {}
        ds = ctx.train_dataset
        file_model(cfg, ctx.prepared.fingerprint, model, list(ds.field2id_token[ds.iid_field]),
                   {"device": str(ctx.device), **ctx.extras.get("trained", {})})
        return {}


ADAPTER = IdOnly()
