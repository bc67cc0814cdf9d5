"""Cue generation: emit a symbol sequence determined by a single cue (one-to-many).

The one-to-many shape of the lecture (one input, a sequence of outputs, as in
image captioning or music generation from a seed), with the horizon as a knob.

Exact definition
----------------
* A table of ``n_cues`` symbol sequences of ``length - 1`` symbols from an alphabet
  of ``n_cues`` symbols is fixed by ``table_seed``: column j of the table is
  ``np.random.default_rng(table_seed)``'s (j+1)-th ``permutation(n_cues)``, so at
  every step each symbol belongs to exactly one cue (the columns form a Latin
  rectangle) and any two cues differ at every step. The columns are drawn in step
  order, so a longer table extends a shorter one.
* Each sequence draws a cue ``k`` uniformly; input step 0 is the cue token ``k + 1``,
  every later input is the blank token 0; ``X`` is ``(N, length)`` tokens.
* Targets: ``Y[t] = table[k, t - 1]`` for ``t = 1..length-1``, all scored; step 0
  (the cue) is not scored. ``meta`` holds each sequence's ``cue``.

The target at step t depends on nothing but the cue and t, so a model must carry
the cue for ``length - 1`` steps; a perfect score is 1. Chance: at every step the
symbol is uniform over the ``n_cues`` symbols (one per cue, cues uniform), so every
input-blind predictor, per-step or constant, scores exactly ``1 / n_cues``
(cross-entropy ``log n_cues``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import SeqData, TaskSpec
from .base import MAX_LENGTH, Task, is_int

BLANK = 0


class CueGeneration(Task):
    """Generate the cue's symbol sequence after seeing only the cue (one-to-many).

    Parameters
    ----------
    n_cues : number of cues, and of symbols (2 to 64); chance accuracy is ``1/n_cues``.
    length : steps per sequence: the cue and ``length - 1`` outputs (2 to 10**6).
    table_seed : seed of the fixed cue -> sequence table.

    Meta columns
    ------------
    One row per sequence:

    cue : the cue k drawn for that sequence (int, 0-based, in ``[0, n_cues)``; its input
        token at step 0 is ``k + 1``); the column ``score`` slices by.
    """

    name = "cue-generation"
    version = 1

    def __init__(self, n_cues: int = 4, length: int = 20, table_seed: int = 0) -> None:
        self.n_cues = n_cues
        self.length = length
        self.table_seed = table_seed

    def check(self) -> None:
        self._require(is_int(self.n_cues) and 2 <= self.n_cues <= 64, "n_cues",
                      "an int in [2, 64]")
        self._require_int("length", 2, MAX_LENGTH)
        self._require(is_int(self.table_seed) and self.table_seed >= 0, "table_seed",
                      "an int >= 0")

    def table(self) -> np.ndarray:
        """The cue -> symbol sequence table, (n_cues, length - 1)."""
        rng = np.random.default_rng(self.table_seed)
        cols = [rng.permutation(self.n_cues) for _ in range(self.length - 1)]
        return np.stack(cols, axis=1).astype(np.int64)

    def spec(self) -> TaskSpec:
        self.check()
        return TaskSpec(
            name=self.name, version=self.version,
            input_kind="tokens", input_size=self.n_cues + 1,
            target_kind="classes", target_size=self.n_cues,
            shape="one-to-many", metric="accuracy", higher_is_better=True,
            chance=1.0 / self.n_cues, perfect=1.0, slice_by=("cue",),
            vocab=("<blank>", *(f"cue{k}" for k in range(self.n_cues))),
            classes=tuple(f"s{k}" for k in range(self.n_cues)),
            description=f"emit one of {self.n_cues} fixed {self.length - 1}-symbol sequences "
                        "from a cue seen at step 0",
        )

    def _sample(self, n: int, rng: np.random.Generator) -> SeqData:
        T = self.length
        cue = rng.integers(0, self.n_cues, size=n)
        X = np.full((n, T), BLANK, dtype=np.int64)
        X[:, 0] = cue + 1  # the cue token; blanks after it
        Y = np.zeros((n, T), dtype=np.int64)
        Y[:, 1:] = self.table()[cue]  # Y[t] = table[k, t - 1]
        mask = np.ones((n, T), dtype=bool)
        mask[:, 0] = False
        return SeqData(X, Y, mask, pd.DataFrame({"cue": cue}), input_size=self.n_cues + 1,
                       target_size=self.n_cues)
