"""``pad``: Pre-train, Align, and Disentangle (PAD, SIGIR 2025). methods.md §4.

Three phases, each trained by the harness under the run's protocol and budget (early stopping
on validation NDCG@10), phases 1 and 2 cached so phase 3 can be rerun alone:

1. **pre-train** the ID-only backbone: the ``id`` run of the same seed, from the shared
   ID-model cache (``bench/id_models.py``), trained here only when no run has;
2. **rec-anchored alignment**: item vector = CAT(E_id'[i], g(x_i)) over the phase-1 ID table
   and a text tower g on frozen LM title vectors, trained with the recommendation loss plus
   0.2 x MK-MMD(g(x), E_id') (five Gaussian kernels, multipliers 2^-3..2^1);
3. **three experts** (phase-1 ID tower, phase-2 aligned tower, a fresh text tower) whose
   scores are mixed per item by learnable gates per popularity bin (10 bins of equal
   training interaction mass; popular bins start leaning on ID, rare bins on text).

Works on the causal backbones (SASRec, GRU4Rec), where the three experts read the same
positions. Departures, all in the record's ``method_info``: the suite's backbone and loss
(PAD: a 5-block post-LN Transformer with BCE), the suite's learning rate for every phase (PAD:
1e-5, 1e-5, 1e-4 at batch 8 x 16), MK-MMD as the biased estimate over at most
``mmd_max_items`` of the batch's target items (PAD: positives and negatives of a GPU batch).
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.adapters import BuildContext, MethodAdapter
from bench.checkpoint import EpochCheckpoint
from bench.encoders.cache import DirCache, build_lock, cache_key
from bench.encoders.tables import align_to_recbole, item_title_embeddings
from bench.errors import BenchError
from bench.item_tables import TextItemTable
from methods.pad.model import (
    AlignedItemTable,
    gated_class,
    initial_gate_logits,
    popularity_bins,
    text_tower,
)

EXPERTS = ("id", "aligned", "text")


def _aligned_table(model, llm: torch.Tensor, m: dict[str, Any]) -> AlignedItemTable:
    dim = model.item_embedding.embedding_dim
    return AlignedItemTable(model.item_embedding.weight.detach(), llm, dim,
                            float(m["text_dropout"]), float(m["mmd_weight"]),
                            int(m["mmd_max_items"]))


class _AlignPhase(MethodAdapter):
    """Phase 2 as an adapter the harness can train: the phase-1 model with the aligned table."""

    name = "pad"

    def __init__(self, phase1: dict[str, torch.Tensor], llm_table: np.ndarray):
        self.phase1, self.llm_table = phase1, llm_table

    def build_model(self, ctx: BuildContext):
        model = ctx.backbone(ctx.recbole_config, ctx.train_dataset)
        model.load_state_dict(self.phase1)
        llm = align_to_recbole(self.llm_table, ctx.prepared, ctx.train_dataset)
        model.item_embedding = _aligned_table(model, llm, ctx.method_cfg)
        return model


class PAD(MethodAdapter):
    name = "pad"
    paper = "Wang et al., Pre-train, Align, and Disentangle: Empowering Sequential " \
            "Recommendation with Large Language Models, SIGIR 2025"
    upstream = "github.com/Applied-Machine-Learning-Lab/PAD"
    upstream_commit = "506c72d"
    backbones = ("sasrec", "gru4rec")
    uses_text = True
    language_model = ("the run's encoder (default all-MiniLM-L6-v2; paper: LLM2Vec on "
                      "Llama-3-8B), frozen; MLP text towers")
    cold_start = ("the experts' mix of the rarest popularity bin: text tower over its title "
                  "embedding, aligned tower (its text half; ID half untrained), ID tower untrained")
    text_seen = "item title only, as the original"
    validation_use = ("phases 1 and 2 are trained under the protocol, early-stopped on "
                      "validation NDCG@10 like every run")

    # ---- phases 1 and 2 (cached) -------------------------------------------------------------
    def prepare(self, ctx: BuildContext) -> None:
        cfg = ctx.run_cfg
        table = item_title_embeddings(ctx.prepared, cfg["dataset"], cfg["encoder"], ctx.cache_dir,
                                      bool(cfg.get("show_progress", True)))
        one_off: dict[str, Any] = {"embedding": table.info}
        phase1, key1 = self._phase(ctx, 1, None, None, one_off)
        phase2, _ = self._phase(ctx, 2, phase1, table, one_off, parent=key1)
        ctx.extras.update(llm_table=table.vectors, encoder_id=table.encoder_id, phase1=phase1,
                          phase2=phase2, one_off=one_off)

    def _phase_cfg(self, ctx: BuildContext, phase: int) -> dict[str, Any]:
        from bench.config import compose

        cfg = copy.deepcopy(ctx.run_cfg)
        seed = ctx.method_cfg.get("phase_seed")
        cfg["seed"] = int(cfg["seed"] if seed is None else seed)
        cfg["efficiency"] = {**(cfg.get("efficiency") or {}), "inference": False}  # not served
        if phase == 1:
            cfg["method"] = compose(["method=id"])["method"]
        return cfg

    def _phase(self, ctx: BuildContext, phase: int, phase1, table, one_off: dict[str, Any],
               parent: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
        from bench.data.prepared import export_recbole
        from bench.runner import protocol_fingerprint, train_and_test

        cfg = self._phase_cfg(ctx, phase)
        if phase == 1:  # the ID backbone: the `id` run of this seed, from the shared cache
            from bench.id_models import check_item_order, trained_id_model

            state, items, one_off["phase1"] = trained_id_model(cfg, ctx.prepared, ctx.device,
                                                               "PAD's phase 1")
            check_item_order(items, ctx.train_dataset, "PAD phase 1")
            return state, one_off["phase1"]["key"]
        m = ctx.method_cfg
        parts = {"phase": phase, "dataset": ctx.prepared.fingerprint, "backbone": cfg["backbone"],
                 "protocol": protocol_fingerprint(cfg["protocol"], cfg["dataset"]),
                 "train": cfg["train"], "seed": cfg["seed"], "parent": parent}
        if phase == 2:
            parts.update(encoder=table.encoder_id, **{k: m[k] for k in (
                "mmd_weight", "mmd_max_items", "text_dropout")})
        key = cache_key(**parts)
        store = DirCache(Path(ctx.cache_dir) / "pad")
        label = f"phase{phase}"
        with build_lock(store.root / label, key):  # one job trains a phase, the others wait
            folder = store.valid(label, key)
            if folder is None:
                start = time.perf_counter()
                data_path = export_recbole(ctx.prepared, Path(ctx.cache_dir) / "recbole")
                adapter = _AlignPhase(phase1, table.vectors)
                resume = EpochCheckpoint(
                    store.root / label / f"{key}.resume.pt", key,
                    about=f"PAD's phase {phase}: {cfg['backbone']['name']}, "
                    f"{cfg['dataset']['name']}/{cfg['protocol']['name']}, seed {cfg['seed']}")
                art = train_and_test(cfg, adapter, ctx.prepared, data_path, ctx.device,
                                     resume=resume, progress=resume.about)
                tokens = [str(t) for t in art.dataset.field2id_token[art.dataset.iid_field]]
                state = {k: v.detach().cpu() for k, v in art.model.state_dict().items()}
                figures = {"seconds": time.perf_counter() - start,
                           "epochs": art.record["training"]["epochs_run"],
                           "valid_ndcg10": art.record["metrics"]["valid"]["NDCG@10"],
                           "git": art.record["provenance"]["git"]}
                staging = store.staging(label, key)
                torch.save({"state": state, "items": tokens}, staging / "model.pt")
                folder = store.commit(label, key, staging, parts, figures)
                resume.remove()
                one_off[label] = {"cache_hit": False, "seed": cfg["seed"], **figures}
            else:
                one_off[label] = {"cache_hit": True, "seed": cfg["seed"],
                                  "built": store.figures(label, key)}
        saved = torch.load(folder / "model.pt", weights_only=True)
        ds = ctx.train_dataset
        if list(saved["items"]) != [str(t) for t in ds.field2id_token[ds.iid_field]]:
            raise BenchError(f"PAD's cached {label} in {folder} has another item order than this "
                             "run's data; delete that folder to rebuild it")
        return saved["state"], key

    # ---- phase 3: the run's model ------------------------------------------------------------
    def build_model(self, ctx: BuildContext):
        m, x, ds = ctx.method_cfg, ctx.extras, ctx.train_dataset
        model = gated_class(ctx.backbone)(ctx.recbole_config, ds)
        model.load_state_dict(x["phase1"])  # expert 1: the pre-trained ID tower
        llm = align_to_recbole(x["llm_table"], ctx.prepared, ds)
        aligned = ctx.backbone(ctx.recbole_config, ds)
        aligned.item_embedding = _aligned_table(aligned, llm, m)
        aligned.load_state_dict(x["phase2"])  # expert 2: the aligned tower of phase 2
        text = ctx.backbone(ctx.recbole_config, ds)  # expert 3: a fresh text tower
        dim = text.item_embedding.embedding_dim
        text.item_embedding = TextItemTable(llm, text_tower(llm.size(1), dim,
                                                            float(m["text_dropout"])), dim)
        train_pop = np.bincount(ds.inter_feat[ds.iid_field].numpy(), minlength=ds.item_num)
        bins = popularity_bins(train_pop, int(m["n_bins"]))
        model.setup_experts(aligned, text, bins,
                            initial_gate_logits(int(m["n_bins"]), float(m["gamma_align"])))
        ctx.extras["bins"] = bins
        ctx.extras["record_info"] = {
            "phase_seed": "run seed" if m.get("phase_seed") is None else int(m["phase_seed"]),
            "mmd": {"weight": float(m["mmd_weight"]), "kernels": 5, "estimate": "biased",
                    "max_items": int(m["mmd_max_items"])},
            "learning_rate": "train.learning_rate for every phase (PAD: 1e-5, 1e-5, 1e-4)"}
        return model

    def trained_info(self, ctx: BuildContext, model) -> dict[str, Any]:
        """The learned expert weights per popularity bin (bin 1 = most popular)."""
        weights = model.gate_weights().detach().cpu().numpy()
        bins = ctx.extras["bins"]
        return {"gate_weights": {
            "bin": list(range(1, weights.shape[1])),
            "items": [int((bins == b).sum()) for b in range(1, weights.shape[1])],
            **{name: [round(float(v), 4) for v in weights[k, 1:]]
               for k, name in enumerate(EXPERTS)}}}

    def encoder_id(self, ctx: BuildContext) -> str | None:
        return ctx.extras.get("encoder_id")


ADAPTER = PAD()
