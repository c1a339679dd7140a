"""Training: a sequence-to-sequence train loader and RecBole's Trainer with the suite's validation.

The loader yields one window per user (the last ``max_len + 1`` training items; with
``protocol.training: seq2seq-tiled`` the whole training part in consecutive windows; with
``prefix`` one window per training target, supervised at its last position only, as bare
RecBole trains), in batches padded to their own longest sequence. Batches are
*length-bucketed*: each epoch shuffles the users, sorts chunks of ``bucket_batches`` batches by
length and shuffles the batch order, so a batch of short sequences is not padded to the longest
sequence in the data set.

``BenchTrainer`` is RecBole's ``Trainer`` (optimiser, epochs, early stopping, gradient clipping,
progress bars) with two changes: validation uses the protocol's evaluator (pessimistic ranks,
full or sampled candidates), and the best model is kept in memory instead of written to disk.
"""
from __future__ import annotations

import copy
import time
from typing import Callable, Iterator

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.trainer import Trainer
from tqdm import tqdm

from bench.backbones import TARGET_SEQ
from bench.item_tables import one_table_per_step


def training_windows(split, mode: str = "seq2seq") -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Training windows of at most ``max_len + 1`` items, right-padded.

    ``seq2seq``: one window per user, the last ``max_len + 1`` items of their training part, as
    the original SASRec trains. A user whose training part is longer loses its earlier targets
    (Beauty: 3,382 of 131,413, from 127 users).
    ``seq2seq-tiled``: the user's whole training part cut into consecutive windows from the
    end, so every training target is predicted exactly once per epoch, as bare RecBole's prefix
    augmentation trains every target once (bare gives each target up to ``max_len`` items of
    history; a window gives its first targets less).
    ``prefix``: one window per training target (RecBole's augmented rows themselves: up to
    ``max_len`` items, then the target); the loader supervises only its last position.

    Returns the users (internal ids, one per window), the windows and their lengths.
    A user whose training part has a single item has no training target and no window.
    Taken from RecBole's augmented training rows (one per training target, in order): row ``r``
    holds the ``max_len`` items before its target, so its window covers the targets of rows
    ``r - seq_len + 1 .. r``; the next window back ends at row ``r - max_len``.
    """
    cfg = split.config
    seq_field = cfg["ITEM_ID_FIELD"] + cfg["LIST_SUFFIX"]
    max_len = cfg["MAX_ITEM_LIST_LENGTH"]
    f = split.inter_feat
    uid = f[split.uid_field].numpy()
    users, first_from_end = np.unique(uid[::-1], return_index=True)
    rows = len(uid) - 1 - first_from_end
    if mode == "prefix":
        rows, users = np.arange(len(uid)), uid
    elif mode == "seq2seq-tiled":
        _, first_row = np.unique(uid, return_index=True)  # RecBole keeps a user's rows together
        n_rows = rows - first_row + 1
        per_user = (n_rows + max_len - 1) // max_len
        back = np.arange(per_user.sum()) - np.repeat(np.cumsum(per_user) - per_user, per_user)
        rows = np.repeat(rows, per_user) - back * max_len
        users = np.repeat(users, per_user)
    seq = f[seq_field][rows]
    seq_len = f[cfg["ITEM_LIST_LENGTH_FIELD"]][rows]
    target = f[split.iid_field][rows]
    windows = torch.zeros((len(rows), max_len + 1), dtype=torch.long)
    windows[:, : seq.size(1)] = seq
    windows[torch.arange(len(rows)), seq_len] = target
    return torch.from_numpy(users), windows, (seq_len + 1).numpy()


def window_inputs(win: torch.Tensor, lens: torch.Tensor,
                  objective: str) -> tuple[torch.Tensor, torch.Tensor]:
    """What a model reads from training windows (right-padded, lengths ``lens``), padded to
    the longest in the group. Causal: every item but the last (whose items 2..n are the
    targets). Masked: the last ``max_len`` items (the oldest dropped when the window is full)."""
    if objective == "causal":
        width = int(lens.max()) - 1
        seq = win[:, :width].clone()
        seq[torch.arange(width, device=seq.device) >= (lens - 1).view(-1, 1)] = 0
        return seq, lens - 1
    full = lens == win.size(1)
    seq = win[:, :-1].clone()
    seq[full] = win[full, 1:]
    lens = lens - full.long()
    return seq[:, : int(lens.max())], lens


class Seq2SeqTrainLoader:
    """Training windows (``protocol.training``, see ``training_windows``), dynamically padded,
    shuffled per epoch (seeded)."""

    def __init__(self, train_split, batch_size: int, objective: str, seed: int,
                 bucket_batches: int = 16, mode: str = "seq2seq"):
        cfg = train_split.config
        self.dataset = train_split  # RecBole's Trainer reads ``train_data.dataset``
        self.shuffle = True
        self.batch_size, self.objective, self.seed = batch_size, objective, seed
        self.bucket_batches = bucket_batches
        self.seq_field = cfg["ITEM_ID_FIELD"] + cfg["LIST_SUFFIX"]
        self.len_field = cfg["ITEM_LIST_LENGTH_FIELD"]
        self.uid_field = train_split.uid_field
        self.users, self.windows, self.lengths = training_windows(train_split, mode)
        # prefix: a window's one target is its last item (the runner allows causal models only)
        self.last_only = mode == "prefix"
        self.epoch = 0

    def __len__(self) -> int:
        return int(np.ceil(len(self.lengths) / self.batch_size))

    def expected_positions(self, model) -> np.ndarray:
        """Supervised positions per window (the constant loss reduction's divisor): one for a
        prefix window, else what the model's objective supervises in a window."""
        if self.last_only:
            return np.ones(len(self.lengths))
        return model.expected_positions(self.lengths)

    def _batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        perm = rng.permutation(len(self.lengths))
        chunk = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, len(perm), chunk):
            part = perm[start: start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches.extend(part[i: i + self.batch_size] for i in range(0, len(part), self.batch_size))
        rng.shuffle(batches)
        return batches

    def _collate(self, rows: np.ndarray) -> Interaction:
        win, lens = self.windows[rows], torch.from_numpy(self.lengths[rows])
        seq, seq_len = window_inputs(win, lens, self.objective)
        fields = {self.seq_field: seq, self.len_field: seq_len, self.uid_field: self.users[rows]}
        if self.objective == "causal":  # inputs = items 1..n-1, targets = items 2..n
            targets = win[:, 1: int(lens.max())]
            if self.last_only:  # a prefix window predicts its last item only
                last = torch.arange(len(rows)), lens - 2
                targets = torch.zeros_like(targets).index_put_(last, targets[last])
            fields[TARGET_SEQ] = targets
        return Interaction(fields)

    def __iter__(self) -> Iterator[Interaction]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        for rows in self._batches(rng):
            yield self._collate(rows)


# Seconds an epoch runs before its step bar appears: ID models on small data finish an epoch
# in a second or two and show only the epoch bar; MoRec or a large dataset on a CPU (minutes per
# epoch) shows steps as well.
_STEP_BAR_DELAY = 5.0


class BenchTrainer(Trainer):
    """RecBole's Trainer; validation by ``valid_fn`` (returns NDCG@10 and a metric dict)."""

    def __init__(self, config, model, valid_fn: Callable[[], tuple[float, dict]],
                 step_progress: bool = False):
        super().__init__(config, model)
        self.valid_fn = valid_fn
        self.step_progress = step_progress
        self.best_state: dict | None = None
        self.best_epoch = -1
        self.epoch_seconds: list[float] = []
        self.valid_seconds: list[float] = []
        self.valid_history: list[float] = []
        self.resumed_at: list[int] = []  # epochs a resumed run continued from (bench.checkpoint)
        # the hardware label of each stretch before the latest resume (None: not recorded)
        self.segment_devices: list[str | None] = []

    def _build_optimizer(self, **kwargs):
        """RecBole's optimizer; a model with ``optimizer_groups(lr)`` gets its own parameter
        groups (e.g. MoRec's smaller learning rate for the fine-tuned text encoder)."""
        groups = getattr(self.model, "optimizer_groups", None)
        if groups is not None and "params" not in kwargs:
            kwargs["params"] = groups(self.learning_rate)
        return super()._build_optimizer(**kwargs)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        loss_func = loss_func or self.model.calculate_loss

        def step_loss(interaction):  # text item tables map their items once per step
            with one_table_per_step(self.model):
                return loss_func(interaction)

        start = time.perf_counter()
        if self.step_progress:  # a transient bar of the epoch's steps, shown only if it is slow
            train_data = tqdm(train_data, total=len(train_data), desc=f"epoch {epoch_idx + 1}",
                              unit="step", leave=False, delay=_STEP_BAR_DELAY, mininterval=1.0,
                              dynamic_ncols=True)
        loss = super()._train_epoch(train_data, epoch_idx, step_loss, show_progress)
        self.epoch_seconds.append(time.perf_counter() - start)
        return loss

    def _valid_epoch(self, valid_data, show_progress=False):
        start = time.perf_counter()
        score, result = self.valid_fn()
        self.valid_seconds.append(time.perf_counter() - start)
        self.valid_history.append(score)
        return score, result

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        """Keep the best weights in memory: nothing is written, nothing to clean up.

        RecBole calls this with epoch -1 when a fit starts with no epochs left; a run resumed
        after its last epoch already holds its best weights."""
        if epoch < 0 and self.best_state is not None:
            return
        self.best_state = copy.deepcopy(self.model.state_dict())
        self.best_epoch = epoch

    def load_best(self) -> None:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
