"""Single step: a class read off one token (one-to-one, T = 1).

The degenerate shape of the lecture (one input, one output, no recurrence): any
model that handles a single step should score the oracle here, which makes it a
sanity check of the machinery rather than of memory.

Exact definition
----------------
* A fixed map ``f`` from ``n_tokens`` tokens to ``n_classes`` classes:
  ``f = np.random.default_rng(table_seed).permutation(np.arange(n_tokens) % n_classes)``,
  so class c has ``q_c = |f^-1(c)| / n_tokens`` of the tokens (equal shares when
  ``n_classes`` divides ``n_tokens``).
* Each example draws a token x uniformly; its label is ``f(x)``, except that with
  probability ``noise`` it is replaced by one of the other ``n_classes - 1`` classes
  drawn uniformly. ``X`` and ``Y`` are ``(N, 1)``; the single step is scored.
  ``meta`` holds each example's ``token`` and whether its label was ``flipped``.

Chance: the label's marginal is ``p_c = (1 - noise) q_c + noise (1 - q_c) / (n_classes - 1)``
and the best input-blind accuracy is ``max_c p_c`` (``1 / n_classes`` for equal shares).
Oracle: predicting ``f(x)`` is Bayes-optimal while ``noise < 1 - 1/n_classes`` (the
range allowed) and scores ``1 - noise``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import SeqData, TaskSpec
from .base import MAX_VOCAB, Task, is_int, is_number


class SingleStep(Task):
    """Map one token to its class, with optional label noise (one-to-one).

    Parameters
    ----------
    n_tokens : input vocabulary size (n_classes to 10**6).
    n_classes : number of classes (2 to n_tokens).
    noise : probability that a label is replaced by another class, in [0, 1 - 1/n_classes).
    table_seed : seed of the fixed token -> class map.

    Meta columns
    ------------
    One row per example (neither is a slice: ``score`` reports no slices for this task):

    token : the example's input token x (int), in ``[0, n_tokens)``.
    flipped : whether its label was replaced by another class (bool; True with
        probability ``noise``); where True the label is not ``f(x)``.
    """

    name = "single-step"
    version = 1

    def __init__(self, n_tokens: int = 16, n_classes: int = 4, noise: float = 0.0,
                 table_seed: int = 0) -> None:
        self.n_tokens = n_tokens
        self.n_classes = n_classes
        self.noise = noise
        self.table_seed = table_seed

    def check(self) -> None:
        self._require_int("n_classes", 2, MAX_VOCAB)
        self._require_int("n_tokens", self.n_classes, MAX_VOCAB,
                          f" (at least n_classes = {self.n_classes})")
        self._require(is_number(self.noise) and 0.0 <= self.noise < 1.0 - 1.0 / self.n_classes,
                      "noise",
                      f"a probability in [0, {1 - 1 / self.n_classes:.4g})")
        self._require(is_int(self.table_seed) and self.table_seed >= 0, "table_seed",
                      "an int >= 0")

    def table(self) -> np.ndarray:
        """The token -> class map f, (n_tokens,)."""
        rng = np.random.default_rng(self.table_seed)
        return rng.permutation(np.arange(self.n_tokens) % self.n_classes).astype(np.int64)

    def marginal(self) -> np.ndarray:
        """The label distribution p_c, (n_classes,)."""
        C, eps = self.n_classes, float(self.noise)
        q = np.bincount(self.table(), minlength=C) / self.n_tokens  # q_c = |f^-1(c)| / n_tokens
        return (1 - eps) * q + eps * (1 - q) / (C - 1)

    def spec(self) -> TaskSpec:
        self.check()
        return TaskSpec(
            name=self.name, version=self.version,
            input_kind="tokens", input_size=self.n_tokens,
            target_kind="classes", target_size=self.n_classes,
            shape="one-to-one", metric="accuracy", higher_is_better=True,
            chance=float(self.marginal().max()), oracle=1.0 - float(self.noise), perfect=1.0,
            vocab=tuple(f"t{k}" for k in range(self.n_tokens)),
            classes=tuple(f"c{k}" for k in range(self.n_classes)),
            description="a class read off a single token"
                        + (f", labels flipped with probability {self.noise}" if self.noise else ""),
        )

    def _sample(self, n: int, rng: np.random.Generator) -> SeqData:
        x = rng.integers(0, self.n_tokens, size=n)
        y = self.table()[x]
        flipped = rng.random(n) < self.noise
        shift = rng.integers(1, self.n_classes, size=n)  # uniform over the other classes
        y = np.where(flipped, (y + shift) % self.n_classes, y)
        meta = pd.DataFrame({"token": x, "flipped": flipped})
        return SeqData(x[:, None].astype(np.int64), y[:, None].astype(np.int64),
                       np.ones((n, 1), dtype=bool), meta, input_size=self.n_tokens,
                       target_size=self.n_classes)

    def oracle_predict(self, data: SeqData) -> tuple[np.ndarray, np.ndarray]:
        """``f(x)`` and the true label probabilities given x, ((N, 1), (N, 1, n_classes))."""
        self.check()
        pred = self.table()[np.asarray(data.X)]  # (N, 1)
        C, eps = self.n_classes, float(self.noise)
        proba = np.full((*pred.shape, C), eps / (C - 1))
        np.put_along_axis(proba, pred[..., None], 1 - eps, axis=-1)  # P(y = f(x) | x) = 1 - eps
        return pred, proba
