"""Temporal order (many-to-one): classify a sequence by the order of widely separated
X/Y symbols among distractors.

Source: Hochreiter & Schmidhuber (1997), "Long short-term memory", Neural
Computation 9(8), experiment 6 (6a: two relevant symbols, 4 classes; 6b: three
relevant symbols, 8 classes).

Exact definition
----------------
Tokens: ``<pad>`` (0), the distractors ``a b c d``, the relevant symbols ``X Y``,
the start symbol ``E`` and the end ("trigger") symbol ``B``: 8 symbols as in the
paper plus padding.

* With ``T = length`` (100 in the paper), each sequence's length L is drawn
  uniformly from ``[T, T + T // 10]`` (100 to 110); shorter sequences are
  right-padded and never scored there.
* Element 1 is ``E``, element L is ``B``; every other element is a distractor
  drawn uniformly from ``a b c d``, except the ``relevant`` (2 or 3) elements at
  positions t1 < t2 (< t3), each ``X`` or ``Y`` with equal chance. Positions are
  1-based as in the paper and drawn uniformly from (for T = 100, the paper's):

  - 6a (``relevant=2``): t1 in [10, 20], t2 in [50, 60];
  - 6b (``relevant=3``): t1 in [10, 20], t2 in [33, 43], t3 in [66, 76].

  For other T every bound is scaled: ``round(b * T / 100)``.
* The class, read at the last element only, is the X/Y pattern read as a binary
  number with X = 0, Y = 1 and the first symbol most significant: 6a's
  ``XX XY YX YY`` are the paper's Q R S U (0..3), 6b's ``XXX .. YYY`` its
  Q R S U V A B C (0..7).

Scores: primary metric accuracy; the classes are equally likely, so chance is
``1 / 2**relevant`` (cross-entropy ``relevant * log 2``) and a perfect model scores
1. The paper's pass rule ("classified correctly if the final absolute error of all
output units is below 0.3") is the extra metric ``hs97_correct``: the fraction of
sequences where every predicted class probability is within 0.3 of the one-hot
target (it needs ``predict_proba``; absent without it).

``meta``: ``length`` (L), ``t1``, ``t2`` (``t3``), ``pattern`` (e.g. ``"XY"``),
``lag`` = L - t1 (steps from the first relevant symbol to the answer) and
``lag_bin`` (four equal-width bins over the possible lags).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import SeqData, TaskSpec, one_hot
from .adding import lag_bins
from .base import MAX_LENGTH, Task, is_int

VOCAB = ("<pad>", "a", "b", "c", "d", "X", "Y", "E", "B")
PAD, X_TOK, Y_TOK, START, END = 0, 5, 6, 7, 8
DISTRACTORS = (1, 2, 3, 4)
# the paper's position ranges for T = 100 (1-based, inclusive)
POSITIONS = {2: ((10, 20), (50, 60)), 3: ((10, 20), (33, 43), (66, 76))}
CLASS_NAMES = {2: ("Q", "R", "S", "U"), 3: ("Q", "R", "S", "U", "V", "A", "B", "C")}


class TemporalOrder(Task):
    """Classify by the temporal order of 2 (6a) or 3 (6b) X/Y symbols among distractors.

    Parameters
    ----------
    length : T (20 to 10**6); lengths are uniform in ``[T, T + T // 10]`` and positions
        scale with T.
    relevant : 2 (experiment 6a, 4 classes) or 3 (6b, 8 classes).

    Meta columns
    ------------
    One row per sequence:

    length : that sequence's length L in steps (int), uniform in ``[T, T + T // 10]``.
    t1, t2 (and t3 with ``relevant=3``) : the positions of the relevant X/Y symbols
        (ints), 1-based as in the paper (the symbol at ``t`` is ``X[t - 1]``), each drawn
        uniformly from its range in :meth:`position_ranges`.
    pattern : the relevant symbols in order, as a string (``"XY"``, ``"YXX"``, ...);
        read as a binary number with X = 0, Y = 1, first symbol most significant, it is
        the class.
    lag : ``L - t1`` (int), the steps from the first relevant symbol to the last element,
        where the class is read.
    lag_bin : the lower edge of ``lag``'s bin among four equal-width bins (width
        ``ceil(n / 4)`` for the n possible lags, the last bin possibly narrower) over the
        possible lags ``[T - b1, T + T // 10 - a1]``, with ``[a1, b1]`` the range of t1:
        lags 80 to 100 and bins 80, 86, 92, 98 for T = 100; the column ``score`` slices
        by.
    """

    name = "temporal-order"
    version = 1

    def __init__(self, length: int = 100, relevant: int = 2) -> None:
        self.length = length
        self.relevant = relevant

    def check(self) -> None:
        self._require(is_int(self.relevant) and self.relevant in (2, 3), "relevant",
                      "2 (experiment 6a) or 3 (6b)")
        self._require_int("length", 20, MAX_LENGTH,
                          " (so the scaled position ranges stay apart)")

    def position_ranges(self) -> list[tuple[int, int]]:
        """The 1-based inclusive ranges of t1, t2 (, t3) for this ``length``."""
        s = self.length / 100.0
        return [(int(round(lo * s)), int(round(hi * s))) for lo, hi in POSITIONS[self.relevant]]

    def spec(self) -> TaskSpec:
        self.check()
        k = 2**self.relevant
        return TaskSpec(
            name=self.name, version=self.version,
            input_kind="tokens", input_size=len(VOCAB),
            target_kind="classes", target_size=k,
            shape="many-to-one", metric="accuracy", higher_is_better=True,
            chance=1.0 / k, perfect=1.0, slice_by=("lag_bin",),
            vocab=VOCAB, classes=CLASS_NAMES[self.relevant],
            description=f"order of {self.relevant} X/Y symbols among distractors "
                        "(H&S 1997 exp. 6)",
        )

    def _sample(self, n: int, rng: np.random.Generator) -> SeqData:
        T = self.length
        T_max = T + T // 10
        ranges = self.position_ranges()
        X = np.full((n, T_max), PAD, dtype=np.int64)  # (N, T)
        Y = np.zeros((n, T_max), dtype=np.int64)
        mask = np.zeros((n, T_max), dtype=bool)
        rows = []
        for i in range(n):
            L = int(rng.integers(T, T_max + 1))
            X[i, :L] = rng.choice(DISTRACTORS, size=L)
            X[i, 0], X[i, L - 1] = START, END
            pos = [int(rng.integers(lo, hi + 1)) for lo, hi in ranges]  # 1-based
            bits = [int(b) for b in rng.integers(0, 2, size=self.relevant)]  # 0 = X, 1 = Y
            for t, b in zip(pos, bits):
                X[i, t - 1] = Y_TOK if b else X_TOK
            cls = int(sum(b << (self.relevant - 1 - j) for j, b in enumerate(bits)))
            Y[i, L - 1] = cls
            mask[i, L - 1] = True
            row = {"length": L, **{f"t{j + 1}": t for j, t in enumerate(pos)},
                   "pattern": "".join("Y" if b else "X" for b in bits), "lag": L - pos[0]}
            rows.append(row)
        meta = pd.DataFrame(rows)
        lo = T - ranges[0][1]
        hi = T_max - ranges[0][0]
        meta["lag_bin"] = lag_bins(meta["lag"].to_numpy(), lo, hi)
        return SeqData(X, Y, mask, meta, input_size=len(VOCAB), target_size=2**self.relevant)

    def extra_metrics(self, data, pred, proba) -> dict[str, float]:
        if proba is None:
            return {}
        p = proba[data.mask]  # (M, K)
        target = np.eye(p.shape[1])[data.Y[data.mask]]  # (M, K) one-hot
        return {"hs97_correct": float(np.mean(np.all(np.abs(p - target) < 0.3, axis=1)))}

    def oracle_predict(self, data: SeqData) -> tuple[np.ndarray, np.ndarray]:
        """The class read off the sequence's X/Y symbols, one-hot (the same at every step;
        only the last step is scored)."""
        N, T = data.X.shape
        k = 2**self.relevant
        pred = np.zeros((N, T), dtype=np.int64)
        for i in range(N):
            bits = [int(x == Y_TOK) for x in data.X[i] if x in (X_TOK, Y_TOK)]
            cls = sum(b << (self.relevant - 1 - j) for j, b in enumerate(bits))
            pred[i] = cls
        return pred, one_hot(pred, k)
