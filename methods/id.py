"""``id``: the ID-only backbone, the reference every LLM-enhanced method is compared against.

A plain RecBole backbone (SASRec, BERT4Rec or GRU4Rec) with a learned item-ID embedding table,
trained under exactly the same protocol and budget as the LLM methods.
"""
from __future__ import annotations

from bench.adapters import BuildContext, MethodAdapter


class IdOnly(MethodAdapter):
    name = "id"
    paper = ("Kang & McAuley 2018 (SASRec); Sun et al. 2019 (BERT4Rec); Hidasi et al. 2016 "
             "(GRU4Rec); He et al. 2020 (LightGCN)")
    backbones = ("sasrec", "bert4rec", "gru4rec", "lightgcn")
    upstream = "github.com/RUCAIBox/RecBole (the backbones' implementations)"
    upstream_commit = "v1.2.1"

    def build_model(self, ctx: BuildContext):
        return ctx.backbone(ctx.recbole_config, ctx.train_dataset)


ADAPTER = IdOnly()
