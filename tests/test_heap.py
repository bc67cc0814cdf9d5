"""seqbench.heap against the kernel's own counters: page faults (getrusage) and the
resident set (/proc/self/statm), in fresh interpreters, since the setting is process-wide."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seqbench import heap

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(heap._libc() is None, reason="needs glibc")

#: allocate, touch every page of and free a 64 MiB block three times; then hold a 256 MiB
#: block, free it, and read the resident set before and after release_free_memory
CHILD = """
import ctypes, json, os, resource, sys
from seqbench import heap
kept = heap.keep_freed_blocks()
libc = heap._libc()
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
page = os.sysconf("SC_PAGE_SIZE")

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * page

def faults_of_block(size):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    libc.free(p)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults = [faults_of_block(64 << 20) for _ in range(3)]
p = libc.malloc(256 << 20)
ctypes.memset(p, 1, 256 << 20)
libc.free(p)
freed = rss()
heap.release_free_memory()
print(json.dumps({"kept": kept, "faults": faults, "freed": freed, "released": rss()}))
"""


def child(keep: str) -> dict:
    env = {**os.environ, heap.ENV: keep, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def test_kept_blocks_are_reused_without_page_faults():
    """A 64 MiB block (above glibc's 32 MiB ceiling for its own threshold) costs a fault per
    page every time under glibc's defaults; kept, the second and third reuse its pages."""
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    default, kept = child("0"), child("1")
    assert default["kept"] is False and kept["kept"] is True
    assert all(f > pages * 0.9 for f in default["faults"]), default
    assert kept["faults"][0] > pages * 0.9  # the first touch faults either way
    assert max(kept["faults"][1:]) < pages * 0.05, kept


def test_release_gives_kept_memory_back():
    """A freed 256 MiB block stays resident while kept, and release_free_memory hands it
    back to the system: the resident set falls by most of it."""
    got = child("1")
    assert got["freed"] - got["released"] > (256 << 20) * 0.8, got
    default = child("0")  # glibc's defaults unmap it at free: nothing left to release
    assert abs(default["freed"] - default["released"]) < (16 << 20), default


def test_variable_turns_it_off(monkeypatch):
    monkeypatch.setenv(heap.ENV, "0")
    assert not heap.enabled()
    monkeypatch.setenv(heap.ENV, "1")
    assert heap.enabled()
