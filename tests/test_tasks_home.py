"""Home-turf tasks, real data and the one-to-many / one-to-one shapes.

Labels are checked against independent references (hmmlearn's Viterbi and posteriors,
filterpy's Kalman filter, statsmodels' ARMA autocovariances, scikit-learn's digits,
the shipped CSV files) or against the generator's parameters through empirical
frequencies; chance values against the empirical score of the chance baseline.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seqbench as sb
from seqbench.datasets import load_series
from seqbench.errors import SeqbenchError
from seqbench.models.baseline import ChanceBaseline
from seqbench.models.kalman import LDSModel
from seqbench.tasks.arprocess import ARProcess
from seqbench.tasks.casino import DishonestCasino
from seqbench.tasks.digits import PermutedDigits, SequentialDigits
from seqbench.tasks.generation import CueGeneration
from seqbench.tasks.series import Nile, Sunspots
from seqbench.tasks.single_step import SingleStep
from seqbench.tasks.tracking import ConstantVelocityTrack

SMALL = {  # registry name -> small parameters for the generic checks
    "casino": {"length": 30},
    "cv-track": {"length": 20},
    "ar-process": {"length": 30},
    "nile": {},
    "sunspots": {},
    "digits": {},
    "digits-permuted": {"permutation_seed": 3},
    "cue-generation": {"n_cues": 3, "length": 8},
    "single-step": {"n_tokens": 6, "n_classes": 3},
}
SYNTHETIC = ("casino", "cv-track", "ar-process", "cue-generation", "single-step")
SHAPES = {
    "casino": "many-to-many-synced", "cv-track": "many-to-many-synced",
    "ar-process": "many-to-many-synced", "nile": "many-to-many-synced",
    "sunspots": "many-to-many-synced", "digits": "many-to-one",
    "digits-permuted": "many-to-one", "cue-generation": "one-to-many",
    "single-step": "one-to-one",
}
FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def chance_score(task, seed, **sizes):
    train, _, test = task.splits(seed, **sizes)
    model = ChanceBaseline().fit(train)
    return sb.evaluate(model, task, test)["score"]


# -- generic: registry, spec, determinism ------------------------------------------------
@pytest.mark.parametrize("name", sorted(SMALL))
def test_registered_spec_agrees_with_data(name, seed):
    task = sb.make_task(name, **SMALL[name])
    spec = task.spec()
    assert spec.name == name and spec.shape == SHAPES[name]
    train, valid, test = task.splits(seed, n_train=40, n_valid=10, n_test=20)
    for data in (train, valid, test):
        assert (data.input_kind, data.target_kind) == (spec.input_kind, spec.target_kind)
        assert data.input_size == spec.input_size and data.target_size == spec.target_size
        assert data.forecasting == spec.forecasting
        if spec.forecasting:  # Y[t] = X[t+1]
            np.testing.assert_array_equal(data.Y[:, :-1], data.X[:, 1:])
    if spec.shape == "many-to-one":
        assert test.mask[:, -1].all() and not test.mask[:, :-1].any()
    if spec.shape == "one-to-one":
        assert test.T == 1
    if spec.shape == "one-to-many":
        assert not test.mask[:, 0].any() and test.mask[:, 1:].all()
    # the chance and oracle references are on the right side of each other
    if spec.oracle is not None:
        better = spec.oracle > spec.chance if spec.higher_is_better else spec.oracle < spec.chance
        assert better


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_same_bytes(name, seed):
    a = sb.make_task(name, **SMALL[name]).splits(seed, n_train=30, n_valid=10, n_test=20)
    b = sb.make_task(name, **SMALL[name]).splits(seed, n_train=30, n_valid=10, n_test=20)
    assert [d.fingerprint() for d in a] == [d.fingerprint() for d in b]


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_splits_are_distinct_streams(name, seed):
    task = sb.make_task(name, **SMALL[name])
    train, valid, test = task.splits(seed, n_train=50, n_valid=50, n_test=50)
    assert len({train.fingerprint(), valid.fingerprint(), test.fingerprint()}) == 3
    other = task.splits(seed + 1, n_train=50, n_valid=50, n_test=50)[0]
    assert other.fingerprint() != train.fingerprint()


@pytest.mark.parametrize(("name", "params"), [
    ("casino", {"p_six": 1.5}), ("casino", {"p_fair_to_loaded": 0.0}),
    ("casino", {"oracle_decoder": "posterior"}), ("casino", {"length": 0}),
    ("cv-track", {"meas_std": 0.0}), ("cv-track", {"accel_std": -1.0}),
    ("ar-process", {"coefs": (1.2,)}), ("ar-process", {"coefs": (0.5, 0.6)}),
    ("ar-process", {"coefs": ()}), ("ar-process", {"noise_std": float("nan")}),
    ("nile", {"train_frac": 1.2}), ("sunspots", {"train_frac": 0.9, "valid_frac": 0.2}),
    ("digits-permuted", {"permutation_seed": -1}),
    ("cue-generation", {"n_cues": 1}), ("cue-generation", {"length": 1}),
    ("single-step", {"n_classes": 5, "n_tokens": 4}),
    ("single-step", {"noise": 0.75, "n_classes": 4}),
    # beyond the bounds: an overflow or a MemoryError deep inside before
    ("ar-process", {"noise_std": 1e300}), ("ar-process", {"noise_std": 1e-4}),
    ("ar-process", {"length": 10**12}), ("ar-process", {"coefs": (0.1,) * 101}),
    ("cv-track", {"dt": 1e300}), ("cv-track", {"accel_std": 1e300}),
    ("cv-track", {"meas_std": 1e300}), ("cv-track", {"meas_std": 1e-300}),
    ("cv-track", {"init_pos_std": 1e300}), ("cv-track", {"init_vel_std": float("inf")}),
    ("cv-track", {"length": 10**12}), ("casino", {"length": 10**12}),
    ("cue-generation", {"length": 10**12}), ("single-step", {"n_tokens": 10**12}),
    ("single-step", {"n_classes": 10**12}),
])
def test_bad_parameters_are_one_line_errors(name, params):
    for build in (lambda: sb.make_task(name, **params),  # the factory checks
                  lambda: sb.task_registry.get(name)(**params).spec()):  # and spec()
        with pytest.raises(SeqbenchError) as err:
            build()
        assert "\n" not in str(err.value) and next(iter(params)) in str(err.value)


@pytest.mark.parametrize(("name", "params"), [
    ("cv-track", {"length": 300, "dt": 1e6, "accel_std": 1e6, "meas_std": 1e-6,
                  "init_pos_std": 1e6, "init_vel_std": 1e6}),
    ("cv-track", {"length": 300, "dt": 1e6, "accel_std": 1e6, "meas_std": 1e6,
                  "init_pos_std": 0.0, "init_vel_std": 0.0}),
    ("cv-track", {"length": 30, "dt": 5e-324, "accel_std": 0.0, "meas_std": 1e-6,
                  "init_pos_std": 0.0, "init_vel_std": 0.0}),
    ("ar-process", {"noise_std": 1e6}), ("ar-process", {"noise_std": 1e-3}),
    ("ar-process", {"coefs": (0.999998,)}),
    ("single-step", {"n_tokens": 10**6, "n_classes": 10**6}),
])
def test_at_the_bounds_data_and_references_are_finite(name, params):
    """Every value the checks accept gives finite data, chance and oracle, without an
    overflow warning on the way."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task = sb.make_task(name, **params)
        spec = task.spec()
        data = task.sample(3, 0)
    assert np.isfinite(spec.chance) and (spec.oracle is None or np.isfinite(spec.oracle))
    for a in (data.X, data.Y[data.mask]):
        assert np.isfinite(a).all()


@pytest.mark.parametrize("p, root", [(3, 0.9995), (3, 0.99999), (4, 0.9995), (6, 0.99)])
def test_ar_too_close_to_a_unit_root_is_refused_not_a_linalg_error(p, root):
    """Repeated roots near 1 pass the spectral-radius check, but the stationary covariance
    then comes out of the Lyapunov solve indefinite (a negative gamma_0, a failed Cholesky
    factor in sampling): they are refused when built."""
    poly = np.array([1.0])
    for _ in range(p):
        poly = np.convolve(poly, [1.0, -root])  # prod_k (1 - root z)
    coefs = tuple(float(c) for c in -poly[1:])
    with pytest.raises(SeqbenchError, match=r"^task 'ar-process', parameter 'coefs': expected "
                                            r"coefficients far enough from a unit root"):
        sb.make_task("ar-process", coefs=coefs)


# -- dishonest casino -----------------------------------------------------------------------
def _hmmlearn_model(task):
    from hmmlearn.hmm import CategoricalHMM

    pi, A, B = task.parameters()
    hmm = CategoricalHMM(n_components=2, n_features=6)
    hmm.startprob_, hmm.transmat_, hmm.emissionprob_ = pi, A, B
    return hmm


def test_casino_labels_follow_the_published_parameters(seed):
    """Switching and emission frequencies of the generated states and rolls match
    Durbin et al.'s casino (within 5 binomial standard errors)."""
    task = DishonestCasino()
    d = task.sample(3000, seed)
    S, X = d.Y, d.X
    prev, nxt = S[:, :-1].ravel(), S[:, 1:].ravel()
    for state, target, p in ((0, 1, 0.05), (1, 0, 0.1)):
        trials = prev == state
        rate = np.mean(nxt[trials] == target)
        assert abs(rate - p) < 5 * np.sqrt(p * (1 - p) / trials.sum())
    six_loaded = np.mean(X[S == 1] == 5)
    assert abs(six_loaded - 0.5) < 5 * np.sqrt(0.25 / (S == 1).sum())
    fair = np.bincount(X[S == 0], minlength=6) / (S == 0).sum()
    assert np.abs(fair - 1 / 6).max() < 5 * np.sqrt((1 / 6) * (5 / 6) / (S == 0).sum())
    # stationary start: the first state is loaded with probability a / (a + b) = 1/3
    assert abs(S[:, 0].mean() - 1 / 3) < 5 * np.sqrt((2 / 9) / len(S))
    assert task.spec().chance == pytest.approx(2 / 3)


def test_casino_viterbi_matches_hmmlearn(seed):
    task = DishonestCasino(length=60)
    d = task.sample(200, seed)
    hmm = _hmmlearn_model(task)
    _, ref = hmm.decode(d.X.reshape(-1, 1), lengths=[d.T] * d.n, algorithm="viterbi")
    np.testing.assert_array_equal(task.viterbi(d.X), ref.reshape(d.n, d.T))
    # smoothed posteriors are hmmlearn's forward-backward posteriors
    post = hmm.predict_proba(d.X.reshape(-1, 1), lengths=[d.T] * d.n)
    np.testing.assert_allclose(task.smooth_proba(d.X), post.reshape(d.n, d.T, 2), atol=1e-9)
    # the filter at step t is the posterior of the prefix x_0..x_t at its last step
    filt = task.filter_proba(d.X[:5])
    for t in (0, 7, 33):
        prefix = hmm.predict_proba(d.X[:5, : t + 1].reshape(-1, 1), lengths=[t + 1] * 5)
        np.testing.assert_allclose(filt[:, t], prefix.reshape(5, t + 1, 2)[:, -1], atol=1e-9)


def test_casino_oracle_is_the_expected_viterbi_accuracy(seed):
    task = DishonestCasino()
    spec = task.spec()
    test = task.splits(seed, n_test=2000)[2]
    pred, proba = task.oracle_predict(test)
    acc = np.mean(pred == test.Y)
    assert acc == pytest.approx(spec.oracle, abs=0.01)  # 2e5 rolls: SE about 2e-3
    assert spec.oracle > spec.chance + 0.1
    # the causal ceiling (filtering) is below Viterbi's whole-sequence decoding
    filt = DishonestCasino(oracle_decoder="filter")
    assert spec.chance < filt.spec().oracle < spec.oracle
    fpred, fproba = filt.oracle_predict(test)
    np.testing.assert_array_equal(fpred, fproba.argmax(-1))
    assert np.mean(fpred == test.Y) == pytest.approx(filt.spec().oracle, abs=0.01)


def test_casino_chance_baseline_scores_chance(seed):
    task = DishonestCasino()
    assert chance_score(task, seed, n_train=500, n_test=2000) == pytest.approx(
        task.spec().chance, abs=0.02)


@settings(max_examples=8, deadline=None)  # each new parameter set costs the oracle's Monte Carlo
@given(length=st.integers(1, 40), p_six=st.floats(0.0, 1.0), a=st.floats(0.01, 1.0),
       b=st.floats(0.01, 1.0), n=st.integers(1, 6))
def test_casino_shapes(length, p_six, a, b, n):
    if abs(p_six - 1 / 6) < 1e-9:
        p_six = 0.5
    task = DishonestCasino(length, p_six, a, b)
    task.check()
    d = task.sample(n, 0)
    assert d.X.shape == d.Y.shape == d.mask.shape == (n, length) and d.mask.all()
    assert d.X.min() >= 0 and d.X.max() <= 5 and set(np.unique(d.Y)) <= {0, 1}
    pi, A, B = task.parameters()
    np.testing.assert_allclose(pi @ A, pi)  # pi is stationary
    np.testing.assert_allclose(B.sum(1), 1)
    assert task.viterbi(d.X).shape == (n, length)


# -- constant-velocity track --------------------------------------------------------------
def test_track_oracle_matches_filterpy(seed):
    from filterpy.kalman import KalmanFilter

    task = ConstantVelocityTrack(length=40, dt=0.5, accel_std=0.3, meas_std=0.7)
    d = task.sample(4, seed)
    ours = task.kalman_filter(d.X)  # (N, T, 2)
    m = task.matrices()
    for i in range(d.n):
        kf = KalmanFilter(dim_x=2, dim_z=1)
        kf.x = np.zeros((2, 1))
        kf.F, kf.H, kf.Q, kf.R, kf.P = m["F"], m["H"], m["Q"], m["R"], m["P0"].copy()
        kf.update(d.X[i, 0, :, None])  # the first measurement updates the prior directly
        first = kf.x[:, 0].copy()
        means, covs, _, _ = kf.batch_filter(d.X[i, 1:, :, None])  # (T-1, 2, 1): column vectors
        ref = np.vstack([first, means[:, :, 0]])
        np.testing.assert_allclose(ours[i], ref, atol=1e-9)
    _, P = task.filter_gains()
    np.testing.assert_allclose(P[1:], covs, atol=1e-9)


def test_track_state_variances_match_filterpy_predictions():
    """Var(p_t) is the position entry of Sigma_t before step t's transition: filterpy's
    KalmanFilter from P = P0, predicting with F and Q and no update, records P[0, 0]
    before each predict; also the closed form at t = 0 (init_pos_std^2) and t = 1."""
    from filterpy.kalman import KalmanFilter

    task = ConstantVelocityTrack(length=30, dt=0.5, accel_std=0.3, init_pos_std=1.5,
                                 init_vel_std=0.4)
    m = task.matrices()
    kf = KalmanFilter(dim_x=2, dim_z=1)
    kf.F, kf.Q, kf.P = m["F"], m["Q"], m["P0"].copy()
    ref = []
    for _ in range(task.length):
        ref.append(kf.P[0, 0])
        kf.predict()
    var = task.state_variances()
    np.testing.assert_allclose(var, ref, rtol=1e-9)
    assert var[0] == pytest.approx(1.5**2)
    assert var[1] == pytest.approx(1.5**2 + 0.5**2 * 0.4**2 + 0.3**2 * 0.5**4 / 4)


def test_track_labels_and_references(seed):
    task = ConstantVelocityTrack()
    spec = task.spec()
    d = task.sample(4000, seed)
    p, z = d.Y[..., 0], d.X[..., 0]
    # measurement noise: z - p is N(0, meas_std^2), independent of the step
    assert np.var(z - p) == pytest.approx(task.meas_std**2, rel=0.02)
    # second differences of the positions: p_{t+2} - 2 p_{t+1} + p_t = dt^2 (a_t + a_{t+1}) / 2
    second = p[:, 2:] - 2 * p[:, 1:-1] + p[:, :-2]
    assert np.var(second) == pytest.approx(task.dt**4 * task.accel_std**2 / 2, rel=0.03)
    # chance: the mean squared position (best input-blind predictor is 0)
    assert np.mean(p**2) == pytest.approx(spec.chance, rel=0.1)
    pred, _ = task.oracle_predict(d)
    mse = np.mean((pred - d.Y) ** 2)
    assert mse == pytest.approx(spec.oracle, rel=0.03)
    assert spec.oracle < task.meas_std**2 and mse < np.mean((z - p) ** 2)


def test_track_chance_baseline_scores_chance(seed):
    task = ConstantVelocityTrack()
    assert chance_score(task, seed, n_train=2000, n_test=4000) == pytest.approx(
        task.spec().chance, rel=0.1)


@FAST
@given(length=st.integers(1, 60), dt=st.floats(0.1, 2.0), accel=st.floats(0.0, 1.0),
       meas=st.floats(0.1, 3.0), p0=st.floats(0.0, 3.0), v0=st.floats(0.0, 1.0))
def test_track_references_are_ordered(length, dt, accel, meas, p0, v0):
    """The filter with the true model beats both the prior (chance) and the raw measurement,
    at every step, for any parameters."""
    task = ConstantVelocityTrack(length, dt, accel, meas, p0, v0)
    spec = task.spec()
    _, P = task.filter_gains()
    var = task.state_variances()
    assert (P[:, 0, 0] <= var + 1e-12).all() and (P[:, 0, 0] <= meas**2 + 1e-12).all()
    assert spec.oracle <= spec.chance + 1e-12
    d = task.sample(3, 1)
    assert d.X.shape == d.Y.shape == (3, length, 1) and d.mask.all()


# -- AR process ---------------------------------------------------------------------------
def test_ar_labels_and_references(seed):
    from statsmodels.tsa.arima_process import arma_acovf

    task = ARProcess()
    spec = task.spec()
    phi = np.asarray(task.coefs)
    acov = arma_acovf(np.r_[1.0, -phi], np.r_[1.0], nobs=6, sigma2=task.noise_std**2)
    np.testing.assert_allclose(task.autocovariances(5), acov, rtol=1e-8)
    assert spec.chance == pytest.approx(acov[0]) and spec.oracle == pytest.approx(1.0)
    d = task.sample(2000, seed)
    y = np.concatenate([d.X[..., 0], d.Y[:, -1:, 0]], axis=1)  # y_0..y_T
    # exactly stationary from the first step: var(y_0) and var(y_T) both equal gamma_0
    for col in (0, -1):
        assert np.var(y[:, col]) == pytest.approx(acov[0], rel=0.1)
    # least squares on p lags recovers the coefficients
    p = len(phi)
    lags = np.stack([y[:, p - i - 1: -i - 1].ravel() for i in range(p)], axis=1)
    fit, *_ = np.linalg.lstsq(lags, y[:, p:].ravel(), rcond=None)
    np.testing.assert_allclose(fit, phi, atol=0.02)
    pred, _ = task.oracle_predict(d)
    assert np.mean((pred - d.Y)[d.mask] ** 2) == pytest.approx(task.noise_std**2, rel=0.03)
    assert not d.mask[:, : p - 1].any() and d.mask[:, p - 1:].all()
    # before step p - 1 the oracle uses the shorter history: still better than the mean
    early = np.mean((pred - d.Y)[:, : p - 1] ** 2)
    assert task.noise_std**2 < early < acov[0]


def test_ar_chance_baseline_scores_chance(seed):
    task = ARProcess()
    assert chance_score(task, seed, n_train=1000, n_test=2000) == pytest.approx(
        task.spec().chance, rel=0.05)


@st.composite
def stationary_coefs(draw):
    """Coefficients of ``prod_k (1 - r_k z)`` with real roots |r_k| < 0.95."""
    roots = draw(st.lists(st.floats(-0.95, 0.95), min_size=1, max_size=4))
    poly = np.array([1.0])
    for r in roots:
        poly = np.convolve(poly, [1.0, -r])
    return tuple(float(c) for c in -poly[1:])


@FAST
@given(coefs=stationary_coefs(), noise=st.floats(0.1, 3.0), length=st.integers(4, 30))
def test_ar_any_stationary_process(coefs, noise, length):
    from statsmodels.tsa.arima_process import arma_acovf

    task = ARProcess(coefs=coefs, noise_std=noise, length=length)
    spec = task.spec()
    acov = arma_acovf(np.r_[1.0, -np.asarray(coefs)], np.r_[1.0], nobs=1, sigma2=noise**2)
    assert spec.chance == pytest.approx(acov[0], rel=1e-6)
    assert spec.oracle == pytest.approx(noise**2) and spec.oracle <= spec.chance * (1 + 1e-9)
    d = task.sample(3, 0)
    assert d.X.shape == (3, length, 1) and d.mask.sum() == 3 * (length - len(coefs) + 1)


# -- real series ----------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [Nile, Sunspots])
def test_series_splits_do_not_leak(cls):
    task = cls()
    raw = load_series(task.series)
    n = len(raw)
    n_tr, n_va = task.cuts()
    m, s = task.scale()
    assert (m, s) == pytest.approx((raw.iloc[:n_tr].mean(), raw.iloc[:n_tr].std(ddof=0)))
    train, valid, test = task.splits(0)
    for data, end, first in ((train, n_tr, 1), (valid, n_va, n_tr), (test, n, n_va)):
        assert data.n == 1 and data.T == end - 1  # inputs y_0..y_{end-2}: never past `end`
        np.testing.assert_allclose(data.X[0, :, 0] * s + m, raw.to_numpy()[: end - 1])
        np.testing.assert_allclose(data.Y[0, :, 0] * s + m, raw.to_numpy()[1:end])
        scored = np.flatnonzero(data.mask[0]) + 1  # indices of the scored target years
        assert scored.min() == first and scored.max() == end - 1
    # the training split never shows (as input or target) a value of the test region
    assert train.T + 1 <= n_va and valid.T + 1 == n_va
    # seeds and sizes do not change a real series
    again = task.splits(7, n_train=5000, n_test=3)
    assert [d.fingerprint() for d in again] == [d.fingerprint() for d in (train, valid, test)]
    assert task.splits(0, n_valid=0)[1] is None


@FAST
@given(train_frac=st.floats(0.01, 0.99), valid_frac=st.floats(0.001, 0.99),
       sunspots=st.booleans())
def test_series_any_fractions_split_in_order(train_frac, valid_frac, sunspots):
    task = (Sunspots if sunspots else Nile)(train_frac=train_frac, valid_frac=valid_frac)
    n = len(load_series(task.series))
    n_tr, n_va = task.cuts()
    if not (n_tr >= 3 and n_va > n_tr and n > n_va):
        with pytest.raises(SeqbenchError):
            task.splits()
        return
    train, valid, test = task.splits()
    assert (train.T, valid.T, test.T) == (n_tr - 1, n_va - 1, n - 1)
    assert train.mask.all()
    assert valid.mask.sum() == n_va - n_tr and test.mask.sum() == n - n_va
    assert valid.mask[0, -1] and test.mask[0, -1]  # the scored years are the last ones


def test_series_known_values():
    nile = load_series("nile")
    assert (nile.index[0], nile.index[-1], len(nile)) == (1871, 1970, 100)
    assert nile.iloc[0] == 1120 and nile.mean() == pytest.approx(919.35)  # Durbin & Koopman
    spots = load_series("sunspots")
    assert (spots.index[0], spots.index[-1], len(spots)) == (1700, 2008, 309)


@pytest.mark.parametrize("cls", [Nile, Sunspots])
@pytest.mark.parametrize("standardise", [True, False])
def test_series_chance_and_persistence(cls, standardise):
    task = cls(standardise=standardise)
    train, _, test = task.splits(0)
    result = sb.evaluate(ChanceBaseline().fit(train), task, test)
    assert result["score"] == pytest.approx(task.spec().chance, rel=1e-12)
    raw = load_series(task.series).to_numpy()
    n_tr, n_va = task.cuts()
    by_hand = np.mean((raw[n_va:] - raw[1:n_tr].mean()) ** 2)  # original units
    assert result["metrics"]["mse_original_scale"] == pytest.approx(by_hand)
    persist = task.score(test, test.X.copy())["metrics"]
    assert persist["theil_u"] == pytest.approx(1.0)
    assert persist["mse_original_scale"] == pytest.approx(np.mean(np.diff(raw)[n_va - 1:] ** 2))


def test_series_windows_stay_in_training_region(seed):
    task = Sunspots()
    d = task.sample(50, seed)
    n_tr, _ = task.cuts()
    years = load_series("sunspots").index
    assert (d.meta["first_year"] + d.T < years[n_tr]).all()
    assert d.forecasting and d.mask.all()


# -- digits ---------------------------------------------------------------------------------
def test_digits_labels_and_pixels_are_sklearns(seed):
    from sklearn.datasets import load_digits

    ref = load_digits()
    for task in (SequentialDigits(), PermutedDigits(permutation_seed=5)):
        train, valid, test = task.splits(seed)
        order = task.order()
        assert sorted(order) == list(range(64))  # a bijection of the pixels
        for data in (train, valid, test):
            img = data.meta["image"].to_numpy()
            np.testing.assert_array_equal(data.Y[:, -1], ref.target[img])
            np.testing.assert_array_equal(data.meta["digit"], ref.target[img])
            pixels = ref.images[img].reshape(-1, 64)[:, order] / 16
            np.testing.assert_allclose(data.X[..., 0], pixels)
        ids = [set(d.meta["image"]) for d in (train, valid, test)]
        assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
        assert len(ids[0] | ids[1] | ids[2]) == 1797  # the defaults use the whole pool
    np.testing.assert_array_equal(SequentialDigits().order(), np.arange(64))
    # the permutation is fixed by its seed and changes with it
    np.testing.assert_array_equal(PermutedDigits(5).order(), PermutedDigits(5).order())
    assert not np.array_equal(PermutedDigits(5).order(), PermutedDigits(6).order())
    # row-major reading: step 8 r + c is pixel (r, c)
    d = SequentialDigits().sample(3, seed)
    np.testing.assert_allclose(d.X[:, 8 * 2 + 5, 0],
                               ref.images[d.meta["image"].to_numpy(), 2, 5] / 16)


def test_digits_split_sizes_are_capped_in_order():
    task = SequentialDigits()
    train, valid, test = task.splits(0, n_train=5000, n_valid=300, n_test=600)
    assert (test.n, valid.n, train.n) == (600, 300, 1797 - 900)
    small = task.splits(0, n_train=100, n_valid=0, n_test=600)
    assert small[1] is None and small[0].n == 100
    np.testing.assert_array_equal(small[2].meta["image"], test.meta["image"])  # same test set
    with pytest.raises(SeqbenchError, match="no train images"):
        task.splits(0, n_valid=1000, n_test=797)
    with pytest.raises(SeqbenchError, match="at most 1797"):
        task.sample(1798)


def test_digits_splits_are_stratified(seed):
    """Each split holds every digit's share of the pool to within two images (counted
    here from scikit-learn's labels), in both the default and capped sizes."""
    from sklearn.datasets import load_digits

    share = np.bincount(load_digits().target) / 1797
    for sizes in ({}, {"n_train": 300, "n_valid": 150, "n_test": 400}):
        for data in SequentialDigits().splits(seed, **sizes):
            counts = np.bincount(data.meta["digit"], minlength=10)
            assert np.abs(counts - data.n * share).max() <= 2, (sizes, counts)


def test_digits_chance_baseline_scores_the_spec_chance_on_average():
    """Over 40 seeds the chance baseline's mean test accuracy is the spec's 183 / 1797 to
    within 0.003: the training split's most frequent digit is as frequent in the test split
    as in the pool (splits dealt unstratified from one pool averaged about 0.086)."""
    task = SequentialDigits()
    mean = np.mean([chance_score(task, s) for s in range(40)])
    assert mean == pytest.approx(183 / 1797, abs=0.003)


def test_digits_chance(seed):
    from sklearn.datasets import load_digits

    task = SequentialDigits()
    counts = np.bincount(load_digits().target)
    assert task.spec().chance == pytest.approx(counts.max() / 1797) == pytest.approx(183 / 1797)
    # the chance baseline's test accuracy: within 4 standard errors (500 test images)
    tolerance = 4 * np.sqrt(0.09 / 500)
    assert chance_score(task, seed) == pytest.approx(task.spec().chance, abs=tolerance)


# -- one-to-many: cue generation ----------------------------------------------------------
@FAST
@given(n_cues=st.integers(2, 9), length=st.integers(2, 25), table_seed=st.integers(0, 99))
def test_cue_generation_targets_are_determined_by_the_cue(n_cues, length, table_seed):
    task = CueGeneration(n_cues, length, table_seed)
    spec = task.spec()
    assert spec.chance == pytest.approx(1 / n_cues) and spec.shape == "one-to-many"
    d = task.sample(10 * n_cues, table_seed)
    assert d.X.shape == d.Y.shape == (10 * n_cues, length)
    assert (d.X[:, 1:] == 0).all() and (d.X[:, 0] >= 1).all()
    assert not d.mask[:, 0].any() and d.mask[:, 1:].all()
    # independent solver: recover the table from the data alone
    seen = {}
    for x, y in zip(d.X, d.Y):
        seen.setdefault(int(x[0]), set()).add(tuple(y[1:]))
    assert all(len(v) == 1 for v in seen.values())  # one sequence per cue
    table = task.table()
    for cue, (seq,) in seen.items():
        assert seq == tuple(table[cue - 1])
    # Latin columns: at every step each symbol belongs to exactly one cue
    assert (np.sort(table, axis=0) == np.arange(n_cues)[:, None]).all()
    # a longer table extends a shorter one
    np.testing.assert_array_equal(CueGeneration(n_cues, length + 3, table_seed).table()[:, :-3],
                                  table)


def test_cue_generation_chance_baseline(seed):
    task = CueGeneration(n_cues=5, length=12)
    assert chance_score(task, seed, n_train=500, n_test=2000) == pytest.approx(0.2, abs=0.02)


# -- one-to-one: single step --------------------------------------------------------------
@FAST
@given(n_classes=st.integers(2, 6), extra=st.integers(0, 7), noise_frac=st.floats(0.0, 0.95),
       table_seed=st.integers(0, 50))
def test_single_step_chance_and_oracle(n_classes, extra, noise_frac, table_seed):
    n_tokens = n_classes + extra
    noise = noise_frac * (1 - 1 / n_classes)
    task = SingleStep(n_tokens, n_classes, noise, table_seed)
    spec = task.spec()
    f = task.table()
    assert set(f) == set(range(n_classes))  # every class is reachable
    # enumerate P(y = c) over tokens: (1/n) sum_x [(1 - e) 1{f(x) = c} + e / (C - 1) 1{f(x) != c}]
    p = np.array([np.mean(np.where(f == c, 1 - noise, noise / (n_classes - 1)))
                  for c in range(n_classes)])
    assert spec.chance == pytest.approx(p.max()) and spec.oracle == pytest.approx(1 - noise)
    d = task.sample(50, table_seed)
    assert d.X.shape == d.Y.shape == d.mask.shape == (50, 1) and spec.shape == "one-to-one"
    flipped = d.meta["flipped"].to_numpy()
    np.testing.assert_array_equal(d.Y[~flipped, 0], f[d.X[~flipped, 0]])
    assert (d.Y[flipped, 0] != f[d.X[flipped, 0]]).all()


def test_single_step_noise_rate_and_scores(seed):
    task = SingleStep(n_tokens=5, n_classes=2, noise=0.2)  # unequal shares: 3 / 2 tokens
    d = task.sample(20000, seed)
    f = task.table()
    flip_rate = np.mean(d.Y[:, 0] != f[d.X[:, 0]])
    assert abs(flip_rate - 0.2) < 5 * np.sqrt(0.16 / d.n)
    spec = task.spec()
    assert spec.chance == pytest.approx(0.8 * 0.6 + 0.2 * 0.4)  # majority class: 3 of 5 tokens
    pred, proba = task.oracle_predict(d)
    assert task.score(d, pred, proba)["metrics"]["accuracy"] == pytest.approx(0.8, abs=0.015)
    np.testing.assert_allclose(proba.sum(-1), 1)
    assert chance_score(task, seed, n_train=1000, n_test=5000) == pytest.approx(spec.chance,
                                                                                abs=0.025)


def test_single_step_lds_predicts_every_class_and_scores_the_oracle(seed):
    """T = 1 with one-hot token inputs: the LDS's predicted one-hot observation is linear in
    the token, so its argmax (the last class implied as 1 minus the others) is f(x) for
    every token, every class included, and its accuracy is the oracle 1 - noise up to
    sampling error (5 binomial standard deviations)."""
    task = SingleStep(n_tokens=8, n_classes=4, noise=0.2)
    train, _, test = task.splits(seed, 2000, 10, 4000)
    pred = LDSModel(n_states=2, max_iter=5, random_state=0).fit(train).predict(test.X)
    np.testing.assert_array_equal(pred[:, 0], task.table()[test.X[:, 0]])
    assert set(pred[:, 0]) == set(range(4))
    acc = task.score(test, pred, None)["metrics"]["accuracy"]
    assert abs(acc - task.spec().oracle) < 5 * np.sqrt(0.2 * 0.8 / test.n)


def test_digits_stratified_order_starts_with_different_digits_per_seed():
    """The interleaving by digit is random too: over 50 seeds the first test image is of
    at least 8 different digits (a fixed interleave always dealt the most frequent digit,
    3, first, so a one-image test set was a 3 for every seed)."""
    from sklearn.datasets import load_digits

    from seqbench.tasks.digits import stratified_order

    digits = load_digits().target
    firsts = {int(digits[stratified_order(seed)[0]]) for seed in range(50)}
    assert len(firsts) >= 8
