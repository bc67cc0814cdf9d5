"""Shared test configuration.

Randomness in tests comes from ``SEQBENCH_TEST_SEED`` (default 0); the seed is
printed in the header so a failure can be reproduced with the same value.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

SEED = int(os.environ.get("SEQBENCH_TEST_SEED", "0"))


def pytest_report_header(config):
    return f"SEQBENCH_TEST_SEED={SEED} (set it to reproduce a failure with other random data)"


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(1)  # the CI machine has two cores; tests run one torch thread
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture
def seed() -> int:
    return SEED


@pytest.fixture
def rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)
