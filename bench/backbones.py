"""RecBole's SASRec, BERT4Rec and GRU4Rec, trained sequence-to-sequence.

Bare RecBole trains every prefix of every sequence as its own sample, padded to the maximum
length: on Beauty (mean length 9, max 50) that is 131k samples x 50 positions per epoch. Here one
sample is a user's training window and every position predicts its next item under the causal
mask (SASRec, GRU4Rec), or masked items are predicted (BERT4Rec), with batches padded only to
their own longest sequence. Inference (``forward``, ``full_sort_predict``) is RecBole's own.

The item representation is read through ``item_embedding`` (input) and
``item_embedding.weight[:n_items]`` (scoring), exactly as RecBole does, so a method adapter that
replaces ``item_embedding`` with, e.g., a frozen LLM table plus an adapter works on all three.

Every backbone is split into the same three steps, so that a method can feed it other inputs
(LLM-ESR runs one backbone over two embedded views of the sequence):
``input_layer(item_seq, item_emb)`` (positions, LayerNorm, dropout: the backbone's own input
treatment) -> ``encode(item_seq, x)`` (the layers, all positions) -> ``user_vector`` (the
position that predicts the next item at inference; BERT4Rec appends its mask token first).
``full_sort_predict`` is ``user_vector @ item_scores_table`` for all three, which is what
RecBole's own ``full_sort_predict`` computes.

Losses (protocol.md): ``ce`` = cross-entropy over all items; ``bce`` = binary cross-entropy with
one sampled negative per position (not in the user's window), the two terms averaged separately.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction
from recbole.model.sequential_recommender import BERT4Rec, GRU4Rec, SASRec

TARGET_SEQ = "target_item_list"
# sampled softmax: logits from one dense product up to this many items per negative (measured)
DENSE_NEGATIVES = 64


class Seq2SeqMixin:
    """Loss over every supervised position of a dynamically padded batch."""

    objective = "causal"  # "causal": predict item t+1 at t; "masked": predict masked items
    # protocol.training=prefix: a window's last position is its one target (next-item models)
    prefix_training = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.bench_loss = config["bench_loss"] or "ce"  # RecBole's loss_type stays "CE" (unused)
        # Set by a method that scores by cosine similarity / temperature (AlphaRec) and trains
        # with a sampled softmax (InfoNCE over that many uniform negatives) instead of the
        # protocol's loss. None keeps dot products and the protocol's loss.
        self.cosine_tau: float | None = None
        self.sampled_negatives: int | None = None
        # Set by the runner (train.loss_reduction=constant): the expected number of supervised
        # positions per batch. Losses are then summed and divided by it, so every target weighs
        # the same whatever batch it lands in. None: the mean over the batch's positions.
        self.position_norm: float | None = None
        # Set by the runner under the cold protocol (``exclude_items``): items that do not
        # exist while the model trains. None: every item takes part in training.
        self.excluded: torch.Tensor | None = None  # (n_items,) bool
        self.negative_pool: torch.Tensor | None = None  # ids a negative may be drawn from

    def exclude_items(self, items: torch.Tensor) -> None:
        """Keep ``items`` (internal ids) out of training: never a class of the CE loss, never
        a sampled negative, so their rows of an ID table get no gradient and keep their
        initialisation (the cold protocol's untrained embedding). Scoring still covers them."""
        excluded = torch.zeros(self.n_items, dtype=torch.bool, device=items.device)
        excluded[items] = True
        excluded[0] = False
        self.excluded = excluded
        self.negative_pool = torch.nonzero(~excluded[1:]).view(-1) + 1

    def random_items(self, shape, device) -> torch.Tensor:
        """Uniform item ids (never padding, never an excluded item) of ``shape``."""
        if self.negative_pool is None:
            return torch.randint(1, self.n_items, shape, device=device)
        pool = self.negative_pool.to(device)
        return pool[torch.randint(0, pool.numel(), shape, device=device)]

    def item_cross_entropy(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of ``logits`` over items 1..n-1 (column j is item j + 1) per position,
        reduced; excluded items are masked out of the softmax."""
        if self.excluded is not None:
            logits = logits.masked_fill(self.excluded[1:], float("-inf"))
        return self._reduce(F.cross_entropy(logits, targets - 1, reduction="none"))

    def _reduce(self, values: torch.Tensor) -> torch.Tensor:
        return values.sum() / self.position_norm if self.position_norm else values.mean()

    def score_pair(self, user: torch.Tensor,
                   table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """User and item vectors as they are compared (normalised / tau under cosine scoring)."""
        if self.cosine_tau is None:
            return user, table
        return F.normalize(user, dim=-1) / self.cosine_tau, F.normalize(table, dim=-1)

    def input_layer(self, item_seq: torch.Tensor, item_emb: torch.Tensor) -> torch.Tensor:
        """The backbone's treatment of embedded inputs (B, L, d) before its layers."""
        raise NotImplementedError(f"{type(self).__name__} has no sequence input layer")

    def encode(self, item_seq: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The backbone's layers over prepared inputs ``x`` (B, L, d): outputs at all positions."""
        raise NotImplementedError(f"{type(self).__name__} has no sequence layers")

    def expected_positions(self, window_lengths: np.ndarray) -> np.ndarray:
        """Supervised positions per training window (the constant loss reduction divides by
        their mean x the batch size): every item but the first predicts under the causal mask."""
        return np.maximum(window_lengths - 1, 1).astype(float)

    def sequence_output(self, item_seq: torch.Tensor) -> torch.Tensor:  # (B, L, d)
        return self.encode(item_seq, self.input_layer(item_seq, self.item_embedding(item_seq)))

    def inference_input(self, item_seq: torch.Tensor,
                        item_seq_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sequence the model reads at inference and the position whose output scores."""
        return item_seq, item_seq_len - 1

    def user_vector(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        seq, pos = self.inference_input(item_seq, item_seq_len)
        return self.gather_indexes(self.sequence_output(seq), pos)

    def inference_user(self, interaction: Interaction) -> torch.Tensor:
        return self.user_vector(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])

    def full_sort_predict(self, interaction: Interaction) -> torch.Tensor:
        table, bias = self.item_scores_table()
        user, table = self.score_pair(self.inference_user(interaction), table)
        scores = user @ table.T
        return scores if bias is None else scores + bias

    def predict(self, interaction: Interaction) -> torch.Tensor:
        """Scores of ``interaction[ITEM_ID]`` only (RecBole's sampled evaluation)."""
        table, bias = self.item_scores_table()
        user, table = self.score_pair(self.inference_user(interaction), table)
        items = interaction[self.ITEM_ID]
        scores = (user * table[items]).sum(-1)
        return scores if bias is None else scores + bias[items]

    def item_scores_table(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Item vectors used for scoring (padding row included) and an optional per-item bias."""
        return self.item_embedding.weight[: self.n_items], None

    def supervised_positions(self, interaction: Interaction):
        """Hidden states at supervised positions (P, d), their targets (P,) and batch rows (P,)."""
        item_seq, targets = interaction[self.ITEM_SEQ], interaction[TARGET_SEQ]
        hidden = self.sequence_output(item_seq)
        keep = targets > 0
        return hidden[keep], targets[keep], torch.nonzero(keep)[:, 0]

    def calculate_loss(self, interaction: Interaction) -> torch.Tensor:
        hidden, targets, rows = self.supervised_positions(interaction)
        loss = self._rec_loss(interaction, hidden, targets, rows)
        # A replaced item table may add its own term (LLMEmb's collaborative alignment).
        auxiliary = getattr(self.item_embedding, "auxiliary_loss", None)
        return loss if auxiliary is None else loss + auxiliary(targets)

    def _rec_loss(self, interaction: Interaction, hidden: torch.Tensor, targets: torch.Tensor,
                  rows: torch.Tensor) -> torch.Tensor:
        table, bias = self.item_scores_table()
        hidden, table = self.score_pair(hidden, table)
        if self.sampled_negatives:
            return self._sampled_softmax(interaction, hidden, table, targets, rows)
        if self.bench_loss == "ce":
            # Classes are items 1..n-1: the padding id is sliced off rather than filled with
            # -inf, which would cost a full copy of the (positions x items) logits.
            logits = hidden @ table[1:].T
            if bias is not None:
                logits = logits + bias[1:]
            return self.item_cross_entropy(logits, targets)
        negatives = self._sample_negatives(interaction, rows)
        pos = (hidden * table[targets]).sum(-1)
        neg = (hidden * table[negatives]).sum(-1)
        if bias is not None:
            pos, neg = pos + bias[targets], neg + bias[negatives]
        return self._reduce(
            F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos), reduction="none")
            + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg), reduction="none"))

    def _sampled_softmax(self, interaction: Interaction, hidden: torch.Tensor, table: torch.Tensor,
                         targets: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """InfoNCE: the target against ``sampled_negatives`` uniform items per position; a
        negative that is in the user's window is masked out.

        Two shortcuts that give the same logits (up to float rounding). The window test reads
        a (batch, items) membership table instead of comparing every negative with every
        window item. On a catalogue of at most ``DENSE_NEGATIVES`` x k items the logits are
        gathered from one (positions, items) product, which beats gathering positions x k item
        vectors and scattering their gradients back: loss and backward for 3,840 positions,
        k = 256, one CPU thread: 4,103 items 1,075 -> 311 ms; 12,102 items 1,164 -> 786 ms;
        40,000 items the gather is faster (1,047 vs 2,299 ms), so it is kept there."""
        window = self._window(interaction)
        # one column past the items: BERT4Rec's mask token (id n_items) may be in the window
        member = torch.zeros(window.size(0), table.size(0) + 1, dtype=torch.bool,
                             device=window.device)
        member.scatter_(1, window, True)
        neg = self.random_items((rows.numel(), self.sampled_negatives), rows.device)
        clash = member[rows.unsqueeze(1), neg]
        if table.size(0) <= DENSE_NEGATIVES * self.sampled_negatives:
            scores = hidden @ table.T
            pos, negs = scores.gather(1, targets.unsqueeze(1)), scores.gather(1, neg)
        else:
            pos = (hidden * table[targets]).sum(-1, keepdim=True)
            negs = torch.einsum("pd,pkd->pk", hidden, table[neg])
        logits = torch.cat([pos, negs.masked_fill(clash, float("-inf"))], dim=1)
        return self._reduce(F.cross_entropy(logits, torch.zeros_like(targets), reduction="none"))

    def _window(self, interaction: Interaction) -> torch.Tensor:
        fields = [self.ITEM_SEQ] + ([TARGET_SEQ] if TARGET_SEQ in interaction.interaction else [])
        return torch.cat([interaction[f] for f in fields], dim=1)

    def _sample_negatives(self, interaction: Interaction, rows: torch.Tensor) -> torch.Tensor:
        """One uniform negative per supervised position, re-drawn while it is in the window."""
        seen = self._window(interaction)[rows]  # the user's window
        neg = self.random_items(rows.shape, rows.device)
        for _ in range(20):
            clash = (seen == neg.unsqueeze(1)).any(1)
            if not clash.any():
                break
            neg[clash] = self.random_items((int(clash.sum()),), neg.device)
        return neg


class Seq2SeqSASRec(Seq2SeqMixin, SASRec):
    """SASRec with its causal mask; RecBole's forward without the final gather."""

    def input_layer(self, item_seq: torch.Tensor, item_emb: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(item_seq.size(1), device=item_seq.device).unsqueeze(0)
        return self.dropout(self.LayerNorm(item_emb + self.position_embedding(positions)))

    def encode(self, item_seq: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mask = self.get_attention_mask(item_seq)
        return self.trm_encoder(x, mask, output_all_encoded_layers=True)[-1]


class Seq2SeqGRU4Rec(Seq2SeqMixin, GRU4Rec):
    """GRU4Rec: every step's output predicts the next item (right padding keeps it causal)."""

    def input_layer(self, item_seq: torch.Tensor, item_emb: torch.Tensor) -> torch.Tensor:
        return self.emb_dropout(item_emb)

    def encode(self, item_seq: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru_layers(x)
        return self.dense(out)


class Seq2SeqBERT4Rec(Seq2SeqMixin, BERT4Rec):
    """BERT4Rec's masked-item objective on the user's window; RecBole's inference unchanged."""

    objective = "masked"
    prefix_training = False  # cloze masks the whole window; bare RecBole masks each prefix

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.ft_ratio = float(config["ft_ratio"] or 0.0)

    def input_layer(self, item_seq: torch.Tensor, item_emb: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(item_seq.size(1), device=item_seq.device).unsqueeze(0)
        return self.dropout(self.LayerNorm(item_emb + self.position_embedding(positions)))

    def encode(self, item_seq: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """RecBole's ``BERT4Rec.forward`` after its input layer: bidirectional layers + head."""
        mask = self.get_attention_mask(item_seq, bidirectional=True)
        out = self.trm_encoder(x, mask, output_all_encoded_layers=True)[-1]
        return self.output_ln(self.output_gelu(self.output_ffn(out)))

    def inference_input(self, item_seq: torch.Tensor,
                        item_seq_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RecBole's ``reconstruct_test_data``, vectorised: the mask token after the last item,
        then the oldest column dropped."""
        seq = torch.cat([item_seq, item_seq.new_zeros(item_seq.size(0), 1)], dim=1)
        seq[torch.arange(seq.size(0), device=seq.device), item_seq_len] = self.mask_token
        return seq[:, 1:], item_seq_len - 1

    def item_scores_table(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.item_embedding.weight[: self.n_items], self.output_bias

    def expected_positions(self, window_lengths: np.ndarray) -> np.ndarray:
        """Masked positions per window, as ``supervised_positions`` draws them: the last item
        only (share ``ft_ratio``), else ``mask_ratio`` of the items, at least one."""
        lengths = np.minimum(window_lengths, self.max_seq_length).astype(float)
        cloze = np.maximum(lengths * self.mask_ratio, 1.0)
        return self.ft_ratio + (1 - self.ft_ratio) * cloze

    def supervised_positions(self, interaction: Interaction):
        """Cloze masking as RecBole's ``MaskItemSequence`` does it, per sequence.

        With probability ``ft_ratio`` only the last item is masked (the inference task, as in
        RecBole and the original BERT4Rec); otherwise each real item is masked with probability
        ``mask_ratio``, at least one per sequence.
        """
        item_seq = interaction[self.ITEM_SEQ]
        real = item_seq > 0
        masked = (torch.rand(item_seq.shape, device=item_seq.device) < self.mask_ratio) & real
        last = interaction[self.ITEM_SEQ_LEN] - 1
        last_only = torch.rand(item_seq.size(0), device=item_seq.device) < self.ft_ratio
        masked[last_only] = False
        pick = last_only | ~masked.any(1)
        masked[pick, last[pick]] = True
        hidden = self.sequence_output(item_seq.masked_fill(masked, self.mask_token))
        return hidden[masked], item_seq[masked], torch.nonzero(masked)[:, 0]


SEQUENTIAL: dict[str, type] = {"sasrec": Seq2SeqSASRec, "bert4rec": Seq2SeqBERT4Rec,
                               "gru4rec": Seq2SeqGRU4Rec}


def _all_backbones() -> dict[str, type]:
    from bench.graph_backbone import LightGCN  # imports this module's mixin

    return {**SEQUENTIAL, "lightgcn": LightGCN}


BACKBONES: dict[str, type] = _all_backbones()
