"""The C heap of the process that runs jobs (glibc on Linux; elsewhere nothing changes).

glibc's ``malloc`` serves a block above its mmap threshold (which adapts, up to 32 MiB)
with a fresh ``mmap`` and unmaps it on ``free``, and gives the top of its heap back to the
system once more than twice that threshold is free there; either way the next block of
that size touches fresh pages, a page fault per 4 KiB, each zero-filled by the kernel.
Torch's CPU LSTM (oneDNN) asks for a workspace at every training step and frees it: with
batch 128 and hidden 128, about 5,000 page faults (20 MiB) a step at T = 35 and 100,000
(390 MiB) at T = 400, where they took a third of the training time (10 steps: 7.2 s, 5.05 s
with the blocks kept; the ``heap`` row of ``benchmarks/perf.py``).

:func:`keep_freed_blocks` raises the mmap and trim thresholds to :data:`KEEP_BYTES`, so a
freed block of up to 1 GiB stays in the heap and the next step reuses its pages;
:func:`release_free_memory` hands what is free back to the system (``malloc_trim``), which
the runner does after every job, so a job starts from a trimmed heap and its memory
figures (``peak_growth_mb``) count what it allocated itself. In exchange, a job's peak can
be higher where freed blocks of one size cannot serve the next request (a longrange LSTM job
after eight other jobs in one worker: 1357 MiB against 1046 MiB). Set the environment
variable ``SEQBENCH_KEEP_HEAP=0`` to keep glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

#: freed blocks up to this size stay in the heap during a job
KEEP_BYTES = 1 << 30
#: set to ``0`` to leave glibc's thresholds alone
ENV = "SEQBENCH_KEEP_HEAP"

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3


@functools.cache
def _libc():
    """glibc, or ``None`` where the C library is another (or not reachable)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl lacks it)
    except (OSError, AttributeError):
        return None
    return libc


def enabled() -> bool:
    """Whether this process keeps freed blocks (``SEQBENCH_KEEP_HEAP`` is not ``0``)."""
    return os.environ.get(ENV, "1").strip() != "0"


@functools.cache
def keep_freed_blocks() -> bool:
    """Keep freed blocks of up to :data:`KEEP_BYTES` in the heap for reuse (process-wide,
    once per process). True where it took effect; False where the variable turns it off,
    the C library is not glibc, or glibc refused the values."""
    libc = _libc()
    return (libc is not None and enabled()
            and bool(libc.mallopt(_M_MMAP_THRESHOLD, KEEP_BYTES))
            and bool(libc.mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES)))


def release_free_memory() -> None:
    """Give the heap's free memory back to the system (``malloc_trim(0)``), where
    :func:`keep_freed_blocks` took effect."""
    # asked only once keep_freed_blocks has run: releasing never applies the setting
    if keep_freed_blocks.cache_info().currsize and keep_freed_blocks():
        _libc().malloc_trim(0)
