"""Where a result came from: package versions, git commit, host and device."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("seqbench", "torch", "numpy", "scikit-learn", "hmmlearn", "filterpy", "pandas")


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


@functools.cache
def git_commit() -> str | None:
    """The commit of the seqbench source tree, when it is a git checkout."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str | None) -> str:
    """A readable name for a torch device string ("cuda:0" -> the GPU model)."""
    if device and device.startswith("cuda"):
        import torch

        index = torch.device(device).index or 0
        return f"{device} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({cpu_name()})"


def threads() -> int | None:
    """torch's intra-op threads in this process (the worker's ``--threads``), else the
    OpenMP setting; None when neither says. Float sums in torch and BLAS split by threads,
    so the same seed may round differently under another count."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() else None


@functools.cache
def _fixed() -> dict:
    """What does not change within a process: versions, commit, host, platform, CPU."""
    return {
        "python": platform.python_version(),
        **{name: _version(name) for name in PACKAGES},
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
    }


def provenance() -> dict:
    """Versions of Python and the key packages, git commit, host, and the threads the job
    ran with (a new dict each call: callers add to it)."""
    return {**_fixed(), "threads": threads()}
