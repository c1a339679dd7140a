"""Item tables built from frozen language-model vectors, as drop-in ``item_embedding`` modules.

LLMEmb, LLM-ESR and AlphaRec all turn a frozen table of LM item vectors into the backbone's
item vectors through a small trainable mapping. ``TextItemTable`` is that shared piece: it
behaves like ``nn.Embedding`` (``forward(ids)`` and ``.weight``), so a RecBole backbone reads it
for both its inputs and its scoring without knowing. Row 0 (padding) is zero; rows past the LM
table (BERT4Rec's mask token) are learned vectors initialised N(0, 0.01²).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchError

# Precisions a trainable mapping may compute in (float16 would need loss scaling; not offered).
MAPPING_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def mapping_dtype(value: str, field: str) -> torch.dtype:
    """The compute dtype a config names for a mapping (``field`` names it in the error)."""
    if value not in MAPPING_DTYPES:
        raise BenchError(f"bad config value {field}={value!r}: one of {', '.join(MAPPING_DTYPES)}")
    return MAPPING_DTYPES[value]


def precision_label(dtype: torch.dtype) -> str:
    """How a mapping computes, for the record: float32, or float32 weights under autocast."""
    name = str(dtype).removeprefix("torch.")
    return "float32" if dtype == torch.float32 else f"float32 weights, {name} autocast"


class LinearAdapter(nn.Sequential):
    """Linear -> Linear with no activation between them, applied as the one affine map it is.

    ``x W1ᵀ W2ᵀ + (W2 b1 + b2)`` equals the two layers in value and in every parameter's
    gradient, but costs ``in·out`` per row instead of ``in·hidden + hidden·out``: 3.5× fewer
    multiply-adds for MiniLM (384 -> 192 -> 64), 12.5× for the paper's 1536 -> 768 -> 64, and
    the adapter runs over the whole item table at every training step. The parameters stay the
    two layers (same names, initialisation and optimiser updates as the originals'), so the
    model trains as the factorised one does, up to float rounding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = self
        weight = second.weight @ first.weight  # (out, in)
        return F.linear(x, weight, F.linear(first.bias, second.weight, second.bias))


def linear_adapter(in_dim: int, hidden: int, out_dim: int) -> LinearAdapter:
    """Linear -> Linear, no activation (LLMEmb's and LLM-ESR's adapter), Xavier-normal weights
    as the originals initialise every >= 2-D parameter."""
    adapter = LinearAdapter(nn.Linear(in_dim, hidden), nn.Linear(hidden, out_dim))
    for layer in adapter:
        nn.init.xavier_normal_(layer.weight)
    return adapter


def mlp_adapter(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Linear -> LeakyReLU -> Linear (AlphaRec's mapping), Xavier-normal weights."""
    mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, out_dim))
    for layer in (mlp[0], mlp[2]):
        nn.init.xavier_normal_(layer.weight)
    return mlp


class ServedTable:
    """Mixin for item tables computed from weights (``weight`` runs a network over every item).

    Scoring all items needs the whole table per request: AlphaRec's 5M-parameter MLP over all
    items cost ~90 ms per request on a CPU. Under ``no_grad`` in eval mode the table is computed
    once and reused until a parameter changes: each tensor's storage and in-place version
    counter are the key, so an optimiser step or ``load_state_dict`` invalidates it.
    """

    _served: tuple[tuple, torch.Tensor] | None = None

    def served(self, compute) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            self._served = None
            return compute()
        key = tuple((p.data_ptr(), p._version) for p in self.parameters())
        if self._served is None or self._served[0] != key:
            self._served = (key, compute())
        return self._served[1]


class TextItemTable(ServedTable, nn.Module):
    """Frozen LM table (rows in the backbone's item order) -> trainable mapping -> item vectors.

    Inside ``one_table_per_step`` the mapping runs once over all items and every lookup of
    the step (inputs, scoring table, auxiliary losses) reads rows of that table: the loss
    needs the whole table anyway, and mapping a batch's padded inputs again cost as much as
    the table itself on small catalogues (AlphaRec's MLP on synthetic: 128 x 50 inputs
    against 4,102 items). A mapping with dropout is left out: one mask per item per step
    would not be the per-lookup dropout it trains with.

    ``autocast_dtype`` below float32 runs the mapping under autocast (float32 weights, the
    optimiser's master copy; float32 output), in training and scoring alike. Why: AlphaRec's
    5M-parameter MLP over Beauty's 12,102 items is most of its step, and bfloat16 autocast
    runs it 3x faster on a CPU with AVX512-BF16 (measured, one thread: 1.60 -> 0.52 s forward
    and backward). Only the mapping changes precision: scores and losses stay float32."""

    def __init__(self, llm_table: torch.Tensor, mapping: nn.Module, out_dim: int,
                 extra_rows: int = 0, autocast_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.autocast_dtype = autocast_dtype
        self.llm = nn.Parameter(llm_table.float(), requires_grad=False)  # counted as frozen
        self.adapter = mapping
        self.extra = nn.Parameter(torch.randn(extra_rows, out_dim) * 0.01) if extra_rows else None
        self.embedding_dim = out_dim
        self.n_llm_rows = llm_table.size(0)
        self._in_step = False
        self._step_table: torch.Tensor | None = None

    def _map(self, llm_rows: torch.Tensor) -> torch.Tensor:
        """The trainable mapping of frozen LM rows, in float32 or under autocast."""
        if self.autocast_dtype == torch.float32:
            return self.adapter(llm_rows)
        with torch.autocast(llm_rows.device.type, dtype=self.autocast_dtype):
            return self.adapter(llm_rows).float()

    def _adapt(self, ids: torch.Tensor) -> torch.Tensor:
        if self._in_step:
            return self._step()[ids]
        vec = self._map(self.llm[ids])
        return vec.masked_fill((ids == 0).unsqueeze(-1), 0.0)  # padding stays zero

    def _table(self) -> torch.Tensor:
        rows = self._map(self.llm[1:])  # a view: the frozen table is not copied every step
        table = torch.cat([rows.new_zeros(1, rows.size(1)), rows])  # row 0: padding, zero
        return table if self.extra is None else torch.cat([table, self.extra], dim=0)

    def _step(self) -> torch.Tensor:
        if self._step_table is None:
            self._step_table = self._table()
        return self._step_table

    @property
    def weight(self) -> torch.Tensor:
        """The full table (items, then any extra rows), as ``nn.Embedding.weight`` would be;
        reused while serving (``ServedTable``) and within a training step."""
        if self._in_step:
            return self._step()
        return self.served(self._table)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self._in_step:
            return self._step()[ids]
        if self.extra is None:
            return self._adapt(ids)
        is_extra = ids >= self.n_llm_rows
        out = self._adapt(ids.clamp(max=self.n_llm_rows - 1))
        if is_extra.any():
            extra = self.extra[(ids - self.n_llm_rows).clamp(min=0, max=self.extra.size(0) - 1)]
            out = torch.where(is_extra.unsqueeze(-1), extra, out)
        return out


@contextmanager
def one_table_per_step(model: nn.Module) -> Iterator[None]:
    """Within the block (one training step's loss), each ``TextItemTable`` of ``model`` maps
    its items once and serves every lookup from that table; outside it, nothing is kept."""
    tables = [m for m in model.modules() if isinstance(m, TextItemTable)
              and not any(isinstance(x, nn.Dropout) and x.p > 0 for x in m.adapter.modules())]
    for table in tables:
        table._in_step, table._step_table = True, None
    try:
        yield
    finally:
        for table in tables:
            table._in_step, table._step_table = False, None
