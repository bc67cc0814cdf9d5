"""Memoryless families: a linear model (AR) and an MLP on a window of delay taps.

Both see, at step t, only the last ``p`` inputs (the delay taps)::

    z_t = [x_t, x_{t-1}, ..., x_{t-p+1}]

so neither can use anything more than ``p - 1`` steps back: the benchmark's
reference point for "no memory beyond the window".

Delay taps (:func:`delay_taps`)
-------------------------------
* Token inputs are one-hot encoded, tap by tap: column ``k * V + x_{t-k}`` of a
  sparse ``(M, p * V)`` matrix is 1. A tap before the sequence start is the zero
  vector, which no token produces, so padding and tokens are never confused.
* Real inputs are used as they are: a dense ``(M, p * D)`` block, taps before the
  start zero-filled. With ``start_indicator`` (the default) ``p - 1`` columns are
  appended, column ``k - 1`` being 1 where tap k (k >= 1) lies before the start,
  so a model can tell the zero fill from a zero input.
* Sequences padded on the right are handled like any other steps: a tap reads
  whatever stands at ``t - k``; since the taps look backwards only, the padding
  never reaches a real step.

Features are built only for the positions needed: the scored positions
(``mask``) in fit, all positions in predict. Both are vectorised over sequences and
steps.

Memory. The design matrix has ``p * D (+ p - 1)`` float64 columns per position (tokens:
``p`` stored entries), about p copies of the inputs where every step is scored, so it is
never built whole. Features are built for blocks of whole sequences of about
``_CHUNK_BYTES`` (16 MiB of features and what building them takes; at least one
sequence). Predict reduces each block to its output (probabilities, or class ids for
``predict``) before the next. The AR fit for real targets sums the normal equations over
blocks (:func:`least_squares_blocks`); the logistic AR (class targets) sums its loss and
gradient over them at every L-BFGS evaluation (:func:`fit_logistic_blocks`), keeping the
first 32 MiB of blocks between evaluations. Blocks are runs of whole sequences, so not
even the positions' indices exist whole. The MLP builds the features of a run of whole
mini-batches at a time (one ``partial_fit`` each), in an order shuffled over the scored
positions, whose flat indices (int32) it holds, unless every step is scored; its
standardisation and validation loss are taken over blocks.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import numpy as np
from scipy import linalg, sparse

from ..data import SeqData
from .base import SeqModel, block_moments, is_int, is_real, need, seed_of, sequence_moments

#: the feature block built at once (predict, AR fit, the MLP's runs of mini-batches), in
#: bytes of working memory: see :meth:`_DelayTapModel._position_bytes`
_CHUNK_BYTES = 16 * 2**20
#: working bytes per stored one-hot tap entry: the CSR matrix's value and index (12) plus
#: what building it takes (the step index, the token gathered, the column)
_SPARSE_ENTRY_BYTES = 32


def delay_taps(
    X: np.ndarray,
    p: int,
    input_size: int,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    start_indicator: bool = True,
):
    """Delay-tap features at positions ``(rows[m], cols[m])``, m = 0..M-1.

    Row m holds taps ``k = 0..p-1`` of sequence ``rows[m]``: ``x_{t-k}`` with
    ``t = cols[m]``. Tokens ((N, T) ints, vocabulary ``input_size``) give a CSR
    matrix (M, p * V) of one-hot taps, all-zero for taps before the start (stored as
    explicit zeros: every row holds exactly p entries). Real
    inputs ((N, T, D) floats) give a dense (M, p * D) array, taps before the start
    zero-filled, followed by ``p - 1`` before-start indicators (taps 1..p-1) when
    ``start_indicator`` is true.
    """
    rows = np.asarray(rows, dtype=np.intp)
    M = rows.shape[0]
    step = np.int32 if X.shape[1] < 2**31 else np.intp  # the steps' index type
    src = np.asarray(cols, dtype=step)[:, None] - np.arange(p, dtype=step)  # (M, p): t - k
    inside = src >= 0  # (M, p): tap k lies inside the sequence
    np.maximum(src, 0, out=src)
    if X.ndim == 2:  # tokens
        V = int(input_size)
        idx = np.int32 if p * V < 2**31 and M * p < 2**31 else np.int64
        col = X[rows[:, None], src].astype(idx, copy=False)  # (M, p) x_{t-k}
        del src
        col += (np.arange(p) * V).astype(idx)  # one-hot column of x_{t-k} in block k
        # exactly p stored entries per row, in tap order (so sorted): 1 for a tap inside
        # the sequence, an explicit 0 (a zero vector's worth) for a tap before the start
        return sparse.csr_matrix(
            (inside.astype(np.float64).ravel(), col.ravel(),
             np.arange(0, M * p + 1, p, dtype=idx)), shape=(M, p * V))
    D = X.shape[2]
    extra = p - 1 if start_indicator and p > 1 else 0
    out = np.empty((M, p * D + extra))  # filled in place, tap by tap
    taps = out[:, :p * D].reshape(M, p, D)  # a view of out
    for k in range(p):  # x_{t-k}, zero before the start
        np.multiply(X[rows, src[:, k]], inside[:, k, None], out=taps[:, k])  # (M, D)
    if extra:
        out[:, p * D:] = ~inside[:, 1:]  # (M, p-1) before-start indicators
    return out


def n_tap_features(p: int, input_kind: str, input_size: int, start_indicator: bool) -> int:
    """Number of columns :func:`delay_taps` produces."""
    if input_kind == "tokens":
        return p * input_size
    return p * input_size + (p - 1 if start_indicator else 0)


def least_squares(F, Y: np.ndarray, alpha: float = 0.0, fit_intercept: bool = True):
    """Least squares of Y (M, K) on F (M, F), dense or sparse: :func:`least_squares_blocks`
    with F and Y as one block."""
    return least_squares_blocks(lambda: [(F, Y)], alpha, fit_intercept)


def least_squares_blocks(blocks, alpha: float = 0.0, fit_intercept: bool = True):
    """Least squares (ridge for ``alpha > 0``; the intercept is not penalised), from blocks
    of rows.

    ``blocks()`` returns an iterable of row blocks ``(F_b, Y_b)`` of the features F
    (M, F), dense or sparse, and the targets Y (M, K); it is called twice (sums, then
    centred products), so F need never exist whole. Minimises
    ``||Y - b - F W'||^2 + alpha ||W||^2`` over W (K, F) and b (K,).
    Centering removes the intercept: ``W' = argmin ||Yc - Fc W'||^2 + alpha ||W||^2``
    with ``Fc = F - mean(F)``, ``Yc = Y - mean(Y)``, then ``b = mean(Y) - W mean(F)``.
    Solved through the normal equations ``(Fc'Fc + alpha I) W' = Fc'Yc``, summed over the
    blocks (sparse products for one-hot taps), by SVD-based least squares on that system,
    which gives the minimum-norm solution where it is singular (one-hot blocks always sum
    to one, a before-start indicator may never be set). Centering keeps the system well
    conditioned for agreement with statsmodels' AutoReg to about 1e-12 on sunspots; the
    normal equations keep a fit on ~30k positions x ~700 features near a second on one
    core. Blocks change the result only by the order of summation.
    """
    M, f_sum, y_sum = 0, 0.0, 0.0
    for F, Y in blocks():  # the means
        M += F.shape[0]
        f_sum = f_sum + np.asarray(F.sum(axis=0)).ravel()  # (F,)
        y_sum = y_sum + np.asarray(Y, dtype=np.float64).sum(axis=0)  # (K,)
        del F, Y  # before the next block is built
    n_feat, K = len(f_sum), len(y_sum)
    mu = f_sum / M if fit_intercept else np.zeros(n_feat)  # (F,)
    ybar = y_sum / M if fit_intercept else np.zeros(K)  # (K,)
    G, c, yc_sum = np.zeros((n_feat, n_feat)), np.zeros((n_feat, K)), np.zeros(K)
    is_sparse = False
    for F, Y in blocks():  # the centred normal equations
        Yc = np.asarray(Y, dtype=np.float64) - ybar  # (M_b, K)
        if sparse.issparse(F):
            is_sparse = True
            G += (F.T @ F).toarray()  # F'F
            c += np.asarray(F.T @ Yc)  # F'Yc
            yc_sum += Yc.sum(axis=0)
        else:
            Fc = F - mu  # (M_b, F)
            G += Fc.T @ Fc  # Fc'Fc
            c += Fc.T @ Yc  # Fc'Yc
            del Fc
        del F, Y  # before the next block is built
    if is_sparse:  # centred without densifying F
        G -= M * np.outer(mu, mu)  # Fc'Fc = F'F - M mu mu'
        c -= np.outer(mu, yc_sum)  # Fc'Yc = F'Yc - mu (1'Yc)
    W = linalg.lstsq(G + alpha * np.eye(n_feat), c, lapack_driver="gelsd")[0]  # (F, K)
    b = ybar - mu @ W  # b = ybar - W mu
    return W.T, b  # (K, F), (K,)


def scored_positions(mask: np.ndarray, block: int = 2**20) -> np.ndarray:
    """The flat indices ``t + T n`` of the True entries of ``mask`` (N, T), in row-major
    order (``np.flatnonzero``), as int32 when they fit (half the bytes of int64: for tokens
    with every step scored, int64 indices alone weigh as much as X), built a block of
    about ``block`` entries at a time so no int64 copy of them is ever whole."""
    N, T = mask.shape
    dtype = np.int32 if mask.size < 2**31 else np.int64
    out = np.empty(int(mask.sum()), dtype=dtype)
    rows = max(1, block // max(T, 1))
    at = 0
    for a in range(0, N, rows):
        f = np.flatnonzero(mask[a:a + rows]) + a * T  # (m,) int64, one block
        out[at:at + len(f)] = f
        at += len(f)
    return out


class _DelayTapModel(SeqModel):
    """Shared window code: features at scored positions in fit, chunked prediction."""

    _tags = {"deterministic": True, "predict_proba": True}

    def _check_window(self) -> None:
        need(self, is_int(self.p) and self.p >= 1, "p", "an int >= 1")
        need(self, isinstance(self.start_indicator, bool), "start_indicator", "a bool")

    def _features(self, X: np.ndarray, rows: np.ndarray, cols: np.ndarray):
        return delay_taps(X, self.p, self.input_size_, rows, cols,
                          start_indicator=self.start_indicator)

    def _position_bytes(self) -> int:
        """Working bytes of one position's features: its p one-hot taps (sparse; what
        building them takes included), or every float64 column."""
        if self.input_kind_ == "tokens":
            return self.p * _SPARSE_ENTRY_BYTES
        return 8 * n_tap_features(self.p, self.input_kind_, self.input_size_,
                                  self.start_indicator)

    def _scored_spans(self, data: SeqData) -> list[tuple[int, int]]:
        """Runs of whole sequences ``[a, b)`` whose scored positions hold at most
        ``_CHUNK_BYTES`` of features (a single sequence over that budget is a run of its
        own), covering every sequence with a scored position."""
        per_seq = data.mask.sum(axis=1) * self._position_bytes()  # (N,) bytes per sequence
        spans, a, total = [], 0, 0
        for i, e in enumerate(per_seq.tolist()):
            if total and total + e > _CHUNK_BYTES:
                spans.append((a, i))
                a, total = i, 0
            total += e
        if total:
            spans.append((a, len(per_seq)))
        return spans

    def _span_block(self, data: SeqData, span: tuple[int, int]):
        """Features and targets at the scored positions of sequences ``span``."""
        a, b = span
        r, c = np.nonzero(data.mask[a:b])  # (M_b,) each, rows relative to a
        r += a
        return self._features(data.X, r, c), data.Y[r, c]  # (M_b, F), (M_b,) or (M_b, K)

    def _scored_parts(self, data: SeqData) -> list:
        """One function per block of whole sequences of at most ``_CHUNK_BYTES`` of
        features (see :meth:`_scored_spans`), building the features and targets at its
        scored positions, so neither the design matrix nor the positions' indices ever
        exist whole (for :func:`fit_logistic_blocks`)."""
        return [functools.partial(self._span_block, data, span)
                for span in self._scored_spans(data)]

    def _scored_blocks(self, data: SeqData):
        """``blocks()`` -> the blocks of :meth:`_scored_parts`, built one after another (for
        :func:`least_squares_blocks` and the moments)."""
        parts = self._scored_parts(data)
        return lambda: (part() for part in parts)

    def _map_steps(self, X: np.ndarray, fn, width: int | None, dtype=np.float64) -> np.ndarray:
        """Apply ``fn`` (features (M, F) -> outputs (M, width), or (M,) when ``width`` is
        None) at every step, in chunks of sequences; returns (N, T, width) or (N, T) of
        ``dtype``, filled chunk by chunk (no whole intermediate)."""
        N, T = X.shape[:2]
        per_seq = T * self._position_bytes()
        chunk = max(1, _CHUNK_BYTES // max(per_seq, 1))
        shape = (N, T) if width is None else (N, T, width)
        out = np.empty(shape, dtype=dtype)
        steps = np.arange(T)
        for s in range(0, N, chunk):
            n = min(chunk, N - s)
            rows = np.repeat(np.arange(s, s + n), T)
            cols = np.tile(steps, n)
            out[s:s + n] = np.asarray(fn(self._features(X, rows, cols))).reshape(n, *shape[1:])
        return out

    def _map_predict(self, X: np.ndarray, fn) -> np.ndarray:
        """``predict`` from ``fn`` (features -> per-class scores or real outputs (M, K)):
        the class of the highest score, taken chunk by chunk ((N, T) ids), or the outputs
        (N, T, K)."""
        if self.target_kind_ == "classes":
            return self._map_steps(X, lambda F: np.argmax(fn(F), axis=-1), None, np.int64)
        return self._map_steps(X, fn, self.target_size_)


class AutoRegressive(_DelayTapModel):
    """A linear model on the last ``p`` inputs (delay taps; tokens one-hot).

    * Real targets: least squares on the taps, ridge with ``alpha > 0`` (the
      intercept is never penalised), its normal equations summed over blocks of
      positions; see :func:`least_squares_blocks`. On a univariate
      series given as a forecasting task (``Y[t] = x_{t+1}``), scored from step
      ``p - 1`` on, this is exactly the conditional least-squares AR(p)
      ``x_{t+1} = c + sum_k phi_k x_{t+1-k} + e``. Scored positions closer to the
      start than ``p - 1`` steps use the zero fill (and the start indicators).
    * Class targets: multinomial logistic regression, scikit-learn's
      ``LogisticRegression`` objective (L2 with inverse strength ``C``) minimised by
      L-BFGS with its settings (at most ``max_iter`` iterations, gradient tolerance
      ``tol``), the loss and gradient summed over blocks of positions; see
      :func:`fit_logistic_blocks`. Real input features are standardised first (the
      scaling is part of the model). Classes absent from the training targets get
      probability 0.

    ``valid`` is not used: both fits are convex and run to their optimum. Both are
    deterministic; ``random_state`` is accepted for the common interface and not used.

    Fitted attributes: ``coef_`` (K, F) and ``intercept_`` (K,) in the original
    feature space (F = :func:`n_tap_features`); ``lag_coef_`` (K, p, V or D), the
    weights of tap k on its input (for tokens: the logit or value added by each
    token seen k steps back).
    """

    def __init__(
        self,
        p: int = 16,
        alpha: float = 0.0,
        fit_intercept: bool = True,
        C: float = 1.0,
        max_iter: int = 200,
        tol: float = 1e-4,
        start_indicator: bool = True,
        random_state: int | None = None,
    ) -> None:
        self.p = p
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.start_indicator = start_indicator
        self.random_state = random_state

    def _check_params(self) -> None:
        self._check_window()
        need(self, is_real(self.alpha) and 0 <= self.alpha < np.inf, "alpha",
              "a finite float >= 0")
        need(self, isinstance(self.fit_intercept, bool), "fit_intercept", "a bool")
        need(self, is_real(self.C) and self.C > 0, "C", "a float > 0")
        need(self, is_int(self.max_iter) and self.max_iter >= 1, "max_iter", "an int >= 1")
        need(self, is_real(self.tol) and 0 < self.tol < np.inf, "tol", "a finite float > 0")
        seed_of(self.random_state, self)

    def _fit(self, data: SeqData, valid: SeqData | None) -> None:
        self._check_params()
        if data.target_kind == "real":  # the normal equations, block by block
            self.coef_, self.intercept_ = least_squares_blocks(
                self._scored_blocks(data), float(self.alpha), self.fit_intercept)
        else:
            self.coef_, self.intercept_ = fit_logistic_blocks(
                self._scored_parts(data), data.target_size, C=float(self.C),
                max_iter=self.max_iter, fit_intercept=self.fit_intercept,
                standardise=data.input_kind == "real", tol=float(self.tol),
            )
        width = self.input_size_
        self.lag_coef_ = self.coef_[:, : self.p * width].reshape(-1, self.p, width)

    def _linear(self, F) -> np.ndarray:
        return np.asarray(F @ self.coef_.T) + self.intercept_  # (M, K)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._map_steps(X, lambda F: _softmax(self._linear(F)),
                               self.target_size_)  # (N, T, K)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._map_predict(X, self._linear)  # (N, T) ids or (N, T, K)

    def _n_parameters(self) -> int:
        return int(self.coef_.size + (self.intercept_.size if self.fit_intercept else 0))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    with np.errstate(under="ignore"):
        e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


#: the feature blocks a logistic fit keeps between its L-BFGS evaluations (32 MiB); blocks
#: past this budget are built again at every evaluation
_LOGISTIC_CACHE_BYTES = 32 * 2**20


def _nbytes(F) -> int:
    if sparse.issparse(F):
        return int(F.data.nbytes + F.indices.nbytes + F.indptr.nbytes)
    return int(F.nbytes)


def _fit_logistic(F, y, n_classes, *, C, max_iter, fit_intercept, tol=1e-4):
    """:func:`fit_logistic_blocks` on the whole of F (M, F) and y (M,) as one block, not
    standardised."""
    return fit_logistic_blocks([lambda: (F, y)], n_classes, C=C, max_iter=max_iter,
                               fit_intercept=fit_intercept, tol=tol)


def fit_logistic_blocks(parts, n_classes, *, C=1.0, max_iter=200, fit_intercept=True,
                        standardise=False, tol=1e-4):
    """Multinomial logistic regression from blocks of rows -> (coef (K, F), intercept (K,))
    over all ``n_classes`` classes.

    ``parts`` is a sequence of functions, each building one row block ``(F_b, y_b)`` of the
    features F (M, F), dense or sparse, and the class ids y (M,); a block may be built many
    times, so F need never exist whole. The objective is scikit-learn's
    ``LogisticRegression`` (lbfgs, L2): with the classes present in y (K' of them) and
    logits ``z = W f + b``,

        L(W, b) = (1/M) sum_m [logsumexp(z_m) - z_m[y_m]] + ||W||^2 / (2 C M)

    (the intercept is not penalised); with two classes present, the binary form
    ``(1/M) sum_m [log(1 + e^{z_m}) - [y_m = c_1] z_m]`` with one weight vector, mapped
    to logits (0, z). It is minimised by scipy's L-BFGS-B from zero with scikit-learn's
    settings (``maxiter=max_iter``, ``gtol=tol``, ``maxls=50``, ``ftol=64 eps``), the loss
    and its gradient ``(1/M) F'(P - Y) + W / (C M)`` summed block by block, so the optimum
    is scikit-learn's (to the solver's tolerance). The first blocks, up to
    ``_LOGISTIC_CACHE_BYTES``, are kept between evaluations; the rest are built again at
    each. With ``standardise`` the (dense) features are centred and scaled by their mean
    and (population) standard deviation first (from :func:`block_moments`; constant
    columns keep scale 1), in place: each call of a part must then return a new array. The
    weights are mapped back, so the result applies to the raw features.
    Absent classes get logit -inf (probability 0); with one class present the model
    predicts it with probability 1.
    """
    from scipy import optimize
    from scipy.special import expit

    def blocks():
        return (part() for part in parts)

    present, M, n_feat = np.zeros(0, dtype=np.int64), 0, None
    for F, y in blocks():
        present = np.union1d(present, np.unique(y))
        M += len(y)
        n_feat = F.shape[1]
        del F, y  # before the next block is built
    coef = np.zeros((n_classes, n_feat))
    intercept = np.full(n_classes, -np.inf)
    if len(present) == 1:
        intercept[present[0]] = 0.0
        return coef, intercept
    m, s = np.zeros(n_feat), np.ones(n_feat)
    if standardise:  # z = (f - m) / s; logits W z + b = (W / s) f + (b - W m / s)
        m, s = block_moments(lambda: (np.asarray(F) for F, _ in blocks()))
        s = np.where(s > 0, s, 1.0)
    code = np.full(n_classes, -1, dtype=np.int64)
    code[present] = np.arange(len(present))  # class id -> column among the present
    binary = len(present) == 2
    K = 1 if binary else len(present)  # weight vectors
    cache: list = []  # the first blocks, prepared, while they fit the budget
    room = [_LOGISTIC_CACHE_BYTES]

    def prepared():
        yield from cache  # kept from an earlier evaluation
        for j in range(len(cache), len(parts)):
            F, y = parts[j]()
            if standardise:  # in place: the part built a new block
                F -= m
                F /= s
            blk = (F, code[y])  # (M_b, F), (M_b,) columns among the present classes
            if j == len(cache) and _nbytes(F) + y.nbytes <= room[0]:
                cache.append(blk)
                room[0] -= _nbytes(F) + y.nbytes
            yield blk

    n_w = K * n_feat

    def loss_grad(w):
        W = w[:n_w].reshape(K, n_feat)  # (K, F)
        b = w[n_w:] if fit_intercept else np.zeros(K)  # (K,)
        loss, gW, gb = 0.0, np.zeros((K, n_feat)), np.zeros(K)
        for F, c in prepared():
            Z = np.asarray(F @ W.T) + b  # (M_b, K) logits
            if binary:
                z = Z[:, 0]
                loss += float(np.sum(np.logaddexp(0.0, z) - (c == 1) * z))  # log(1 + e^z) - y z
                R = (expit(z) - (c == 1))[:, None]  # dL/dz = sigma(z) - y, (M_b, 1)
            else:
                at = (np.arange(len(c)), c)  # z_m[y_m]
                loss -= float(np.sum(Z[at]))
                top = Z.max(axis=1, keepdims=True)  # (M_b, 1)
                R = Z  # in place from here: Z is not needed again
                R -= top
                np.exp(R, out=R)  # e^{z - max z}, (M_b, K)
                total = R.sum(axis=1, keepdims=True)
                loss += float(np.sum(top) + np.sum(np.log(total)))  # sum of logsumexp(z_m)
                R /= total  # softmax P
                R[at] -= 1.0  # dL/dz = P - onehot(y), (M_b, K)
            gW += np.asarray(F.T @ R).T  # F'(P - Y) -> (K, F)
            gb += R.sum(axis=0)
        pen = 1.0 / (C * M)  # the L2 strength of scikit-learn's mean-loss objective
        loss = loss / M + 0.5 * pen * float(np.sum(W * W))
        gW = gW / M + pen * W
        g = np.concatenate([gW.ravel(), gb / M]) if fit_intercept else gW.ravel()
        return loss, g

    w0 = np.zeros(n_w + (K if fit_intercept else 0))
    res = optimize.minimize(loss_grad, w0, method="L-BFGS-B", jac=True,
                            options={"maxiter": max_iter, "maxls": 50, "gtol": tol,
                                     "ftol": 64 * np.finfo(float).eps})
    W = res.x[:n_w].reshape(K, n_feat)
    b = res.x[n_w:] if fit_intercept else np.zeros(K)
    if binary:  # the logit of the second class is w f + b; the first class gets logit 0
        W = np.vstack([np.zeros(n_feat), W[0]])
        b = np.array([0.0, b[0]])
    b = b - W @ (m / s)  # back to the raw features
    W = W / s
    coef[present] = W
    intercept[present] = b
    return coef, intercept


class FeedForward(_DelayTapModel):
    """A multilayer perceptron on the last ``p`` inputs (the same delay taps as AR).

    scikit-learn's ``MLPClassifier`` (softmax output, cross-entropy) or
    ``MLPRegressor`` (linear output, squared error) with hidden layers
    ``hidden_sizes``, trained by Adam (learning rate ``lr``, L2 penalty ``alpha``,
    mini-batches of ``batch_size`` scored positions reshuffled every epoch).

    Training runs for at most ``max_iter`` epochs over the scored positions, reshuffled
    every epoch (``numpy.random.default_rng(random_state)``), in mini-batches taken in that
    order; the features are built for a run of whole mini-batches at a time (about 16 MiB)
    and handed to ``partial_fit``, so the design matrix of all the scored positions never
    exists whole.
    After
    each epoch the loss on ``valid`` (mean cross-entropy or mean squared error at its
    scored positions; the training loss when no ``valid`` is given) is recorded in
    the training curve; the weights with the lowest such loss are kept, and training
    stops after ``patience`` epochs without an improvement of at least ``tol``.
    Real input features are standardised, and for real targets so are the targets
    (predictions are mapped back); both scalings are part of the fitted model.
    """

    #: 2: one ``partial_fit`` per run of whole mini-batches (a different Adam schedule)
    version = 2

    _tags = {"seeded": True}

    def __init__(
        self,
        p: int = 16,
        hidden_sizes: tuple = (64,),
        activation: str = "relu",
        alpha: float = 1e-4,
        lr: float = 2e-3,
        batch_size: int = 256,
        max_iter: int = 30,
        patience: int = 5,
        tol: float = 1e-4,
        start_indicator: bool = True,
        random_state: int | None = None,
    ) -> None:
        self.p = p
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.alpha = alpha
        self.lr = lr
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.patience = patience
        self.tol = tol
        self.start_indicator = start_indicator
        self.random_state = random_state

    def _check_params(self) -> None:
        self._check_window()
        hs = self.hidden_sizes
        need(self, isinstance(hs, tuple | list) and len(hs) >= 1
              and all(is_int(h) and h >= 1 for h in hs),
              "hidden_sizes", "a non-empty tuple of ints >= 1")
        need(self, self.activation in ("relu", "tanh", "logistic", "identity"), "activation",
              "'relu', 'tanh', 'logistic' or 'identity'")
        need(self, is_real(self.alpha) and 0 <= self.alpha < np.inf, "alpha",
              "a finite float >= 0")
        need(self, is_real(self.lr) and 0 < self.lr < np.inf, "lr", "a finite float > 0")
        need(self, is_int(self.batch_size) and self.batch_size >= 1, "batch_size",
              "an int >= 1")
        need(self, is_int(self.max_iter) and self.max_iter >= 1, "max_iter", "an int >= 1")
        need(self, is_int(self.patience) and self.patience >= 1, "patience", "an int >= 1")
        need(self, is_real(self.tol) and 0 <= self.tol < np.inf, "tol", "a finite float >= 0")
        seed_of(self.random_state, self)

    def _prepare(self, F):
        """Standardised real features (F - mean) / scale, in one new array."""
        if self.x_mean_ is None:
            return F
        Fz = F - self.x_mean_
        Fz /= self.x_scale_
        return Fz

    def _loss(self, data: SeqData) -> float:
        """Mean cross-entropy (classes) or mean squared error in standardised units over the
        scored positions of ``data``, a block of positions at a time."""
        total, n = 0.0, 0
        for F, y in self._scored_blocks(data)():
            F = self._prepare(F)  # (M_b, F)
            if self.target_kind_ == "classes":
                p = self.net_.predict_proba(F)[np.arange(len(y)), y]  # p(y | x)
                total -= float(np.sum(np.log(np.clip(p, 1e-12, 1.0))))
            else:
                z = (y - self.y_mean_) / self.y_scale_  # (M_b, K)
                total += float(np.sum(np.mean((self.net_.predict(F).reshape(z.shape) - z) ** 2,
                                              axis=1)))
            n += len(y)
        return total / max(n, 1)

    def _fit(self, data: SeqData, valid: SeqData | None) -> None:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        self._check_params()
        # the flat indices of the scored positions (M,); none needed when every step is
        # scored: position i is then step i % T of sequence i // T
        every = bool(data.mask.all())
        flat = None if every else scored_positions(data.mask)
        M, T = data.mask.size if every else len(flat), data.mask.shape[1]
        order_dtype = np.int32 if M < 2**31 else np.int64
        classes = data.target_kind == "classes"
        self.x_mean_ = self.x_scale_ = None
        if data.input_kind == "real":  # over the scored positions' features, by blocks
            self.x_mean_, s = block_moments(lambda: (F for F, _ in self._scored_blocks(data)()))
            self.x_scale_ = np.where(s > 0, s, 1.0)
        if not classes:  # over the scored targets, without building features
            self.y_mean_, s = sequence_moments(data.Y, data.mask)
            self.y_scale_ = np.where(s > 0, s, 1.0)
        B = min(self.batch_size, M)
        # the features of a run of whole mini-batches (about _CHUNK_BYTES) at a
        # time, one partial_fit on it: scikit-learn, not shuffling, takes one Adam step per
        # batch of B in order, as if it had the whole design matrix in this order; the
        # design matrix of all the scored positions never exists whole
        chunk = B * max(1, _CHUNK_BYTES // (self._position_bytes() * B))
        common = dict(hidden_layer_sizes=tuple(self.hidden_sizes), activation=self.activation,
                      solver="adam", alpha=float(self.alpha), batch_size=B,
                      learning_rate_init=float(self.lr),
                      random_state=seed_of(self.random_state), shuffle=False)
        net = MLPClassifier(**common) if classes else MLPRegressor(**common)
        self.net_ = net
        rng = np.random.default_rng(seed_of(self.random_state))  # the epochs' shuffles

        def steps(idx) -> float:
            """Adam steps on the positions ``idx``, B at a time; their mean loss (with the
            L2 term)."""
            rows, cols = np.divmod(idx if flat is None else flat[idx], T)  # (C,) each
            F = self._prepare(self._features(data.X, rows, cols))  # (C, F)
            y = data.Y[rows, cols]  # (C,) ids or (C, K)
            if classes:
                net.partial_fit(F, y, classes=np.arange(data.target_size))
            else:
                z = (y - self.y_mean_) / self.y_scale_  # (C, K) standardised targets
                net.partial_fit(F, z[:, 0] if z.shape[1] == 1 else z)  # (C,) for one output
            return float(net.loss_)

        curve: list[dict[str, Any]] = []
        best = (np.inf, None, 0)
        bad = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            # an epoch's last batch may be short: scikit-learn then clips batch_size to it
            warnings.filterwarnings("ignore", message="Got `batch_size` less than 1")
            for epoch in range(1, self.max_iter + 1):
                perm = np.arange(M, dtype=order_dtype)  # rng.permutation(M), in int32
                rng.shuffle(perm)  # reshuffled every epoch
                total = 0.0
                for s in range(0, M, chunk):
                    idx = perm[s:s + chunk]
                    total += steps(idx) * len(idx)
                point = {"step": epoch, "train_loss": total / M}  # mean over the epoch
                if valid is not None:
                    point["valid_loss"] = self._loss(valid)
                score = point.get("valid_loss", point["train_loss"])
                curve.append(point)
                if not np.isfinite(score):
                    break
                if score < best[0] - self.tol:
                    best = (score, (copy.deepcopy(net.coefs_), copy.deepcopy(net.intercepts_)),
                            epoch)
                    bad = 0
                else:
                    bad += 1
                    if bad >= self.patience:
                        break
        if best[1] is not None:
            net.coefs_, net.intercepts_ = best[1]
        self.curve_ = curve
        self.best_step_ = best[2]
        self.n_steps_ = len(curve)

    def _outputs(self, F) -> np.ndarray:
        F = self._prepare(F)
        if self.target_kind_ == "classes":
            return self.net_.predict_proba(F)  # (M, K)
        z = self.net_.predict(F).reshape(F.shape[0], -1)
        return z * self.y_scale_ + self.y_mean_  # (M, K)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._map_steps(X, self._outputs, self.target_size_)  # (N, T, K)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._map_predict(X, self._outputs)  # (N, T) ids or (N, T, K)

    def _n_parameters(self) -> int:
        return int(sum(w.size for w in self.net_.coefs_)
                   + sum(b.size for b in self.net_.intercepts_))
