"""Process settings that make CPU training fast without changing any result.

glibc serves every allocation above 32 MiB with a fresh ``mmap`` and unmaps it on free, so a
training step that allocates its (positions x items) logits, their softmax and their gradient
(tens of MiB each on Beauty) page-faults all of that memory in again at every batch. Keeping
large blocks in the heap (``M_MMAP_MAX = 0``) and not trimming it below 2 GiB
(``M_TRIM_THRESHOLD``) lets freed blocks be reused: ID SASRec on Beauty went from 23.1 to 14.8
s/epoch on 2 CPU threads with identical validation NDCG@10. Peak RSS is then the high-water
mark of the heap, which is what the CPU peak-memory figure reports anyway.

Applied once when ``bench`` is imported; ``BENCH_MALLOC=default`` leaves glibc's defaults. What
was applied is recorded in every run's provenance (``runtime.malloc``), since it changes timings.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import platform

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_TRIM_BYTES = 2**31 - 1  # mallopt takes a C int
_state = "glibc defaults (not applied yet)"


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def tune_malloc() -> str:
    """Apply the heap settings on glibc; return a label of what is in effect."""
    global _state
    if os.environ.get("BENCH_MALLOC", "").lower() == "default":
        _state = "glibc defaults (BENCH_MALLOC=default)"
        return _state
    try:
        libc = _libc()
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES) == 1
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        ok = False
    _state = ("glibc: mmap off (M_MMAP_MAX=0), trim above 2 GiB" if ok
              else "allocator defaults (mallopt unavailable)")
    return _state


def release_free_heap() -> None:
    """Give freed heap memory back to the OS (``gc.collect`` then glibc ``malloc_trim(0)``).

    Why: with the settings above, memory a finished run freed stays in this process's heap, so
    a second run in the same process (``bench run --seeds 0,1,2``) would start from the first
    one's high-water mark, and its CPU peak-memory figure (process RSS) would carry it over.
    Called before each run; it costs milliseconds and changes no result."""
    gc.collect()
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the allocator keeps what it keeps
        pass


def malloc_state() -> str:
    return _state


def numeric_platform() -> dict[str, str]:
    """What floating-point results can depend on besides the packages: the C library (libm)
    and the SIMD targets numpy dispatches to on this CPU, so two records that differ can be
    told apart by their platform. (Added when synthetic records differed across machines; that
    turned out to be a stale prepared copy, now keyed on the builder code, not the platform.)"""
    libc = " ".join(part for part in platform.libc_ver() if part) or "unknown"
    try:
        from numpy._core import _multiarray_umath as umath  # private, hence guarded
        simd = " ".join(t for t in umath.__cpu_dispatch__ if umath.__cpu_features__.get(t))
    except (ImportError, AttributeError):
        simd = "unknown"
    return {"libc": libc, "numpy_simd": simd or "baseline only"}
