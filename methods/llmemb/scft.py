"""LLMEmb stage 1: Supervised Contrastive Fine-Tuning (SCFT) of the language model with LoRA.

methods.md §1.2. Two views of each item are made by attribute-level augmentation (split the
prompt's attribute list on ``;``, shuffle it, drop the last 40%); the LM, wrapped in LoRA, is
trained so that the two views of an item are each other's match in the batch, with the
soft-target symmetric cross-entropy and a learnable temperature initialised to 3. The loss is
computed in float32 and checked every step, so the NaN embeddings users of the original report
(fp16 with unnormalised 4096-d dot products) stop the stage with a clear error instead.
"""
from __future__ import annotations

import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bench.encoders.models import LanguageModel, forward_pooled, tokenize
from bench.errors import BenchError

# LoRA targets by architecture: LLMEmb adapts every attention and MLP projection.
LORA_TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "bert": ["query", "key", "value", "dense"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
}


def lora_targets(model) -> list[str]:
    """Pick the target-module names of the first architecture family the model contains."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for family, targets in LORA_TARGETS.items():
        if {targets[0], targets[1]} <= names:
            return [t for t in targets if t in names]
    raise BenchError("cannot choose LoRA target modules for this architecture (no q_proj/k_proj, "
                     "query/key or c_attn modules); set method.lora_targets=[...]")


def augment(prompt: str, drop_ratio: float, rng: random.Random) -> str:
    """One view: shuffle the attributes after the first newline and drop the last ⌊ratio·K⌋."""
    instruction, sep, attrs = prompt.partition("\n")
    if not sep:
        return prompt
    parts = attrs.split(";")
    rng.shuffle(parts)
    keep = parts[: len(parts) - int(drop_ratio * len(parts))]
    return instruction + "\n" + ";".join(keep)


def contrastive_loss(x: torch.Tensor, y: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """LLMEmb's ``Contrastive_Loss``: logits ``x yᵀ / τ``, soft targets
    ``softmax((x xᵀ + y yᵀ)/2 · τ)``, CLIP-style symmetric cross-entropy. Not normalised."""
    x, y = x.float(), y.float()
    logits = x @ y.T / tau
    targets = F.softmax((x @ x.T + y @ y.T) / 2 * tau, dim=-1)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets.T)) / 2


CHECKPOINT_EVERY = 25  # steps; a LoRA checkpoint is a few MB even for a 7B model


def _save_progress(path: Path, step: int, model, tau, opt, sched, rng: random.Random,
                   order: list[int], losses: list[float], seconds: float,
                   steps: int, about: str) -> None:
    """The stage's state after ``step`` of ``steps`` steps, written atomically (temp file,
    rename). ``steps``, ``every`` and ``about`` are for ``bench status``; resuming reads none."""
    from peft import get_peft_model_state_dict

    state = {"step": step, "steps": steps, "every": CHECKPOINT_EVERY, "about": about,
             "lora": get_peft_model_state_dict(model), "tau": tau.detach().cpu(),
             "opt": opt.state_dict(), "sched": sched.state_dict(), "rng": rng.getstate(),
             "torch_rng": torch.get_rng_state(), "order": order, "losses": losses,
             "seconds": seconds}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_progress(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (any damage means: start the stage afresh)
        print(f"note: SCFT checkpoint {path} is unreadable ({type(exc).__name__}); starting "
              "SCFT afresh", file=sys.stderr)
        return None


def train_scft(lm: LanguageModel, prompts: list[str], cfg: dict[str, Any], seed: int,
               progress: bool = True, checkpoint: Path | None = None, about: str = "SCFT"
               ) -> tuple[Any, dict[str, Any]]:
    """LoRA-fine-tune ``lm`` on ``prompts``; return the peft model and the stage's figures.

    ``checkpoint``: every ``CHECKPOINT_EVERY`` steps the LoRA weights, optimiser, scheduler,
    temperature and random state are saved there, and a rerun continues from the last save
    with the same result as an uninterrupted stage (the caller deletes it once the adapter
    is committed to the cache); ``about`` names the stage there for ``bench status``."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    torch.manual_seed(seed)
    rng = random.Random(seed)
    targets = list(cfg.get("lora_targets") or lora_targets(lm.model))
    lora = LoraConfig(r=int(cfg["lora_r"]), lora_alpha=int(cfg["lora_alpha"]),
                      lora_dropout=float(cfg["lora_dropout"]), target_modules=targets, bias="none")
    model = get_peft_model(lm.model, lora)
    model.train()
    tau = torch.nn.Parameter(torch.tensor(float(cfg["scft_tau_init"]), device=lm.device))
    params = [p for p in model.parameters() if p.requires_grad] + [tau]
    steps, batch = int(cfg["scft_steps"]), int(cfg["scft_batch_items"])
    opt = torch.optim.AdamW(params, lr=float(cfg["scft_lr"]), eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))
    max_length = int(cfg["scft_max_length"])
    order: list[int] = []
    losses: list[float] = []
    first, before = 0, 0.0
    saved = _load_progress(checkpoint)
    if saved is not None:
        set_peft_model_state_dict(model, saved["lora"])
        with torch.no_grad():
            tau.copy_(saved["tau"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        rng.setstate(saved["rng"])
        torch.set_rng_state(saved["torch_rng"])
        order, losses = list(saved["order"]), list(saved["losses"])
        first, before = int(saved["step"]), float(saved["seconds"])
        print(f"resume: SCFT continues from {checkpoint} after step {first}", file=sys.stderr)
    start = time.perf_counter()
    bar = tqdm(range(first, steps), desc="SCFT", unit="step", disable=not progress, leave=False,
               initial=first, total=steps)
    for step in bar:
        if len(order) < batch:  # epochs over the items, reshuffled
            order += rng.sample(range(len(prompts)), len(prompts))
        idx, order = order[:batch], order[batch:]
        views = [[augment(prompts[i], float(cfg["scft_dropout_ratio"]), rng) for i in idx]
                 for _ in range(2)]
        x, y = (forward_pooled(lm, model, tokenize(lm, v, max_length)) for v in views)
        loss = contrastive_loss(x, y, tau)
        if not torch.isfinite(loss):
            raise BenchError(f"SCFT loss is {loss.item()} at step {step}: the embeddings overflow "
                             f"in {lm.dtype}; use encoder.dtype=float32 or a lower "
                             "method.scft_lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix_str(f"loss {loss.item():.4f} tau {tau.item():.3f}")
        if checkpoint is not None and (step + 1) % CHECKPOINT_EVERY == 0 and step + 1 < steps:
            _save_progress(checkpoint, step + 1, model, tau, opt, sched, rng, order, losses,
                           before + time.perf_counter() - start, steps, about)
    bar.close()
    seconds = before + time.perf_counter() - start
    model.eval()
    figures = {"steps": steps, "batch_items": batch, "seconds": seconds,
               "pairs_per_second": steps * batch / seconds, "lora_targets": targets,
               "loss_first": float(np.mean(losses[: max(1, steps // 10)])),
               "loss_last": float(np.mean(losses[-max(1, steps // 10):])),
               "tau_final": float(tau.item()),
               "trainable_parameters": int(sum(p.numel() for p in params)),
               "loss_curve": [round(v, 5) for v in losses[:: max(1, math.ceil(steps / 50))]]}
    return model, figures
