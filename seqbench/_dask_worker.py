"""Dask preload for the worker processes of ``--executor dask-local:N``: Ctrl-C is the
seqbench process's to handle (it stops the cluster), so a worker ignores SIGINT instead
of printing a KeyboardInterrupt traceback of its own."""

from __future__ import annotations

import signal
import threading


def dask_setup(worker) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
