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

import warnings

import numpy as np
from scipy.linalg import LinAlgWarning, solve_discrete_lyapunov

from ..data import SeqData, TaskSpec
from .base import MAX_LENGTH, MAX_SCALE, Task, is_number

#: the highest AR order (the oracle's early-step solves cost O(p^4) in all)
MAX_ORDER = 100
#: the lowest innovation standard deviation: the first p values are drawn with a 1e-12
#: jitter on their covariance, negligible against noise_std^2 from here on
MIN_NOISE_STD = 1e-3
#: the largest stationary variance gamma_0 (so the data and their squares stay finite)
MAX_VARIANCE = 1e100


class ARProcess(Task):
    """Forecast a stationary AR(p) process one step ahead.

    Parameters
    ----------
    coefs : the AR coefficients ``(phi_1, ..., phi_p)``, order p from 1 to 100:
        stationary (companion spectral radius below 1 - 1e-6) and far enough from a unit
        root that the computed ``Gamma_p`` is positive definite, ``gamma_0`` at most 1e100.
    noise_std : standard deviation of the innovations, in ``[1e-3, 1e6]``.
    length : steps per sequence (forecasts per sequence, scored from step p - 1 on),
        from p to 10**6.

    Meta columns
    ------------
    None: ``meta`` has one row per sequence and no columns, so ``score`` reports no
    slices for this task.
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
        ok = isinstance(self.coefs, tuple | list) and 1 <= len(self.coefs) <= MAX_ORDER and all(
            is_number(c) and abs(c) < 1e300 for c in self.coefs  # floats, not huge ints
        )
        self._require(ok, "coefs", f"a list of 1 to {MAX_ORDER} finite numbers")
        self._require_number("noise_std", MIN_NOISE_STD, MAX_SCALE)
        self._require_int("length", self.order, MAX_LENGTH, " (at least the order)")
        radius = np.abs(np.linalg.eigvals(self.companion())).max()
        self._require(radius < 1 - 1e-6, "coefs",
                      f"stationary coefficients (companion spectral radius {radius:.4g} >= 1)")
        # near a unit root the Lyapunov solve loses its accuracy: Gamma_p must still come
        # out positive definite (the first p values are drawn from it) and gamma_0 bounded;
        # that is checked here, so scipy's warning of an ill-conditioned solve is not needed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LinAlgWarning)
            cov = self.stationary_cov()
        gamma0 = float(cov[0, 0])
        self._require(bool(np.isfinite(cov).all()) and gamma0 <= MAX_VARIANCE
                      and self._start_factor(cov) is not None, "coefs",
                      f"coefficients far enough from a unit root that the stationary "
                      f"covariance is positive definite with gamma_0 <= {MAX_VARIANCE:g} "
                      f"(computed gamma_0 = {gamma0:.4g})")

    def _start_factor(self, cov: np.ndarray) -> np.ndarray | None:
        """The Cholesky factor the first p values are drawn with (``Gamma_p`` plus a 1e-12
        jitter), or None where that matrix is not positive definite."""
        try:
            return np.linalg.cholesky(cov + 1e-12 * np.eye(self.order))
        except np.linalg.LinAlgError:
            return None

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
        L = self._start_factor(self.stationary_cov())  # checked: not None
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
