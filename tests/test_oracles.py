"""Metrics, the Nemenyi post-hoc and the recurrent validation loss checked against
independent recomputations: numpy over the scored positions, and the closed form of the
Nemenyi-Friedman test with scipy's studentized range distribution."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from seqbench import report
from seqbench.data import SeqData
from seqbench.metrics import masked_metrics, sliced_metrics


def _ragged_mask(rng, N: int, T: int) -> np.ndarray:
    """Right-padded sequences of 1..T scored steps."""
    return np.arange(T)[None, :] < rng.integers(1, T + 1, size=N)[:, None]


def test_mae_is_the_mean_absolute_error_of_the_scored_positions(rng):
    """mae and mse against numpy over the masked positions only; heavy-tailed errors make
    the mae far from the root mean squared error."""
    N, T, K = 30, 8, 2
    mask = _ragged_mask(rng, N, T)
    Y = rng.normal(size=(N, T, K))
    pred = Y + rng.standard_t(2, size=(N, T, K))
    pred[~mask] = 1e6  # unscored positions must not count
    err = np.concatenate([pred[i, : mask[i].sum()] - Y[i, : mask[i].sum()] for i in range(N)])
    mae, mse = np.abs(err).mean(), (err**2).mean()
    assert abs(mae - np.sqrt(mse)) > 0.1
    m = masked_metrics(Y, mask, pred)
    assert m["mae"] == pytest.approx(mae, rel=1e-12)
    assert m["mse"] == pytest.approx(mse, rel=1e-12)
    assert m["n_scored"] == mask.sum() == len(err)


@pytest.mark.parametrize("kind", ["classes", "real"])
def test_sliced_metrics_use_only_the_rows_of_each_slice(rng, kind):
    """Per-lag metrics on a split whose lag varies per sequence, against numpy on the rows
    with ``meta["lag"] == v``: accuracy and cross-entropy (natural log) for classes, mse and
    mae for real targets. The slices differ, so a slice scored on the whole split fails."""
    N, T, K = 40, 6, 3
    lag = rng.choice([2, 5, 9], size=N)
    mask = _ragged_mask(rng, N, T)
    X = rng.normal(size=(N, T, 1))
    if kind == "classes":
        Y = rng.integers(0, K, size=(N, T))
        proba = rng.dirichlet(np.ones(K), size=(N, T))
        proba[lag == 2] = 0.9 * np.eye(K)[Y[lag == 2]] + 0.1 / K  # lag 2 nearly right
        pred = proba.argmax(-1)
    else:
        Y = rng.normal(size=(N, T, K))
        pred = Y + lag[:, None, None] * rng.normal(size=(N, T, K))  # error grows with lag
        proba = None
    data = SeqData(X, Y, mask, pd.DataFrame({"lag": lag}), input_size=1, target_size=K)
    out = sliced_metrics(data, pred, proba, "lag")
    assert set(out) == {"2", "5", "9"}
    for v in (2, 5, 9):
        rows = np.flatnonzero(lag == v)
        pos = [(i, t) for i in rows for t in range(T) if mask[i, t]]
        i, t = np.array(pos).T
        got = out[str(v)]
        assert got["n_scored"] == len(pos)
        if kind == "classes":
            assert got["accuracy"] == pytest.approx(np.mean(pred[i, t] == Y[i, t]), rel=1e-12)
            ce = -np.mean(np.log(proba[i, t, Y[i, t]]))
            assert got["cross_entropy"] == pytest.approx(ce, rel=1e-12)
        else:
            err = pred[i, t] - Y[i, t]
            assert got["mse"] == pytest.approx(np.mean(err**2), rel=1e-12)
            assert got["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-12)


def test_nemenyi_p_values_are_the_closed_form_for_each_named_pair():
    """Six blocks, three models with mean ranks 4/3, 5/3 and 3: each pair's p-value is
    P(Q > sqrt(2) |R_i - R_j| / sqrt(k (k + 1) / (6 N))) for the studentized range with
    k groups and infinite degrees of freedom (Demsar 2006), at its pair of labels."""
    scores = {"alpha": [0.9, 0.8, 0.85, 0.7, 0.5, 0.6],
              "beta": [0.6, 0.7, 0.75, 0.65, 0.55, 0.7],
              "gamma": [0.1, 0.2, 0.15, 0.3, 0.05, 0.25]}
    cells = pd.DataFrame([{"setting": f"s{b}", "model_name": m, "mean": s[b],
                           "higher_is_better": True}
                          for m, s in scores.items() for b in range(6)])
    fr = report.friedman_nemenyi(cells)
    assert fr["skipped"] is None
    N, k = 6, 3
    R = {"alpha": 4 / 3, "beta": 5 / 3, "gamma": 3.0}  # ranks 1 1 1 1 2 2 / 2 2 2 2 1 1 / 3
    p = {}
    for a in R:
        for b in R:
            q = abs(R[a] - R[b]) / np.sqrt(k * (k + 1) / (6 * N))
            p[a, b] = 1.0 if a == b else stats.studentized_range.sf(q * np.sqrt(2), k, np.inf)
    assert p["alpha", "gamma"] < 0.02 < p["beta", "gamma"] < 0.1 < 0.5 < p["alpha", "beta"]
    for (a, b), expected in p.items():
        assert fr["nemenyi"].loc[a, b] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("kind", ["classes", "real"])
def test_validation_loss_is_the_mean_over_all_scored_positions(rng, kind):
    """``_evaluate_loss`` over 7-sequence slices of a ragged split (slices with different
    numbers of scored positions) against numpy: cross-entropy from ``predict_proba`` or
    squared error (averaged over the K outputs) from ``predict``, averaged over every
    scored position of the split."""
    torch = pytest.importorskip("torch")
    from seqbench.models.recurrent import GRUModel

    N, T, V, K = 30, 10, 5, 3
    X = rng.integers(0, V, size=(N, T))
    lengths = np.where(np.arange(N) < 7, T, rng.integers(1, 4, size=N))  # one full slice
    mask = np.arange(T)[None, :] < lengths[:, None]
    if kind == "classes":
        Y = rng.integers(0, K, size=(N, T))
    else:
        Y = rng.normal(size=(N, T, K)) + 3 * (np.arange(N) < 7)[:, None, None]
    data = SeqData(X, Y, mask, input_size=V, target_size=K)
    model = GRUModel(hidden_size=8, max_steps=2, random_state=0, device="cpu").fit(data)
    tensors = model._tensors(data, torch.device("cpu"), lazy=True)
    got = model._evaluate_loss(model.net_, *tensors, mask, batch=7)
    if kind == "classes":
        p = model.predict_proba(X)
        expected = -np.mean(np.log(np.take_along_axis(p, Y[..., None], -1)[..., 0][mask]))
    else:
        expected = np.mean((model.predict(X)[mask] - Y[mask]) ** 2)
    assert got == pytest.approx(expected, rel=1e-5)
