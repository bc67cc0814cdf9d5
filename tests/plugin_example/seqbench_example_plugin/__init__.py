"""An example seqbench plugin: a model and a task, registered through entry points.

* ``token-lookup`` (:class:`TokenLookup`): predicts the class seen most often with the
  current input token at scored training positions (a one-tap lookup table).
* ``echo`` (:class:`Echo`): random tokens; the target at the last step is the token
  ``delay`` steps before it. With ``delay=0`` the lookup model solves it exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqbench.data import SeqData, TaskSpec
from seqbench.models.base import SeqModel
from seqbench.tasks.base import Task


class TokenLookup(SeqModel):
    """Most frequent class per current input token, with add-``smoothing`` probabilities."""

    _tags = {"input_kinds": ("tokens",), "target_kinds": ("classes",)}

    def __init__(self, smoothing: float = 1.0) -> None:
        self.smoothing = smoothing

    def _fit(self, data: SeqData, valid: SeqData | None) -> None:
        counts = np.full((data.input_size, data.target_size), float(self.smoothing))
        np.add.at(counts, (data.X[data.mask], data.Y[data.mask]), 1.0)  # (V, K)
        self.table_ = counts / counts.sum(axis=1, keepdims=True)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.table_[X]  # (N, T, K)

    def n_parameters(self) -> int:
        return int(self.table_.size)


class Echo(Task):
    """Random tokens from ``vocab`` symbols; answer at the last step: the token ``delay``
    steps back. Chance accuracy is ``1 / vocab``."""

    name = "echo"
    version = 1

    def __init__(self, length: int = 10, vocab: int = 8, delay: int = 0) -> None:
        self.length = length
        self.vocab = vocab
        self.delay = delay

    def check(self) -> None:
        self._require(self.length >= 1, "length", "an int >= 1")
        self._require(self.vocab >= 2, "vocab", "an int >= 2")
        self._require(0 <= self.delay < self.length, "delay", "an int in [0, length)")

    def spec(self) -> TaskSpec:
        self.check()
        return TaskSpec(name=self.name, version=self.version, input_kind="tokens",
                        input_size=self.vocab, target_kind="classes", target_size=self.vocab,
                        shape="many-to-one", metric="accuracy", higher_is_better=True,
                        chance=1.0 / self.vocab, perfect=1.0)

    def _sample(self, n: int, rng: np.random.Generator) -> SeqData:
        X = rng.integers(0, self.vocab, size=(n, self.length))  # (N, T)
        Y = np.zeros_like(X)
        Y[:, -1] = X[:, -1 - self.delay]
        mask = np.zeros(X.shape, dtype=bool)
        mask[:, -1] = True
        return SeqData(X, Y, mask, pd.DataFrame({"delay": [self.delay] * n}),
                       input_size=self.vocab, target_size=self.vocab)
