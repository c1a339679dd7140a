"""``llmemb``: LLM Empowered Embedding Generator for Sequential Recommendation (Liu et al., AAAI 2025).

Stage 1, SCFT (``scft.py``): LoRA fine-tuning of the language model with attribute-level
augmented views of each item's prompt; then every item's full prompt is encoded with the tuned
model and, when the LM is wider than ``pca_dim``, reduced by PCA (the paper: 4096 -> 1536).
Stage 2, RAT (``rat.py``): the frozen embeddings feed a trainable adapter that becomes the
backbone's item table, aligned to a pre-trained ID-only SASRec item table (the collaborative
teacher, trained here under the same protocol with ``teacher_seed``).

One-off stages (teacher, SCFT adapter, exported embeddings) are cached under
``<paths.cache>``, keyed by everything that determines them, so a second run, another seed or
another backbone reuses them. The teacher is the ``id`` SASRec of ``teacher_seed`` and lives in
the shared ID-model cache (``bench/id_models.py``): an ``id`` run trains it for LLMEmb too. Ablations: ``method.scft=false`` (the LM's raw embeddings) and
``method.align=false`` (no alignment loss). Defaults that differ from the paper because this
suite runs on a CPU by default (SCFT steps and batch) are marked in ``configs/method/llmemb.yaml``.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.adapters import BuildContext, MethodAdapter
from bench.encoders.cache import DirCache, build_lock, cache_key
from bench.encoders.models import load_language_model
from bench.encoders.prompts import item_prompts, template_for
from bench.encoders.tables import align_to_recbole, encoder_identity, item_embeddings, pca
from bench.errors import BenchError
from methods.llmemb.rat import AdaptedItemTable
from methods.llmemb.scft import train_scft


def _item_dim(ctx: BuildContext) -> int:
    """The backbone's item-vector size (built once, before the run's seed is set)."""
    return int(ctx.backbone(ctx.recbole_config, ctx.train_dataset).item_embedding.embedding_dim)


class LLMEmb(MethodAdapter):
    name = "llmemb"
    paper = "Liu et al., LLM Empowered Embedding Generator for Sequential Recommendation, AAAI 2025"
    upstream = "github.com/liuqidong07/LLMEmb"
    upstream_commit = "3458a5e"
    uses_text = True
    language_model = ("the run's encoder (default all-MiniLM-L6-v2; paper: LLaMA-7B), LoRA-"
                      "fine-tuned by SCFT, then frozen; a trainable adapter maps its vectors (RAT)")
    cold_start = ("its text: the trained adapter over the item's frozen (SCFT-tuned) LLM "
                  "embedding, as for every item")
    text_seen = "item prompt (the dataset's LLMEmb template; SCFT drops/shuffles its attributes)"
    validation_use = ("the ID SASRec teacher of the collaborative alignment is trained under the "
                      "protocol, early-stopped on validation NDCG@10 as the original does")

    # ---- one-off stages --------------------------------------------------------------------
    def prepare(self, ctx: BuildContext) -> None:
        m, cfg = ctx.method_cfg, ctx.run_cfg
        progress = bool(cfg.get("show_progress", True))
        one_off: dict[str, Any] = {}
        table = self._llm_table(ctx, progress, one_off)
        if m["pca_dim"] and table.shape[1] > int(m["pca_dim"]):
            table = pca(table, int(m["pca_dim"]))
        dim = _item_dim(ctx)
        teacher = self._teacher(ctx, dim, one_off) if m["align"] else None
        ctx.extras.update(llm_table=table, teacher=teacher, item_dim=dim, one_off=one_off)

    def _llm_table(self, ctx: BuildContext, progress: bool, one_off: dict[str, Any]) -> np.ndarray:
        m, enc, ds_cfg = ctx.method_cfg, ctx.run_cfg["encoder"], ctx.run_cfg["dataset"]
        if not m["scft"] or enc.get("kind") == "precomputed":
            emb = item_embeddings(ctx.prepared, ds_cfg, enc, ctx.cache_dir, progress, stage="raw")
            one_off["embedding"] = emb.info
            ctx.extras["encoder_id"] = emb.encoder_id
            return emb.vectors
        scft_cfg = {k: m[k] for k in m if k.startswith(("scft_", "lora_"))}
        tpl = template_for(ds_cfg)
        parts = {**encoder_identity(enc, ctx.cache_dir), "template": tpl.id,
                 "dataset": ctx.prepared.text_fingerprint, "fields": ctx.prepared.text_fields,
                 "scft": scft_cfg, "seed": int(m["scft_seed"])}
        stage = f"scft-{cache_key(**parts)}"
        adapters = DirCache(Path(ctx.cache_dir) / "llmemb")

        def cached():  # no model is loaded to find out
            return item_embeddings(ctx.prepared, ds_cfg, enc, ctx.cache_dir, progress=False,
                                   stage=stage, only_cached=True)

        emb = cached()
        if emb is None:
            with build_lock(adapters.root / "scft", stage):  # one job fine-tunes, others wait
                emb = cached()
                if emb is None:
                    emb = self._scft_embeddings(ctx, stage, parts, tpl, adapters, progress,
                                                one_off)
        if "scft" not in one_off:
            one_off["scft"] = {"cache_hit": True, "built": adapters.figures("scft", stage)}
        one_off["embedding"] = emb.info
        ctx.extras["encoder_id"] = emb.encoder_id
        return emb.vectors

    def _scft_embeddings(self, ctx: BuildContext, stage: str, parts: dict[str, Any], tpl,
                         adapters: DirCache, progress: bool, one_off: dict[str, Any]):
        """SCFT (or its cached LoRA adapter), then the fine-tuned model's item embeddings."""
        m, enc, ds_cfg = ctx.method_cfg, ctx.run_cfg["encoder"], ctx.run_cfg["dataset"]
        adapter_dir = adapters.valid("scft", stage)
        lm = load_language_model(enc, ctx.cache_dir)
        if adapter_dir is not None:
            from peft import PeftModel

            peft_model = PeftModel.from_pretrained(lm.model, str(adapter_dir))
            # named as configs spell the cache, not by this machine's absolute path
            one_off["scft"] = {"cache_hit": True,
                               "adapter": "${paths.cache}/llmemb/scft/" + adapter_dir.name}
        else:
            prompts = item_prompts(ctx.prepared.items, ctx.prepared.text_fields, tpl)
            resume = adapters.root / "scft" / f"{stage}.resume.pt"
            peft_model, figures = train_scft(
                lm, prompts, m, int(m["scft_seed"]), progress, checkpoint=resume,
                about=f"LLMEmb's SCFT: {enc['name']}, {ds_cfg['name']}")
            staging = adapters.staging("scft", stage)
            peft_model.save_pretrained(str(staging))
            adapters.commit("scft", stage, staging, parts, figures)
            resume.unlink(missing_ok=True)
            one_off["scft"] = {"cache_hit": False, **figures}
        return item_embeddings(ctx.prepared, ds_cfg, enc, ctx.cache_dir, progress, lm=lm,
                               model=peft_model, stage=stage)

    def _teacher(self, ctx: BuildContext, dim: int, one_off: dict[str, Any]) -> torch.Tensor:
        """The frozen collaborative table: ID-only SASRec (hidden = the backbone's item size),
        trained under this run's protocol and training budget at ``teacher_seed``. It is the
        ``id`` SASRec run of that seed when the sizes agree, so it comes from the shared
        ID-model cache (bench/id_models.py) when that run (or another teacher) trained it."""
        from bench.config import compose
        from bench.id_models import check_item_order, trained_id_model

        cfg = copy.deepcopy(ctx.run_cfg)
        cfg["method"] = compose(["method=id"])["method"]
        cfg["backbone"] = {**compose(["backbone=sasrec"])["backbone"], "hidden_size": dim}
        cfg["seed"] = int(ctx.method_cfg["teacher_seed"])  # shows its epoch bar, labelled
        cfg["efficiency"] = {**(cfg.get("efficiency") or {}), "inference": False}  # not served
        state, items, one_off["teacher"] = trained_id_model(cfg, ctx.prepared, ctx.device,
                                                             "LLMEmb's teacher")
        check_item_order(items, ctx.train_dataset, "LLMEmb teacher")
        table = state["item_embedding.weight"].float().clone()
        table[0] = 0.0  # padding row, as every item table of the suite
        return table

    # ---- the model ---------------------------------------------------------------------------
    def build_model(self, ctx: BuildContext):
        m, x = ctx.method_cfg, ctx.extras
        model = ctx.backbone(ctx.recbole_config, ctx.train_dataset)
        llm = align_to_recbole(x["llm_table"], ctx.prepared, ctx.train_dataset)
        n_rows = model.item_embedding.weight.shape[0]
        if n_rows < llm.size(0):
            raise BenchError(f"backbone item table has {n_rows} rows, fewer than {llm.size(0)} items")
        hidden = int(m["adapter_hidden"] or max(1, llm.size(1) // 2))
        model.item_embedding = AdaptedItemTable(
            llm, x["item_dim"], hidden, extra_rows=n_rows - llm.size(0), teacher=x["teacher"],
            alpha=float(m["align_alpha"]) if m["align"] else 0.0, tau=float(m["align_tau"]))
        return model

    def encoder_id(self, ctx: BuildContext) -> str | None:
        return ctx.extras.get("encoder_id")


ADAPTER = LLMEmb()
