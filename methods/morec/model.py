"""MoRec's pieces: an item table that *is* a text encoder (trained end to end with the
backbone), and the in-batch training that encodes only the items a batch needs (methods.md §5).

Full cross-entropy would need every item encoded at every step; MoRec trains with a loss over
the batch's own items instead (its README's in-batch debiased softmax, or BCE with one sampled
negative per position as in the paper), so a step encodes the unique items of the batch (and
its negatives) once. For full ranking the table encodes all items once per evaluation and keeps
them while the model is in eval mode. What the frozen lower blocks compute for that table is
the same at every evaluation, so it is kept after the first and only the tuned top blocks run
again (``FrozenPrefixCache``).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from bench.encoders.models import pool


def transformer_layers(model: nn.Module, n_layers: int) -> tuple[str, nn.ModuleList]:
    """The module list of the LM's transformer blocks (BERT ``encoder.layer``, Llama
    ``layers``, ...): the first ModuleList with one entry per hidden layer."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return name, module
    raise ValueError(f"cannot find the {n_layers} transformer blocks of {type(model).__name__}")


def freeze_below_top(model: nn.Module, n_tune: int) -> dict[str, int]:
    """Fine-tune only the top ``n_tune`` blocks and what follows them (e.g. a final norm);
    embeddings, lower blocks and the pooler stay frozen (MoRec's default freezing tunes the top
    two blocks of BERT-base, pooler frozen). Returns trainable and frozen parameter counts."""
    n_layers = int(model.config.num_hidden_layers)
    list_name, _ = transformer_layers(model, n_layers)
    tuned = {f"{list_name}.{i}." for i in range(max(0, n_layers - n_tune), n_layers)}
    counts = {"trainable": 0, "frozen": 0}
    for name, param in model.named_parameters():
        in_blocks = name.startswith(f"{list_name}.")
        train = (any(name.startswith(p) for p in tuned) if in_blocks else
                 n_tune > 0 and not (_is_embedding(name) or "pooler" in name))
        param.requires_grad_(train)
        counts["trainable" if train else "frozen"] += param.numel()
    return counts


def _is_embedding(name: str) -> bool:
    """Token and position embeddings (BERT/Llama ``embed*``, GPT-2 ``wte``/``wpe``): below the
    first block, never fine-tuned."""
    return "embed" in name or "wte" in name or "wpe" in name


class _Replay(nn.Module):
    """Stands in for a frozen block: returns what the last frozen block returned for this chunk,
    whatever it is given, so the tuned blocks above receive exactly the stored tensor."""

    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.output


class FrozenPrefixCache:
    """The output of the LM's frozen lower blocks for the evaluation table, kept per chunk.

    Why: full ranking encodes every item at every validation, and the bottom blocks (with the
    embeddings, all frozen) give the same states each time in eval mode (no dropout, no update).
    Only the tuned top blocks run again, on exactly the stored tensors, so the table equals the
    uncached one (a test checks it bit for bit; a 3-epoch synthetic ``cold`` run gave the same
    record). With MiniLM (4 of 6 blocks frozen) a validation on synthetic ``small`` took 4.0 s
    instead of 11.1 s on one CPU thread, with 63 MB kept. Training steps never use it: there the
    frozen blocks drop out. Nothing is kept when a parameter below the tuned blocks trains, when
    a block returns something other than a tensor, or past ``max_bytes`` (then chunks run whole,
    with the same result).
    """

    def __init__(self, lm: nn.Module, frozen_blocks: int, max_bytes: int = 4 << 30):
        self.frozen_blocks, self.max_bytes = frozen_blocks, max_bytes
        self.states: dict[tuple[int, bytes], torch.Tensor] = {}
        self.bytes = 0
        n_layers = int(getattr(lm.config, "num_hidden_layers", 0) or 0)
        if frozen_blocks <= 0 or n_layers == 0:
            self.frozen_blocks = 0
            return
        list_name, self.blocks = transformer_layers(lm, n_layers)
        below = tuple(f"{list_name}.{i}." for i in range(frozen_blocks))
        # what the kept states depend on: the frozen blocks and the embeddings under them
        self.inputs = [p for name, p in lm.named_parameters() if name.startswith(below)
                       or (not name.startswith(f"{list_name}.") and _is_embedding(name))]

    def usable(self) -> bool:
        """Only while the frozen part is frozen and in eval mode (no dropout)."""
        if self.frozen_blocks == 0:
            return False
        lower = list(self.blocks)[: self.frozen_blocks]
        return (not any(b.training for b in lower)
                and not any(p.requires_grad for p in self.inputs))

    def run(self, key: tuple[int, bytes], forward) -> torch.Tensor:
        """``forward()`` for one chunk: whole the first time (keeping the last frozen block's
        output), then with the frozen blocks replaced by that output."""
        stored = self.states.get(key)
        if stored is not None:
            with self._replaying(stored):
                return forward()

        def keep(_module, _args, output):
            if torch.is_tensor(output) and self.bytes + _nbytes(output) <= self.max_bytes:
                self.states[key] = output.detach()
                self.bytes += _nbytes(output)

        handle = self.blocks[self.frozen_blocks - 1].register_forward_hook(keep)
        try:
            return forward()
        finally:
            handle.remove()

    @contextmanager
    def _replaying(self, output: torch.Tensor) -> Iterator[None]:
        originals = [self.blocks[i] for i in range(self.frozen_blocks)]
        try:
            for i in range(self.frozen_blocks):
                self.blocks[i] = _Replay(output)
            yield
        finally:
            for i, block in enumerate(originals):
                self.blocks[i] = block


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class EndToEndItemTable(nn.Module):
    """Item id -> LM(item text) pooled -> Linear -> GELU, trained with the recommender.

    ``prefetch(ids)`` encodes a step's unique items once; lookups inside the step read them.
    In eval mode ``weight`` encodes every item once and keeps the table until ``train()``;
    ``frozen_blocks`` (the LM's bottom blocks that do not train) lets later evaluations replay
    their stored output instead of running them again (``FrozenPrefixCache``).
    """

    def __init__(self, lm, token_ids: torch.Tensor, attention: torch.Tensor, out_dim: int,
                 extra_rows: int = 0, chunk: int = 256,
                 autocast_dtype: torch.dtype = torch.float32, frozen_blocks: int = 0):
        super().__init__()
        self.lm = lm.model
        # The LM's weights stay float32 (the optimizer's master copy); a lower ``autocast_dtype``
        # runs its forward in mixed precision. Training bfloat16 weights directly would lose
        # most updates: at encoder_lr 5e-5 an Adam step is below half a bf16 ulp of a typical
        # weight, so it rounds away (a test shows it).
        self.autocast_dtype = autocast_dtype
        self.pooling = lm.pooling
        self.register_buffer("token_ids", token_ids, persistent=False)
        self.register_buffer("attention", attention, persistent=False)
        self.proj = nn.Sequential(nn.Linear(lm.dim, out_dim), nn.GELU())
        nn.init.xavier_normal_(self.proj[0].weight)
        nn.init.zeros_(self.proj[0].bias)
        self.extra = nn.Parameter(torch.randn(extra_rows, out_dim) * 0.01) if extra_rows else None
        self.embedding_dim, self.n_text_rows, self.chunk = out_dim, token_ids.size(0), chunk
        self._memo: tuple[torch.Tensor, torch.Tensor] | None = None
        self._eval_table: torch.Tensor | None = None
        self._frozen = FrozenPrefixCache(self.lm, frozen_blocks)

    def train(self, mode: bool = True):
        self._eval_table = None
        return super().train(mode)

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """Vectors of distinct text rows ``ids`` (1-D), in chunks of similar length, each trimmed
        to its longest text. Why sorted: ids in id order mix short and long titles, and every
        chunk is padded to its longest; 1,000 random items then cost 1.45x (synthetic) and
        1.46x (Beauty) the encoder tokens of length-sorted chunks. Padding changes no output."""
        if ids.numel() == 0:
            return self.proj[0].weight.new_zeros(0, self.embedding_dim)
        lengths = self.attention[ids].sum(1)
        order = torch.argsort(lengths, stable=True)
        out = []
        for start in range(0, ids.numel(), self.chunk):
            part = ids[order[start: start + self.chunk]]
            width = max(1, int(lengths[order[start: start + self.chunk]].max()))
            mask = self.attention[part, :width]
            hidden = self._states(part, width, mask)
            out.append(self.proj(pool(hidden, mask, self.pooling)))
        vecs = torch.cat(out)[torch.argsort(order)]  # back to the order of ``ids``
        return vecs.masked_fill((ids == 0).unsqueeze(-1), 0.0)  # padding stays zero

    def _states(self, part: torch.Tensor, width: int, mask: torch.Tensor) -> torch.Tensor:
        """The LM's last hidden states for one chunk (frozen blocks replayed in eval mode)."""
        def forward() -> torch.Tensor:
            with torch.autocast(self.token_ids.device.type, dtype=self.autocast_dtype,
                                enabled=self.autocast_dtype != torch.float32):
                return self.lm(input_ids=self.token_ids[part, :width],
                               attention_mask=mask).last_hidden_state

        if not self._frozen.usable():
            return forward()
        return self._frozen.run((width, part.cpu().numpy().tobytes()), forward)

    def _rows(self, unique: torch.Tensor) -> torch.Tensor:
        """Vectors of sorted distinct ids, text rows encoded, extra rows (mask token) learned."""
        is_text = (unique > 0) & (unique < self.n_text_rows)  # padding (0) stays zero
        is_extra = unique >= self.n_text_rows
        out = unique.new_zeros(unique.numel(), self.embedding_dim, dtype=torch.float)
        if is_text.any():
            out[is_text] = self.encode(unique[is_text])
        if self.extra is not None and is_extra.any():
            out[is_extra] = self.extra[unique[is_extra] - self.n_text_rows]
        return out

    def prefetch(self, ids: torch.Tensor) -> None:
        unique = torch.unique(ids)
        self._memo = (unique, self._rows(unique))

    def clear(self) -> None:
        self._memo = None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.weight[ids]
        if self._memo is None:
            self.prefetch(ids)
        unique, vecs = self._memo
        missing = torch.unique(ids[~torch.isin(ids, unique)])
        if missing.numel():  # e.g. BERT4Rec's mask token: add those rows to the step's memo
            unique, order = torch.sort(torch.cat([unique, missing]))
            vecs = torch.cat([vecs, self._rows(missing)])[order]
            self._memo = (unique, vecs)
        return vecs[torch.searchsorted(unique, ids)]

    @property
    def weight(self) -> torch.Tensor:
        if self.training:
            raise RuntimeError("the full item table is encoded for evaluation only")
        if self._eval_table is None:
            n_rows = self.n_text_rows + (self.extra.size(0) if self.extra is not None else 0)
            with torch.no_grad():
                self._eval_table = self._rows(torch.arange(n_rows, device=self.token_ids.device))
        return self._eval_table


class InBatchMixin:
    """Training on the batch's own items: ``morec_loss`` = ``inbatch`` (softmax over the unique
    items of the batch, logits minus log popularity, other items of the same user's window
    masked: MoRec's recommended loss) or ``bce`` (one uniform negative per position)."""

    morec_loss: str = "inbatch"

    def setup_inbatch(self, loss: str, log_pop: torch.Tensor,
                      encoder_lr: float | None = None) -> None:
        self.morec_loss = loss
        self.encoder_lr = encoder_lr
        self.register_buffer("log_pop", log_pop.float(), persistent=False)

    def optimizer_groups(self, lr: float) -> list[dict]:
        """The text encoder's trainable blocks at ``encoder_lr`` (MoRec's ``fine_tune_lr``),
        everything else at the run's learning rate."""
        lm = getattr(self.item_embedding, "lm", None)
        if lm is None or self.encoder_lr is None:
            return [{"params": [p for p in self.parameters() if p.requires_grad]}]
        in_lm = {id(p) for p in lm.parameters()}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in in_lm]
        tuned = [p for p in lm.parameters() if p.requires_grad]
        return [{"params": rest}, {"params": tuned, "lr": float(self.encoder_lr)}]

    def calculate_loss(self, interaction) -> torch.Tensor:
        table = self.item_embedding
        window = self._window(interaction)
        negatives = None
        if self.morec_loss == "bce":
            # draw negatives before encoding, so the step encodes them with the batch
            rows_all = torch.arange(window.size(0), device=window.device)
            negatives = self._sample_negatives(interaction, rows_all)
        needed = window if negatives is None else torch.cat([window, negatives[:, None]], 1)
        prefetch = getattr(table, "prefetch", None)
        if prefetch is not None:
            prefetch(needed)
        try:
            hidden, targets, rows = self.supervised_positions(interaction)
            if self.morec_loss == "bce":
                neg = negatives[rows]
                pos_s = (hidden * table(targets)).sum(-1)
                neg_s = (hidden * table(neg)).sum(-1)
                return self._reduce(
                    F.binary_cross_entropy_with_logits(pos_s, torch.ones_like(pos_s),
                                                       reduction="none")
                    + F.binary_cross_entropy_with_logits(neg_s, torch.zeros_like(neg_s),
                                                         reduction="none"))
            cand = torch.unique(window[window > 0])
            logits = hidden @ table(cand).T - self.log_pop[cand]
            in_window = torch.zeros(window.size(0), cand.numel(), dtype=torch.bool,
                                    device=window.device)
            real = window > 0
            user_of = torch.arange(window.size(0), device=window.device)[:, None].expand_as(window)
            in_window[user_of[real], torch.searchsorted(cand, window[real])] = True
            seen = in_window[rows]  # (P, C): items of the position's own user
            target_col = torch.searchsorted(cand, targets)
            seen[torch.arange(rows.numel(), device=rows.device), target_col] = False
            logits = logits.masked_fill(seen, float("-inf"))
            return self._reduce(F.cross_entropy(logits, target_col, reduction="none"))
        finally:
            clear = getattr(table, "clear", None)
            if clear is not None:
                clear()


_CLASSES: dict[type, type] = {}


def inbatch_class(backbone: type) -> type:
    if backbone not in _CLASSES:
        _CLASSES[backbone] = type(f"MoRec{backbone.__name__}", (InBatchMixin, backbone), {})
    return _CLASSES[backbone]
