"""``python -m bench data download <name>``: fetch a raw recipe's public files into its raw_dir.

Files are streamed to ``<file>.part`` and renamed when complete, so an interrupted download never
looks like a finished one. Without network access it fails on the first file within seconds,
saying which URLs to fetch by hand and where to put them.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from bench.errors import BenchError

TIMEOUT_S = 10


def _manual(cfg: dict[str, Any], raw_dir: Path) -> str:
    urls = " ".join(cfg.get("downloads") or [])
    return f"download {urls} by hand and put the files in {raw_dir}"


def download(cfg: dict[str, Any], raw_dir: Path, force: bool = False) -> list[Path]:
    """Download every URL of ``cfg['downloads']`` into ``raw_dir``; return the file paths."""
    if not cfg.get("downloads"):
        note = cfg.get("download_note") or "this dataset has no public download URL"
        raise BenchError(f"dataset '{cfg['name']}': {note}; put them in {raw_dir}, then run "
                         f"python -m bench data prepare {cfg['name']} --raw {raw_dir}")
    raw_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for url in cfg["downloads"]:
        target = raw_dir / url.rsplit("/", 1)[-1]
        paths.append(target)
        if target.exists() and not force:
            print(f"have {target}")
            continue
        part = target.with_name(target.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp, open(part, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
                    for block in iter(lambda: resp.read(1 << 20), b""):
                        out.write(block)
                        bar.update(len(block))
            os.replace(part, target)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            part.unlink(missing_ok=True)
            reason = getattr(exc, "reason", exc)
            raise BenchError(f"could not download {url} ({reason}); {_manual(cfg, raw_dir)}") from None
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        print(f"got {target} ({target.stat().st_size:,} bytes)")
    return paths
