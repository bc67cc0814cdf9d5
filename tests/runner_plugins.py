"""Models that misbehave on purpose, for the runner's failure-isolation tests.

They live in their own importable module (not inside a test function) so that worker
processes can unpickle them by module path; the tests register them in the driver with
``seqbench.registry.models.register`` and the executors register the driver's extra
models in every worker.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from seqbench.models.baseline import ChanceBaseline


class ExitingModel(ChanceBaseline):
    """Ends its process with ``os._exit(3)`` inside fit, as a crashing C extension would."""

    def _fit(self, data, valid):
        os._exit(3)


class SysExitModel(ChanceBaseline):
    """Calls ``sys.exit(5)`` inside fit, as a script-like plugin might."""

    def _fit(self, data, valid):
        sys.exit(5)


class ThreadsModel(ChanceBaseline):
    """Fails unless every BLAS/OpenMP pool of its process runs as many threads as torch
    does (what the executors set for a job)."""

    def _fit(self, data, valid):
        import torch
        from threadpoolctl import threadpool_info

        pools = {p["internal_api"]: p["num_threads"] for p in threadpool_info()}
        if any(n != torch.get_num_threads() for n in pools.values()):
            raise RuntimeError(f"torch threads {torch.get_num_threads()}, pools {pools}")
        super()._fit(data, valid)


class RaisingModel(ChanceBaseline):
    """Raises inside fit."""

    def _fit(self, data, valid):
        raise RuntimeError("boom inside fit")


class SleepingModel(ChanceBaseline):
    """Trains for ``seconds`` in short steps (a Python-level loop, like a training loop)."""

    def __init__(self, seconds: float = 30.0, strategy: str = "prior"):
        self.seconds = seconds
        self.strategy = strategy

    def _fit(self, data, valid):
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            time.sleep(0.02)
        super()._fit(data, valid)


class HungryModel(ChanceBaseline):
    """Touches ``megabytes`` MiB of memory inside fit, then frees it."""

    def __init__(self, megabytes: int = 0, strategy: str = "prior"):
        self.megabytes = megabytes
        self.strategy = strategy

    def _fit(self, data, valid):
        if self.megabytes:
            block = np.ones(self.megabytes * 2**20 // 8)  # written, so resident
            block.sum()
            del block
        super()._fit(data, valid)


class OddDiagnosticsModel(ChanceBaseline):
    """Reports a diagnostic that does not pickle (a lambda) beside a plain one."""

    def _diagnostics(self, data):
        return {"probe": lambda x: x, "value": 1.5}


MODELS = {"test-exit": ExitingModel, "test-raise": RaisingModel, "test-sleep": SleepingModel,
          "test-hungry": HungryModel, "test-sysexit": SysExitModel,
          "test-threads": ThreadsModel, "test-odd-diagnostics": OddDiagnosticsModel}
