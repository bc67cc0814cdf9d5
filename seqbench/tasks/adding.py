"""The adding problem, in its two published forms (many-to-one, real inputs and target).

Every step carries a pair (value, marker); exactly two steps are marked and the
target, read at the last step of the sequence only, is a function of the two marked
values. The information must be carried from the marked steps to the end.

:class:`AddingProblem` (``adding``): Le, Jaitly & Hinton (2015), "A simple way to
initialize recurrent networks of rectified linear units", and Arjovsky, Shah &
Bengio (2016), "Unitary evolution recurrent neural networks".

:class:`AddingHS97` (``adding-hs97``): Hochreiter & Schmidhuber (1997), "Long
short-term memory", Neural Computation 9(8), experiment 4 ("adding problem").

Inputs are ``(N, T, 2)`` floats (column 0 the value, column 1 the marker); targets
``(N, T, 1)`` floats, scored (mask) at each sequence's last step only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import SeqData, TaskSpec
from .base import MAX_LENGTH, Task

N_LAG_BINS = 4


def lag_bins(lag: np.ndarray, lo: int, hi: int, n_bins: int = N_LAG_BINS) -> np.ndarray:
    """Lower edges of ``n_bins`` equal-width bins spanning the possible lags ``[lo, hi]``:
    the ``lag_bin`` meta column that long-range tasks with a spread of lags slice by."""
    width = max(1, -(-(hi - lo + 1) // n_bins))  # ceil((hi - lo + 1) / n_bins)
    return lo + ((np.asarray(lag) - lo) // width) * width


class AddingProblem(Task):
    """The adding problem of Le et al. (2015) and Arjovsky et al. (2016).

    Exact definition
    ----------------
    * Every sequence has ``length`` = T steps (2 to 10**6). Column 0 holds values drawn
      i.i.d. from U[0, 1]; column 1 is 0 except at two marked steps, where it is 1.
    * The first marked step p1 is uniform in the first half, ``[0, T // 2)``; the
      second p2 uniform in the second half, ``[T // 2, T)``.
    * The target at the last step is the sum of the two marked values,
      ``y = x[p1] + x[p2]`` (the other steps are not scored).

    Scores: the primary metric is the MSE at the last step. An input-blind
    predictor's best constant is E[y] = 1, whose MSE is Var(y) = 2 * (1/12) = 1/6
    (about 0.167, the baseline both papers plot); a perfect model scores 0.

    Meta columns
    ------------
    One row per sequence, all ints:

    lag : ``T - 1 - p1``, the steps the first marked value must be held before the
        answer at step ``T - 1``; in ``[T - T // 2, T - 1]``.
    gap : ``p2 - p1``, the steps between the two marked steps.
    p1, p2 : the two marked steps (0-based), in ``[0, T // 2)`` and ``[T // 2, T)``.
    lag_bin : the lower edge of ``lag``'s bin among four equal-width bins over the
        possible lags ``[T - T // 2, T - 1]`` (width ``ceil(n / 4)`` for the n possible
        lags, so the last bin may be narrower: 50, 63, 76, 89 for T = 100); the column
        ``score`` slices by.
    """

    name = "adding"
    version = 1

    def __init__(self, length: int = 100) -> None:
        self.length = length

    def check(self) -> None:
        self._require_int("length", 2, MAX_LENGTH)

    def spec(self) -> TaskSpec:
        self.check()
        return TaskSpec(
            name=self.name, version=self.version,
            input_kind="real", input_size=2, target_kind="real", target_size=1,
            shape="many-to-one", metric="mse", higher_is_better=False,
            chance=1.0 / 6.0, perfect=0.0, slice_by=("lag_bin",),
            description="sum of the two marked U[0,1] values, one marked in each half",
        )

    def _sample(self, n: int, rng: np.random.Generator) -> SeqData:
        T = self.length
        half = T // 2
        X = np.zeros((n, T, 2))  # (N, T, 2)
        X[:, :, 0] = rng.uniform(0.0, 1.0, size=(n, T))
        p1 = rng.integers(0, half, size=n)
        p2 = rng.integers(half, T, size=n)
        rows = np.arange(n)
        X[rows, p1, 1] = 1.0
        X[rows, p2, 1] = 1.0
        Y = np.zeros((n, T, 1))  # (N, T, 1)
        Y[:, T - 1, 0] = X[rows, p1, 0] + X[rows, p2, 0]  # y = x[p1] + x[p2]
        mask = np.zeros((n, T), dtype=bool)
        mask[:, T - 1] = True
        lag = T - 1 - p1
        meta = pd.DataFrame({"lag": lag, "gap": p2 - p1, "p1": p1, "p2": p2,
                             "lag_bin": lag_bins(lag, T - half, T - 1)})
        return SeqData(X, Y, mask, meta, input_size=2, target_size=1)

    def oracle_predict(self, data: SeqData) -> tuple[np.ndarray, None]:
        """The exact sum of the values whose marker is 1, at every step's prefix."""
        marked = data.X[:, :, 0] * (data.X[:, :, 1] == 1.0)  # (N, T)
        return np.cumsum(marked, axis=1)[:, :, None], None  # (N, T, 1)


class AddingHS97(Task):
    """The adding problem as in Hochreiter & Schmidhuber (1997), experiment 4.

    Exact definition
    ----------------
    * Each sequence's length is an integer drawn uniformly from
      ``[T, T + T // 10]`` (``T = length``, 20 to 10**6); shorter sequences are
      right-padded with zeros and never scored there.
    * Column 0 holds values drawn i.i.d. from U[-1, 1]. Column 1, the marker, is
      1.0 at the two marked steps, -1.0 at the first and at the last step of the
      sequence when they are not marked, and 0.0 elsewhere.
    * Marking: p1 is uniform among the first ten steps ``[0, 10)``; p2 is uniform
      among the first ``T // 2 - 1`` steps that are still unmarked (the steps
      ``[0, T // 2)`` less p1, or ``[1, T // 2)`` when p1 = 0).
    * The paper sets X1 to zero "in the rare case where the first pair of the
      sequence got marked"; here the value at step 0 is set to 0.0 whenever step 0
      is marked (by p1, or by p2 — which the paper's wording does not rule out),
      so the target is always ``y = 0.5 + (x[p1] + x[p2]) / 4`` over the values as
      given in the input: 0.5 plus a quarter of the sum of the values marked 1.0.

    Scores: the primary metric is the MSE at each sequence's last step. The best
    input-blind constant is E[y] = 0.5, with MSE ``E[S^2] / 16`` where S is the sum
    of the marked values: with ``q`` = P(step 0 is marked)
    ``= 1/10 + (9/10) / (T // 2 - 1)``, ``E[S^2] = (1 - q) * 2/3 + q * 1/3``
    (19/480 minus a little for large T; 0.03920 for T = 100). The paper's pass
    rule is the extra metric ``hs97_correct``: the fraction of sequences whose
    absolute error at the end is below 0.04. The constant 0.5 passes it with
    probability ``(1 - q) * (a - a^2 / 4) + q * a`` for ``a = 0.16`` (``|S| < 0.16``;
    S's density is triangular on [-2, 2] when both values are free).

    Meta columns
    ------------
    One row per sequence, all ints:

    length : that sequence's length L in steps, uniform in ``[T, T + T // 10]``.
    p1, p2 : the two marked steps (0-based): p1 in ``[0, 10)``, p2 in ``[0, T // 2)``
        and other than p1 (so p2 may come before p1).
    lag : ``L - 1 - p1``, the steps the value at p1 is held before the answer at step
        ``L - 1``; in ``[T - 10, T + T // 10 - 1]``.
    lag_bin : the lower edge of ``lag``'s bin among four equal-width bins over those
        possible lags (width ``ceil(n / 4)`` for the n possible lags, the last bin
        possibly narrower: 90, 95, 100, 105 for T = 100); the column ``score`` slices by.
    """

    name = "adding-hs97"
    version = 1

    def __init__(self, length: int = 100) -> None:
        self.length = length

    def check(self) -> None:
        self._require_int("length", 20, MAX_LENGTH,
                          " (p1 in the first ten steps, p2 in the first T // 2)")

    @property
    def q_first_marked(self) -> float:
        """P(step 0 is marked) = P(p1 = 0) + P(p1 != 0) P(p2 = 0)."""
        return 0.1 + 0.9 / (self.length // 2 - 1)

    def chance_mse(self) -> float:
        q = self.q_first_marked
        e_s2 = (1 - q) * 2.0 / 3.0 + q / 3.0  # E[S^2]: Var U[-1,1] = 1/3 per free value
        return e_s2 / 16.0  # Var(0.5 + S / 4)

    def chance_hs97_correct(self) -> float:
        """P(|y - 0.5| < 0.04) = P(|S| < 0.16) for the constant predictor 0.5."""
        q, a = self.q_first_marked, 0.16
        return (1 - q) * (a - a * a / 4) + q * a

    def spec(self) -> TaskSpec:
        self.check()
        return TaskSpec(
            name=self.name, version=self.version,
            input_kind="real", input_size=2, target_kind="real", target_size=1,
            shape="many-to-one", metric="mse", higher_is_better=False,
            chance=self.chance_mse(), perfect=0.0, slice_by=("lag_bin",),
            description="0.5 + (X1 + X2) / 4 of two marked U[-1,1] values (H&S 1997 exp. 4)",
        )

    def _sample(self, n: int, rng: np.random.Generator) -> SeqData:
        T = self.length
        T_max = T + T // 10
        X = np.zeros((n, T_max, 2))  # (N, T, 2)
        Y = np.zeros((n, T_max, 1))  # (N, T, 1)
        mask = np.zeros((n, T_max), dtype=bool)
        rows = []
        n_cand = T // 2 - 1
        for i in range(n):
            L = int(rng.integers(T, T_max + 1))
            X[i, :L, 0] = rng.uniform(-1.0, 1.0, size=L)
            p1 = int(rng.integers(0, 10))
            # p2: the r-th of the first T/2-1 unmarked steps, [0, T // 2) less p1
            r = int(rng.integers(n_cand))
            p2 = r if r < p1 else r + 1
            X[i, 0, 1] = -1.0
            X[i, L - 1, 1] = -1.0
            X[i, [p1, p2], 1] = 1.0
            if 0 in (p1, p2):
                X[i, 0, 0] = 0.0  # the paper's rule for a marked first pair
            Y[i, L - 1, 0] = 0.5 + (X[i, p1, 0] + X[i, p2, 0]) / 4.0  # y = 0.5 + (X1 + X2) / 4
            mask[i, L - 1] = True
            rows.append({"length": L, "p1": p1, "p2": p2, "lag": L - 1 - p1})
        meta = pd.DataFrame(rows)
        meta["lag_bin"] = lag_bins(meta["lag"].to_numpy(), T - 10, T_max - 1)
        return SeqData(X, Y, mask, meta, input_size=2, target_size=1)

    def extra_metrics(self, data, pred, proba) -> dict[str, float]:
        err = np.abs(pred[data.mask] - data.Y[data.mask])[:, 0]  # (M,)
        return {"hs97_correct": float(np.mean(err < 0.04))}

    def oracle_predict(self, data: SeqData) -> tuple[np.ndarray, None]:
        """0.5 + a quarter of the running sum of the values marked 1.0."""
        marked = data.X[:, :, 0] * (data.X[:, :, 1] == 1.0)  # (N, T)
        return (0.5 + np.cumsum(marked, axis=1) / 4.0)[:, :, None], None  # (N, T, 1)
