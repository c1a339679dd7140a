"""A content-addressed cache for computed arrays and model directories.

A cache entry is addressed by the hash of everything that determines it (model weights hash,
pooling, prompt template, dataset fingerprint, stage settings), so a changed input can never
return a stale result. Each entry records the sha256 of its bytes; on load a mismatch (a
truncated or edited file) is reported on stderr and the entry is deleted and rebuilt, never used.
Writes go to a temporary name first, then are renamed.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.prepared import discard, sha256_file


@contextmanager
def build_lock(folder: Path, key: str) -> Iterator[None]:
    """Hold an exclusive lock on building entry ``key`` while the block runs.

    Concurrent jobs (a sweep's seeds, say) that miss the same entry would each build it (an
    LLM fine-tuning, a teacher): the first takes the lock and builds, the others wait, then
    look again and find a cache hit. Correctness never depends on it (entries are written
    atomically either way); it saves the duplicate work. ``flock`` on ``<key>.lock`` (left in
    place: deleting a lock file races with its next user); the lock is released when the
    process dies, so a killed builder never blocks the others."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{key}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"note: another job is building {folder.name}/{key}; waiting for it",
                  file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cache_key(**parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _warn(path: Path, why: str) -> None:
    print(f"note: cache entry {path} is {why}; rebuilding it", file=sys.stderr)


class ArrayCache:
    """``<root>/<kind>/<key>.npz``: the array and its metadata (parts, shape, sha256 of the
    array's bytes) in one file, so an entry appears in one ``os.replace``. Two jobs computing
    the same entry at once each write their own temporary file; the last rename wins and a
    reader sees one whole entry or none, never an array from one writer and metadata from
    the other."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.npz"

    def _read(self, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
        with np.load(path, allow_pickle=False) as npz:
            array, meta = npz["array"], json.loads(str(npz["meta"]))
        if _digest(array) != meta["sha256"]:
            raise ValueError("checksum mismatch")
        return array, meta

    def load(self, kind: str, key: str) -> np.ndarray | None:
        path = self._path(kind, key)
        if not path.exists():
            return None
        try:
            return self._read(path)[0]
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            _warn(path, f"corrupted ({exc})")
            discard(path)
            return None

    def figures(self, kind: str, key: str) -> dict[str, Any]:
        """What building the entry cost (stored with it), so a cache hit can still report it."""
        try:
            return self._read(self._path(kind, key))[1].get("figures", {})
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
            return {}

    def save(self, kind: str, key: str, array: np.ndarray, parts: dict[str, Any],
             figures: dict[str, Any] | None = None) -> None:
        path = self._path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        array = np.ascontiguousarray(array)
        meta = {"parts": parts, "shape": list(array.shape), "dtype": str(array.dtype),
                "sha256": _digest(array), "figures": figures or {}}
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, array=array, meta=np.array(json.dumps(meta, default=str)))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


class DirCache:
    """``<root>/<kind>/<key>/`` directories (e.g. a LoRA adapter) with a checksum manifest."""

    MANIFEST = "bench-manifest.json"

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def valid(self, kind: str, key: str) -> Path | None:
        folder = self.path(kind, key)
        if not folder.exists():
            return None
        try:
            manifest = json.loads((folder / self.MANIFEST).read_text())
            for name, digest in manifest["files"].items():
                if sha256_file(folder / name) != digest:
                    raise ValueError(f"{name} checksum mismatch")
            return folder
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _warn(folder, f"corrupted ({exc})")
            discard(folder)
            return None

    def figures(self, kind: str, key: str) -> dict[str, Any]:
        try:
            return json.loads((self.path(kind, key) / self.MANIFEST).read_text()).get("figures", {})
        except (OSError, ValueError):
            return {}

    def commit(self, kind: str, key: str, build_dir: Path, parts: dict[str, Any],
               figures: dict[str, Any] | None = None) -> Path:
        """Seal a fully written ``build_dir`` (made by ``staging``) as the entry for ``key``.

        A directory cannot be renamed onto a non-empty one, so when two jobs build the same
        entry at once the first rename wins and the second job keeps the winner's entry (the
        same key means the same inputs) and drops its own copy."""
        files = {p.name: sha256_file(p) for p in sorted(build_dir.iterdir()) if p.is_file()}
        manifest = {"parts": parts, "files": files, "figures": figures or {}}
        (build_dir / self.MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        target = self.path(kind, key)
        if target.exists():
            self.valid(kind, key)  # a damaged entry is reported and removed
        try:
            os.replace(build_dir, target)
        except OSError:
            if self.valid(kind, key) is None:
                raise
            shutil.rmtree(build_dir, ignore_errors=True)
        return target

    def staging(self, kind: str, key: str) -> Path:
        folder = self.root / kind
        folder.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder))
