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
   sequences with that pattern; the means are computed per sequence. Each is split in
   its covariance half (per pattern) and its mean half (per sequence), so that
   :func:`engine_chunks` can run the means over chunks of sequences (:func:`plan_chunks`)
   with one covariance pass shared by the chunks, and memory stays bounded by a chunk.
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

from ..data import SeqData, one_hot
from ..errors import DivergedError, IncompatibleError, SeqbenchError
from .base import SeqModel, is_int, is_real, need, seed_of, sequence_moments

LOG_2PI = float(np.log(2.0 * np.pi))
BACKENDS = ("batched", "filterpy")
INITS = ("auto", "pca", "random")
INITIALS = ("auto", "diffuse", "estimated")


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


def filter_covariances(p: LDSParams, patterns: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The covariance half of the Kalman filter for G observation patterns (G, T) bool.

    Returns, time-major: P_pred (T+1, G, n, n) = P_{t|t-1}, P_filt (T+1, G, n, n) =
    P_{t|t} (index 0 holds P0), the gains K (T, G, n, k), the inverse Cholesky factors
    L^-1 of S (T, G, k, k) and log|S| (T, G); K, L^-1 and log|S| are zero at a step the
    pattern does not observe. The update uses the Joseph form (as filterpy does) and
    symmetrises the covariances; S^-1 is applied through L^-1 (S = L L', so
    S^-1 = L^-T L^-1 and log|S| = 2 sum log diag L). A non-positive-definite S raises
    :class:`~seqbench.errors.DivergedError`.
    """
    A, C, Q, R = p.A, p.C, p.Q, p.R
    G, T = patterns.shape
    n, k = A.shape[0], C.shape[0]
    I = np.eye(n)
    P_pred = np.empty((T + 1, G, n, n))
    P_filt = np.empty((T + 1, G, n, n))
    K_all = np.zeros((T, G, n, k))
    Linv_all = np.zeros((T, G, k, k))
    logdet_all = np.zeros((T, G))
    P_pred[0] = P_filt[0] = p.P0
    for t in range(1, T + 1):
        # predict:  P = A P A' + Q
        P_pred[t] = _sym(A @ P_filt[t - 1] @ A.T + Q)  # (G, n, n)
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
        K_all[t - 1, g_obs] = K
        Linv_all[t - 1, g_obs] = Linv
        logdet_all[t - 1, g_obs] = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1)
    return P_pred, P_filt, K_all, Linv_all, logdet_all


def filter_means(p: LDSParams, U: np.ndarray, Y: np.ndarray, observed: np.ndarray,
                 group: np.ndarray, patterns: np.ndarray, K: np.ndarray, Linv: np.ndarray,
                 logdet: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean half of the Kalman filter, with the gains of :func:`filter_covariances`
    for ``patterns``; sequence i has pattern ``group[i]``. Returns, time-major, x_pred and
    x_filt (T+1, N, n) and the per-step log-likelihoods (T, N)."""
    A, B, C, D = p.A, p.B, p.C, p.D
    N, T = observed.shape
    n, k = A.shape[0], C.shape[0]
    # time-major storage (T+1, N, ...): each step reads and writes contiguous blocks
    Bu = np.moveaxis(U, 1, 0) @ B.T  # (T, N, n)
    Du = np.moveaxis(U, 1, 0) @ D.T  # (T, N, k)
    Yt = np.moveaxis(Y, 1, 0)  # (T, N, k)
    x_pred = np.empty((T + 1, N, n))
    x_filt = np.empty((T + 1, N, n))
    ll = np.zeros((T, N))
    x_pred[0] = x_filt[0] = p.mu0
    for t in range(1, T + 1):
        # predict:  x = A x + B u
        x_pred[t] = x_filt[t - 1] @ A.T + Bu[t - 1]  # (N, n)
        x_filt[t] = x_pred[t]
        g_obs = np.flatnonzero(patterns[:, t - 1])  # patterns that observe y_t
        if not len(g_obs):
            continue
        # update, per observing sequence:  r = y - C x - D u ;  x = x + K r
        seqs = np.flatnonzero(observed[:, t - 1])
        rows = slice(None) if len(seqs) == N else seqs  # (M,) sequences
        r = Yt[t - 1, rows] - x_pred[t, rows] @ C.T - Du[t - 1, rows]  # (M, k)
        if len(g_obs) == 1:  # one observing pattern: plain matrix products
            g = g_obs[0]
            Kr, e, logdet_m = r @ K[t - 1, g].T, r @ Linv[t - 1, g].T, logdet[t - 1, g]
        else:
            gi = group[seqs]  # (M,) pattern of each observing sequence
            Kr = np.einsum("mij,mj->mi", K[t - 1, gi], r)
            e = np.einsum("mij,mj->mi", Linv[t - 1, gi], r)
            logdet_m = logdet[t - 1, gi]
        x_filt[t, rows] = x_pred[t, rows] + Kr
        # log N(r; 0, S) = -0.5 (k log 2 pi + log|S| + r' S^-1 r),  r' S^-1 r = |L^-1 r|^2
        ll[t - 1, rows] = -0.5 * (k * LOG_2PI + logdet_m + np.sum(e * e, axis=-1))
    return x_pred, x_filt, ll


def kalman_filter(p: LDSParams, U: np.ndarray, Y: np.ndarray, observed: np.ndarray,
                  *, patterns: tuple[np.ndarray, np.ndarray] | None = None,
                  covariances: tuple[np.ndarray, ...] | None = None) -> FilterResult:
    """Kalman filter over all N sequences at once.

    ``U`` (N, T, m) inputs, ``Y`` (N, T, k) observations (values where ``observed`` is
    False are ignored), ``observed`` (N, T) bool; ``patterns`` the result of
    :func:`observation_patterns` where already known, and ``covariances`` the result of
    :func:`filter_covariances` for those patterns where already known (they depend on the
    parameters and the patterns only, so chunks of sequences with the same patterns
    share them). See :func:`filter_covariances` for the update's form.
    """
    U = np.asarray(U, dtype=float)
    Y = np.asarray(Y, dtype=float)
    observed = np.asarray(observed, dtype=bool)
    _check_streams(p, U, Y, observed)
    patterns, group = observation_patterns(observed) if patterns is None else patterns
    if covariances is None:
        covariances = filter_covariances(p, patterns)
    P_pred, P_filt, K, Linv, logdet = covariances
    x_pred, x_filt, ll = filter_means(p, U, Y, observed, group, patterns, K, Linv, logdet)
    # sequence-major views for the caller
    x_pred, x_filt, P_pred, P_filt = (np.moveaxis(a, 0, 1) for a in (x_pred, x_filt, P_pred,
                                                                      P_filt))
    return FilterResult(x_pred, x_filt, P_pred, P_filt, ll.T, group, patterns)


def smoother_covariances(A: np.ndarray, P_filt: np.ndarray, P_pred: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The covariance half of the RTS smoother from the filter's time-major P_filt and
    P_pred (T+1, G, n, n): the gains J (T, G, n, n) (J[t] = J_t for t = 0..T-1),
    P (T+1, G, n, n) = Cov(s_t | Y) and P_lag (T+1, G, n, n) = Cov(s_t, s_{t-1} | Y) =
    P_{t|T} J_{t-1}' (de Jong 1989; index 0 unused, zeros)."""
    T1, G, n, _ = P_filt.shape
    J_all = np.empty((T1 - 1, G, n, n))
    P = np.empty((T1, G, n, n))
    P_lag = np.zeros((T1, G, n, n))
    P[-1] = P_filt[-1]
    for t in range(T1 - 2, -1, -1):
        # J = P_{t|t} A' P_{t+1|t}^-1   (both covariances symmetric)
        J = _T(np.linalg.solve(P_pred[t + 1], A @ P_filt[t]))  # (G, n, n)
        J_all[t] = J
        # P_{t|T} = P_{t|t} + J (P_{t+1|T} - P_{t+1|t}) J'
        P[t] = _sym(P_filt[t] + J @ (P[t + 1] - P_pred[t + 1]) @ _T(J))
        # Cov(s_{t+1}, s_t | Y) = P_{t+1|T} J'
        P_lag[t + 1] = P[t + 1] @ _T(J)
    return J_all, P, P_lag


def smoother_means(x_filt: np.ndarray, x_pred: np.ndarray, J: np.ndarray, group: np.ndarray
                   ) -> np.ndarray:
    """The mean half of the RTS smoother: time-major x_filt, x_pred (T+1, N, n) and the
    gains J (T, G, n, n) of :func:`smoother_covariances` -> E[s_t | Y], (T+1, N, n)."""
    T1, N, n = x_filt.shape
    single = J.shape[1] == 1
    x = np.empty((T1, N, n))
    x[-1] = x_filt[-1]
    for t in range(T1 - 2, -1, -1):
        # x_{t|T} = x_{t|t} + J (x_{t+1|T} - x_{t+1|t})
        dx = x[t + 1] - x_pred[t + 1]  # (N, n)
        Jdx = dx @ J[t, 0].T if single else np.einsum("nij,nj->ni", J[t, group], dx)
        x[t] = x_filt[t] + Jdx
    return x


def rts_smoother(p: LDSParams, f: FilterResult,
                 covariances: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                 ) -> SmootherResult:
    """Rauch-Tung-Striebel smoother over all sequences, back to s_0, with the lag-one
    cross-covariances Cov(s_t, s_{t-1} | Y) = P_{t|T} J_{t-1}' (de Jong 1989).
    ``covariances``: the result of :func:`smoother_covariances` for ``f``'s patterns
    where already known."""
    # time-major views (contiguous when f came from kalman_filter)
    xf, xp, Pf, Pp = (np.moveaxis(a, 1, 0) for a in (f.x_filt, f.x_pred, f.P_filt, f.P_pred))
    J, P, P_lag = smoother_covariances(p.A, Pf, Pp) if covariances is None else covariances
    x = smoother_means(xf, xp, J, f.group)
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


# -- chunks of sequences ---------------------------------------------------------------
CHUNK_BYTES = 256 * 2**20  # the default memory budget of one chunk's per-step arrays


def plan_chunks(group: np.ndarray, seq_bytes: float, pattern_bytes: float,
                chunk_size: int | None = None, budget: float = CHUNK_BYTES
                ) -> list[np.ndarray]:
    """Split N sequences into chunks (arrays of sequence indices) for the engine.

    Sequences are taken in order of their observation pattern ``group`` (N,), so a chunk
    holds few patterns and consecutive chunks of one pattern share its covariances.
    ``chunk_size``: at most that many sequences per chunk. None: as many as fit in
    ``budget`` bytes, a sequence costing ``seq_bytes`` (its per-step arrays) and each
    pattern in the chunk ``pattern_bytes`` (its per-step covariances); at least one
    sequence per chunk.
    """
    order = np.argsort(group, kind="stable")
    N = len(order)
    if chunk_size is not None:
        return [order[i:i + chunk_size] for i in range(0, N, chunk_size)]
    starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])  # first of each pattern
    counts = np.diff(np.r_[starts, N])
    chunks: list[np.ndarray] = []
    begin, used = 0, 0.0
    for start, count in zip(starts.tolist(), counts.tolist()):
        while count > 0:
            room = int((budget - used - pattern_bytes) // seq_bytes)  # sequences that fit
            if room < 1 and start > begin:  # this chunk is full
                chunks.append(order[begin:start])
                begin, used = start, 0.0
                continue
            take = min(count, max(room, 1))
            used += pattern_bytes + take * seq_bytes
            start += take
            count -= take
    if begin < N:
        chunks.append(order[begin:])
    return chunks


def engine_bytes(n: int, m: int, k: int, T: int) -> tuple[float, float]:
    """Bytes of the engine's arrays per sequence and per observation pattern, for
    :func:`plan_chunks`: a sequence's float64 inputs, observations, predicted, filtered
    and smoothed means and the M-step's gathered copies, about (7n + 3m + 3k + 2) per
    step; a pattern's P_pred, P_filt, P, P_lag, J, K, L^-1 (5n^2 + nk + k^2 per step)."""
    return (8.0 * T * (7 * n + 3 * m + 3 * k + 2),
            8.0 * (T + 1) * (5 * n * n + n * k + k * k))


def engine_chunks(p: LDSParams, streams, chunks: list[np.ndarray], group: np.ndarray,
                  patterns: np.ndarray, *, smooth: bool = True, backend: str = "batched"):
    """Filter (and smooth) chunk by chunk: yields (idx, (U, Y, observed), FilterResult,
    SmootherResult or None) for each chunk's sequence indices ``idx``. ``streams(idx)``
    gives the chunk's (U, Y, observed); ``group`` (N,) and ``patterns`` (G, T) are the
    observation patterns of all N sequences. The covariances are computed once per distinct set of
    patterns in a row of chunks (one set for all chunks, when every sequence shares a
    pattern) and shared."""
    if backend not in BACKENDS:
        raise SeqbenchError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    key, cov_f, cov_s = None, None, None
    for idx in chunks:
        U, Y, observed = streams(idx)
        if backend == "filterpy":
            f, sm = filterpy_filter_smoother(p, U, Y, observed)
            yield idx, (U, Y, observed), f, sm
            continue
        used, local = np.unique(group[idx], return_inverse=True)
        if key is None or not np.array_equal(key, used):
            key = used
            cov_f = filter_covariances(p, patterns[used])
            cov_s = None
        f = kalman_filter(p, U, Y, observed, patterns=(patterns[used], local.reshape(-1)),
                          covariances=cov_f)
        if not smooth:
            yield idx, (U, Y, observed), f, None
            continue
        if cov_s is None:
            cov_s = smoother_covariances(p.A, cov_f[1], cov_f[0])
        yield idx, (U, Y, observed), f, rts_smoother(p, f, cov_s)


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
class EMStats:
    """The sums over sequences and steps that the M-step needs (smoothed moments and the
    data's moments), accumulated chunk by chunk with :meth:`add`. z_t = [s_{t-1}; u_t],
    o_t = [s_t; u_t]; "active" steps enter the dynamics, "observed" ones the observation
    regression."""

    S_zz: np.ndarray  # (n + m, n + m) sum E[z_t z_t'] over active steps
    S_sz: np.ndarray  # (n, n + m) sum E[s_t z_t'] over active steps
    S_ss: np.ndarray  # (n, n) sum E[s_t s_t'] over active steps
    S_oo: np.ndarray  # (n + m, n + m) sum E[o_t o_t'] over observed steps
    S_yo: np.ndarray  # (k, n + m) sum y_t E[o_t]' over observed steps
    S_yy: np.ndarray  # (k, k) sum y_t y_t' over observed steps
    P0_sum: np.ndarray  # (n, n) sum_i Cov(s_0 | Y_i)
    x0: np.ndarray  # (N, n) E[s_0 | Y_i]
    n_dyn: float = 0.0
    n_obs: float = 0.0

    @classmethod
    def zeros(cls, N: int, n: int, m: int, k: int) -> EMStats:
        return cls(np.zeros((n + m, n + m)), np.zeros((n, n + m)), np.zeros((n, n)),
                   np.zeros((n + m, n + m)), np.zeros((k, n + m)), np.zeros((k, k)),
                   np.zeros((n, n)), np.zeros((N, n)))

    def add(self, idx: np.ndarray, U: np.ndarray, Y: np.ndarray, observed: np.ndarray,
            active: np.ndarray, sm: SmootherResult, group: np.ndarray,
            data_moments: bool = True) -> None:
        """Add one chunk: sequences ``idx``, their U (Nc, T, m), Y (Nc, T, k), observed and
        active steps (Nc, T), smoother output and pattern index into ``sm.P`` (Nc,).
        ``data_moments=False`` leaves out the sums of the data alone (u u', y u', y y'),
        which do not change between EM iterations (see :meth:`copy_data_moments`)."""
        n = self.S_ss.shape[0]
        G = sm.P.shape[0]
        # active and observed are functions of the observation pattern, so per-pattern
        # weights sum the (per-pattern) covariances over sequences
        act_g = np.zeros((G, U.shape[1]))
        np.add.at(act_g, group, active.astype(float))
        obs_g = np.zeros((G, U.shape[1]))
        np.add.at(obs_g, group, observed.astype(float))
        # E[s_{t-1} s_{t-1}'] = x x' + Cov(s_{t-1})
        # E[s_t s_{t-1}'] = x_t x_{t-1}' + Cov(s_t, s_{t-1})
        x_prev = sm.x[:, :-1][active]  # (Ma, n) E[s_{t-1}]
        x_cur = sm.x[:, 1:][active]  # (Ma, n) E[s_t]
        U_act = U[active]  # (Ma, m)
        self.S_zz[:n, :n] += x_prev.T @ x_prev + _weighted_cov_sum(sm.P[:, :-1], act_g)
        xu = x_prev.T @ U_act  # (n, m)
        self.S_zz[:n, n:] += xu
        self.S_zz[n:, :n] += xu.T
        if data_moments:
            self.S_zz[n:, n:] += U_act.T @ U_act
        self.S_sz[:, :n] += x_cur.T @ x_prev + _weighted_cov_sum(sm.P_lag[:, 1:], act_g)
        self.S_sz[:, n:] += x_cur.T @ U_act
        self.S_ss += x_cur.T @ x_cur + _weighted_cov_sum(sm.P[:, 1:], act_g)
        self.n_dyn += float(len(x_cur))
        del x_prev, x_cur, U_act
        x_obs = sm.x[:, 1:][observed]  # (Mo, n)
        U_obs, Y_obs = U[observed], Y[observed]  # (Mo, m), (Mo, k)
        self.S_oo[:n, :n] += x_obs.T @ x_obs + _weighted_cov_sum(sm.P[:, 1:], obs_g)
        xu = x_obs.T @ U_obs  # (n, m)
        self.S_oo[:n, n:] += xu
        self.S_oo[n:, :n] += xu.T
        self.S_yo[:, :n] += Y_obs.T @ x_obs
        if data_moments:
            self.S_oo[n:, n:] += U_obs.T @ U_obs
            self.S_yo[:, n:] += Y_obs.T @ U_obs
            self.S_yy += Y_obs.T @ Y_obs
        self.n_obs += float(len(x_obs))
        self.x0[idx] = sm.x[:, 0]
        self.P0_sum += np.einsum("g,gij->ij", np.bincount(group, minlength=G).astype(float),
                                 sm.P[:, 0])

    def copy_data_moments(self, other: EMStats) -> None:
        """Take the sums of the data alone from ``other`` (a complete EMStats of the same
        data): u u' over active and observed steps, y u' and y y' over observed steps."""
        n = self.S_ss.shape[0]
        self.S_zz[n:, n:] = other.S_zz[n:, n:]
        self.S_oo[n:, n:] = other.S_oo[n:, n:]
        self.S_yo[:, n:] = other.S_yo[:, n:]
        self.S_yy[:] = other.S_yy


def em_m_step(st: EMStats, prior: Prior) -> LDSParams:
    """Closed-form M-step from the smoothed moments (Shumway & Stoffer 1982; Ghahramani &
    Hinton 1996), with the ridge and floors of ``prior``.

    The active steps (see :class:`EMStats`) are the steps up to each sequence's last
    observation (later states are unconstrained by data and marginalise out of the
    likelihood, so leaving them out is still exact EM). With z_t = [s_{t-1}; u_t],
    o_t = [s_t; u_t] and E[.] the smoothed moments::

        [A B] = E[s_t z_t'] (E[z_t z_t'] + lam I)^-1      summed over active steps
        Q     = (E[s_t s_t'] - [A B] E[z_t s_t'] + psi_Q) / #active
        [C D] = E[y_t o_t'] (E[o_t o_t'] + lam I)^-1       summed over observed steps
        R     = (y_t y_t' - [C D] E[o_t y_t'] + psi_R) / #observed
        mu0   = mean_i E[s_0],   P0 = (sum_i Cov(s_0) + (E s_0 - mu0)(E s_0 - mu0)' + psi_0) / N
    """
    N, n = st.x0.shape
    W = _ridge_solve(st.S_sz, st.S_zz, prior.lam_dyn)  # (n, n + m)
    Q = _sym(st.S_ss - W @ st.S_sz.T + prior.psi_Q) / st.n_dyn
    H = _ridge_solve(st.S_yo, st.S_oo, prior.lam_obs)  # (k, n + m)
    R = _sym(st.S_yy - H @ st.S_yo.T + prior.psi_R) / st.n_obs
    mu0 = st.x0.mean(axis=0)
    d0 = st.x0 - mu0
    P0 = _sym(st.P0_sum + d0.T @ d0 + prior.psi_0) / N
    return LDSParams(W[:, :n], W[:, n:], H[:, :n], H[:, n:], Q, R, mu0, P0)


def delay_embedding(v: np.ndarray, h: int) -> np.ndarray:
    """The delay embedding [v_t, v_{t-1}, ..., v_{t-h+1}] of every step t, v_s = 0 before
    the start (s < 0): (N, T, d) -> (N T, h d), rows in (sequence, step) order. A lag
    j >= T reaches before the start at every step, so its block is all zeros: h may exceed
    T (the embedding keeps its h d columns; they carry at most T d directions)."""
    N, T, d = v.shape
    lags = [np.concatenate([np.zeros((N, min(j, T), d)), v[:, : max(T - j, 0)]], axis=1)
            for j in range(h)]  # v_{t-j}: j zeros (at most T), then v_0 .. v_{T-1-j}
    return np.concatenate(lags, axis=2).reshape(N * T, h * d)


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
      for inputs) and v_s = 0 before the start (:func:`delay_embedding`); A, B (least
      squares of s_t on [s_{t-1}, u_t], A shrunk to spectral radius <= 0.99) and Q (the
      residual covariance plus 10% of the state variance) come from those states. On
      sequences of T < h steps the lags j >= T are all zeros, so the embedding has at
      most T dim v directions of variance; states beyond those start at (numerically)
      zero, their Q still 10% of the state variance.
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

    Memory: the E-step, the initialisation, the validation log-likelihood and ``predict``
    run over chunks of sequences (:func:`plan_chunks`), building each chunk's float64
    inputs and observations (one-hot codes included) and its filtered and smoothed
    means when it is processed and adding its share to EM's sums (:class:`EMStats`), so
    their memory is bounded by the chunk, not by N. ``chunk_size`` is the number of
    sequences per chunk; None (the default) fits a chunk's arrays in about
    ``CHUNK_BYTES`` (256 MiB). The results do not depend on it beyond floating-point
    summation order. The standardisation's means and standard deviations are summed
    over blocks of sequences too (:func:`~seqbench.models.base.sequence_moments`), so no
    whole copy of the data is made.

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
                 chunk_size: int | None = None, random_state: int | None = None) -> None:
        self.n_states = n_states
        self.max_iter = max_iter
        self.tol = tol
        self.backend = backend
        self.init = init
        self.reg = reg
        self.chunk_size = chunk_size
        self.random_state = random_state

    # -- validation ----------------------------------------------------------------------
    def _check_params(self) -> None:
        need(self, is_int(self.n_states, 1), "n_states", "an int >= 1")
        need(self, is_int(self.max_iter, 0), "max_iter", "an int >= 0")
        need(self, is_real(self.tol) and self.tol >= 0, "tol", "a finite number >= 0")
        need(self, self.backend in BACKENDS, "backend", f"one of {', '.join(BACKENDS)}")
        need(self, self.init in INITS, "init", f"one of {', '.join(INITS)}")
        need(self, is_real(self.reg) and self.reg >= 0, "reg", "a finite number >= 0")
        need(self, _valid_chunk_size(self.chunk_size), "chunk_size", "None or an int >= 1")
        seed_of(self.random_state, self)

    # -- data mapping --------------------------------------------------------------------
    def _inputs(self, X: np.ndarray) -> np.ndarray:
        """u_t for every step: (N, T, m), the constant 1 last."""
        N, T = X.shape[:2]
        ones = np.ones((N, T, 1))
        if self.forecasting_:
            return ones
        if self.input_kind_ == "tokens":
            U = np.zeros((N, T, self.input_size_ + 1))  # one-hot code, then the constant
            np.put_along_axis(U, X[..., None], 1.0, axis=-1)
            U[..., -1] = 1.0
            return U
        return np.concatenate([(X - self.u_mean_) / self.u_scale_, ones], axis=2)

    def _coded(self, values: np.ndarray, kind: str, size: int) -> np.ndarray:
        """Observation coding: one-hot against the last class, or standardised reals."""
        if kind == "tokens" or kind == "classes":
            return one_hot(values, size)[..., : size - 1]
        return (values - self.y_mean_) / self.y_scale_

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
            self.u_mean_, std = sequence_moments(data.X)  # over every step
            self.u_scale_ = _safe_scale(std)
        if (data.input_kind if self.forecasting_ else data.target_kind) == "real":
            # the observations: X at every step, or Y at the scored steps
            self.y_mean_, std = (sequence_moments(data.X) if self.forecasting_
                                 else sequence_moments(data.Y, data.mask))
            self.y_scale_ = _safe_scale(std)

    # -- initialisation ------------------------------------------------------------------
    def _initial_params(self, streams, chunks: list[np.ndarray], N: int, T: int, m: int,
                        k: int, rng: np.random.Generator) -> tuple[LDSParams, np.ndarray]:
        """The initial parameters and the variance of the observations (k,), computed over
        the chunks of ``streams`` (two passes, four for ``"pca"``: sums, then centred
        sums, so the result equals the one-pass formulas up to summation order)."""
        n = self.n_states
        init = self.init
        if init == "auto":
            init = "pca" if self.forecasting_ else "random"
        lam = 1e-6 * N * T
        if init == "random":
            tau = np.geomspace(1.5, max(T, 2.0), n)
            A = np.diag(1.0 - 1.0 / tau)  # decays a_i, time constants tau_i
            B = rng.normal(size=(n, m)) * np.sqrt(1.0 - np.diag(A) ** 2)[:, None]

            def states(U: np.ndarray, Y: np.ndarray) -> np.ndarray:
                S = np.empty((len(U), T + 1, n))  # (Nc, T+1, n)
                S[:, 0] = 0.0
                for t in range(1, T + 1):
                    S[:, t] = S[:, t - 1] @ A.T + U[:, t - 1] @ B.T  # s_t = A s_{t-1} + B u_t
                return S
        else:
            d = k if self.forecasting_ else m - 1  # the stream to embed: y, or u without the 1
            h = int(np.ceil(n / max(d, 1))) if self.forecasting_ else max(2, int(np.ceil(n / d)))

            def embedding(U: np.ndarray, Y: np.ndarray) -> np.ndarray:
                v = Y if self.forecasting_ else U[..., :-1]  # (Nc, T, d)
                return delay_embedding(v, h)  # (Nc T, h d)

            E_sum = np.zeros(h * d)
            for idx in chunks:
                E_sum += embedding(*streams(idx)[:2]).sum(axis=0)
            E_mean = E_sum / (N * T)
            EE = np.zeros((h * d, h * d))
            for idx in chunks:
                E = embedding(*streams(idx)[:2]) - E_mean
                EE += E.T @ E
            _, evecs = np.linalg.eigh(EE / (N * T))  # ascending eigenvalues
            V = evecs[:, ::-1][:, :n]  # top principal directions, (h d, <= n)
            if V.shape[1] < n:  # fewer directions than states: pad with small random ones
                V = np.hstack([V, 1e-3 * rng.normal(size=(V.shape[0], n - V.shape[1]))])

            def states(U: np.ndarray, Y: np.ndarray) -> np.ndarray:
                Nc = len(U)
                S = np.zeros((Nc, T + 1, n))  # (Nc, T+1, n)
                S[:, 1:] = ((embedding(U, Y) - E_mean) @ V).reshape(Nc, T, n)
                S[:, 0] = S[:, 1]
                return S

            S_zz, S_sz = np.zeros((n + m, n + m)), np.zeros((n, n + m))
            for idx in chunks:
                U, Y, _ = streams(idx)
                S = states(U, Y)
                Z = np.concatenate([S[:, :-1], U], axis=2).reshape(-1, n + m)  # [s_{t-1}, u_t]
                S_zz += Z.T @ Z
                S_sz += S[:, 1:].reshape(-1, n).T @ Z
            W = _ridge_solve(S_sz, S_zz, lam)  # least squares of s_t on [s_{t-1}, u_t]
            A, B = W[:, :n], W[:, n:]
        # C, D: least squares of y_t on o_t = [s_t, u_t] at the observed steps; the state
        # and observation means for their variances
        S_oo, S_yo = np.zeros((n + m, n + m)), np.zeros((k, n + m))
        s_sum, y_sum, n_o = 0.0, np.zeros(k), 0
        s1 = np.empty((N, n))
        for idx in chunks:
            U, Y, observed = streams(idx)
            S = states(U, Y)
            O = np.concatenate([S[:, 1:], U], axis=2)[observed]  # (Mo, n + m)
            S_oo += O.T @ O
            S_yo += Y[observed].T @ O
            s_sum += float(S[:, 1:].sum())
            y_sum += Y[observed].sum(axis=0)
            n_o += len(O)
            s1[idx] = S[:, 1]
        H = _ridge_solve(S_yo, S_oo, lam)  # (k, n + m)
        s_mean, y_mean = s_sum / (N * T * n), y_sum / max(n_o, 1)
        # residual covariances and centred second moments
        ss_s, ss_y, RR, QQ = 0.0, np.zeros(k), np.zeros((k, k)), np.zeros((n, n))
        for idx in chunks:
            U, Y, observed = streams(idx)
            S = states(U, Y)
            ss_s += float(((S[:, 1:] - s_mean) ** 2).sum())
            Y_obs = Y[observed]
            ss_y += ((Y_obs - y_mean) ** 2).sum(axis=0)
            res = Y_obs - np.concatenate([S[:, 1:], U], axis=2)[observed] @ H.T
            RR += res.T @ res
            if init != "random":
                Z = np.concatenate([S[:, :-1], U], axis=2).reshape(-1, n + m)
                res = S[:, 1:].reshape(-1, n) - Z @ W.T
                QQ += res.T @ res
        var_s = max(ss_s / (N * T * n), 1e-6)  # the states' variance (all components)
        if init == "random":
            Q = np.eye(n) * 0.1 * var_s
        else:
            # keep the initial dynamics stable
            rho = max(abs(np.linalg.eigvals(A))) if n else 0.0
            if rho >= 0.99:
                A = A * (0.99 / rho)
            Q = _sym(QQ / max(N * T, 1)) + np.eye(n) * 0.1 * var_s
        var_y = ss_y / n_o if n_o else np.full(k, np.nan)
        R = _sym(RR / max(n_o, 1)) + np.diag(0.1 * np.maximum(var_y, 1e-6))
        spread = np.cov(s1.T).reshape(n, n) if N > 1 else np.zeros((n, n))  # one sequence: none
        P0 = spread + np.eye(n) * 0.1 * var_s
        return LDSParams(A, B, H[:, :n], H[:, n:], Q, R, np.zeros(n), _sym(P0)), var_y

    def _prior(self, N: int, n_dyn: float, n_obs: float, var_y: np.ndarray) -> Prior:
        n, r = self.n_states, float(self.reg)
        var_y = var_y if n_obs > 1 else np.ones(len(var_y))
        return Prior(
            lam_dyn=r * n_dyn, lam_obs=r * n_obs,
            psi_Q=r * n_dyn * np.eye(n),
            psi_R=r * n_obs * np.diag(np.maximum(var_y, 1e-12)),
            psi_0=r * N * np.eye(n),
        )

    # -- chunks --------------------------------------------------------------------------
    def _streams(self, X: np.ndarray, Y: np.ndarray | None = None, mask: np.ndarray | None = None):
        """streams(idx) -> (U, Y, observed) of sequences idx, built on demand (the one-hot
        and standardised copies exist for one chunk at a time). Without ``Y`` (prediction)
        non-forecasting targets are unobserved."""
        def streams(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            Xc = X[idx]
            U = self._inputs(Xc)
            if self.forecasting_:
                Yc = self._coded(Xc, self.input_kind_, self.input_size_)
                return U, Yc, np.ones(Xc.shape[:2], dtype=bool)
            if Y is None:
                k = self.target_size_ - (self.target_kind_ == "classes")
                return U, np.zeros((*Xc.shape[:2], k)), np.zeros(Xc.shape[:2], dtype=bool)
            Yi = Y[idx]
            if self.target_kind_ == "classes":  # unscored targets may hold any value
                Yi = np.where(mask[idx], Yi, 0)
            Yc = self._coded(Yi, self.target_kind_, self.target_size_)
            return U, np.where(mask[idx, :, None], Yc, 0.0), mask[idx]
        return streams

    def _dims(self) -> tuple[int, int]:
        """m (inputs, the constant included) and k (observation dimensions)."""
        if self.forecasting_:
            kind, size = self.input_kind_, self.input_size_
            return 1, size - (kind == "tokens")
        kind, size = self.target_kind_, self.target_size_
        return self.input_size_ + 1, size - (kind == "classes")

    def _chunks(self, group: np.ndarray, T: int) -> list[np.ndarray]:
        m, k = self._dims()
        seq_bytes, pattern_bytes = engine_bytes(self.n_states, m, k, T)
        if self.backend == "filterpy":  # covariances per sequence
            group = np.arange(len(group))
        return plan_chunks(group, seq_bytes, pattern_bytes, self.chunk_size)

    # -- fitting -------------------------------------------------------------------------
    @single_blas_thread
    def _fit(self, data: SeqData, valid: SeqData | None) -> None:
        self._check_params()
        self._prepare(data)
        rng = np.random.default_rng(seed_of(self.random_state))
        N, T = data.X.shape[:2]
        m, k = self._dims()
        observed = np.ones((N, T), dtype=bool) if self.forecasting_ else data.mask  # (N, T)
        streams = self._streams(data.X, data.Y, data.mask)
        # steps up to each sequence's last observation (later ones leave the likelihood alone)
        last = np.where(observed.any(axis=1), T - 1 - np.argmax(observed[:, ::-1], axis=1), -1)
        active = np.arange(T)[None, :] <= last[:, None]  # (N, T)
        patterns, group = observation_patterns(observed)
        chunks = self._chunks(group, T)
        if valid is not None:
            streams_v = self._streams(valid.X, valid.Y, valid.mask)
            obs_v = (np.ones(valid.X.shape[:2], dtype=bool) if self.forecasting_
                     else valid.mask)
            patterns_v, group_v = observation_patterns(obs_v)
            chunks_v = self._chunks(group_v, valid.X.shape[1])
        if len(chunks) == 1:  # one chunk: build its streams once, as they fit the budget
            cached = streams(chunks[0])
            streams = lambda idx: cached  # noqa: E731
        n_obs = float(observed.sum())
        params, var_y = self._initial_params(streams, chunks, N, T, m, k, rng)
        prior = self._prior(N, float(active.sum()), n_obs, var_y)

        # standardised real observations: log p(y) = log p(y_std) - sum_d log scale_d per step
        jac = -float(np.log(self.y_scale_).sum()) if self.y_scale_ is not None else 0.0
        curve: list[dict[str, Any]] = []
        converged = False
        prev = None
        first: EMStats | None = None  # the first iteration's sums, for the data moments
        for it in range(self.max_iter + 1):
            # E-step chunk by chunk: the log-likelihood, and the M-step's sums unless this
            # is the last iteration
            stats = EMStats.zeros(N, self.n_states, m, k) if it < self.max_iter else None
            loglik = 0.0
            for idx, (U, Y, obs), f, sm in engine_chunks(params, streams, chunks, group,
                                                         patterns, backend=self.backend):
                loglik += float(f.loglik.sum())
                if stats is not None:
                    stats.add(idx, U, Y, obs, active[idx], sm, f.group, first is None)
            if stats is not None:
                if first is None:
                    first = stats
                else:
                    stats.copy_data_moments(first)
            loglik += jac * n_obs
            objective = loglik + prior.log_prior(params)
            if not np.isfinite(objective):
                raise DivergedError(f"EM log-likelihood became {objective} at iteration {it}")
            point = {"step": it, "train_loglik": loglik / n_obs,
                     "train_objective": objective / n_obs}
            if valid is not None:
                ll_v = sum(float(f.loglik.sum()) for _, _, f, _ in engine_chunks(
                    params, streams_v, chunks_v, group_v, patterns_v, smooth=False))
                point["valid_loglik"] = ll_v / max(float(obs_v.sum()), 1.0) + jac
            curve.append(point)
            if prev is not None and self.tol > 0 and objective - prev < self.tol * abs(prev):
                converged = True
                break
            if it == self.max_iter:
                break
            prev = objective
            params = em_m_step(stats, prior)
        self.params_ = params
        self.curve_ = curve
        self.n_iter_ = len(curve) - 1
        self.converged_ = converged
        self.loglik_ = loglik

    # -- prediction ----------------------------------------------------------------------
    @single_blas_thread
    def _predict(self, X: np.ndarray) -> np.ndarray:
        """Chunk by chunk: the predicted (coded) observation at every step (see the class
        docstring), un-standardised or turned into a class."""
        p = self.params_
        N, T = X.shape[:2]
        observed = np.full((1, T), self.forecasting_)  # the one observation pattern
        group = np.zeros(N, dtype=np.intp)
        out = (np.empty((N, T, self.target_size_)) if self.target_kind_ == "real"
               else np.empty((N, T), dtype=np.intp))
        for idx, (U, _, _), f, _ in engine_chunks(p, self._streams(X), self._chunks(group, T),
                                                  group, observed, smooth=False):
            if self.forecasting_:
                s_next = f.x_filt[:, 1:] @ p.A.T + U @ p.B.T  # s_{t+1|t} = A s_{t|t} + B u
                Yhat = s_next @ p.C.T + U @ p.D.T  # y_{t+1|t} = C s_{t+1|t} + D u
            else:
                Yhat = f.x_filt[:, 1:] @ p.C.T + U @ p.D.T  # y_t = C s_{t|t} + D u_t
            if self.target_kind_ == "real":
                out[idx] = Yhat * self.y_scale_ + self.y_mean_
            else:
                full = np.concatenate([Yhat, 1.0 - Yhat.sum(axis=-1, keepdims=True)], axis=-1)
                out[idx] = full[..., : self.target_size_].argmax(axis=-1)
        return out

    # -- reporting -----------------------------------------------------------------------
    def _n_parameters(self) -> int:
        p = self.params_
        n, k = p.A.shape[0], p.C.shape[0]
        return int(p.A.size + p.B.size + p.C.size + p.D.size
                   + n * (n + 1) // 2 * 2 + k * (k + 1) // 2 + n)

    def _diagnostics(self, data: SeqData) -> dict[str, Any]:
        """``state_decay``: the spectral norm of A^k for k = 0..T (T of ``data``)."""
        return {"state_decay": _state_decay(self.params_.A, int(data.T))}


def _safe_scale(std: np.ndarray) -> np.ndarray:
    return np.where(std > 1e-12, std, 1.0)


def _valid_chunk_size(v) -> bool:
    return v is None or is_int(v, 1)


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
    Kalman filter: the initial state is s_0 ~ N(m e1, kappa I), m the training series'
    mean (``offset_``) as the level and kappa = ``diffuse`` times its variance (the series
    is filtered less m, and m added back to the predictions: these models shift with their
    level), and the first n (state size) steps of every
    sequence are left out of the likelihood, since they only pin down the diffuse
    state (Durbin & Koopman 2012, sec. 5.1 and 7.2; statsmodels' ``loglikelihood_burn``).
    scipy's L-BFGS-B maximises it over the log-variances (bounded to 1e-12..1e8 times
    the variance of the first differences), from the starting values of
    :meth:`_start`; ``max_iter`` and ``tol`` are its iteration cap and tolerance.

    Prediction: for non-forecasting data (a task whose X is a noisy track and Y the
    quantity itself, say) the filtered level C s_{t|t}; for forecasting data
    (Y[t] = X[t+1]) the one-step-ahead prediction C A s_{t|t}. Real inputs and real
    targets of the same size D only; ``valid`` and the targets are not used in fitting.
    The filter runs over chunks of sequences, ``chunk_size`` at a time (None: as many as
    fit in about ``CHUNK_BYTES``; see :func:`plan_chunks`).

    Parameters
    ----------
    max_iter, tol : the L-BFGS-B iteration cap and tolerance of the variance fit.
    diffuse : kappa's factor, in [1, 1e10]: the diffuse prior's variance over the series'.
    chunk_size : sequences per chunk of the filter; None: as many as fit in the budget.
    initial : the initial state distribution N(mu0, P0) that ``predict`` (and
        ``loglik_``) use, one of

        * ``"diffuse"``: mu0 = m e1, P0 = kappa I, the prior of the variance fit: every
          sequence starts from no knowledge of its state (the only choice with one
          training series, where the start's spread cannot be estimated).
        * ``"estimated"`` (2 or more training sequences): with the fitted variances held
          fixed, mu0 and P0 maximise the likelihood of all N training sequences, every
          step included. Given A, C, Q, R
          the data of sequence i bear on s_0 only through s_hat_i = E[s_0 | Y_i] under a
          flat prior, which is N(s_0, M) with M the same for every sequence (one
          observation pattern); so s_hat_i ~ N(mu0, P0 + M), and the maximum is closed
          form: mu0 = mean s_hat_i, P0 + M = the sample covariance S of the s_hat_i with
          its eigenvalues relative to M (those of M^-1/2 S M^-1/2) raised to at least
          1 + ``P0_FLOOR`` (the maximum under P0 >= 0, kept positive definite). It is the
          fixed point of EM over (mu0, P0) (mean smoothed s_0, mean smoothed covariance
          plus spread), reached in one Kalman filter and RTS smoother pass over the
          chunks (on cv-track EM took 21 to 125 passes to gain less than 1e-13 of the
          log-likelihood per pass, and stopped 2e-6 short of it in P0).
        * ``"auto"`` (default): ``"estimated"`` when the training data hold at least
          ``AUTO_MIN_SEQUENCES`` (10) sequences and determine the start (a constant
          series does not: ``"estimated"`` raises there; with several input dimensions,
          one that does not keeps every dimension diffuse), else ``"diffuse"``. On cv-track (2
          states, 5 parameters in mu0 and P0) the estimated start lost to the diffuse
          one on average with 2 or 3 training sequences, won in 90 to 95% of 20 draws
          with 5 and in all of them from 8 on; single-series tasks (Nile, sunspots)
          keep the diffuse start.

    Fitted attributes
    -----------------
    ``sigma2_`` (D, v) the variances (``variances_`` by name), ``offset_`` (D,) the
    training means, ``initial_`` the resolved ``initial``, ``mu0_`` (D, n) and ``P0_``
    (D, n, n) the initial state s_0 of each
    dimension (in the engine's convention: the state one step before the first
    observation), ``initial_state_`` the distribution they give the state at the first
    observation, ``loglik_`` the training log-likelihood (the diffuse one the variances
    maximise for ``"diffuse"``; under the estimated start, every step, for
    ``"estimated"``).
    """

    _tags = {"input_kinds": ("real",), "target_kinds": ("real",), "predict_proba": False,
             "deterministic": True,
             "shapes": ("many-to-one", "many-to-many-synced", "many-to-many-delayed",
                        "one-to-many")}  # a series, not one-to-one
    version = 2  # 2: initial="auto" estimates the initial state from 10+ sequences
    variance_names: ClassVar[tuple[str, ...]] = ()
    A: ClassVar[np.ndarray]
    C: ClassVar[np.ndarray]
    #: ``initial="auto"`` estimates the initial state from this many training sequences up
    AUTO_MIN_SEQUENCES: ClassVar[int] = 10
    #: the estimated P0's floor: eigenvalues of M^-1/2 (P0 + M) M^-1/2 >= 1 + P0_FLOOR
    P0_FLOOR: ClassVar[float] = 1e-8
    #: the reference prior of the estimation pass: N(0, REF_PRIOR * var(y) I), proper and
    #: broad (any proper prior gives the same estimate up to rounding: 1 and 100 agreed to
    #: 3e-12 on cv-track, the diffuse 1e6 only to 3e-8)
    REF_PRIOR: ClassVar[float] = 100.0

    def __init__(self, max_iter: int = 200, tol: float = 1e-10, diffuse: float = 1e6,
                 chunk_size: int | None = None, initial: str = "auto") -> None:
        self.max_iter = max_iter
        self.tol = tol
        self.diffuse = diffuse
        self.chunk_size = chunk_size
        self.initial = initial

    # -- model structure (subclasses) ------------------------------------------------------
    def _Q(self, var: np.ndarray) -> np.ndarray:
        """Process noise covariance from the variances (all but the last, which is R)."""
        raise NotImplementedError

    def _start(self, y: np.ndarray) -> np.ndarray:
        """Starting variances (in ``variance_names`` order) from a series y (N, T)."""
        raise NotImplementedError

    def params_of(self, var: np.ndarray, scale: float, mu0: np.ndarray | None = None,
                  P0: np.ndarray | None = None) -> LDSParams:
        """The state-space matrices for variances ``var`` (observation noise last), with
        the initial state N(mu0, P0) (default: the diffuse N(0, kappa I), kappa =
        ``diffuse`` times ``scale``)."""
        n = self.A.shape[0]
        return LDSParams(
            A=np.array(self.A, float), B=np.zeros((n, 0)), C=np.array(self.C, float),
            D=np.zeros((1, 0)), Q=self._Q(var), R=np.array([[var[-1]]]),
            mu0=np.zeros(n) if mu0 is None else np.array(mu0, float),
            P0=np.eye(n) * self.diffuse * scale if P0 is None else np.array(P0, float),
        )

    # -- fitting -----------------------------------------------------------------------------
    def _check_params(self) -> None:
        need(self, is_int(self.max_iter, 1), "max_iter", "an int >= 1")
        need(self, is_real(self.tol) and self.tol >= 0, "tol", "a finite number >= 0")
        need(self, is_real(self.diffuse) and 1.0 <= self.diffuse <= 1e10, "diffuse",
             "a number in [1, 1e10]")
        need(self, _valid_chunk_size(self.chunk_size), "chunk_size", "None or an int >= 1")
        need(self, isinstance(self.initial, str) and self.initial in INITIALS, "initial",
             f"one of {', '.join(INITIALS)}")

    def loglik(self, var: np.ndarray, y: np.ndarray, scale: float) -> float:
        """Approximate diffuse log-likelihood of series y (N, T) under variances ``var``: the
        steps after the first n of each sequence, plus -1/2 log(2 pi) for each left-out
        step (Durbin & Koopman's exact diffuse log-likelihood, whose diffuse-step terms
        log|F_inf| vanish for these models, has that constant)."""
        p = self.params_of(np.asarray(var, float), scale)
        N, T = y.shape
        n = self.A.shape[0]
        total = sum(float(f.loglik_steps[:, n:].sum()) for _, f, _ in self._filter_series(p, y))
        return total - 0.5 * LOG_2PI * N * n

    def _filter_series(self, p: LDSParams, y: np.ndarray, smooth: bool = False):
        """(idx, filter result, smoother result or None) of series y (N, T), chunk by
        chunk, in order of the sequences."""
        N, T = y.shape
        group = np.zeros(N, dtype=np.intp)  # one pattern: every step observed

        def streams(idx):
            return np.zeros((len(idx), T, 0)), y[idx, :, None], np.ones((len(idx), T), bool)

        chunks = plan_chunks(group, *engine_bytes(self.A.shape[0], 0, 1, T), self.chunk_size)
        for idx, _, f, sm in engine_chunks(p, streams, chunks, group, np.ones((1, T), bool),
                                           smooth=smooth):
            yield idx, f, sm

    def _fit_initial(self, var: np.ndarray, y: np.ndarray, scale: float
                     ) -> tuple[np.ndarray, np.ndarray]:
        """The maximum-likelihood initial state (mu0 (n,), P0 (n, n)) of series y (N, T)
        under variances ``var`` (see ``initial="estimated"`` in the class docstring).

        One filter and smoother pass under the reference prior N(0, P_ref) gives each
        sequence's posterior mean x_i = E[s_0 | Y_i] and the shared posterior covariance
        P = Cov(s_0 | Y_i). With J the information Y_i carries about s_0 (the same for
        every sequence), P^-1 = P_ref^-1 + J and P^-1 x_i = J s_hat_i, so M = J^-1 =
        (P^-1 - P_ref^-1)^-1 and s_hat_i = M P^-1 x_i, exactly, whatever the reference.
        """
        n = self.A.shape[0]
        N = y.shape[0]
        P_ref = np.eye(n) * self.REF_PRIOR * scale
        p = self.params_of(var, scale, np.zeros(n), P_ref)
        x0 = np.empty((N, n))  # E[s_0 | Y_i] under the reference prior
        P = None
        name = type(self).__name__
        try:
            for idx, _, sm in self._filter_series(p, y, smooth=True):
                x0[idx] = sm.x[:, 0]
                P = sm.P[0, 0]  # one pattern: Cov(s_0 | Y_i), the same for every chunk
            P_inv = np.linalg.inv(P)
            L = np.linalg.cholesky(np.linalg.inv(_sym(P_inv - np.linalg.inv(P_ref))))  # M = L L'
        except np.linalg.LinAlgError as exc:  # e.g. a constant series: no noise to weigh
            raise DivergedError(f"{name}: cannot estimate the initial state: the smoother's "
                                "covariances are singular (a constant or noise-free series); "
                                "use initial='diffuse'") from exc
        M = L @ L.T
        s_hat = x0 @ (M @ P_inv).T  # (N, n), s_hat_i ~ N(mu0, P0 + M)
        mu0 = s_hat.mean(axis=0)
        d = s_hat - mu0
        L_inv = np.linalg.inv(L)
        lam, V = np.linalg.eigh(_sym(L_inv @ (d.T @ d / N) @ L_inv.T))  # S, whitened by M
        # the likelihood's maximum over P0 + M >= M: eigenvalues below 1 raised to 1
        W = L @ V
        P0 = _sym((W * np.maximum(lam - 1.0, self.P0_FLOOR)) @ W.T)
        if not (np.isfinite(mu0).all() and np.isfinite(P0).all()):
            raise DivergedError(f"{name}: the estimated initial state is not finite")
        return mu0, P0

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
        # each series is filtered about its training mean: these models shift with their
        # level (A e1 = e1, C e1 = 1), and a series far from 0 would strain the diffuse
        # prior N(0, kappa I) and float64 (a level of 1e8 with noise of 1 did)
        self.offset_ = np.array([float(np.mean(data.X[:, :, d])) for d in range(Dx)])
        X = data.X - self.offset_
        self.sigma2_ = np.stack([self._fit_series(X[:, :, d]) for d in range(Dx)])  # (D, v)
        self.scale_ = np.array([max(float(np.var(X[:, :, d])), 1e-12) for d in range(Dx)])
        initial = self.initial
        if initial == "auto":
            initial = "estimated" if N >= self.AUTO_MIN_SEQUENCES else "diffuse"
        elif initial == "estimated" and N < 2:
            raise IncompatibleError(f"{type(self).__name__}: initial='estimated' needs at "
                                    f"least 2 training sequences to estimate the start's "
                                    f"spread, got {N}; use 'diffuse' or 'auto'")
        self.initial_ = initial
        fits = None
        if initial == "estimated":
            try:
                fits = [self._fit_initial(self.sigma2_[d], X[:, :, d], self.scale_[d])
                        for d in range(Dx)]
            except DivergedError:
                if self.initial != "auto":
                    raise
                self.initial_ = "diffuse"  # "auto" where the data cannot pin the start down
        level = self._level_state(self.offset_)  # (D, n): the offsets as states
        if fits is not None:
            self.mu0_ = np.stack([mu0 for mu0, _ in fits]) + level  # (D, n)
            self.P0_ = np.stack([P0 for _, P0 in fits])  # (D, n, n)
            self.loglik_ = float(sum(
                f.loglik.sum() for d in range(Dx)
                for _, f, _ in self._filter_series(self._params(d), X[:, :, d])))
        else:
            self.mu0_ = level
            self.P0_ = np.stack([self.params_of(self.sigma2_[d], self.scale_[d]).P0
                                 for d in range(Dx)])  # the diffuse prior
            self.loglik_ = float(sum(self.loglik(self.sigma2_[d], X[:, :, d],
                                                 self.scale_[d]) for d in range(Dx)))
        self.curve_ = []

    def _params(self, d: int) -> LDSParams:
        """The fitted state-space model of input dimension ``d``, for the series less its
        ``offset_``."""
        mu0 = self.mu0_[d] - self._level_state(self.offset_[d])
        return self.params_of(self.sigma2_[d], self.scale_[d], mu0, self.P0_[d])

    def _level_state(self, level):
        """The state (n,) (or states (..., n) for levels (...)) of a pure level: level e1,
        the shift these models allow (A e1 = e1, C e1 = 1)."""
        return np.multiply.outer(level, np.eye(self.A.shape[0])[0])

    @property
    def variances_(self) -> list[dict[str, float]]:
        """Fitted variances per input dimension, by name; needs a fit."""
        self._check_fitted()
        return [dict(zip(self.variance_names, map(float, v))) for v in self.sigma2_]

    @property
    def initial_state_(self) -> list[dict[str, list]]:
        """Per input dimension, the distribution of the state at the first observation,
        s_1 ~ N(A mu0, A P0 A' + Q), as ``{"mean": [n], "cov": [[n] * n]}`` (state
        components in the order of the class docstring's model); needs a fit."""
        self._check_fitted()
        out = []
        for d in range(len(self.sigma2_)):
            p = self._params(d)
            out.append({"mean": (p.A @ self.mu0_[d]).tolist(),  # in the data's coordinates
                        "cov": _sym(p.A @ p.P0 @ p.A.T + p.Q).tolist()})
        return out

    # -- prediction ----------------------------------------------------------------------
    @single_blas_thread
    def _predict(self, X: np.ndarray) -> np.ndarray:
        N, T, Dx = X.shape
        out = np.empty((N, T, Dx))
        for d in range(Dx):
            p = self._params(d)
            for idx, f, _ in self._filter_series(p, X[:, :, d] - self.offset_[d]):
                s = f.x_filt[:, 1:]  # s_{t|t}, (Nc, T, n)
                if self.forecasting_:
                    s = s @ p.A.T  # s_{t+1|t} = A s_{t|t}
                out[idx, :, d] = (s @ p.C.T)[..., 0] + self.offset_[d]  # C s, shifted back
        return out

    def _n_parameters(self) -> int:
        """The variances, and mu0 and P0 (n + n (n + 1) / 2 per dimension) when estimated."""
        n = self.A.shape[0]
        per_dim = n + n * (n + 1) // 2 if self.initial_ == "estimated" else 0
        return int(self.sigma2_.size + per_dim * len(self.sigma2_))

    def _diagnostics(self, data: SeqData) -> dict[str, Any]:
        """``state_decay``: the spectral norm of A^k for k = 0..T (T of ``data``)."""
        return {"state_decay": _state_decay(np.array(self.A, float), int(data.T))}


class LocalLevel(StructuralModel):
    """Local level: a random walk observed with noise, variances by maximum likelihood.

    The model (``local-level``)::

        mu_t = mu_{t-1} + eta_t,   eta_t ~ N(0, sigma2_level)
        y_t  = mu_t + eps_t,       eps_t ~ N(0, sigma2_irregular)

    Durbin & Koopman's (2012) Nile example: sigma2_irregular = 15099, sigma2_level = 1469.1.
    See :class:`StructuralModel` for fitting, prediction and ``initial``.
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
    """Local linear trend: a level with a random-walk slope, variances by maximum likelihood.

    The model (``local-linear-trend``)::

        mu_t   = mu_{t-1} + beta_{t-1} + eta_t,   eta_t  ~ N(0, sigma2_level)
        beta_t = beta_{t-1} + zeta_t,              zeta_t ~ N(0, sigma2_trend)
        y_t    = mu_t + eps_t,                     eps_t  ~ N(0, sigma2_irregular)

    State (level, slope). See :class:`StructuralModel` for fitting, prediction and
    ``initial``.
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
    """Constant-velocity track: position and velocity, noise variances by maximum likelihood.

    The model (``constant-velocity``), dt = 1::

        [p_t, v_t]' = [[1, 1], [0, 1]] [p_{t-1}, v_{t-1}]' + w_t,
                      w_t ~ N(0, q [[1/3, 1/2], [1/2, 1]])   (continuous white-noise
                      acceleration of spectral density q, discretised; Bar-Shalom et al. 2001)
        y_t = p_t + eps_t,   eps_t ~ N(0, r)

    State (position, velocity); variances ``acceleration`` (q) and ``measurement`` (r).
    See :class:`StructuralModel` for fitting, prediction and ``initial``.
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
