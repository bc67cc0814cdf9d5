"""Metrics on the scored (masked) positions only, overall and per slice of ``meta``.

Accuracy and cross-entropy average over scored positions (class targets);
MSE averages the squared error over scored positions and target dimensions.
"""

from __future__ import annotations

import numpy as np

from .data import SeqData
from .errors import DivergedError, SeqbenchError

EPS = 1e-12


def check_predictions(data: SeqData, pred: np.ndarray, proba: np.ndarray | None) -> None:
    """Shapes of predictions must align with ``data.Y`` (and ``proba`` be (N, T, K)); at
    the scored positions, class ids must lie in [0, K), probabilities be >= 0 and sum to
    1, and nothing be NaN or infinite (:class:`DivergedError`: a numerical blow-up,
    recorded as ``diverged``; the rest :class:`SeqbenchError`)."""
    if data.target_kind == "classes":
        if pred.shape != data.Y.shape:
            raise SeqbenchError(f"predictions: expected shape {data.Y.shape}, got {pred.shape}")
        if proba is not None and proba.shape != (*data.Y.shape, data.target_size):
            raise SeqbenchError(
                f"predict_proba: expected shape {(*data.Y.shape, data.target_size)}, "
                f"got {proba.shape}"
            )
    elif pred.shape != data.Y.shape:
        raise SeqbenchError(f"predictions: expected shape {data.Y.shape}, got {pred.shape}")
    m = data.mask
    if data.target_kind == "classes":
        ids = pred[m]
        # (SeqData has at least one scored position, so ids is not empty)
        if ids.dtype.kind == "f":
            _finite_or_diverged("predictions", ids)
        if ids.dtype.kind not in "iuf" or (ids != np.round(ids)).any() or (
                ids.min() < 0 or ids.max() >= data.target_size):
            raise SeqbenchError(f"predictions: expected class ids in [0, {data.target_size}) "
                                f"at the scored positions, got dtype {ids.dtype}, values "
                                f"{ids.min()}..{ids.max()}")
    else:
        _finite_or_diverged("predictions", pred[m])
    if proba is not None:
        p = proba[m]  # (M, K)
        _finite_or_diverged("predict_proba", p)
        if p.size and (p.min() < 0 or not np.allclose(p.sum(-1), 1.0, atol=1e-3)):
            raise SeqbenchError("predict_proba: expected probabilities (>= 0, each row "
                                "summing to 1) at the scored positions")


def _finite_or_diverged(what: str, values: np.ndarray) -> None:
    """:class:`DivergedError` naming how many scored positions (rows of ``values``, (M,)
    or (M, K)) hold a NaN or an infinity."""
    bad = ~np.isfinite(values)
    if bad.any():
        rows = bad.reshape(len(values), -1).any(-1)
        raise DivergedError(f"{what}: NaN or infinity at {int(rows.sum())} of {len(values)} "
                            "scored positions")


def masked_metrics(
    Y: np.ndarray, mask: np.ndarray, pred: np.ndarray, proba: np.ndarray | None = None
) -> dict[str, float]:
    """Standard metrics on the positions where ``mask`` is true."""
    out: dict[str, float] = {"n_scored": int(mask.sum())}
    if Y.ndim == 2:  # class ids (N, T)
        y = Y[mask]
        out["accuracy"] = float(np.mean(pred[mask] == y))
        if proba is not None:
            p = proba[mask]  # (M, K)
            out["cross_entropy"] = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], EPS, 1))))
    else:  # real targets (N, T, K)
        err = pred[mask] - Y[mask]  # (M, K)
        out["mse"] = float(np.mean(err**2))
        out["mae"] = float(np.mean(np.abs(err)))
    return out


def sliced_metrics(
    data: SeqData, pred: np.ndarray, proba: np.ndarray | None, column: str
) -> dict[str, dict[str, float]]:
    """``masked_metrics`` for each value of the meta column ``column`` (keys as strings)."""
    if column not in data.meta.columns:
        raise SeqbenchError(
            f"slice column {column!r} not in meta; "
            f"available: {', '.join(map(str, data.meta.columns))}"
        )
    values = data.meta[column].to_numpy()
    out = {}
    for v in np.unique(values):
        rows = values == v
        out[_key(v)] = masked_metrics(
            data.Y[rows], data.mask[rows], pred[rows], None if proba is None else proba[rows]
        )
    return out


def _key(v) -> str:
    if isinstance(v, float | np.floating) and float(v).is_integer():
        v = int(v)
    return str(v.item() if hasattr(v, "item") else v)
