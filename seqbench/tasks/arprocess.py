"""One-step-ahead forecasting of a stationary autoregressive process.

The AR family's home turf (Box & Jenkins; Hamilton 1994, *Time Series Analysis*,
chapters 3-4).

Exact definition
----------------
* ``y_t = phi_1 y_{t-1} + ... + phi_p y_{t-p} + e_t`` with ``e_t ~ N(0, noise_std^2)``
  and ``phi = coefs`` (the process must be stationary: every root of
  ``1 - phi_1 z - ... - phi_p z^p`` outside the unit circle).
* The first p values are drawn from the stationary distribution, ``N(0, Gamma_p)``,
  with ``Gamma_p`` the stationary covariance of ``(y_t, ..., y_{t-p+1})`` (the
  solution of the discrete Lyapunov equation of the companion form), so every
  sequence is exactly stationary from its first step; no burn-in.
* ``length + 1`` values ``y_0..y_length`` are drawn; inputs ``X[t] = y_t`` and targets
  ``Y[t] = y_{t+1}`` for ``t = 0..length-1`` (a forecasting task: ``Y[t] = X[t+1]``),
  both ``(N, T, 1)``.
* Scored steps: ``t >= p - 1``, where p past values are available, so the oracle's
  error is exactly the innovation ``e_{t+1}``.

Chance: the best input-blind predictor is the mean 0, with expected MSE the series
variance ``gamma_0 = Gamma_p[0, 0]``. Oracle: the one-step predictions with the true
coefficients, ``sum_i phi_i y_{t+1-i}``, with expected MSE ``noise_std^2``.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_discrete_lyapunov

from ..data import SeqData, TaskSpec
from .base import Task


class ARProcess(Task):
    """Forecast a stationary AR(p) process one step ahead.

    Parameters
    ----------
    coefs : the AR coefficients ``(phi_1, ..., phi_p)`` (stationary).
    noise_std : standard deviation of the innovations.
    length : steps per sequence (forecasts per sequence, scored from step p - 1 on).
    """

    name = "ar-process"
    version = 1

    def __init__(
        self,
        coefs: tuple = (0.5, 0.3, -0.4),
        noise_std: float = 1.0,
        length: int = 100,
    ) -> None:
        self.coefs = coefs
        self.noise_std = noise_std
        self.length = length

    @property
    def order(self) -> int:
        return len(self.coefs)

    def check(self) -> None:
        ok = isinstance(self.coefs, tuple | list) and len(self.coefs) >= 1 and all(
            _is_number(c) for c in self.coefs
        )
        self._require(ok, "coefs", "a non-empty list of finite numbers")
        self._require(_is_number(self.noise_std) and self.noise_std > 0, "noise_std",
                      "a number > 0")
        self._require(isinstance(self.length, int) and self.length >= self.order, "length",
                      f"an int >= the order {self.order}")
        radius = np.abs(np.linalg.eigvals(self.companion())).max()
        self._require(radius < 1 - 1e-6, "coefs",
                      f"stationary coefficients (companion spectral radius {radius:.4g} >= 1)")

    def companion(self) -> np.ndarray:
        """Companion matrix: ``s_t = Phi s_{t-1} + (e_t, 0, ..)``, ``s_t = (y_t..y_{t-p+1})``."""
        p = self.order
        Phi = np.zeros((p, p))
        Phi[0] = np.asarray(self.coefs, dtype=float)
        Phi[1:, :-1] = np.eye(p - 1)
        return Phi

    def stationary_cov(self) -> np.ndarray:
        """``Gamma_p``: solves ``Gamma = Phi Gamma Phi' + Q``, ``Q = diag(noise_std^2, 0, ...)``."""
        p = self.order
        Q = np.zeros((p, p))
        Q[0, 0] = float(self.noise_std) ** 2
        return solve_discrete_lyapunov(self.companion(), Q)

    def autocovariances(self, k: int) -> np.ndarray:
        """``gamma_0..gamma_k`` of the stationary process, (k + 1,)."""
        phi = np.asarray(self.coefs, dtype=float)
        p = self.order
        g = list(self.stationary_cov()[0, :p])  # gamma_0..gamma_{p-1}
        while len(g) <= k:
            j = len(g)
            g.append(float(phi @ np.array(g[j - p: j][::-1])))  # gamma_j = sum_i phi_i gamma_{j-i}
        return np.asarray(g[: k + 1])

    def spec(self) -> TaskSpec:
        self.check()
        return TaskSpec(
            name=self.name, version=self.version,
            input_kind="real", input_size=1, target_kind="real", target_size=1,
            shape="many-to-many-synced", metric="mse", higher_is_better=False,
            chance=float(self.stationary_cov()[0, 0]),
            oracle=float(self.noise_std) ** 2,
            perfect=0.0, forecasting=True,
            description=f"one-step-ahead forecasting of an AR({self.order}) process",
        )

    def _sample(self, n: int, rng: np.random.Generator) -> SeqData:
        p, T = self.order, self.length
        phi = np.asarray(self.coefs, dtype=float)
        y = np.empty((n, T + 1))
        L = np.linalg.cholesky(self.stationary_cov() + 1e-12 * np.eye(p))
        s = rng.standard_normal((n, p)) @ L.T  # s_{p-1} = (y_{p-1}, ..., y_0) ~ N(0, Gamma_p)
        y[:, :p] = s[:, ::-1]
        e = rng.standard_normal((n, T + 1)) * self.noise_std
        for t in range(p, T + 1):
            y[:, t] = y[:, t - p: t][:, ::-1] @ phi + e[:, t]  # y_t = sum_i phi_i y_{t-i} + e_t
        mask = np.zeros((n, T), dtype=bool)
        mask[:, p - 1:] = True
        return SeqData(y[:, :T, None], y[:, 1:, None], mask, input_size=1, target_size=1,
                       forecasting=True)

    def oracle_predict(self, data: SeqData) -> tuple[np.ndarray, None]:
        """Best predictions of ``y_{t+1}`` from ``y_0..y_t`` with the true model, (N, T, 1).

        From step p - 1 on they are ``sum_i phi_i y_{t+1-i}``; before it (unscored), the
        best linear predictor from the shorter history, ``r' Gamma_{t+1}^{-1} (y_t..y_0)``.
        """
        self.check()
        y = np.asarray(data.X, dtype=float)[..., 0]  # (N, T)
        N, T = y.shape
        p = self.order
        phi = np.asarray(self.coefs, dtype=float)
        g = self.autocovariances(p)
        out = np.empty((N, T))
        for t in range(min(p - 1, T)):
            k = t + 1  # history y_t..y_0
            G = g[np.abs(np.subtract.outer(np.arange(k), np.arange(k)))]  # Toeplitz Gamma_k
            c = np.linalg.solve(G, g[1: k + 1])
            out[:, t] = y[:, t::-1] @ c
        for t in range(p - 1, T):
            out[:, t] = y[:, t - p + 1: t + 1][:, ::-1] @ phi  # sum_i phi_i y_{t+1-i}
        return out[..., None], None


def _is_number(value) -> bool:
    """A finite real number (not a bool): what a numeric parameter must be."""
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)
