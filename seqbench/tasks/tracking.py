"""A noisy constant-velocity track: estimate the true position at every step.

The Kalman / linear-dynamical-system family's home turf: the white-noise
acceleration model of Bar-Shalom, Li & Kirubarajan (2001), *Estimation with
Applications to Tracking and Navigation*, chapter 6 (the "discrete white noise
acceleration" model), in one dimension.

Exact definition
----------------
* State ``x_t = (p_t, v_t)`` (position, velocity); ``x_0 ~ N(0, P0)`` with
  ``P0 = diag(init_pos_std^2, init_vel_std^2)``.
* Dynamics ``x_{t+1} = F x_t + G a_t`` with ``F = [[1, dt], [0, 1]]``,
  ``G = (dt^2 / 2, dt)`` and ``a_t ~ N(0, accel_std^2)``, so the process noise
  covariance is ``Q = accel_std^2 G G'``.
* Measurements ``z_t = p_t + w_t``, ``w_t ~ N(0, meas_std^2)``, at every step
  ``t = 0..length-1``.
* Inputs: ``z`` as ``(N, T, 1)`` floats. Targets: ``p`` as ``(N, T, 1)``. Every
  step is scored by the mean squared error.

Chance: ``E[p_t] = 0`` at every step, so the best input-blind predictor is the
constant 0 and its expected MSE is ``mean_t Var(p_t)``, computed exactly from
``Sigma_0 = P0``, ``Sigma_{t+1} = F Sigma_t F' + Q``.

Oracle: the Kalman filter with the true parameters (prior ``N(0, P0)``, update
with ``z_0`` first, then predict/update for each later step): the best causal
estimate of ``p_t`` from ``z_0..z_t``. Since its model is the generator's, its
expected MSE is exactly ``mean_t P_{t|t}[0, 0]``, the filtered position variance,
which is what ``spec().oracle`` reports. Every sequence shares the same
covariances and gains (they do not depend on the data), so the filter runs on
the whole batch at once.
"""

from __future__ import annotations

import numpy as np

from ..data import SeqData, TaskSpec
from .base import MAX_LENGTH, MAX_SCALE, Task

#: the smallest measurement noise standard deviation: meas_std^2 stays far from float
#: underflow, so the innovation variance S = H P H' + R is positive even when P is 0
MIN_MEAS_STD = 1e-6


class ConstantVelocityTrack(Task):
    """Estimate the position of a 1-D constant-velocity target from noisy positions.

    Parameters
    ----------
    length : steps per sequence (1 to 10**6).
    dt : time between steps, in ``(0, 1e6]``.
    accel_std : standard deviation of the white-noise acceleration, in ``[0, 1e6]``.
    meas_std : standard deviation of the position measurement noise, in ``[1e-6, 1e6]``.
    init_pos_std, init_vel_std : prior standard deviations of the first state, in
        ``[0, 1e6]``.

    Within these bounds every variance stays below about 1e54 (the acceleration's share
    of ``Var(p_t)`` grows as ``accel_std^2 dt^4 t^3``), so the data, chance and oracle
    are finite.

    Meta columns
    ------------
    None: ``meta`` has one row per sequence and no columns, so ``score`` reports no
    slices for this task.
    """

    name = "cv-track"
    version = 1

    def __init__(
        self,
        length: int = 50,
        dt: float = 1.0,
        accel_std: float = 0.05,
        meas_std: float = 1.0,
        init_pos_std: float = 1.0,
        init_vel_std: float = 0.2,
    ) -> None:
        self.length = length
        self.dt = dt
        self.accel_std = accel_std
        self.meas_std = meas_std
        self.init_pos_std = init_pos_std
        self.init_vel_std = init_vel_std

    def check(self) -> None:
        self._require_int("length", 1, MAX_LENGTH)
        self._require_number("dt", 0, MAX_SCALE, open_lo=True)
        self._require_number("meas_std", MIN_MEAS_STD, MAX_SCALE)
        for p in ("accel_std", "init_pos_std", "init_vel_std"):
            self._require_number(p, 0, MAX_SCALE)

    # -- the true model ---------------------------------------------------------------
    def matrices(self) -> dict[str, np.ndarray]:
        """``F, Q, H, R, P0`` of the generating state-space model."""
        dt = float(self.dt)
        G = np.array([[dt**2 / 2], [dt]])  # acceleration enters position and velocity
        return {
            "F": np.array([[1.0, dt], [0.0, 1.0]]),
            "Q": float(self.accel_std) ** 2 * (G @ G.T),  # Q = sigma_a^2 G G'
            "H": np.array([[1.0, 0.0]]),
            "R": np.array([[float(self.meas_std) ** 2]]),
            "P0": np.diag([float(self.init_pos_std) ** 2, float(self.init_vel_std) ** 2]),
        }

    def state_variances(self) -> np.ndarray:
        """``Var(p_t)`` for ``t = 0..length-1`` under the generator, (T,)."""
        m = self.matrices()
        S = m["P0"]
        out = np.empty(self.length)
        for t in range(self.length):
            out[t] = S[0, 0]
            S = m["F"] @ S @ m["F"].T + m["Q"]  # Sigma_{t+1} = F Sigma_t F' + Q
        return out

    def filter_gains(self, T: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Kalman gains (T, 2) and filtered covariances P_{t|t} (T, 2, 2) for ``T`` steps
        (default ``length``); they do not depend on the data."""
        m = self.matrices()
        F, Q, H, R = m["F"], m["Q"], m["H"], m["R"]
        T = self.length if T is None else T
        P = m["P0"]  # P_{0|-1}
        gains = np.empty((T, 2))
        covs = np.empty((T, 2, 2))
        for t in range(T):
            if t:
                P = F @ P @ F.T + Q  # P_{t|t-1} = F P_{t-1|t-1} F' + Q
            S = H @ P @ H.T + R  # S = H P H' + R
            K = P @ H.T / S  # K = P H' S^-1, (2, 1)
            P = (np.eye(2) - K @ H) @ P  # P_{t|t} = (I - K H) P_{t|t-1}
            gains[t], covs[t] = K[:, 0], P
        return gains, covs

    def spec(self) -> TaskSpec:
        self.check()
        _, covs = self.filter_gains()
        return TaskSpec(
            name=self.name, version=self.version,
            input_kind="real", input_size=1, target_kind="real", target_size=1,
            shape="many-to-many-synced", metric="mse", higher_is_better=False,
            chance=float(self.state_variances().mean()),
            oracle=float(covs[:, 0, 0].mean()),
            perfect=0.0,
            description="estimate the position of a noisy constant-velocity track at every step",
        )

    def _sample(self, n: int, rng: np.random.Generator) -> SeqData:
        m = self.matrices()
        T = self.length
        x = rng.standard_normal((n, 2)) * np.sqrt(np.diag(m["P0"]))  # x_0 ~ N(0, P0), (N, 2)
        G = np.array([self.dt**2 / 2, self.dt])
        pos = np.empty((n, T))
        for t in range(T):
            pos[:, t] = x[:, 0]
            a = rng.standard_normal(n) * self.accel_std
            x = x @ m["F"].T + a[:, None] * G  # x_{t+1} = F x_t + G a_t
        z = pos + rng.standard_normal((n, T)) * self.meas_std  # z_t = p_t + w_t
        return SeqData(z[..., None], pos[..., None], np.ones((n, T), dtype=bool),
                       input_size=1, target_size=1)

    def kalman_filter(self, Z: np.ndarray) -> np.ndarray:
        """Filtered states ``E[x_t | z_0..z_t]`` for measurements (N, T, 1) -> (N, T, 2)."""
        m = self.matrices()
        z = np.asarray(Z, dtype=float)[..., 0]  # (N, T)
        N, T = z.shape
        gains, _ = self.filter_gains(T)
        out = np.empty((N, T, 2))
        x = np.zeros((N, 2))  # x_{0|-1} = E[x_0] = 0
        for t in range(T):
            if t:
                x = x @ m["F"].T  # x_{t|t-1} = F x_{t-1|t-1}
            x = x + gains[t] * (z[:, t] - x[:, 0])[:, None]  # x_{t|t} = x + K (z - H x)
            out[:, t] = x
        return out

    def oracle_predict(self, data: SeqData) -> tuple[np.ndarray, None]:
        """The Kalman filter's position estimates with the true parameters, (N, T, 1)."""
        self.check()
        return self.kalman_filter(data.X)[..., :1], None
