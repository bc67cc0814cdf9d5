"""The C heap of the process that runs jobs (glibc on Linux; elsewhere nothing changes).

glibc's ``malloc`` serves a block above its mmap threshold (at most 32 MiB, however it
adapts) with a fresh ``mmap`` and unmaps it on ``free``, so the next block of that size
touches every page anew: a page fault per 4 KiB, each zero-filled by the kernel. Torch's
CPU LSTM (oneDNN) asks for a workspace of that size at every training step and frees it:
``B·T·H`` grows it past 32 MiB at batch 128, hidden 128 and T = 35 already. At batch 128,
hidden 128, T = 400 the page faults took a third of the training time (20 steps: 2.35
million faults, 14.9 s against 9.35 s with the blocks kept).

:func:`keep_freed_blocks` raises the mmap and trim thresholds to :data:`KEEP_BYTES`, so a
freed block of up to 1 GiB stays in the heap and the next step reuses its pages;
:func:`release_free_memory` hands what is free back to the system (``malloc_trim``), which
the runner does after every job, so a job starts from a trimmed heap and its memory
figures (``peak_growth_mb``) count what it allocated itself. Set the environment variable
``SEQBENCH_KEEP_HEAP=0`` to keep glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: freed blocks up to this size stay in the heap during a job
KEEP_BYTES = 1 << 30
#: set to ``0`` to leave glibc's thresholds alone
ENV = "SEQBENCH_KEEP_HEAP"

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_state: dict[str, object] = {}


def _libc():
    """glibc, or ``None`` where the C library is another (or not reachable)."""
    if "libc" not in _state:
        libc = None
        if sys.platform.startswith("linux"):
            try:
                candidate = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                candidate.gnu_get_libc_version  # noqa: B018 - glibc only (musl lacks it)
                libc = candidate
            except (OSError, AttributeError):
                libc = None
        _state["libc"] = libc
    return _state["libc"]


def enabled() -> bool:
    """Whether this process keeps freed blocks (``SEQBENCH_KEEP_HEAP`` is not ``0``)."""
    return os.environ.get(ENV, "1").strip() != "0"


def keep_freed_blocks() -> bool:
    """Keep freed blocks of up to :data:`KEEP_BYTES` in the heap for reuse (process-wide,
    once per process). True where it took effect; False where the variable turns it off,
    the C library is not glibc, or glibc refused the values."""
    if "kept" not in _state:
        libc = _libc()
        kept = False
        if libc is not None and enabled():
            kept = bool(libc.mallopt(_M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES))
        _state["kept"] = kept
    return bool(_state["kept"])


def release_free_memory() -> None:
    """Give the heap's free memory back to the system (``malloc_trim(0)``), where
    :func:`keep_freed_blocks` took effect."""
    if _state.get("kept"):
        _libc().malloc_trim(0)
