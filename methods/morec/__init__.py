"""``morec``: modality-based recommendation with a text encoder trained end to end (Yuan et
al., SIGIR 2023, "Where to Go Next for Recommender Systems? ID- vs. Modality-based"). methods.md §5.

Item vector = LM(item title) pooled -> Linear -> GELU; the LM's top ``tune_layers`` blocks are
fine-tuned with the backbone (MoRec's default freezing: top two blocks, pooler frozen) at
``encoder_lr`` while the rest learns at the run's learning rate. A step encodes only the unique
items of its batch (and its negatives); full ranking encodes all items once per evaluation.
Trained with MoRec's in-batch debiased softmax (``loss: inbatch``, its recommended loss) or BCE
with one negative per position (``loss: bce``, the paper's setting): the protocol's full
cross-entropy would encode every item at every step. The LM keeps float32 master weights; an
``encoder.dtype`` below float32 (auto: bfloat16 on CUDA) runs its forward under autocast, never
as bf16 weights (whose updates at ``encoder_lr`` round away). ``morec-2stage``: frozen LM
features -> MLP -> the backbone (MoRec's "w/o end-to-end" comparison).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.adapters import BuildContext, MethodAdapter
from bench.encoders.models import load_language_model, resolve_device_dtype, tokenize
from bench.encoders.tables import align_to_recbole, item_title_embeddings, name_field
from bench.errors import BenchError
from bench.item_tables import TextItemTable, precision_label
from methods.morec.model import EndToEndItemTable, freeze_below_top, inbatch_class

LOSSES = ("inbatch", "bce")


def mlp_stack(in_dim: int, out_dim: int, layers: int, dropout: float) -> nn.Sequential:
    """The two-stage variant's MLP: ``layers`` x [Linear, GELU, Dropout], first to out_dim."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(in_dim if i == 0 else out_dim, out_dim), nn.GELU(), nn.Dropout(dropout)]
    for m in mods:
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)
    return nn.Sequential(*mods)


def item_titles(ctx: BuildContext) -> list[str]:
    """Item titles in RecBole's internal order (row 0, padding, is empty)."""
    field = name_field(ctx.prepared, ctx.run_cfg["dataset"])
    titles = dict(zip(ctx.prepared.items["item"], ctx.prepared.items[field].fillna("")))
    ds = ctx.train_dataset
    return [""] + [str(titles[t]) for t in ds.field2id_token[ds.iid_field][1:]]


def log_popularity(ds) -> torch.Tensor:
    """log p(item) from training interactions, add-one smoothed (the in-batch debiasing)."""
    counts = np.bincount(ds.inter_feat[ds.iid_field].numpy(), minlength=ds.item_num) + 1.0
    return torch.from_numpy(np.log(counts / counts.sum()))


class MoRec(MethodAdapter):
    name = "morec"
    paper = ("Yuan et al., Where to Go Next for Recommender Systems? ID- vs. Modality-based "
             "Recommender Models Revisited, SIGIR 2023")
    upstream = "github.com/westlake-repl/IDvs.MoRec"
    upstream_commit = "ce372cf"
    uses_text = True
    language_model = ("the run's encoder (default all-MiniLM-L6-v2; paper: BERT-base), its top "
                      "blocks fine-tuned end to end (morec-2stage: frozen features -> MLP)")
    cold_start = "its title, through the text encoder trained end to end"
    text_seen = "item title only, truncated to max_tokens tokens (paper: news titles, 30)"

    def prepare(self, ctx: BuildContext) -> None:
        m = ctx.method_cfg
        if m["loss"] not in LOSSES:
            raise BenchError(f"bad config value method.loss={m['loss']!r}: inbatch or bce")
        if m["end_to_end"]:
            return  # the LM is loaded fresh in build_model: its weights are trained per run
        cfg = ctx.run_cfg
        table = item_title_embeddings(ctx.prepared, cfg["dataset"], cfg["encoder"], ctx.cache_dir,
                                      bool(cfg.get("show_progress", True)))
        ctx.extras.update(llm_table=table.vectors, encoder_id=table.encoder_id,
                          one_off={"embedding": table.info})

    def build_model(self, ctx: BuildContext):
        m = ctx.method_cfg
        model = inbatch_class(ctx.backbone)(ctx.recbole_config, ctx.train_dataset)
        dim = model.item_embedding.embedding_dim
        extra = model.item_embedding.weight.shape[0] - ctx.train_dataset.item_num
        info: dict[str, Any] = {"variant": "end-to-end" if m["end_to_end"] else "two-stage",
                                "loss": m["loss"]}
        if m["end_to_end"]:
            enc = ctx.run_cfg["encoder"]
            # the precision follows the device the run trains on (auto: bfloat16 on CUDA)
            _, compute = resolve_device_dtype(torch.device(ctx.device).type,
                                              enc.get("dtype", "auto"))
            lm = load_language_model({**enc, "dtype": "float32"}, ctx.cache_dir)  # master weights
            counts = freeze_below_top(lm.model, int(m["tune_layers"]))
            ids = tokenize(lm, item_titles(ctx), int(m["max_tokens"]))
            width = max(len(x) for x in ids)
            pad = lm.tokenizer.pad_token_id or 0
            tokens = torch.full((len(ids), width), pad, dtype=torch.long)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for row, x in enumerate(ids[1:], start=1):  # row 0: padding, no text
                tokens[row, :len(x)], mask[row, :len(x)] = torch.tensor(x), 1
            frozen = max(0, int(lm.model.config.num_hidden_layers) - int(m["tune_layers"]))
            table = EndToEndItemTable(lm, tokens, mask, dim, extra_rows=extra,
                                      chunk=int(m["encode_chunk"]), autocast_dtype=compute,
                                      frozen_blocks=frozen)
            ctx.extras["encoder_id"] = replace(lm, dtype=compute).id  # the dtype it computes in
            info.update(precision=precision_label(compute),
                        tune_layers=int(m["tune_layers"]), lm_parameters=counts,
                        encoder_lr=float(m["encoder_lr"]), max_tokens=int(m["max_tokens"]))
        else:
            llm = align_to_recbole(ctx.extras["llm_table"], ctx.prepared, ctx.train_dataset)
            mlp = mlp_stack(llm.size(1), dim, int(m["mlp_layers"]), float(m["mlp_dropout"]))
            table = TextItemTable(llm, mlp, dim, extra_rows=extra)
            info.update(mlp_layers=int(m["mlp_layers"]))
        model.item_embedding = table
        model.setup_inbatch(m["loss"], log_popularity(ctx.train_dataset),
                            float(m["encoder_lr"]) if m["end_to_end"] else None)
        ctx.extras["record_info"] = info
        return model

    def encoder_id(self, ctx: BuildContext) -> str | None:
        return ctx.extras.get("encoder_id")


ADAPTER = MoRec()
