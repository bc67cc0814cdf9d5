"""Two-sequence / latch problem (many-to-one): keep one bit through a long noisy input.

Sources: Bengio, Simard & Frasconi (1994), "Learning long-term dependencies with
gradient descent is difficult" (the "two-sequence problem" and the latch), in the
form of Hochreiter & Schmidhuber (1997), "Long short-term memory", the experiment
on noise and signal on the same channel (tasks 3a and 3b; the project's issue
cites it as experiment 2).

Exact definition
----------------
One real input line, ``(N, T, 1)``. Two classes, each with probability 1/2.

* With ``T = length``, each sequence's length L is drawn uniformly from
  ``[T, T + T // 10]`` (H&S's variation of Bengio et al.'s fixed length); shorter
  sequences are right-padded with zeros and never scored there.
* The first ``n_info`` elements carry the class: 1.0 for class 1, -1.0 for
  class 0. With ``info_noise=True`` (task 3b) Gaussian noise of mean 0 and variance
  ``noise_var`` is added to them too (task 3a: none).
* Every later element is Gaussian noise of mean 0 and variance ``noise_var``
  (0.2 in the paper).
* The target at the last element (the only scored one) is the class; H&S's
  regression targets 1.0 (class 1) and 0.0 (class 0) are the class ids here.

Scores: primary metric accuracy; chance 1/2. The oracle is the Bayes posterior
from the first ``n_info`` elements: exact for 3a (accuracy 1); for 3b the sum s of
those elements is N(+-n_info, n_info * noise_var), so the Bayes accuracy is
``Phi(sqrt(n_info / noise_var))`` (0.98733 for n_info = 1, variance 0.2) and the
posterior is ``P(class 1) = sigmoid(2 s / noise_var)``. H&S's pass rule, "absolute
output error at the sequence end below 0.2" with output = P(class 1), is the extra
metric ``hs97_correct``: the fraction of sequences whose predicted probability of
the true class exceeds 0.8 (it needs ``predict_proba``; absent without it).

``meta``: ``length`` (L), ``lag`` = L - n_info (steps from the last informative
element to the answer), ``lag_bin`` (four equal-width bins over the possible lags).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..data import SeqData, TaskSpec
from .adding import lag_bins
from .base import MAX_LENGTH, MAX_SCALE, Task


class Latch(Task):
    """Classify by the sign of the first ``n_info`` elements of a long noisy sequence.

    Parameters
    ----------
    length : T (``n_info + 1`` to 10**6); lengths are uniform in ``[T, T + T // 10]``.
    n_info : how many leading elements carry the class (1 or 3 in the paper).
    info_noise : add the noise to the informative elements too (task 3b).
    noise_var : variance of the Gaussian noise (0.2 in the paper), a finite number in
        ``(0, 1e6]``.

    Meta columns
    ------------
    One row per sequence, all ints:

    length : that sequence's length L in steps, uniform in ``[T, T + T // 10]``.
    lag : ``L - n_info``, the steps from the last informative element (step
        ``n_info - 1``, 0-based) to the answer at the last element (step ``L - 1``); in
        ``[T - n_info, T + T // 10 - n_info]``.
    lag_bin : the lower edge of ``lag``'s bin among four equal-width bins over those
        possible lags (width ``ceil(n / 4)`` for the n possible lags, the last bin
        possibly narrower: 99, 102, 105, 108 at the defaults); the column ``score``
        slices by.
    """

    name = "latch"
    version = 1

    def __init__(self, length: int = 100, n_info: int = 1, info_noise: bool = False,
                 noise_var: float = 0.2) -> None:
        self.length = length
        self.n_info = n_info
        self.info_noise = info_noise
        self.noise_var = noise_var

    def check(self) -> None:
        self._require_int("n_info", 1, MAX_LENGTH - 1)
        self._require_int("length", self.n_info + 1, MAX_LENGTH,
                          f" (above n_info = {self.n_info})")
        self._require(isinstance(self.info_noise, bool), "info_noise", "True or False")
        self._require_number("noise_var", 0, MAX_SCALE, open_lo=True)

    def oracle_accuracy(self) -> float:
        if not self.info_noise:
            return 1.0
        z = math.sqrt(self.n_info / self.noise_var)
        return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))  # Phi(sqrt(n_info / noise_var))

    def spec(self) -> TaskSpec:
        self.check()
        return TaskSpec(
            name=self.name, version=self.version,
            input_kind="real", input_size=1, target_kind="classes", target_size=2,
            shape="many-to-one", metric="accuracy", higher_is_better=True,
            chance=0.5, oracle=self.oracle_accuracy(), perfect=1.0, slice_by=("lag_bin",),
            classes=("class 0 (-1.0)", "class 1 (+1.0)"),
            description="the sign of the first elements of a long noisy sequence "
                        "(Bengio et al. 1994; H&S 1997 tasks 3a/3b)",
        )

    def _sample(self, n: int, rng: np.random.Generator) -> SeqData:
        T, k = self.length, self.n_info
        T_max = T + T // 10
        sd = math.sqrt(self.noise_var)
        X = np.zeros((n, T_max, 1))  # (N, T, 1)
        Y = np.zeros((n, T_max), dtype=np.int64)
        mask = np.zeros((n, T_max), dtype=bool)
        lengths = np.empty(n, dtype=np.int64)
        for i in range(n):
            L = int(rng.integers(T, T_max + 1))
            cls = int(rng.integers(2))
            X[i, :L, 0] = rng.normal(0.0, sd, size=L)  # noise of variance noise_var
            if self.info_noise:
                X[i, :k, 0] += 1.0 if cls else -1.0  # +-1 + noise (task 3b)
            else:
                X[i, :k, 0] = 1.0 if cls else -1.0  # +-1 exactly (task 3a)
            Y[i, L - 1] = cls
            mask[i, L - 1] = True
            lengths[i] = L
        lag = lengths - k
        meta = pd.DataFrame({"length": lengths, "lag": lag,
                             "lag_bin": lag_bins(lag, T - k, T_max - k)})
        return SeqData(X, Y, mask, meta, input_size=1, target_size=2)

    def extra_metrics(self, data, pred, proba) -> dict[str, float]:
        if proba is None:
            return {}
        y = data.Y[data.mask]
        p_true = proba[data.mask][np.arange(len(y)), y]  # (M,)
        return {"hs97_correct": float(np.mean(p_true > 0.8))}

    def oracle_predict(self, data: SeqData) -> tuple[np.ndarray, np.ndarray]:
        """Bayes posterior from the first ``n_info`` elements, at every step."""
        s = data.X[:, : self.n_info, 0].sum(axis=1)  # (N,)
        if self.info_noise:
            p1 = 1.0 / (1.0 + np.exp(-2.0 * s / self.noise_var))  # sigmoid(2 s / var)
        else:
            p1 = (s > 0).astype(float)
        N, T = data.X.shape[:2]
        proba = np.empty((N, T, 2))
        proba[:, :, 1] = p1[:, None]
        proba[:, :, 0] = 1.0 - p1[:, None]
        return proba.argmax(-1), proba
