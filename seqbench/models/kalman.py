"""Kalman filter / linear dynamical system (LDS) family.

The model, in the notation used throughout this file (filterpy's, with the lecture's
"inputs are driving inputs")::

    s_0 ~ N(mu0, P0)
    s_t = A s_{t-1} + B u_t + w_t,    w_t ~ N(0, Q)        t = 1..T
    y_t = C s_t     + D u_t + v_t,    v_t ~ N(0, R)

s_t is the hidden state (n), u_t the driving input (m), y_t the observation (k).
Every step predicts with u_t and then, where y_t is observed, updates; an unobserved
step skips the update (the filter's covariance then only grows).

Contents, top to bottom:

1. The batched engine: :func:`kalman_filter`, :func:`rts_smoother` (with the lag-one
   cross-covariances EM needs) and the per-step log-likelihood, all N sequences
   advanced together (vectorised over N; a Python loop over T only). The state
   covariances depend only on *which* steps are observed, not on the values, so they
   are computed once per distinct observation pattern (``group``) and shared by the
   sequences with that pattern; the means are computed per sequence.
2. :func:`filterpy_filter_smoother`: the same E-step with filterpy's ``KalmanFilter``
   (``predict(u)`` / ``update(z)``, ``update(None)`` at a missing step) and its
   ``rts_smoother``, sequence by sequence. It is the oracle the tests compare the
   engine with, and the ``backend="filterpy"`` of :class:`LDSModel`.
3. EM for the general LDS (:func:`em_m_step`) and :class:`LDSModel` (``lds``).
4. Structured models whose noise variances are fitted by maximum likelihood:
   :class:`LocalLevel`, :class:`LocalLinearTrend`, :class:`ConstantVelocity`.

Shapes: N sequences, T steps, n states, m inputs, k observation dimensions,
G distinct observation patterns (G <= N). Time index 0 of the state arrays is the
initial state s_0; index t >= 1 belongs to step t (data column t - 1).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..data import SeqData
from ..errors import DivergedError, IncompatibleError, SeqbenchError
from .base import SeqModel, seed_of

LOG_2PI = float(np.log(2.0 * np.pi))
BACKENDS = ("batched", "filterpy")
INITS = ("auto", "pca", "random")


def single_blas_thread(method):
    """Run ``method`` with BLAS limited to one thread. The engine multiplies many small
    matrices, where BLAS threads only contend: on the project's two-core machine, busy
    with other jobs, one EM M-step on Jane recall (1000 sequences, 16 states) took 0.93 s
    with OpenBLAS's default threads and 0.035 s with one."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return method(*args, **kwargs)

    return wrapper


def _T(M: np.ndarray) -> np.ndarray:
    """Transpose of the last two axes (a batch of matrices)."""
    return np.swapaxes(M, -1, -2)


def _sym(M: np.ndarray) -> np.ndarray:
    return 0.5 * (M + _T(M))


# =====================================================================================
# 1. The batched engine
# =====================================================================================
@dataclass
class LDSParams:
    """Parameters of a linear-Gaussian state-space model (shapes in the module docstring)."""

    A: np.ndarray  # (n, n)
    B: np.ndarray  # (n, m)
    C: np.ndarray  # (k, n)
    D: np.ndarray  # (k, m)
    Q: np.ndarray  # (n, n)
    R: np.ndarray  # (k, k)
    mu0: np.ndarray  # (n,)
    P0: np.ndarray  # (n, n)

    def max_abs_diff(self, other: LDSParams) -> float:
        return max(float(np.max(np.abs(getattr(self, f) - getattr(other, f)), initial=0.0))
                   for f in _PARAM_FIELDS)


_PARAM_FIELDS = ("A", "B", "C", "D", "Q", "R", "mu0", "P0")


@dataclass
class FilterResult:
    """Kalman filter output. ``x_pred[:, t]`` = s_{t|t-1}, ``x_filt[:, t]`` = s_{t|t}
    (index 0 holds mu0); covariances are per observation pattern: sequence i uses
    ``P_filt[group[i]]``. ``loglik_steps[i, t-1]`` is log p(y_t | y_{1:t-1}) where y_t
    is observed, else 0."""

    x_pred: np.ndarray  # (N, T+1, n)
    x_filt: np.ndarray  # (N, T+1, n)
    P_pred: np.ndarray  # (G, T+1, n, n)
    P_filt: np.ndarray  # (G, T+1, n, n)
    loglik_steps: np.ndarray  # (N, T)
    group: np.ndarray  # (N,) int, pattern of each sequence
    patterns: np.ndarray  # (G, T) bool, the distinct rows of `observed`

    @property
    def loglik(self) -> np.ndarray:
        """log p(y_1..y_T) of each sequence (observed steps only): (N,)."""
        return self.loglik_steps.sum(axis=1)


@dataclass
class SmootherResult:
    """RTS smoother output: ``x[:, t]`` = E[s_t | Y], ``P[group[i], t]`` = Cov(s_t | Y) and
    ``P_lag[group[i], t]`` = Cov(s_t, s_{t-1} | Y) for t >= 1 (index 0 unused, zeros)."""

    x: np.ndarray  # (N, T+1, n)
    P: np.ndarray  # (G, T+1, n, n)
    P_lag: np.ndarray  # (G, T+1, n, n)


def _check_streams(p: LDSParams, U: np.ndarray, Y: np.ndarray, observed: np.ndarray) -> None:
    n, m, k = p.A.shape[0], p.B.shape[1], p.C.shape[0]
    if U.ndim != 3 or Y.ndim != 3 or observed.ndim != 2:
        raise SeqbenchError(
            f"kalman: expected U (N, T, m), Y (N, T, k), observed (N, T), got shapes "
            f"{U.shape}, {Y.shape}, {observed.shape}"
        )
    N, T = observed.shape
    if U.shape != (N, T, m) or Y.shape != (N, T, k):
        raise SeqbenchError(
            f"kalman: expected U {(N, T, m)} and Y {(N, T, k)} for n={n}, got {U.shape}, {Y.shape}"
        )


def observation_patterns(observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``observed`` (G, T) and each sequence's row index (N,)."""
    observed = np.asarray(observed, dtype=bool)
    if (observed == observed[:1]).all():  # the common case: one pattern
        return observed[:1].copy(), np.zeros(len(observed), dtype=np.intp)
    packed = np.ascontiguousarray(np.packbits(observed, axis=1))  # (N, ceil(T / 8)) bytes
    rows = packed.view(np.dtype((np.void, packed.shape[1])))[:, 0]
    _, first, group = np.unique(rows, return_index=True, return_inverse=True)
    return observed[first], np.asarray(group, dtype=np.intp).reshape(-1)


def kalman_filter(p: LDSParams, U: np.ndarray, Y: np.ndarray, observed: np.ndarray,
                  *, patterns: tuple[np.ndarray, np.ndarray] | None = None) -> FilterResult:
    """Kalman filter over all N sequences at once.

    ``U`` (N, T, m) inputs, ``Y`` (N, T, k) observations (values where ``observed`` is
    False are ignored), ``observed`` (N, T) bool; ``patterns`` the result of
    :func:`observation_patterns` where already known. The update uses the Joseph form
    (as filterpy does) and symmetrises the covariances; S^-1 is applied through the
    inverse of its Cholesky factor L (S = L L', so S^-1 = L^-T L^-1 and
    log|S| = 2 sum log diag L). A non-positive-definite S raises
    :class:`~seqbench.errors.DivergedError`.
    """
    U = np.asarray(U, dtype=float)
    Y = np.asarray(Y, dtype=float)
    observed = np.asarray(observed, dtype=bool)
    _check_streams(p, U, Y, observed)
    A, B, C, D, Q, R = p.A, p.B, p.C, p.D, p.Q, p.R
    N, T = observed.shape
    n, k = A.shape[0], C.shape[0]
    patterns, group = observation_patterns(observed) if patterns is None else patterns
    G = patterns.shape[0]
    I = np.eye(n)

    # time-major storage (T+1, N, ...): each step reads and writes contiguous blocks
    Bu = np.moveaxis(U, 1, 0) @ B.T  # (T, N, n)
    Du = np.moveaxis(U, 1, 0) @ D.T  # (T, N, k)
    Yt = np.moveaxis(Y, 1, 0)  # (T, N, k)
    x_pred = np.empty((T + 1, N, n))
    x_filt = np.empty((T + 1, N, n))
    P_pred = np.empty((T + 1, G, n, n))
    P_filt = np.empty((T + 1, G, n, n))
    ll = np.zeros((T, N))
    x_pred[0] = x_filt[0] = p.mu0
    P_pred[0] = P_filt[0] = p.P0
    for t in range(1, T + 1):
        # predict:  x = A x + B u ;  P = A P A' + Q
        x_pred[t] = x_filt[t - 1] @ A.T + Bu[t - 1]  # (N, n)
        P_pred[t] = _sym(A @ P_filt[t - 1] @ A.T + Q)  # (G, n, n)
        x_filt[t] = x_pred[t]
        P_filt[t] = P_pred[t]
        g_obs = patterns[:, t - 1]  # patterns that observe y_t
        if not g_obs.any():
            continue
        # update, per pattern:  S = C P C' + R ;  K = P C' S^-1
        P = P_pred[t, g_obs]  # (Go, n, n)
        PCt = P @ C.T  # (Go, n, k)
        S = _sym(C @ PCt + R)  # (Go, k, k)
        try:
            L = np.linalg.cholesky(S)  # S = L L'
        except np.linalg.LinAlgError as exc:
            raise DivergedError(f"Kalman filter: S = C P C' + R is not positive definite at "
                                f"step {t}") from exc
        Linv = np.linalg.inv(L)  # (Go, k, k), lower triangular
        K = PCt @ _T(Linv) @ Linv  # (Go, n, k)
        # P = (I - K C) P (I - K C)' + K R K'   (Joseph form)
        IKC = I - K @ C  # (Go, n, n)
        P_filt[t, g_obs] = _sym(IKC @ P @ _T(IKC) + K @ R @ _T(K))
        logdet = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1)  # log|S|, (Go,)
        # update, per observing sequence:  r = y - C x - D u ;  x = x + K r
        seqs = np.flatnonzero(observed[:, t - 1])
        rows = slice(None) if len(seqs) == N else seqs  # (M,) sequences
        r = Yt[t - 1, rows] - x_pred[t, rows] @ C.T - Du[t - 1, rows]  # (M, k)
        if len(K) == 1:  # one observing pattern: plain matrix products
            Kr, e, logdet_m = r @ K[0].T, r @ Linv[0].T, logdet[0]
        else:
            gi = (np.cumsum(g_obs) - 1)[group[seqs]]  # (M,) index into the observing patterns
            Kr = np.einsum("mij,mj->mi", K[gi], r)
            e = np.einsum("mij,mj->mi", Linv[gi], r)
            logdet_m = logdet[gi]
        x_filt[t, rows] = x_pred[t, rows] + Kr
        # log N(r; 0, S) = -0.5 (k log 2 pi + log|S| + r' S^-1 r),  r' S^-1 r = |L^-1 r|^2
        ll[t - 1, rows] = -0.5 * (k * LOG_2PI + logdet_m + np.sum(e * e, axis=-1))
    # sequence-major views for the caller
    x_pred, x_filt, P_pred, P_filt = (np.moveaxis(a, 0, 1) for a in (x_pred, x_filt, P_pred,
                                                                      P_filt))
    return FilterResult(x_pred, x_filt, P_pred, P_filt, ll.T, group, patterns)


def rts_smoother(p: LDSParams, f: FilterResult) -> SmootherResult:
    """Rauch-Tung-Striebel smoother over all sequences, back to s_0, with the lag-one
    cross-covariances Cov(s_t, s_{t-1} | Y) = P_{t|T} J_{t-1}' (de Jong 1989)."""
    A = p.A
    N, T1, n = f.x_filt.shape
    G = f.P_filt.shape[0]
    # time-major views (contiguous when f came from kalman_filter)
    xf, xp, Pf, Pp = (np.moveaxis(a, 1, 0) for a in (f.x_filt, f.x_pred, f.P_filt, f.P_pred))
    x = np.empty((T1, N, n))
    P = np.empty((T1, G, n, n))
    P_lag = np.zeros((T1, G, n, n))
    x[-1] = xf[-1]
    P[-1] = Pf[-1]
    for t in range(T1 - 2, -1, -1):
        # J = P_{t|t} A' P_{t+1|t}^-1   (both covariances symmetric)
        J = _T(np.linalg.solve(Pp[t + 1], A @ Pf[t]))  # (G, n, n)
        # x_{t|T} = x_{t|t} + J (x_{t+1|T} - x_{t+1|t})
        dx = x[t + 1] - xp[t + 1]  # (N, n)
        Jdx = dx @ J[0].T if G == 1 else np.einsum("nij,nj->ni", J[f.group], dx)
        x[t] = xf[t] + Jdx
        # P_{t|T} = P_{t|t} + J (P_{t+1|T} - P_{t+1|t}) J'
        P[t] = _sym(Pf[t] + J @ (P[t + 1] - Pp[t + 1]) @ _T(J))
        # Cov(s_{t+1}, s_t | Y) = P_{t+1|T} J'
        P_lag[t + 1] = P[t + 1] @ _T(J)
    return SmootherResult(*(np.moveaxis(a, 0, 1) for a in (x, P, P_lag)))


# =====================================================================================
# 2. filterpy, sequence by sequence (the oracle, and backend="filterpy")
# =====================================================================================
def filterpy_filter_smoother(p: LDSParams, U: np.ndarray, Y: np.ndarray, observed: np.ndarray
                             ) -> tuple[FilterResult, SmootherResult]:
    """The E-step with filterpy's ``KalmanFilter``, one sequence at a time.

    Each sequence: ``predict(u=u_t)``, then ``update(y_t - D u_t)`` (``update(None)`` at a
    missing step), reading ``log_likelihood`` after each update. filterpy's RTS smoother
    has no control input, so it is run on the filtered means minus the input-driven
    mean m_t = A m_{t-1} + B u_t (m_0 = 0): the deviations s_t - m_t follow the same
    model without inputs, and the smoothed deviations plus m_t are the smoothed
    states. The lag-one cross-covariances come from filterpy's smoother gains.
    Covariances are returned one per sequence (``group = arange(N)``).
    """
    from filterpy.kalman import KalmanFilter

    U = np.asarray(U, dtype=float)
    Y = np.asarray(Y, dtype=float)
    observed = np.asarray(observed, dtype=bool)
    _check_streams(p, U, Y, observed)
    N, T = observed.shape
    n, m, k = p.A.shape[0], p.B.shape[1], p.C.shape[0]
    x_pred = np.empty((N, T + 1, n))
    x_filt = np.empty((N, T + 1, n))
    P_pred = np.empty((N, T + 1, n, n))
    P_filt = np.empty((N, T + 1, n, n))
    ll = np.zeros((N, T))
    xs = np.empty((N, T + 1, n))
    Ps = np.empty((N, T + 1, n, n))
    P_lag = np.zeros((N, T + 1, n, n))
    for i in range(N):
        kf = KalmanFilter(dim_x=n, dim_z=k, dim_u=m)
        kf.F, kf.B, kf.H, kf.Q, kf.R = p.A, p.B, p.C, p.Q, p.R
        kf.x = p.mu0.reshape(n, 1).copy()
        kf.P = p.P0.copy()
        x_pred[i, 0] = x_filt[i, 0] = p.mu0
        P_pred[i, 0] = P_filt[i, 0] = p.P0
        offset = np.zeros((T + 1, n))  # m_t
        for t in range(1, T + 1):
            u = U[i, t - 1].reshape(m, 1)
            kf.predict(u=u)
            x_pred[i, t], P_pred[i, t] = kf.x[:, 0], kf.P
            if observed[i, t - 1]:
                kf.update(Y[i, t - 1].reshape(k, 1) - p.D @ u)
                ll[i, t - 1] = kf.log_likelihood
            else:
                kf.update(None)
            x_filt[i, t], P_filt[i, t] = kf.x[:, 0], kf.P
            offset[t] = p.A @ offset[t - 1] + p.B @ U[i, t - 1]
        dev, Ps[i], J, _ = kf.rts_smoother((x_filt[i] - offset)[..., None], P_filt[i].copy())
        xs[i] = dev[..., 0] + offset
        P_lag[i, 1:] = Ps[i, 1:] @ _T(J[:-1])  # Cov(s_{t+1}, s_t | Y) = P_{t+1|T} J_t'
    group = np.arange(N)
    f = FilterResult(x_pred, x_filt, P_pred, P_filt, ll, group, observed.copy())
    return f, SmootherResult(xs, Ps, P_lag)


def e_step(p: LDSParams, U, Y, observed, backend: str = "batched", patterns=None
           ) -> tuple[FilterResult, SmootherResult]:
    """Filter and smoother with the chosen backend."""
    if backend == "batched":
        f = kalman_filter(p, U, Y, observed, patterns=patterns)
        return f, rts_smoother(p, f)
    if backend == "filterpy":
        return filterpy_filter_smoother(p, U, Y, observed)
    raise SeqbenchError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")


# =====================================================================================
# 3. EM for the general LDS
# =====================================================================================
@dataclass
class Prior:
    """The weak conjugate prior that keeps EM's M-step well posed (``reg`` of LDSModel).

    log prior = -1/2 tr(Q^-1 (psi_Q + lam_dyn W W')) - 1/2 tr(R^-1 (psi_R + lam_obs H H'))
                - 1/2 tr(P0^-1 psi_0) + const,      W = [A B], H = [C D].
    It makes the M-step a ridge regression with covariance floors (the ridge solution for
    W does not depend on Q, so the joint maximisation stays closed-form); EM then
    increases log-likelihood + log prior monotonically. All zero = plain maximum
    likelihood.
    """

    lam_dyn: float
    lam_obs: float
    psi_Q: np.ndarray  # (n, n)
    psi_R: np.ndarray  # (k, k)
    psi_0: np.ndarray  # (n, n)

    def log_prior(self, p: LDSParams) -> float:
        W = np.hstack([p.A, p.B])
        H = np.hstack([p.C, p.D])
        out = 0.0
        for cov, psi, lam, M in ((p.Q, self.psi_Q, self.lam_dyn, W),
                                 (p.R, self.psi_R, self.lam_obs, H),
                                 (p.P0, self.psi_0, 0.0, None)):
            if not psi.any() and lam == 0.0:
                continue
            extra = psi + (lam * M @ M.T if M is not None else 0.0)
            out -= 0.5 * float(np.trace(np.linalg.solve(cov, extra)))
        return out


def _weighted_cov_sum(P: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_g sum_t weights[g, t] P[g, t]: (G, T, n, n), (G, T) -> (n, n)."""
    return np.einsum("gt,gtij->ij", weights, P)


def _ridge_solve(S_yz: np.ndarray, S_zz: np.ndarray, lam: float) -> np.ndarray:
    """W = S_yz (S_zz + lam I)^-1; the least-squares (minimum-norm) solution when lam = 0."""
    if lam > 0:
        return np.linalg.solve(S_zz + lam * np.eye(len(S_zz)), S_yz.T).T
    return np.linalg.lstsq(S_zz, S_yz.T, rcond=None)[0].T


@dataclass
class EMData:
    """What the M-step needs from the data, computed once per fit (it does not change
    between iterations): inputs and observations at the active and observed steps, their
    second moments, and per-pattern step counts."""

    active: np.ndarray  # (N, T) bool, steps entering the dynamics statistics
    observed: np.ndarray  # (N, T) bool
    U_act: np.ndarray  # (Ma, m) u_t at active steps
    UU_act: np.ndarray  # (m, m)
    U_obs: np.ndarray  # (Mo, m) u_t at observed steps
    UU_obs: np.ndarray  # (m, m)
    Y_obs: np.ndarray  # (Mo, k) y_t at observed steps
    YU_obs: np.ndarray  # (k, m)
    YY_obs: np.ndarray  # (k, k)
    act_g: np.ndarray  # (G, T) number of active sequences per pattern and step
    obs_g: np.ndarray  # (G, T) number of observing sequences per pattern and step
    counts: np.ndarray  # (G,) sequences per pattern


def em_data(U: np.ndarray, Y: np.ndarray, observed: np.ndarray, active: np.ndarray,
            group: np.ndarray, G: int) -> EMData:
    U_act, U_obs, Y_obs = U[active], U[observed], Y[observed]
    # active and observed are functions of the observation pattern, so per-pattern
    # weights sum the (per-pattern) covariances over sequences
    act_g = np.zeros((G, U.shape[1]))
    np.add.at(act_g, group, active.astype(float))
    obs_g = np.zeros((G, U.shape[1]))
    np.add.at(obs_g, group, observed.astype(float))
    return EMData(active, observed, U_act, U_act.T @ U_act, U_obs, U_obs.T @ U_obs, Y_obs,
                  Y_obs.T @ U_obs, Y_obs.T @ Y_obs, act_g, obs_g,
                  np.bincount(group, minlength=G).astype(float))


def em_m_step(d: EMData, sm: SmootherResult, prior: Prior) -> LDSParams:
    """Closed-form M-step from smoothed moments (Shumway & Stoffer 1982; Ghahramani &
    Hinton 1996), with the ridge and floors of ``prior``.

    ``d.active`` (N, T) marks the steps that enter the dynamics statistics: the steps up
    to each sequence's last observation (later states are unconstrained by data and
    marginalise out of the likelihood, so leaving them out is still exact EM). With
    z_t = [s_{t-1}; u_t], o_t = [s_t; u_t] and E[.] the smoothed moments::

        [A B] = E[s_t z_t'] (E[z_t z_t'] + lam I)^-1      summed over active steps
        Q     = (E[s_t s_t'] - [A B] E[z_t s_t'] + psi_Q) / #active
        [C D] = E[y_t o_t'] (E[o_t o_t'] + lam I)^-1       summed over observed steps
        R     = (y_t y_t' - [C D] E[o_t y_t'] + psi_R) / #observed
        mu0   = mean_i E[s_0],   P0 = (sum_i Cov(s_0) + (E s_0 - mu0)(E s_0 - mu0)' + psi_0) / N
    """
    N, T1, n = sm.x.shape
    x_prev = sm.x[:, :-1][d.active]  # (Ma, n) E[s_{t-1}]
    x_cur = sm.x[:, 1:][d.active]  # (Ma, n) E[s_t]
    # -- dynamics: regress s_t on z_t = [s_{t-1}; u_t] over active steps -------------------
    # E[s_{t-1} s_{t-1}'] = x x' + Cov(s_{t-1}),  E[s_t s_{t-1}'] = x_t x_{t-1}' + Cov(s_t, s_{t-1})
    S_zz = np.block([
        [x_prev.T @ x_prev + _weighted_cov_sum(sm.P[:, :-1], d.act_g), x_prev.T @ d.U_act],
        [d.U_act.T @ x_prev, d.UU_act]])
    S_sz = np.hstack([x_cur.T @ x_prev + _weighted_cov_sum(sm.P_lag[:, 1:], d.act_g),
                      x_cur.T @ d.U_act])
    S_ss = x_cur.T @ x_cur + _weighted_cov_sum(sm.P[:, 1:], d.act_g)
    n_dyn = float(len(x_cur))
    W = _ridge_solve(S_sz, S_zz, prior.lam_dyn)  # (n, n + m)
    Q = _sym(S_ss - W @ S_sz.T + prior.psi_Q) / n_dyn

    # -- observations: regress y_t on o_t = [s_t; u_t] over observed steps ---------------
    x_obs = sm.x[:, 1:][d.observed]  # (Mo, n)
    S_oo = np.block([
        [x_obs.T @ x_obs + _weighted_cov_sum(sm.P[:, 1:], d.obs_g), x_obs.T @ d.U_obs],
        [d.U_obs.T @ x_obs, d.UU_obs]])
    S_yo = np.hstack([d.Y_obs.T @ x_obs, d.YU_obs])
    H = _ridge_solve(S_yo, S_oo, prior.lam_obs)  # (k, n + m)
    R = _sym(d.YY_obs - H @ S_yo.T + prior.psi_R) / float(len(x_obs))

    # -- initial state --------------------------------------------------------------------
    x0 = sm.x[:, 0]  # (N, n)
    mu0 = x0.mean(axis=0)
    d0 = x0 - mu0
    P0 = _sym(np.einsum("g,gij->ij", d.counts, sm.P[:, 0]) + d0.T @ d0 + prior.psi_0) / N
    return LDSParams(W[:, :n], W[:, n:], H[:, :n], H[:, n:], Q, R, mu0, P0)


def _one_hot(ids: np.ndarray, size: int) -> np.ndarray:
    """(N, T) int -> (N, T, size) float one-hot."""
    out = np.zeros((*ids.shape, size))
    np.put_along_axis(out, ids[..., None], 1.0, axis=-1)
    return out


def _lstsq_fit(target: np.ndarray, regressors: np.ndarray, lam: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Ridge fit target ~ W regressors on rows: (M, a), (M, b) -> W (a, b), residual cov (a, a)."""
    W = _ridge_solve(target.T @ regressors, regressors.T @ regressors, lam)
    res = target - regressors @ W.T
    return W, res.T @ res / max(len(res), 1)


def _state_decay(A: np.ndarray, T: int) -> dict[str, list]:
    """||A^k||_2 for k = 0..T: how fast the state forgets (the linear vanishing gradient)."""
    ks, norms = [], []
    M = np.eye(A.shape[0])
    for k in range(T + 1):
        ks.append(k)
        norms.append(float(np.linalg.norm(M, 2)))
        M = A @ M
    return {"k": ks, "norm_A_k": norms}


class LDSModel(SeqModel):
    """Linear dynamical system with driving inputs, fitted by EM (``lds``).

    Data mapping
    ------------
    *Inputs.* Token inputs become one-hot vectors u_t (vocabulary size), real inputs are
    u_t directly (standardised with the training mean and standard deviation); a
    constant 1 is appended to every u_t, so B and D carry the state and observation
    offsets.

    *Observations, non-forecasting data.* y_t is the target at the scored positions
    only; unscored positions are missing observations (the filter skips the update).
    Real targets are standardised. Class targets are one-hot vectors coded against the
    last class (the first K - 1 components; the last is implied, since the one-hot
    components sum to 1 and a full one-hot would give a singular R).

    *Observations, forecasting data* (``data.forecasting``: Y[t] = X[t+1]). X is the
    observation stream, observed at every step (tokens one-hot coded as above, real
    values standardised); the only input is the constant. ``predict`` filters X and
    returns the one-step-ahead prediction y_{t+1|t} = C (A s_{t|t} + B u) + D u.

    Prediction
    ----------
    At predict time only X is available. For non-forecasting data the targets are
    never observed there, so the filtered state is the state filtered on the driving
    inputs alone: s_{t|t} = s_{t|t-1} = A s_{t-1|t-1} + B u_t from s_0 = mu0, and the
    prediction is the predicted observation C s_{t|t} + D u_t. Real targets are that
    observation (un-standardised); a class is the argmax of the predicted one-hot
    observation (the last component being 1 minus the sum of the others). The
    Gaussian observation model gives no class probabilities, so ``predict_proba`` is
    not offered. For forecasting data with token inputs and class targets the
    predicted class is the argmax over the first K token components.

    Fitting
    -------
    EM (E-step: Kalman filter and RTS smoother; closed-form M-step, see
    :func:`em_m_step`) from an initialisation chosen by ``init``:

    * ``"pca"``: the states are the first ``n_states`` principal components of a delay
      embedding [v_t, v_{t-1}, ..., v_{t-h+1}] of the observation stream (forecasting)
      or of the input stream (otherwise), with h = ceil(n_states / dim v) (at least 2
      for inputs); A, B (least squares of s_t on [s_{t-1}, u_t], A shrunk to spectral
      radius <= 0.99) and Q (the residual covariance plus 10% of the state variance)
      come from those states.
    * ``"random"``: a random stable reservoir seeded by ``random_state``: A diagonal with
      time constants 1 / (1 - a_i) log-spaced from 1.5 to T, B Gaussian with row i
      scaled by sqrt(1 - a_i^2), Q 10% of the state variance; the states are the
      input-driven means.
    * ``"auto"``: ``"pca"`` for forecasting data, ``"random"`` otherwise.

    Either way C, D come from a least-squares fit of the observations on [s_t, u_t] and
    R is the residual covariance plus 10% of the observation variance: starting EM
    from nearly noise-free observations or dynamics makes it crawl (measured: 100+
    iterations instead of about 25 on a simulated 2-state forecasting problem).

    ``reg`` is the strength of a weak conjugate prior (see :class:`Prior`): ridge
    ``reg * count`` on [A B] and [C D], and floors Q >= reg I, R >= reg diag(var y),
    P0 >= reg I. EM increases the penalised log-likelihood
    monotonically; ``reg=0`` is plain maximum likelihood (least-squares M-steps).
    EM stops after ``max_iter`` iterations or when an iteration improves the
    penalised log-likelihood by less than ``tol`` times its magnitude (``tol=0``: always
    ``max_iter`` iterations). ``backend="filterpy"`` runs the E-step with filterpy,
    sequence by sequence (same results, much slower).

    ``curve_`` holds one entry per EM iteration (step 0 = the initialisation):
    ``train_loglik`` and ``train_objective`` (log-likelihood, and plus the log prior,
    per observed step, in the units of the data: standardisation is undone) and
    ``valid_loglik`` when ``valid`` is given (recorded only; not used for stopping).
    ``loglik_`` is the final total training log-likelihood, ``n_iter_`` the number of
    M-steps, ``converged_`` whether ``tol`` stopped EM.
    """

    _tags = {"predict_proba": False, "deterministic": True}

    def __init__(self, n_states: int = 16, max_iter: int = 30, tol: float = 1e-4,
                 backend: str = "batched", init: str = "auto", reg: float = 1e-5,
                 random_state: int | None = None) -> None:
        self.n_states = n_states
        self.max_iter = max_iter
        self.tol = tol
        self.backend = backend
        self.init = init
        self.reg = reg
        self.random_state = random_state

    # -- validation ----------------------------------------------------------------------
    def _check_params(self) -> None:
        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise SeqbenchError(f"{type(self).__name__} parameter {name!r}: expected "
                                    f"{expected}, got {getattr(self, name)!r}")

        def is_int(v) -> bool:
            return isinstance(v, int | np.integer) and not isinstance(v, bool)

        def is_num(v) -> bool:
            return isinstance(v, int | float | np.number) and not isinstance(v, bool)

        need(is_int(self.n_states) and self.n_states >= 1, "n_states", "an int >= 1")
        need(is_int(self.max_iter) and self.max_iter >= 0, "max_iter", "an int >= 0")
        need(is_num(self.tol) and self.tol >= 0, "tol", "a number >= 0")
        need(self.backend in BACKENDS, "backend", f"one of {', '.join(BACKENDS)}")
        need(self.init in INITS, "init", f"one of {', '.join(INITS)}")
        need(is_num(self.reg) and self.reg >= 0 and np.isfinite(self.reg), "reg",
             "a finite number >= 0")

    # -- data mapping --------------------------------------------------------------------
    def _inputs(self, X: np.ndarray) -> np.ndarray:
        """u_t for every step: (N, T, m), the constant 1 last."""
        N, T = X.shape[:2]
        ones = np.ones((N, T, 1))
        if self.forecasting_:
            return ones
        if self.input_kind_ == "tokens":
            return np.concatenate([_one_hot(X, self.input_size_), ones], axis=2)
        return np.concatenate([(X - self.u_mean_) / self.u_scale_, ones], axis=2)

    def _coded(self, values: np.ndarray, kind: str, size: int) -> np.ndarray:
        """Observation coding: one-hot against the last class, or standardised reals."""
        if kind == "tokens" or kind == "classes":
            return _one_hot(values, size)[..., : size - 1]
        return (values - self.y_mean_) / self.y_scale_

    def _observations(self, data: SeqData) -> tuple[np.ndarray, np.ndarray]:
        """y_t (N, T, k) and the observed steps (N, T)."""
        if self.forecasting_:
            Y = self._coded(data.X, data.input_kind, data.input_size)
            return Y, np.ones(data.X.shape[:2], dtype=bool)
        Y = self._coded(data.Y, data.target_kind, data.target_size)
        return np.where(data.mask[..., None], Y, 0.0), data.mask

    def _prepare(self, data: SeqData) -> None:
        """Decide the mapping and the standardisation from the training data."""
        self.forecasting_ = bool(data.forecasting)
        self.u_mean_ = self.u_scale_ = self.y_mean_ = self.y_scale_ = None
        if self.forecasting_:
            if data.input_kind == "real" and (data.target_kind != "real"
                                              or data.target_size != data.input_size):
                raise IncompatibleError(
                    f"{type(self).__name__}: forecasting real inputs needs real targets of "
                    f"size D = {data.input_size}, got {data.target_kind} of size "
                    f"{data.target_size}")
            if data.input_kind == "tokens" and (data.target_kind != "classes"
                                                or data.target_size > data.input_size):
                raise IncompatibleError(
                    f"{type(self).__name__}: forecasting tokens needs class targets (token ids) "
                    f"of at most {data.input_size} classes, got {data.target_kind} of size "
                    f"{data.target_size}")
        if (data.input_kind if self.forecasting_ else data.target_kind) in ("tokens", "classes"):
            size = data.input_size if self.forecasting_ else data.target_size
            if size < 2:
                raise IncompatibleError(f"{type(self).__name__}: needs at least 2 classes, "
                                        f"got {size}")
        if data.input_kind == "real" and not self.forecasting_:
            flat = data.X.reshape(-1, data.X.shape[2])
            self.u_mean_ = flat.mean(axis=0)
            self.u_scale_ = _safe_scale(flat.std(axis=0))
        stream = data.X if self.forecasting_ else data.Y[data.mask]
        if (data.input_kind if self.forecasting_ else data.target_kind) == "real":
            flat = stream.reshape(-1, stream.shape[-1])
            self.y_mean_ = flat.mean(axis=0)
            self.y_scale_ = _safe_scale(flat.std(axis=0))

    # -- initialisation ------------------------------------------------------------------
    def _initial_params(self, U: np.ndarray, Y: np.ndarray, observed: np.ndarray,
                        rng: np.random.Generator) -> LDSParams:
        N, T, m = U.shape
        k = Y.shape[2]
        n = self.n_states
        init = self.init
        if init == "auto":
            init = "pca" if self.forecasting_ else "random"
        lam = 1e-6 * N * T
        if init == "random":
            tau = np.geomspace(1.5, max(T, 2.0), n)
            A = np.diag(1.0 - 1.0 / tau)  # decays a_i, time constants tau_i
            B = rng.normal(size=(n, m)) * np.sqrt(1.0 - np.diag(A) ** 2)[:, None]
            S = np.empty((N, T + 1, n))
            S[:, 0] = 0.0
            for t in range(1, T + 1):
                S[:, t] = S[:, t - 1] @ A.T + U[:, t - 1] @ B.T  # s_t = A s_{t-1} + B u_t
            Q = np.eye(n) * 0.1 * max(float(S[:, 1:].var()), 1e-6)
        else:
            v = Y if self.forecasting_ else U[..., :-1]  # the stream to embed, (N, T, d)
            d = v.shape[2]
            h = int(np.ceil(n / max(d, 1))) if self.forecasting_ else max(2, int(np.ceil(n / d)))
            lags = [np.concatenate([np.zeros((N, j, d)), v[:, : T - j]], axis=1) for j in range(h)]
            E = np.concatenate(lags, axis=2).reshape(N * T, h * d)  # delay embedding
            E = E - E.mean(axis=0)
            _, evecs = np.linalg.eigh(E.T @ E / len(E))  # ascending eigenvalues
            V = evecs[:, ::-1][:, :n]  # top principal directions, (h d, <= n)
            if V.shape[1] < n:  # fewer directions than states: pad with small random ones
                V = np.hstack([V, 1e-3 * rng.normal(size=(V.shape[0], n - V.shape[1]))])
            S = np.zeros((N, T + 1, n))
            S[:, 1:] = (E @ V).reshape(N, T, n)
            S[:, 0] = S[:, 1]
            Z = np.concatenate([S[:, :-1], U], axis=2).reshape(N * T, n + m)
            W, Qres = _lstsq_fit(S[:, 1:].reshape(N * T, n), Z, lam)
            A, B = W[:, :n], W[:, n:]
            # keep the initial dynamics stable
            rho = max(abs(np.linalg.eigvals(A))) if n else 0.0
            if rho >= 0.99:
                A = A * (0.99 / rho)
            Q = _sym(Qres) + np.eye(n) * 0.1 * max(float(S[:, 1:].var()), 1e-6)
        o = observed.reshape(-1)
        O = np.concatenate([S[:, 1:], U], axis=2).reshape(N * T, n + m)[o]
        H, Rres = _lstsq_fit(Y.reshape(N * T, k)[o], O, lam)
        var_y = Y.reshape(N * T, k)[o].var(axis=0)
        R = _sym(Rres) + np.diag(0.1 * np.maximum(var_y, 1e-6))
        s1 = S[:, 1]
        spread = np.cov(s1.T).reshape(n, n) if N > 1 else np.zeros((n, n))  # one sequence: none
        P0 = spread + np.eye(n) * 0.1 * max(float(S[:, 1:].var()), 1e-6)
        return LDSParams(A, B, H[:, :n], H[:, n:], Q, R, np.zeros(n), _sym(P0))

    def _prior(self, N: int, observed: np.ndarray, active: np.ndarray, Y: np.ndarray) -> Prior:
        n, r = self.n_states, float(self.reg)
        n_dyn, n_obs = float(active.sum()), float(observed.sum())
        var_y = Y[observed].var(axis=0) if n_obs > 1 else np.ones(Y.shape[2])
        return Prior(
            lam_dyn=r * n_dyn, lam_obs=r * n_obs,
            psi_Q=r * n_dyn * np.eye(n),
            psi_R=r * n_obs * np.diag(np.maximum(var_y, 1e-12)),
            psi_0=r * N * np.eye(n),
        )

    # -- fitting -------------------------------------------------------------------------
    @single_blas_thread
    def _fit(self, data: SeqData, valid: SeqData | None) -> None:
        self._check_params()
        self._prepare(data)
        rng = np.random.default_rng(seed_of(self.random_state))
        U = self._inputs(data.X)  # (N, T, m)
        Y, observed = self._observations(data)  # (N, T, k), (N, T)
        N, T = observed.shape
        # steps up to each sequence's last observation (later ones leave the likelihood alone)
        last = np.where(observed.any(axis=1), T - 1 - np.argmax(observed[:, ::-1], axis=1), -1)
        active = np.arange(T)[None, :] <= last[:, None]  # (N, T)
        if valid is not None:
            Uv = self._inputs(valid.X)
            Yv, obs_v = self._observations(valid)
        prior = self._prior(N, observed, active, Y)
        n_obs = float(observed.sum())
        params = self._initial_params(U, Y, observed, rng)

        # standardised real observations: log p(y) = log p(y_std) - sum_d log scale_d per step
        jac = -float(np.log(self.y_scale_).sum()) if self.y_scale_ is not None else 0.0
        groups = observation_patterns(observed)
        stats = None
        curve: list[dict[str, Any]] = []
        converged = False
        prev = None
        for it in range(self.max_iter + 1):
            f, sm = e_step(params, U, Y, observed, self.backend, groups)
            loglik = float(f.loglik.sum()) + jac * n_obs
            objective = loglik + prior.log_prior(params)
            if not np.isfinite(objective):
                raise DivergedError(f"EM log-likelihood became {objective} at iteration {it}")
            point = {"step": it, "train_loglik": loglik / n_obs,
                     "train_objective": objective / n_obs}
            if valid is not None:
                fv = kalman_filter(params, Uv, Yv, obs_v)
                point["valid_loglik"] = float(fv.loglik.sum()) / max(float(obs_v.sum()), 1.0) + jac
            curve.append(point)
            if prev is not None and self.tol > 0 and objective - prev < self.tol * abs(prev):
                converged = True
                break
            if it == self.max_iter:
                break
            prev = objective
            if stats is None:  # the data's moments, grouped as the backend groups sequences
                stats = em_data(U, Y, observed, active, f.group, sm.P.shape[0])
            params = em_m_step(stats, sm, prior)
        self.params_ = params
        self.curve_ = curve
        self.n_iter_ = len(curve) - 1
        self.converged_ = converged
        self.loglik_ = loglik

    # -- prediction ----------------------------------------------------------------------
    def _predicted_observations(self, X: np.ndarray) -> np.ndarray:
        """The predicted (coded) observation at every step: (N, T, k)."""
        p = self.params_
        U = self._inputs(X)
        N, T = X.shape[:2]
        k = p.C.shape[0]
        if self.forecasting_:
            Y = self._coded(X, self.input_kind_, self.input_size_)
            f = kalman_filter(p, U, Y, np.ones((N, T), dtype=bool))
            s_next = f.x_filt[:, 1:] @ p.A.T + U @ p.B.T  # s_{t+1|t} = A s_{t|t} + B u
            return s_next @ p.C.T + U @ p.D.T  # y_{t+1|t} = C s_{t+1|t} + D u
        f = kalman_filter(p, U, np.zeros((N, T, k)), np.zeros((N, T), dtype=bool))
        return f.x_filt[:, 1:] @ p.C.T + U @ p.D.T  # y_t = C s_{t|t} + D u_t

    @single_blas_thread
    def _predict(self, X: np.ndarray) -> np.ndarray:
        Yhat = self._predicted_observations(X)
        if self.target_kind_ == "real":
            return Yhat * self.y_scale_ + self.y_mean_
        full = np.concatenate([Yhat, 1.0 - Yhat.sum(axis=-1, keepdims=True)], axis=-1)
        return full[..., : self.target_size_].argmax(axis=-1)

    # -- reporting -----------------------------------------------------------------------
    def n_parameters(self) -> int:
        p = self.params_
        n, k = p.A.shape[0], p.C.shape[0]
        return int(p.A.size + p.B.size + p.C.size + p.D.size
                   + n * (n + 1) // 2 * 2 + k * (k + 1) // 2 + n)

    def diagnostics(self, data: SeqData) -> dict[str, Any]:
        """``state_decay``: the spectral norm of A^k for k = 0..T (T of ``data``)."""
        return {"state_decay": _state_decay(self.params_.A, int(data.T))}


def _safe_scale(std: np.ndarray) -> np.ndarray:
    return np.where(std > 1e-12, std, 1.0)


# =====================================================================================
# 4. Structured models: noise variances by maximum likelihood
# =====================================================================================
class StructuralModel(SeqModel):
    """A fixed-structure state-space model (A, C fixed; Q, R built from a few variances)
    applied to each input dimension separately, with its variances fitted by maximum
    likelihood.

    X is the observation stream: each dimension d of X (N, T, D) is an independent
    series of the model with its own variances, shared by the N sequences. The
    variances maximise the approximate diffuse log-likelihood, computed by the batched
    Kalman filter: the initial state is s_0 ~ N(0, kappa I) with kappa = ``diffuse``
    times the variance of the series, and the first n (state size) steps of every
    sequence are left out of the likelihood, since they only pin down the diffuse
    state (Durbin & Koopman 2012, sec. 5.1 and 7.2; statsmodels' ``loglikelihood_burn``).
    scipy's L-BFGS-B maximises it over the log-variances (bounded to 1e-12..1e8 times
    the variance of the first differences), from the starting values of
    :meth:`_start`; ``max_iter`` and ``tol`` are its iteration cap and tolerance.

    Prediction: for non-forecasting data (a task whose X is a noisy track and Y the
    quantity itself, say) the filtered level C s_{t|t}; for forecasting data
    (Y[t] = X[t+1]) the one-step-ahead prediction C A s_{t|t}. Real inputs and real
    targets of the same size D only; ``valid`` and the targets are not used in fitting.
    """

    _tags = {"input_kinds": ("real",), "target_kinds": ("real",), "predict_proba": False,
             "deterministic": True,
             "shapes": ("many-to-one", "many-to-many-synced", "many-to-many-delayed",
                        "one-to-many")}  # a series, not one-to-one
    variance_names: ClassVar[tuple[str, ...]] = ()
    A: ClassVar[np.ndarray]
    C: ClassVar[np.ndarray]

    def __init__(self, max_iter: int = 200, tol: float = 1e-10, diffuse: float = 1e6) -> None:
        self.max_iter = max_iter
        self.tol = tol
        self.diffuse = diffuse

    # -- model structure (subclasses) ------------------------------------------------------
    def _Q(self, var: np.ndarray) -> np.ndarray:
        """Process noise covariance from the variances (all but the last, which is R)."""
        raise NotImplementedError

    def _start(self, y: np.ndarray) -> np.ndarray:
        """Starting variances (in ``variance_names`` order) from a series y (N, T)."""
        raise NotImplementedError

    def params_of(self, var: np.ndarray, scale: float) -> LDSParams:
        """The state-space matrices for variances ``var`` (observation noise last)."""
        n = self.A.shape[0]
        return LDSParams(
            A=np.array(self.A, float), B=np.zeros((n, 0)), C=np.array(self.C, float),
            D=np.zeros((1, 0)), Q=self._Q(var), R=np.array([[var[-1]]]),
            mu0=np.zeros(n), P0=np.eye(n) * self.diffuse * scale,
        )

    # -- fitting -----------------------------------------------------------------------------
    def _check_params(self) -> None:
        for name, ok, expected in (
            ("max_iter", isinstance(self.max_iter, int | np.integer) and self.max_iter >= 1,
             "an int >= 1"),
            ("tol", isinstance(self.tol, int | float) and self.tol >= 0, "a number >= 0"),
            ("diffuse", isinstance(self.diffuse, int | float) and 1.0 <= self.diffuse <= 1e10,
             "a number in [1, 1e10]"),
        ):
            if not ok:
                raise SeqbenchError(f"{type(self).__name__} parameter {name!r}: expected "
                                    f"{expected}, got {getattr(self, name)!r}")

    def loglik(self, var: np.ndarray, y: np.ndarray, scale: float) -> float:
        """Approximate diffuse log-likelihood of series y (N, T) under variances ``var``: the
        steps after the first n of each sequence, plus -1/2 log(2 pi) for each left-out
        step (Durbin & Koopman's exact diffuse log-likelihood, whose diffuse-step terms
        log|F_inf| vanish for these models, has that constant)."""
        p = self.params_of(np.asarray(var, float), scale)
        N, T = y.shape
        n = self.A.shape[0]
        f = kalman_filter(p, np.zeros((N, T, 0)), y[..., None], np.ones((N, T), dtype=bool))
        return float(f.loglik_steps[:, n:].sum()) - 0.5 * LOG_2PI * N * n

    def _fit_series(self, y: np.ndarray) -> np.ndarray:
        from scipy.optimize import minimize

        scale = max(float(np.var(y)), 1e-12)
        dvar = max(float(np.var(np.diff(y, axis=1))), 1e-12 * scale)
        n_terms = y.shape[0] * (y.shape[1] - self.A.shape[0])

        def neg(theta: np.ndarray) -> float:
            try:
                value = -self.loglik(np.exp(theta), y, scale) / n_terms
            except DivergedError:  # numerically singular S at extreme variances
                return 1e300
            return value if np.isfinite(value) else 1e300

        theta0 = np.log(np.maximum(self._start(y), 1e-8 * dvar))
        bounds = [(np.log(1e-12 * dvar), np.log(1e8 * dvar))] * len(theta0)
        theta0 = np.clip(theta0, *bounds[0])
        res = minimize(neg, theta0, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": int(self.max_iter), "ftol": float(self.tol),
                                "gtol": 1e-9})
        if not np.isfinite(res.fun) or res.fun >= 1e300:
            raise DivergedError(f"{type(self).__name__}: the likelihood is not finite at the "
                                f"optimiser's result ({res.message})")
        return np.exp(res.x)

    @single_blas_thread
    def _fit(self, data: SeqData, valid: SeqData | None) -> None:
        self._check_params()
        N, T, Dx = data.X.shape
        if data.target_size != Dx:
            raise IncompatibleError(f"{type(self).__name__} predicts each input dimension: "
                                    f"needs target size D = {Dx}, got {data.target_size}")
        n = self.A.shape[0]
        if T <= n:
            raise IncompatibleError(f"{type(self).__name__}: needs sequences longer than the "
                                    f"{n} diffuse steps, got T = {T}")
        self.forecasting_ = bool(data.forecasting)
        self.sigma2_ = np.stack([self._fit_series(data.X[:, :, d]) for d in range(Dx)])  # (D, v)
        self.scale_ = np.array([max(float(np.var(data.X[:, :, d])), 1e-12) for d in range(Dx)])
        self.loglik_ = float(sum(self.loglik(self.sigma2_[d], data.X[:, :, d], self.scale_[d])
                                 for d in range(Dx)))
        self.curve_ = []

    @property
    def variances_(self) -> list[dict[str, float]]:
        """Fitted variances per input dimension, by name."""
        return [dict(zip(self.variance_names, map(float, v))) for v in self.sigma2_]

    # -- prediction ----------------------------------------------------------------------
    @single_blas_thread
    def _predict(self, X: np.ndarray) -> np.ndarray:
        N, T, Dx = X.shape
        out = np.empty((N, T, Dx))
        for d in range(Dx):
            p = self.params_of(self.sigma2_[d], self.scale_[d])
            f = kalman_filter(p, np.zeros((N, T, 0)), X[:, :, d, None],
                              np.ones((N, T), dtype=bool))
            s = f.x_filt[:, 1:]  # s_{t|t}, (N, T, n)
            if self.forecasting_:
                s = s @ p.A.T  # s_{t+1|t} = A s_{t|t}
            out[:, :, d] = (s @ p.C.T)[..., 0]  # C s
        return out

    def n_parameters(self) -> int:
        return int(self.sigma2_.size)

    def diagnostics(self, data: SeqData) -> dict[str, Any]:
        """``state_decay``: the spectral norm of A^k for k = 0..T (T of ``data``)."""
        return {"state_decay": _state_decay(np.array(self.A, float), int(data.T))}


class LocalLevel(StructuralModel):
    """Local level (random walk plus noise; ``local-level``)::

        mu_t = mu_{t-1} + eta_t,   eta_t ~ N(0, sigma2_level)
        y_t  = mu_t + eps_t,       eps_t ~ N(0, sigma2_irregular)

    Durbin & Koopman's (2012) Nile example: sigma2_irregular = 15099, sigma2_level = 1469.1.
    See :class:`StructuralModel` for fitting and prediction.
    """

    variance_names = ("level", "irregular")
    A = np.array([[1.0]])
    C = np.array([[1.0]])

    def _Q(self, var):
        return np.array([[var[0]]])

    def _start(self, y):
        # Var(y_t - y_{t-1}) = sigma2_level + 2 sigma2_irregular; split it evenly
        v = float(np.var(np.diff(y, axis=1)))
        return np.array([v / 3, v / 3])


class LocalLinearTrend(StructuralModel):
    """Local linear trend (``local-linear-trend``)::

        mu_t   = mu_{t-1} + beta_{t-1} + eta_t,   eta_t  ~ N(0, sigma2_level)
        beta_t = beta_{t-1} + zeta_t,              zeta_t ~ N(0, sigma2_trend)
        y_t    = mu_t + eps_t,                     eps_t  ~ N(0, sigma2_irregular)

    State (level, slope). See :class:`StructuralModel` for fitting and prediction.
    """

    variance_names = ("level", "trend", "irregular")
    A = np.array([[1.0, 1.0], [0.0, 1.0]])
    C = np.array([[1.0, 0.0]])

    def _Q(self, var):
        return np.diag([var[0], var[1]])

    def _start(self, y):
        v = float(np.var(np.diff(y, axis=1)))
        return np.array([v / 3, v / 30, v / 3])


class ConstantVelocity(StructuralModel):
    """Constant-velocity track (``constant-velocity``), dt = 1::

        [p_t, v_t]' = [[1, 1], [0, 1]] [p_{t-1}, v_{t-1}]' + w_t,
                      w_t ~ N(0, q [[1/3, 1/2], [1/2, 1]])   (continuous white-noise
                      acceleration of spectral density q, discretised; Bar-Shalom et al. 2001)
        y_t = p_t + eps_t,   eps_t ~ N(0, r)

    State (position, velocity); variances ``acceleration`` (q) and ``measurement`` (r).
    See :class:`StructuralModel` for fitting and prediction.
    """

    variance_names = ("acceleration", "measurement")
    A = np.array([[1.0, 1.0], [0.0, 1.0]])
    C = np.array([[1.0, 0.0]])

    def _Q(self, var):
        return var[0] * np.array([[1.0 / 3.0, 0.5], [0.5, 1.0]])

    def _start(self, y):
        # second differences: Var = (2/3) q + 6 r for this model; split it evenly
        v = float(np.var(np.diff(y, n=2, axis=1))) if y.shape[1] > 2 else 1.0
        return np.array([0.75 * v, v / 12])
