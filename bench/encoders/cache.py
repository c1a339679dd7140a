"""A content-addressed cache for computed arrays and model directories.

A cache entry is addressed by the hash of everything that determines it (model weights hash,
pooling, prompt template, dataset fingerprint, stage settings), so a changed input can never
return a stale result. Each entry records the sha256 of its bytes; on load a mismatch (a
truncated or edited file) is reported on stderr and the entry is deleted and rebuilt, never used.
Writes go to a temporary name first, then are renamed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.prepared import sha256_file


def cache_key(**parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _warn(path: Path, why: str) -> None:
    print(f"note: cache entry {path} is {why}; rebuilding it", file=sys.stderr)


class ArrayCache:
    """``<root>/<kind>/<key>.npy`` plus ``<key>.json`` (parts, shape, sha256)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _paths(self, kind: str, key: str) -> tuple[Path, Path]:
        folder = self.root / kind
        return folder / f"{key}.npy", folder / f"{key}.json"

    def load(self, kind: str, key: str) -> np.ndarray | None:
        arr_path, meta_path = self._paths(kind, key)
        if not arr_path.exists() and not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if sha256_file(arr_path) != meta["sha256"]:
                raise ValueError("checksum mismatch")
            return np.load(arr_path, allow_pickle=False)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _warn(arr_path, f"corrupted ({exc})")
            arr_path.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            return None

    def figures(self, kind: str, key: str) -> dict[str, Any]:
        """What building the entry cost (stored with it), so a cache hit can still report it."""
        try:
            return json.loads(self._paths(kind, key)[1].read_text()).get("figures", {})
        except (OSError, ValueError):
            return {}

    def save(self, kind: str, key: str, array: np.ndarray, parts: dict[str, Any],
             figures: dict[str, Any] | None = None) -> None:
        arr_path, meta_path = self._paths(kind, key)
        arr_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".npy", dir=arr_path.parent)
        os.close(fd)
        try:
            np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)
            meta = {"parts": parts, "shape": list(array.shape), "dtype": str(array.dtype),
                    "sha256": sha256_file(Path(tmp)), "figures": figures or {}}
            os.replace(tmp, arr_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        tmp_meta = meta_path.with_name(f".{meta_path.name}.tmp")
        tmp_meta.write_text(json.dumps(meta, indent=2, default=str))
        os.replace(tmp_meta, meta_path)


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
            shutil.rmtree(folder, ignore_errors=True)
            return None

    def figures(self, kind: str, key: str) -> dict[str, Any]:
        try:
            return json.loads((self.path(kind, key) / self.MANIFEST).read_text()).get("figures", {})
        except (OSError, ValueError):
            return {}

    def commit(self, kind: str, key: str, build_dir: Path, parts: dict[str, Any],
               figures: dict[str, Any] | None = None) -> Path:
        """Seal a fully written ``build_dir`` (made by ``staging``) as the entry for ``key``."""
        files = {p.name: sha256_file(p) for p in sorted(build_dir.iterdir()) if p.is_file()}
        manifest = {"parts": parts, "files": files, "figures": figures or {}}
        (build_dir / self.MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        target = self.path(kind, key)
        if target.exists():
            shutil.rmtree(target)
        os.replace(build_dir, target)
        return target

    def staging(self, kind: str, key: str) -> Path:
        folder = self.root / kind
        folder.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder))
