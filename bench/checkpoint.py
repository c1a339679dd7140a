"""Resume a killed run from its last finished epoch instead of from scratch.

After every epoch the runner saves ``seed-<k>.resume.pt`` beside where the run's record will
go: weights, optimiser, early-stopping state, the best weights so far, the epoch curves, the
loader's epoch counter and every random generator's state. A rerun of the same command finds
it, checks that it was made by the same configuration on the same data, and continues with
the next epoch; because the random state is restored too, the finished record is the one an
uninterrupted run would have written (timings aside). The checkpoint is deleted once the
record is written. It is written atomically and loaded with ``weights_only=True``.
"""
from __future__ import annotations

import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.records import device_name

FORMAT = 1


def checkpoint_path(record_path: Path) -> Path:
    return record_path.with_name(record_path.stem + ".resume.pt")


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                       float(cached)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _hardware(trainer) -> str:
    """The label ``bench.records.device_name`` gives the hardware the trainer's model is on."""
    param = next(trainer.model.parameters(), None)
    return device_name(param.device if param is not None else torch.device("cpu"))


def _floats(values) -> list[float]:
    """Plain floats: ``weights_only`` loading refuses numpy scalars."""
    return [float(v) for v in values]


class EpochCheckpoint:
    """Save and restore a ``BenchTrainer`` and its ``Seq2SeqTrainLoader`` between epochs.

    ``identity`` names what the run measures (config and data fingerprints): a checkpoint
    with another identity (the config was edited) is discarded, never resumed. ``about`` says
    in words what is training, for ``bench status``: a one-off stage (a teacher, a phase) is
    filed under a cache key that names nothing a reader knows."""

    def __init__(self, path: Path, identity: str, about: str = ""):
        self.path, self.identity, self.about = Path(path), identity, about

    def save(self, trainer, loader, epoch_idx: int, train_seconds: float) -> None:
        state = {
            "format": FORMAT, "identity": self.identity, "about": self.about, "epoch": epoch_idx,
            "stopped": trainer.cur_step > trainer.stopping_step,
            "model": trainer.model.state_dict(),
            "optimizer": trainer.optimizer.state_dict(), "best_state": trainer.best_state,
            "best_epoch": trainer.best_epoch, "best_valid_score": float(trainer.best_valid_score),
            "cur_step": int(trainer.cur_step), "epoch_seconds": _floats(trainer.epoch_seconds),
            # read by ``bench status`` (how many epochs can be left), not by ``restore``
            "stopping_step": int(trainer.stopping_step), "max_epochs": int(trainer.epochs),
            "valid_seconds": _floats(trainer.valid_seconds),
            "valid_history": _floats(trainer.valid_history),  # RecBole's scores are numpy floats
            "resumed_at": trainer.resumed_at, "train_seconds": float(train_seconds),
            # which hardware each stretch between resumes ran on: a resumed run's epoch times
            # mix them, and its record must say so
            "segment_devices": [*getattr(trainer, "segment_devices", []), _hardware(trainer)],
            "loader_epoch": loader.epoch, "rng": _rng_state(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(state, f)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def restore(self, trainer, loader) -> float:
        """Load the checkpoint into ``trainer`` and ``loader`` when there is a usable one;
        returns the training seconds already spent (0 when starting afresh)."""
        state = self._load()
        if state is None:
            return 0.0
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.best_state, trainer.best_epoch = state["best_state"], state["best_epoch"]
        trainer.best_valid_score, trainer.cur_step = state["best_valid_score"], state["cur_step"]
        trainer.epoch_seconds = state["epoch_seconds"]
        trainer.valid_seconds = state["valid_seconds"]
        trainer.valid_history = state["valid_history"]
        done = state["epoch"] + 1
        trainer.resumed_at = [*state["resumed_at"], done]
        trainer.segment_devices = list(state.get("segment_devices")  # absent: older checkpoint
                                       or [None] * len(trainer.resumed_at))
        trainer.start_epoch = trainer.epochs if state["stopped"] else done
        loader.epoch = state["loader_epoch"]
        _set_rng_state(state["rng"])
        print(f"resume: continuing from {self.path} after epoch {state['epoch']} "
              f"(best valid NDCG@10 {state['best_valid_score']:.4f} at epoch "
              f"{state['best_epoch']})", file=sys.stderr)
        return float(state["train_seconds"])

    def _load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            ok = state.get("format") == FORMAT and state.get("identity") == self.identity
            why = "made by another configuration or data"
        except Exception as exc:  # noqa: BLE001 (any damage means: start afresh)
            ok, why = False, f"unreadable ({type(exc).__name__})"
        if not ok:
            print(f"note: checkpoint {self.path} is {why}; starting this run afresh",
                  file=sys.stderr)
            self.remove()
            return None
        return state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
