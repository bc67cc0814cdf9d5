"""AR and MLP on delay taps: the window against a plain loop, AR against statsmodels'
AutoReg and scikit-learn's Ridge, and each family on its home turf and past its window."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import Ridge

from seqbench.data import SeqData
from seqbench.errors import SeqbenchError
from seqbench.models.autoregressive import AutoRegressive, FeedForward, delay_taps
from seqbench.registry import make_model


def _series_data(y: np.ndarray, p: int) -> SeqData:
    """One univariate series as a forecasting sequence: X[t] = y_t, Y[t] = y_{t+1},
    scored from step p - 1 on (where all p lags exist)."""
    T = len(y) - 1
    mask = np.zeros((1, T), bool)
    mask[0, p - 1:] = True
    return SeqData(y[None, :-1, None], y[None, 1:, None], mask, forecasting=True)


def _naive_taps(X, p, V, rows, cols, start_indicator=True):
    """The delay-tap definition, one position and one tap at a time."""
    out = []
    for i, t in zip(rows, cols):
        row = []
        for k in range(p):
            s = t - k
            if X.ndim == 2:
                onehot = np.zeros(V)
                if s >= 0:
                    onehot[X[i, s]] = 1.0
                row.extend(onehot)
            else:
                row.extend(X[i, s] if s >= 0 else np.zeros(X.shape[2]))
        if X.ndim == 3 and start_indicator:
            row.extend(float(t - k < 0) for k in range(1, p))
        out.append(row)
    return np.array(out)


@pytest.mark.parametrize("kind", ["tokens", "real"])
@pytest.mark.parametrize("start_indicator", [True, False])
def test_delay_taps_match_a_plain_loop(rng, kind, start_indicator):
    N, T, V, D, p = 5, 9, 4, 3, 4
    X = rng.integers(0, V, (N, T)) if kind == "tokens" else rng.normal(size=(N, T, D))
    rows = rng.integers(0, N, 30)
    cols = rng.integers(0, T, 30)
    got = delay_taps(X, p, V if kind == "tokens" else D, rows, cols,
                     start_indicator=start_indicator)
    got = got.toarray() if kind == "tokens" else got
    np.testing.assert_array_equal(got, _naive_taps(X, p, V, rows, cols, start_indicator))


@pytest.mark.parametrize("p", [1, 2, 3, 9])
def test_ar_is_conditional_least_squares_autoreg_on_sunspots(p):
    from statsmodels.tsa.ar_model import AutoReg

    from seqbench.datasets import load_series

    y = load_series("sunspots").to_numpy()
    res = AutoReg(y, lags=p, trend="c").fit()
    model = AutoRegressive(p=p).fit(_series_data(y, p))
    np.testing.assert_allclose(model.intercept_[0], res.params[0], atol=1e-6)
    np.testing.assert_allclose(model.lag_coef_[0, :, 0], res.params[1:], atol=1e-6)
    pred = model.predict(y[None, :-1, None])[0, p - 1:, 0]  # predictions of y_p .. y_{n-1}
    np.testing.assert_allclose(pred, res.fittedvalues, atol=1e-6)


def test_ar_recovers_ar2_coefficients(rng):
    phi, c, N, T = np.array([0.6, -0.3]), 1.0, 40, 300
    y = np.zeros((N, T + 50))
    e = rng.normal(size=y.shape)
    for t in range(2, y.shape[1]):
        y[:, t] = c + phi[0] * y[:, t - 1] + phi[1] * y[:, t - 2] + e[:, t]
    y = y[:, 50:]  # drop the burn-in
    mask = np.zeros((N, T - 1), bool)
    mask[:, 4:] = True  # every lag of p = 5 exists
    data = SeqData(y[:, :-1, None], y[:, 1:, None], mask, forecasting=True)
    model = AutoRegressive(p=5).fit(data)
    # ~12k transitions: standard errors ~0.01; lags 3..5 are truly zero
    np.testing.assert_allclose(model.lag_coef_[0, :, 0], [*phi, 0, 0, 0], atol=0.04)
    assert abs(model.intercept_[0] - c) < 0.1


@pytest.mark.parametrize("kind", ["tokens", "real"])
def test_ridge_matches_sklearn_ridge(rng, kind):
    N, T, V, D, p, alpha = 30, 12, 5, 2, 3, 2.5
    X = rng.integers(0, V, (N, T)) if kind == "tokens" else rng.normal(size=(N, T, D))
    Y = rng.normal(size=(N, T, 2))
    mask = rng.random((N, T)) < 0.7
    data = SeqData(X, Y, mask, input_size=V if kind == "tokens" else None)
    model = AutoRegressive(p=p, alpha=alpha).fit(data)
    rows, cols = np.nonzero(mask)
    F = delay_taps(X, p, data.input_size, rows, cols)
    F = F.toarray() if kind == "tokens" else F
    ref = Ridge(alpha=alpha, solver="svd").fit(F, Y[rows, cols])
    np.testing.assert_allclose(model.coef_, ref.coef_, atol=1e-8)
    np.testing.assert_allclose(model.intercept_, ref.intercept_, atol=1e-8)
    np.testing.assert_allclose(model.predict(X)[rows, cols], ref.predict(F), atol=1e-8)


def _copy_back(rng, lag, N=300, T=20, V=4):
    """Per-step classes: y_t = x_{t-lag}, scored where it exists."""
    X = rng.integers(0, V, (N, T))
    Y = np.zeros((N, T), np.int64)
    Y[:, lag:] = X[:, :-lag]
    mask = np.zeros((N, T), bool)
    mask[:, lag:] = True
    return SeqData(X, Y, mask, input_size=V, target_size=V)


@pytest.mark.parametrize("cls", [AutoRegressive, FeedForward])
def test_window_boundary(rng, cls):
    """Recall two steps back needs taps x_t, x_{t-1}, x_{t-2}: p = 3 solves it, p = 2 is
    at chance (1/4)."""
    train, test = _copy_back(rng, 2), _copy_back(rng, 2)
    for p, lo, hi in ((3, 0.98, 1.0), (2, 0.15, 0.35)):
        model = cls(p=p, random_state=0).fit(train)
        acc = np.mean(model.predict(test.X)[test.mask] == test.Y[test.mask])
        assert lo <= acc <= hi, (p, acc)


@pytest.mark.parametrize("cls", [AutoRegressive, FeedForward])
@pytest.mark.parametrize("kind", ["tokens", "real"])
def test_memoryless_beyond_the_window(rng, cls, kind):
    """Changing inputs more than p - 1 steps back leaves the prediction unchanged."""
    N, T, p = 20, 10, 3
    X = rng.integers(0, 5, (N, T)) if kind == "tokens" else rng.normal(size=(N, T, 2))
    Y = rng.integers(0, 3, (N, T))
    data = SeqData(X, Y, np.ones((N, T), bool), input_size=5 if kind == "tokens" else None)
    model = cls(p=p, random_state=0).fit(data)
    X2 = X.copy()
    X2[:, :5] = rng.integers(0, 5, (N, 5)) if kind == "tokens" else rng.normal(size=(N, 5, 2))
    P1, P2 = model.predict_proba(X), model.predict_proba(X2)
    np.testing.assert_array_equal(P1[:, 5 + p - 1:], P2[:, 5 + p - 1:])
    assert not np.allclose(P1[:, :5], P2[:, :5])


def test_mlp_learns_xor_that_ar_cannot(rng):
    """y_t = x_{t-1} XOR x_{t-2} on random bits: not linearly separable in the taps (a
    linear rule gets at most 3 of the 4 bit pairs right, so at most 75% accuracy)."""
    def make(n):
        X = rng.integers(0, 2, (n, 16))
        Y = np.zeros_like(X)
        Y[:, 2:] = X[:, 1:-1] ^ X[:, :-2]
        mask = np.zeros(X.shape, bool)
        mask[:, 2:] = True
        return SeqData(X, Y, mask, input_size=2, target_size=2)

    train, valid, test = make(400), make(100), make(200)
    acc = {}
    for cls in (AutoRegressive, FeedForward):
        model = cls(p=3, random_state=0).fit(train, valid)
        acc[cls.__name__] = np.mean(model.predict(test.X)[test.mask] == test.Y[test.mask])
    assert acc["FeedForward"] > 0.98, acc
    assert acc["AutoRegressive"] < 0.8, acc


def test_mlp_learns_a_product_that_ar_cannot(rng):
    """y_t = x_{t-1} x_{t-2} with Gaussian x: uncorrelated with every tap."""
    def make(n):
        X = rng.normal(size=(n, 20, 1))
        Y = np.zeros_like(X)
        Y[:, 2:] = X[:, 1:-1] * X[:, :-2]
        mask = np.zeros(X.shape[:2], bool)
        mask[:, 2:] = True
        return SeqData(X, Y, mask)

    train, valid, test = make(500), make(100), make(200)
    r2 = {}
    for cls in (AutoRegressive, FeedForward):
        model = cls(p=3, random_state=0).fit(train, valid)
        err = model.predict(test.X)[test.mask] - test.Y[test.mask]
        r2[cls.__name__] = 1 - np.mean(err**2) / np.var(test.Y[test.mask])
    assert r2["FeedForward"] > 0.9, r2
    assert r2["AutoRegressive"] < 0.05, r2


def test_mlp_keeps_the_best_validation_weights(rng):
    train, valid = _copy_back(rng, 1, N=100), _copy_back(rng, 1, N=50)
    model = FeedForward(p=2, hidden_sizes=(8,), max_iter=12, patience=3, random_state=0)
    model.fit(train, valid)
    curve = model.training_curve()
    assert len(curve) == model.n_steps_ and all("valid_loss" in c for c in curve)
    best = min(curve, key=lambda c: c["valid_loss"])
    assert model.best_step_ == best["step"]
    # the kept weights give the best validation loss, recomputed from predict_proba
    P = model.predict_proba(valid.X)[valid.mask]
    loss = -np.mean(np.log(P[np.arange(len(P)), valid.Y[valid.mask]]))
    np.testing.assert_allclose(loss, best["valid_loss"], rtol=1e-9)


def test_absent_classes_get_zero_probability_in_ar(rng):
    N, T = 40, 8
    X = rng.integers(0, 3, (N, T))
    Y = rng.integers(0, 3, (N, T))  # classes 3 and 4 never appear
    data = SeqData(X, Y, np.ones((N, T), bool), input_size=3, target_size=5)
    P = AutoRegressive(p=2).fit(data).predict_proba(X)
    assert P.shape == (N, T, 5)
    np.testing.assert_allclose(P.sum(-1), 1.0)
    assert np.all(P[..., 3:] == 0)
    P = FeedForward(p=2, random_state=0).fit(data).predict_proba(X)
    assert P.shape == (N, T, 5)
    np.testing.assert_allclose(P.sum(-1), 1.0)


def _logistic_case(rng, kind, n_classes):
    """Class targets that depend on the last few inputs, a random mask of scored steps."""
    N, T = 120, 20
    if kind == "tokens":
        X = rng.integers(0, 5, (N, T))
        Y = (np.roll(X, 2, axis=1) + rng.integers(0, 2, (N, T))) % n_classes
        return SeqData(X, Y, rng.random((N, T)) < 0.5, input_size=5, target_size=n_classes)
    X = rng.normal(size=(N, T, 3)) * [1.0, 5.0, 0.1] + [0.0, 3.0, -1.0]  # unequal scales
    Y = (X[..., 0] + np.roll(X[..., 2] + 1, 1, axis=1) * 10 + rng.normal(size=(N, T)) > 0)
    Y = Y.astype(int) + (n_classes > 2) * (X[..., 1] > 5)  # 2 or 3 classes
    return SeqData(X, Y, rng.random((N, T)) < 0.5, target_size=n_classes)


@pytest.mark.parametrize("kind, n_classes", [("tokens", 2), ("tokens", 4), ("real", 2),
                                             ("real", 3)])
def test_logistic_ar_is_sklearns_logistic_regression(rng, monkeypatch, kind, n_classes):
    """Class targets: the loss summed over blocks of a few sequences (some kept between
    evaluations, the rest rebuilt) reaches scikit-learn's ``LogisticRegression`` on the
    whole design matrix (standardised for real inputs), at two strengths of the L2 term
    (C = 1 and C = 0.05)."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    import seqbench.models.autoregressive as ar

    data = _logistic_case(rng, kind, n_classes)
    p = 3
    monkeypatch.setattr(ar, "_CHUNK_BYTES", 2000)  # blocks of a few sequences
    monkeypatch.setattr(ar, "_LOGISTIC_CACHE_BYTES", 5000)  # a few kept, most rebuilt
    model = AutoRegressive(p=p)
    assert len(model.fit(data)._scored_parts(data)) > 10
    rows, cols = np.nonzero(data.mask)
    F = _naive_taps(data.X, p, 5, rows, cols)  # the whole design, from the plain loop
    y = data.Y[rows, cols]
    if kind == "real":
        F = (F - F.mean(axis=0)) / np.where(F.std(axis=0) > 0, F.std(axis=0), 1.0)
    for C in (1.0, 0.05):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lbfgs' convergence warning at tight tol
            ref = LogisticRegression(C=C, tol=1e-10, max_iter=5000).fit(F, y)
        got = AutoRegressive(p=p, C=C, tol=1e-10, max_iter=5000).fit(data)
        P = got.predict_proba(data.X)[data.mask]  # (M, K)
        np.testing.assert_allclose(P[:, ref.classes_], ref.predict_proba(F), atol=1e-7)
        # at the default tolerance the two stop at the same point to rounding
        ref = LogisticRegression(C=C).fit(F, y)
        got = AutoRegressive(p=p, C=C).fit(data)
        P = got.predict_proba(data.X)[data.mask]
        np.testing.assert_allclose(P[:, ref.classes_], ref.predict_proba(F), atol=1e-6)


@pytest.mark.parametrize("cls", [AutoRegressive, FeedForward])
def test_same_seed_same_predictions_clone_and_pickle(rng, cls):
    data = _copy_back(rng, 1, N=60)
    a = cls(p=3, random_state=7).fit(data)
    b = clone(a).fit(data)
    np.testing.assert_array_equal(a.predict_proba(data.X), b.predict_proba(data.X))
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(a.predict_proba(data.X), c.predict_proba(data.X))


def test_n_parameters(rng):
    data = _copy_back(rng, 1, N=30, V=4)  # V = K = 4
    assert AutoRegressive(p=3).fit(data).n_parameters() == 4 * (3 * 4) + 4
    mlp = FeedForward(p=3, hidden_sizes=(7, 5), max_iter=2, random_state=0).fit(data)
    assert mlp.n_parameters() == (12 * 7 + 7) + (7 * 5 + 5) + (5 * 4 + 4)


@pytest.mark.parametrize("name, params", [
    ("ar", {"p": 0}),
    ("ar", {"alpha": -1.0}),
    ("ar", {"C": 0.0}),
    ("ar", {"max_iter": 0}),
    ("ar", {"tol": 0.0}),
    ("mlp", {"p": 0}),
    ("mlp", {"hidden_sizes": ()}),
    ("mlp", {"hidden_sizes": (4, 0)}),
    ("mlp", {"activation": "swish"}),
    ("mlp", {"lr": 0.0}),
    ("mlp", {"patience": 0}),
])
def test_bad_parameters_are_seqbench_errors(rng, name, params):
    with pytest.raises(SeqbenchError, match=next(iter(params))):
        make_model(name, **params)  # the factory checks, as the suite loader does
    data = _copy_back(rng, 1, N=10)
    model = make_model(name).set_params(**params)
    with pytest.raises(SeqbenchError, match=next(iter(params))):
        model.fit(data)  # and fit, for a model built or changed another way


def test_registered():
    assert isinstance(make_model("ar", p=4), AutoRegressive)
    assert isinstance(make_model("mlp", hidden_sizes=(8,)), FeedForward)
