"""The dishonest casino: decode which die was rolled, at every roll (synced many-to-many).

The HMM family's home turf, from Durbin, Eddy, Krogh & Mitchison (1998),
*Biological Sequence Analysis*, chapter 3 ("the occasionally dishonest casino").

Exact definition
----------------
* Two hidden states: ``0 = fair`` and ``1 = loaded``.
* The fair die shows each face with probability 1/6; the loaded die shows a six
  with probability ``p_six`` and each other face with ``(1 - p_six) / 5``.
* The casino switches fair -> loaded with probability ``p_fair_to_loaded`` (a) and
  loaded -> fair with ``p_loaded_to_fair`` (b) between rolls (defaults 0.05 and 0.1).
* The first state is drawn from the chain's stationary distribution
  ``pi = (b, a) / (a + b)``, so every roll is marginally stationary.
* Inputs: ``length`` rolls as tokens ``0..5`` (face minus one). Targets: the state
  at every roll; every step is scored.

Chance: an input-blind predictor sees every step's state distributed as ``pi``,
so its best accuracy is ``max(pi) = max(a, b) / (a + b)`` (2/3 for the defaults)
and its best cross-entropy the entropy of ``pi``.

Oracle: Viterbi decoding with the true parameters (``oracle_decoder="viterbi"``,
the default). Its accuracy has no closed form, so :meth:`DishonestCasino.spec`
reports its expected value estimated by Monte Carlo: the task's own generator on a
fixed seed (:data:`ORACLE_SEED`), about ``10^6`` rolls, cached per parameter set
(standard error about 1e-3). Viterbi reads the whole sequence, so it is not
reachable by a causal model, which at step t has seen only rolls ``0..t``; the
causal ceiling is the forward filter's decoding, ``argmax_s P(s_t | x_0..x_t)``
(``oracle_decoder="filter"``). :meth:`DishonestCasino.oracle_predict` gives the
chosen decoder's predictions on given data, with the matching state posteriors as
probabilities (forward-backward smoothing for Viterbi, filtering for the filter).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from ..data import SeqData, TaskSpec
from .base import MAX_LENGTH, Task, is_number

ORACLE_SEED = 20_240_611
ORACLE_ROLLS = 1_000_000
DECODERS = ("viterbi", "filter")


class DishonestCasino(Task):
    """Decode fair/loaded at every roll of a die that a casino sometimes swaps.

    Parameters
    ----------
    length : rolls per sequence (1 to 10**6).
    p_six : probability of a six on the loaded die (the other faces share the rest).
    p_fair_to_loaded, p_loaded_to_fair : switching probabilities between rolls.
    oracle_decoder : ``"viterbi"`` (the whole sequence; the issue's oracle) or
        ``"filter"`` (the causal ceiling) decides which decoder ``spec().oracle``
        and :meth:`oracle_predict` use. It does not change the data.

    Meta columns
    ------------
    One row per sequence:

    loaded_fraction : the fraction of that sequence's ``length`` rolls made with the
        loaded die (hidden state 1), a float in ``[0, 1]``. Not a slice: ``score`` reports
        no slices for this task.
    """

    name = "casino"
    version = 1

    def __init__(
        self,
        length: int = 100,
        p_six: float = 0.5,
        p_fair_to_loaded: float = 0.05,
        p_loaded_to_fair: float = 0.1,
        oracle_decoder: str = "viterbi",
    ) -> None:
        self.length = length
        self.p_six = p_six
        self.p_fair_to_loaded = p_fair_to_loaded
        self.p_loaded_to_fair = p_loaded_to_fair
        self.oracle_decoder = oracle_decoder

    def check(self) -> None:
        self._require_int("length", 1, MAX_LENGTH)
        self._require(is_number(self.p_six) and 0.0 <= self.p_six <= 1.0, "p_six",
                      "a probability in [0, 1]")
        self._require(self.p_six != 1 / 6, "p_six",
                      "a value other than 1/6 (the loaded die would equal the fair one)")
        for p in ("p_fair_to_loaded", "p_loaded_to_fair"):
            value = getattr(self, p)
            self._require(is_number(value) and 0.0 < value <= 1.0, p, "a probability in (0, 1]")
        self._require(self.oracle_decoder in DECODERS, "oracle_decoder",
                      f"one of {', '.join(DECODERS)}")

    # -- the true model ---------------------------------------------------------------
    def parameters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(pi, A, B)``: stationary start (2,), transitions (2, 2), emissions (2, 6)."""
        a, b = float(self.p_fair_to_loaded), float(self.p_loaded_to_fair)
        pi = np.array([b, a]) / (a + b)  # stationary: pi A = pi
        A = np.array([[1 - a, a], [b, 1 - b]])  # A[i, j] = P(s_{t+1} = j | s_t = i)
        B = np.vstack([np.full(6, 1 / 6), [*(5 * [(1 - self.p_six) / 5]), self.p_six]])
        return pi, A, B

    def spec(self) -> TaskSpec:
        self.check()
        pi, _, _ = self.parameters()
        return TaskSpec(
            name=self.name, version=self.version,
            input_kind="tokens", input_size=6, target_kind="classes", target_size=2,
            shape="many-to-many-synced", metric="accuracy", higher_is_better=True,
            chance=float(pi.max()),
            oracle=_oracle_accuracy(self.length, float(self.p_six), float(self.p_fair_to_loaded),
                                    float(self.p_loaded_to_fair), self.oracle_decoder),
            perfect=1.0,
            vocab=("1", "2", "3", "4", "5", "6"), classes=("fair", "loaded"),
            description="decode fair/loaded at every roll of the dishonest casino",
        )

    def _sample(self, n: int, rng: np.random.Generator) -> SeqData:
        pi, A, B = self.parameters()
        T = self.length
        S = np.empty((n, T), dtype=np.int64)  # hidden states
        S[:, 0] = rng.random(n) < pi[1]
        for t in range(1, T):
            # s_t = loaded with probability A[s_{t-1}, 1]
            S[:, t] = rng.random(n) < A[S[:, t - 1], 1]
        u = rng.random((n, T))
        cdf = np.cumsum(B, axis=1)  # (2, 6)
        X = (u[..., None] >= cdf[:, :5][S]).sum(-1).astype(np.int64)  # inverse-CDF draw, (N, T)
        meta = pd.DataFrame({"loaded_fraction": S.mean(axis=1)})
        return SeqData(X, S, np.ones((n, T), dtype=bool), meta, input_size=6, target_size=2)

    # -- decoders ---------------------------------------------------------------------
    def viterbi(self, X: np.ndarray) -> np.ndarray:
        """Most probable state path under the true parameters, (N, T) -> (N, T)."""
        pi, A, B = self.parameters()
        with np.errstate(divide="ignore"):
            lpi, lA, lB = np.log(pi), np.log(A), np.log(B)
        N, T = X.shape
        delta = lpi + lB[:, X[:, 0]].T  # delta_0(j) = log pi_j + log B_j(x_0), (N, 2)
        psi = np.zeros((N, T, 2), dtype=np.int64)
        for t in range(1, T):
            scores = delta[:, :, None] + lA  # delta_{t-1}(i) + log A_ij, (N, 2, 2)
            psi[:, t] = scores.argmax(axis=1)
            delta = scores.max(axis=1) + lB[:, X[:, t]].T  # + log B_j(x_t)
        path = np.empty((N, T), dtype=np.int64)
        path[:, -1] = delta.argmax(axis=1)
        rows = np.arange(N)
        for t in range(T - 1, 0, -1):
            path[:, t - 1] = psi[rows, t, path[:, t]]  # back-pointers
        return path

    def filter_proba(self, X: np.ndarray) -> np.ndarray:
        """Filtered posteriors ``P(s_t | x_0..x_t)`` under the true parameters, (N, T, 2)."""
        pi, A, B = self.parameters()
        N, T = X.shape
        out = np.empty((N, T, 2))
        alpha = pi * B[:, X[:, 0]].T  # alpha_0 = pi * B(x_0), (N, 2)
        for t in range(T):
            if t:
                alpha = (alpha @ A) * B[:, X[:, t]].T  # alpha_t = (alpha_{t-1} A) * B(x_t)
            alpha = alpha / alpha.sum(axis=1, keepdims=True)
            out[:, t] = alpha
        return out

    def smooth_proba(self, X: np.ndarray) -> np.ndarray:
        """Smoothed posteriors ``P(s_t | x_0..x_{T-1})`` (forward-backward), (N, T, 2)."""
        _, A, B = self.parameters()
        alpha = self.filter_proba(X)  # (N, T, 2)
        N, T = X.shape
        beta = np.ones((N, 2))
        out = np.empty((N, T, 2))
        for t in range(T - 1, -1, -1):
            g = alpha[:, t] * beta  # gamma_t ∝ alpha_t * beta_t
            out[:, t] = g / g.sum(axis=1, keepdims=True)
            if t:
                beta = (B[:, X[:, t]].T * beta) @ A.T  # beta_{t-1} = A (B(x_t) * beta_t)
                beta = beta / beta.sum(axis=1, keepdims=True)
        return out

    def oracle_predict(self, data: SeqData) -> tuple[np.ndarray, np.ndarray]:
        """The chosen decoder's states and the matching posteriors, ((N, T), (N, T, 2))."""
        self.check()
        X = np.asarray(data.X)
        if self.oracle_decoder == "filter":
            proba = self.filter_proba(X)
            return proba.argmax(-1), proba
        return self.viterbi(X), self.smooth_proba(X)


@lru_cache(maxsize=64)
def _oracle_accuracy(length: int, p_six: float, a: float, b: float, decoder: str) -> float:
    """Expected accuracy of the decoder under the true parameters: Monte Carlo on about
    ``ORACLE_ROLLS`` rolls drawn by the task's own generator from ``ORACLE_SEED``."""
    task = DishonestCasino(length, p_six, a, b, decoder)
    n = max(1, -(-ORACLE_ROLLS // length))
    data = task._sample(n, np.random.default_rng(ORACLE_SEED))
    if decoder == "filter":
        pred = task.filter_proba(data.X).argmax(-1)
    else:
        pred = task.viterbi(data.X)
    return float(np.mean(pred == data.Y))
