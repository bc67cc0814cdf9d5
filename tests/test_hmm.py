"""The HMM family against hmmlearn: our vectorised forward pass against hmmlearn's
scores of prefixes, decoding against the true-parameter decoder on data from a known
HMM, generative classification against the Bayes classifier, EM restarts, and the
forgetting diagnostic against the two-state closed form."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from hmmlearn import hmm
from sklearn.base import clone

from seqbench.data import SeqData
from seqbench.errors import SeqbenchError
from seqbench.models.hmm import HiddenMarkov, forward_filter, restart_seed
from seqbench.registry import make_model

CASINO_A = np.array([[0.95, 0.05], [0.10, 0.90]])
CASINO_B = np.array([[1 / 6] * 6, [0.1] * 5 + [0.5]])  # fair die, loaded die


def categorical(startprob, transmat, emissionprob) -> hmm.CategoricalHMM:
    m = hmm.CategoricalHMM(n_components=len(startprob), n_features=emissionprob.shape[1])
    m.startprob_, m.transmat_, m.emissionprob_ = startprob, transmat, emissionprob
    return m


def gaussian(startprob, transmat, means, covars, covariance_type="diag") -> hmm.GaussianHMM:
    m = hmm.GaussianHMM(n_components=len(startprob), covariance_type=covariance_type)
    m.startprob_, m.transmat_, m.means_, m.covars_ = startprob, transmat, means, covars
    m.n_features = means.shape[1]
    return m


def draw(model, n: int, T: int, seed: int):
    """n sequences of T steps from the parameters of an hmmlearn model (categorical, or
    Gaussian with diagonal covariances): X (n, T) or (n, T, D), states (n, T)."""
    rng = np.random.default_rng(seed)

    def pick(p):  # one draw per row of p (n, S)
        return (rng.random((len(p), 1)) > np.cumsum(p, axis=1)).sum(axis=1)

    Z = np.empty((n, T), np.int64)
    Z[:, 0] = pick(np.broadcast_to(model.startprob_, (n, len(model.startprob_))))
    for t in range(1, T):
        Z[:, t] = pick(model.transmat_[Z[:, t - 1]])
    if isinstance(model, hmm.CategoricalHMM):
        X = pick(model.emissionprob_[Z.ravel()]).reshape(n, T)
    else:
        sd = np.sqrt(np.stack([np.diag(c) for c in model.covars_]))  # (S, D)
        X = model.means_[Z] + sd[Z] * rng.normal(size=(n, T, model.means_.shape[1]))
    return X, Z


def flat(X):
    return X.reshape(-1, 1) if X.ndim == 2 else X.reshape(-1, X.shape[2])


def true_decode(model, X, algorithm):
    """Whole-sequence decoding with hmmlearn: the Viterbi path or the argmax of the
    smoothed posteriors ("map")."""
    N, T = X.shape[:2]
    return model.decode(flat(X), np.full(N, T), algorithm=algorithm)[1].reshape(N, T)


def per_step(X, Z, V=None) -> SeqData:
    return SeqData(X, Z, np.ones(Z.shape, bool), input_size=V, target_size=2)


# -- the forward pass -------------------------------------------------------------------
@pytest.mark.parametrize("emissions", ["categorical", "gaussian"])
def test_forward_matches_hmmlearn_on_every_prefix(rng, emissions):
    S, T = 3, 10
    startprob = rng.dirichlet(np.ones(S))
    transmat = rng.dirichlet(np.ones(S), size=S)
    if emissions == "categorical":
        model = categorical(startprob, transmat, rng.dirichlet(np.ones(5), size=S))
    else:
        model = gaussian(startprob, transmat, rng.normal(size=(S, 2)) * 2,
                         rng.uniform(0.5, 2, (S, 2)))
    X, _ = draw(model, 4, T, seed=int(rng.integers(2**31)))
    log_b = model._compute_log_likelihood(flat(X)).reshape(4, T, S)
    alpha, loglik = forward_filter(startprob, transmat, log_b)
    for i in range(4):
        for t in range(T):
            prefix = flat(X[i:i + 1, : t + 1])
            ll, post = model.score_samples(prefix)  # post[-1]: p(z_t | x_1..x_t)
            np.testing.assert_allclose(loglik[i, t], ll, rtol=1e-10)
            np.testing.assert_allclose(alpha[i, t], post[-1], atol=1e-10)


def test_forward_by_blocks_of_steps_is_one_pass_bit_for_bit(rng):
    """The filter continued block by block with its carried state gives one pass's numbers
    exactly (the loop over steps is the same; the log-likelihood is summed in the same
    order)."""
    model = categorical(np.array([0.5, 0.5]), CASINO_A, CASINO_B)
    X, _ = draw(model, 5, 40, seed=int(rng.integers(2**31)))
    log_b = model._compute_log_likelihood(flat(X)).reshape(5, 40, 2)
    alpha, loglik = forward_filter(model.startprob_, model.transmat_, log_b)
    carry, parts = None, []
    for t0, t1 in [(0, 1), (1, 13), (13, 14), (14, 40)]:
        a, ll = forward_filter(model.startprob_, model.transmat_, log_b[:, t0:t1], carry)
        carry = (a[:, -1], ll[:, -1])
        parts.append((a, ll))
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts], axis=1), alpha)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts], axis=1), loglik)


def test_forward_is_stable_on_long_sequences(rng):
    model = categorical(np.array([0.5, 0.5]), CASINO_A, CASINO_B)
    X, _ = draw(model, 2, 3000, seed=int(rng.integers(2**31)))
    log_b = model._compute_log_likelihood(flat(X)).reshape(2, 3000, 2)
    alpha, loglik = forward_filter(model.startprob_, model.transmat_, log_b)
    assert np.isfinite(loglik).all() and np.isfinite(alpha).all()
    for i in range(2):
        np.testing.assert_allclose(loglik[i, -1], model.score(flat(X[i:i + 1])), rtol=1e-10)


# -- decoding on data from a known HMM --------------------------------------------------
@pytest.fixture
def casino_data(seed):
    truth = categorical(np.array([0.5, 0.5]), CASINO_A, CASINO_B)
    Xtr, Ztr = draw(truth, 150, 100, seed)
    Xte, Zte = draw(truth, 60, 100, seed + 1)
    return truth, per_step(Xtr, Ztr, V=6), per_step(Xte, Zte, V=6)


@pytest.mark.parametrize("decode", ["viterbi", "posterior", "filter"])
def test_supervised_decoding_is_close_to_the_true_model(casino_data, decode):
    truth, train, test = casino_data
    model = HiddenMarkov(mode="auto", decode=decode, random_state=0).fit(train)
    assert model.mode_ == "supervised"
    np.testing.assert_allclose(model.hmms_[0].transmat_, CASINO_A, atol=0.03)
    np.testing.assert_allclose(model.hmms_[0].emissionprob_, CASINO_B, atol=0.03)
    acc = np.mean(model.predict(test.X) == test.Y)
    if decode == "filter":  # the true model's filter (forward_filter is checked above)
        log_b = truth._compute_log_likelihood(flat(test.X)).reshape(*test.X.shape, 2)
        ref = forward_filter(truth.startprob_, truth.transmat_, log_b)[0].argmax(-1)
    else:
        ref = true_decode(truth, test.X, "viterbi" if decode == "viterbi" else "map")
    best = np.mean(ref == test.Y)
    assert best > 0.75  # the regimes are decodable at all
    assert acc > best - 0.02, (acc, best)


def test_em_then_viterbi_is_close_to_the_true_model(casino_data):
    """Unsupervised EM (2 states, restarts), the Viterbi path as features, a readout
    mapping states to labels. EM is slow on the casino (the regimes differ only in the
    frequency of a six) and often stuck in a non-sticky local optimum, hence the long
    runs and the restarts."""
    truth, train, test = casino_data
    model = HiddenMarkov(n_states=2, mode="readout", decode="viterbi", n_init=4, n_iter=200,
                         random_state=0).fit(train)
    acc = np.mean(model.predict(test.X) == test.Y)
    best = np.mean(true_decode(truth, test.X, "viterbi") == test.Y)
    assert acc > best - 0.04, (acc, best)


def test_em_filtered_readout_is_close_to_the_true_filter(casino_data):
    """Causal decoding: the readout on filtered posteriors against the true model's
    filter, computed independently as hmmlearn's last smoothed posterior of each prefix."""
    truth, train, test = casino_data
    model = HiddenMarkov(n_states=2, mode="readout", n_init=4, n_iter=200,
                         random_state=0).fit(train)
    assert model.decode_ == "filter"
    X, Z = test.X[:20], test.Y[:20]
    ref = np.array([[truth.score_samples(flat(X[i:i + 1, : t + 1]))[1][-1].argmax()
                     for t in range(X.shape[1])] for i in range(len(X))])
    best = np.mean(ref == Z)
    acc = np.mean(model.predict(X) == Z)
    assert acc > best - 0.05, (acc, best)
    # causal: changing the future leaves earlier predictions unchanged
    X2 = X.copy()
    X2[:, 50:] = 5
    np.testing.assert_array_equal(model.predict_proba(X)[:, :50], model.predict_proba(X2)[:, :50])


@pytest.mark.parametrize("covariance_type", ["diag", "full", "spherical", "tied"])
def test_supervised_gaussian_decoding(seed, covariance_type):
    truth = gaussian(np.array([0.5, 0.5]), CASINO_A, np.array([[-1.0, 0.0], [1.0, 0.5]]),
                     np.array([[1.0, 1.0], [1.0, 1.0]]))
    Xtr, Ztr = draw(truth, 60, 80, seed)
    Xte, Zte = draw(truth, 40, 80, seed + 1)
    model = HiddenMarkov(decode="viterbi", covariance_type=covariance_type)
    model.fit(per_step(Xtr, Ztr))
    np.testing.assert_allclose(model.hmms_[0].means_, truth.means_, atol=0.1)
    acc = np.mean(model.predict(Xte) == Zte)
    best = np.mean(true_decode(truth, Xte, "viterbi") == Zte)
    assert acc > best - 0.02, (acc, best)


# -- generative classification -----------------------------------------------------------
def test_generative_mode_matches_the_bayes_classifier(seed):
    """Sequences from two HMMs with the same emissions and different dynamics (sticky vs
    switching), one label per sequence at its last step."""
    B = np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    models = [categorical(np.array([0.5, 0.5]), np.array([[0.9, 0.1], [0.1, 0.9]]), B),
              categorical(np.array([0.5, 0.5]), np.array([[0.3, 0.7], [0.7, 0.3]]), B)]

    def make(n, s):
        X = np.concatenate([draw(m, n, 30, s + 7 * c)[0] for c, m in enumerate(models)])
        y = np.repeat([0, 1], n)
        Y = np.zeros(X.shape, np.int64)
        Y[:, -1] = y
        mask = np.zeros(X.shape, bool)
        mask[:, -1] = True
        return SeqData(X, Y, mask, input_size=3, target_size=2), y

    train, _ = make(100, seed)
    test, y = make(100, seed + 1)
    model = HiddenMarkov(n_states=2, random_state=0).fit(train)
    assert model.mode_ == "generative"
    acc = np.mean(model.predict(test.X)[:, -1] == y)
    ll = np.array([[m.score(flat(test.X[i:i + 1])) for m in models] for i in range(len(y))])
    bayes = np.mean(ll.argmax(1) == y)  # equal priors
    assert bayes > 0.85
    assert acc > bayes - 0.05, (acc, bayes)
    # the probabilities are the normalised class posteriors of the fitted models
    P = model.predict_proba(test.X)[:, -1]
    fitted = np.array([[m.score(flat(test.X[i:i + 1])) for m in model.hmms_]
                       for i in range(len(y))]) + model.log_prior_
    ref = np.exp(fitted - fitted.max(1, keepdims=True))
    np.testing.assert_allclose(P, ref / ref.sum(1, keepdims=True), atol=1e-9)


def test_generative_prefix_scores_are_causal(rng):
    X = rng.integers(0, 4, (40, 12))
    Y = np.zeros_like(X)
    Y[:, -1] = rng.integers(0, 3, 40)
    mask = np.zeros(X.shape, bool)
    mask[:, -1] = True
    model = HiddenMarkov(n_states=2, n_init=1, n_iter=5, random_state=0)
    model.fit(SeqData(X, Y, mask, input_size=4, target_size=3))
    X2 = X.copy()
    X2[:, 6:] = 0
    np.testing.assert_array_equal(model.predict_proba(X)[:, :6], model.predict_proba(X2)[:, :6])


# -- EM restarts -----------------------------------------------------------------------
def test_restarts_keep_the_best_likelihood(casino_data, seed):
    _, train, _ = casino_data
    train = train.subset(slice(0, 40))
    kw = dict(n_states=3, mode="readout", n_iter=15, tol=0.0)
    single = [HiddenMarkov(n_init=1, random_state=restart_seed(seed, r), **kw).fit(train)
              .train_loglik_[0] for r in range(4)]
    model = HiddenMarkov(n_init=4, random_state=seed, **kw).fit(train)
    np.testing.assert_allclose(model.restart_logliks_[0], single, rtol=1e-12)
    assert model.train_loglik_[0] >= max(single) - 1e-9
    assert len(set(np.round(single, 6))) > 1  # the restarts do differ
    # the next seed's restarts are new ones, not shifted copies of these
    following = HiddenMarkov(n_init=4, random_state=seed + 1, **kw).fit(train)
    assert not set(np.round(single, 6)) & set(np.round(following.restart_logliks_[0], 6))
    # the reported likelihood is hmmlearn's score of the kept model on the training data
    ref = model.hmms_[0].score(flat(train.X), np.full(train.n, train.T))
    np.testing.assert_allclose(model.train_loglik_[0], ref, rtol=1e-12)


# -- forecasting -------------------------------------------------------------------------
def test_forecast_is_the_one_step_predictive(rng):
    truth = categorical(np.array([0.5, 0.5]), CASINO_A, CASINO_B)
    X, _ = draw(truth, 30, 41, seed=int(rng.integers(2**31)))
    mask = np.ones((30, 40), bool)
    data = SeqData(X[:, :-1], X[:, 1:], mask, input_size=6, target_size=6, forecasting=True)
    model = HiddenMarkov(n_states=2, random_state=0).fit(data)
    assert model.mode_ == "forecast"
    P = model.predict_proba(data.X[:2, :8])
    fitted = model.hmms_[0]
    for i in range(2):
        for t in range(8):
            base = fitted.score(flat(data.X[i:i + 1, : t + 1]))
            ref = [np.exp(fitted.score(np.append(data.X[i, : t + 1], v)[:, None]) - base)
                   for v in range(6)]  # p(x_{t+1} = v | x_1..x_t) by ratios of likelihoods
            np.testing.assert_allclose(P[i, t], ref, atol=1e-10)


# -- bookkeeping ---------------------------------------------------------------------------
def test_unseen_tokens_keep_finite_predictions(rng):
    X = rng.integers(0, 3, (30, 10))  # symbols 3..5 never occur in training
    Z = rng.integers(0, 2, (30, 10))
    for mode in ("readout", "supervised"):
        model = HiddenMarkov(n_states=2, mode=mode, n_init=1, random_state=0)
        model.fit(SeqData(X, Z, np.ones(X.shape, bool), input_size=6, target_size=2))
        Xt = rng.integers(0, 6, (5, 10))
        P = model.predict_proba(Xt)
        assert np.isfinite(P).all()
        np.testing.assert_allclose(P.sum(-1), 1.0)


@pytest.mark.parametrize("mode", ["readout", "supervised"])
def test_zero_pseudocount_is_refused_for_tokens_and_kept_for_real_inputs(rng, mode):
    """At pseudocount 0 a token unseen in training has probability 0 in every state (its
    posterior 0/0: NaN); real inputs keep 0 (maximum-likelihood counts), finite."""
    X = rng.integers(0, 3, (30, 10))  # symbols 3..5 never occur in training
    Z = rng.integers(0, 2, (30, 10))
    model = HiddenMarkov(n_states=2, mode=mode, n_init=1, pseudocount=0, random_state=0)
    tokens = SeqData(X, Z, np.ones(X.shape, bool), input_size=6, target_size=2)
    with pytest.raises(SeqbenchError, match=r"'pseudocount': expected a float > 0 for token "
                                            r"inputs \(at 0 a token unseen in training"):
        model.fit(tokens)
    real = SeqData(X[..., None] + rng.normal(size=(30, 10, 1)), Z, np.ones(X.shape, bool),
                   target_size=2)
    P = clone(model).fit(real).predict_proba(rng.normal(size=(5, 10, 1)) * 5)
    assert np.isfinite(P).all()
    np.testing.assert_allclose(P.sum(-1), 1.0)


def test_state_forgetting_matches_the_two_state_closed_form(casino_data):
    _, train, _ = casino_data
    model = HiddenMarkov().fit(train)
    P = model.hmms_[0].transmat_
    a, b = P[0, 1], P[1, 0]
    diag = model.diagnostics(train)
    json.dumps(diag)
    curve = diag["state_forgetting"]
    k = np.array(curve["k"])
    # row i of P^k minus pi is (1 - a - b)^k times (row i of I minus pi)
    ref = max(a, b) / (a + b) * np.abs(1 - a - b) ** k
    np.testing.assert_allclose(curve["tv"], ref, rtol=1e-8, atol=1e-14)


def test_n_parameters():
    X = np.random.default_rng(0).integers(0, 5, (20, 10))
    Z = (X > 2).astype(np.int64)
    model = HiddenMarkov(n_states=3, mode="readout", n_init=1, n_iter=3, random_state=0)
    model.fit(SeqData(X, Z, np.ones(X.shape, bool), input_size=5, target_size=2))
    S, V, K = 3, 5, 2
    assert model.n_parameters() == (S - 1) + S * (S - 1) + S * (V - 1) + (K * S + K)


def test_same_seed_same_predictions_clone_and_pickle(casino_data):
    _, train, test = casino_data
    train = train.subset(slice(0, 30))
    a = HiddenMarkov(n_states=3, mode="readout", n_init=2, random_state=5).fit(train)
    b = clone(a).fit(train)
    np.testing.assert_array_equal(a.predict_proba(test.X), b.predict_proba(test.X))
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(a.predict_proba(test.X), c.predict_proba(test.X))


@pytest.mark.parametrize("params, match", [
    ({"n_states": 0}, "n_states"),
    ({"mode": "discriminative"}, "mode"),
    ({"decode": "beam"}, "decode"),
    ({"n_init": 0}, "n_init"),
    ({"covariance_type": "banded"}, "covariance_type"),
    ({"pseudocount": -1.0}, "pseudocount"),
    ({"mode": "generative"}, "generative"),  # per-step labels
    ({"mode": "forecast"}, "forecast"),  # not a forecasting task
])
def test_bad_parameters_are_seqbench_errors(casino_data, params, match):
    _, train, _ = casino_data
    with pytest.raises(SeqbenchError, match=match):
        make_model("hmm", **params).fit(train.subset(slice(0, 5)))


def test_generative_mode_ignores_decode(rng):
    """Generative predictions are filtered by construction, whatever ``decode`` says."""
    X = rng.integers(0, 3, (30, 8))
    Y = np.zeros_like(X)
    Y[:, -1] = rng.integers(0, 2, 30)
    mask = np.zeros(X.shape, bool)
    mask[:, -1] = True
    data = SeqData(X, Y, mask, input_size=3, target_size=2)
    a = HiddenMarkov(n_states=2, n_init=1, random_state=0).fit(data)
    b = HiddenMarkov(n_states=2, n_init=1, decode="viterbi", random_state=0).fit(data)
    assert a.mode_ == b.mode_ == "generative" and b.decode_ == "filter"
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
