"""No job holds a second copy of its split (issue 7, memory part).

The measurements (``test_family_holds_no_second_copy``) run
:func:`seqbench.testing.dataset_copies`: a fresh interpreter per case builds a split of
real inputs, X (5000, 100, 40) float64 (153 MiB; 157 MiB with Y (5000, 100, 1) and the
mask), warms the model up on 16 sequences, then fits it and predicts X, each inside a
window of the kernel's peak RSS (``/proc/self/clear_refs`` + ``VmHWM``). The growth of the
peak over the RSS before (taken after ``malloc_trim``), divided by the split's bytes, is
the number of extra copies the step held at its worst. One extra copy of the split is at
least 0.49 of it (X alone cast to float32, the cheapest whole copy a model could make), so
every bound below is one that a whole extra copy breaks, with room above what the families
measure now (on the project's 2-core machine; before -> after this change):

* torch (lstm, gru, rnn), fit: 0.52 -> 0.02-0.03 (training cast the whole split to
  float32; it now casts each batch), bound 0.25. Predict (slices of 1024 sequences, cast
  one at a time, unchanged): 0.16-0.30, bound 0.6. (Measured again on 2026-11-26 with
  the same predict code: 0.35-0.45 from run to run, at up to 64 MiB of gates per slice,
  ``recurrent.EVAL_BYTES``, 0.41 of this split; one more copy of the split is 1.0.)
* ar, mlp, last step scored: fit 0.13-0.16 -> 0.08-0.09 (one design row per sequence),
  predict 0.93 and 1.35 -> 0.16 and 0.24 (prediction blocks of 16 MiB instead of 64 MiB,
  built with one temporary instead of two); bounds 0.25 and 0.4.
* ar, every step scored: fit 8.2 -> 0.26. The design matrix (4 taps of 40 inputs plus 3
  start indicators per position: 3.96 splits) and its centred copy were built whole; the
  normal equations are now summed over blocks of positions. Bound 0.6.
* lds (``chunk_size=250``: the engine's chunk budget is working memory by design): fit
  0.98 -> 0.31 (``np.std`` of the inputs held a centred copy; now summed over blocks),
  predict 0.34; bound 0.5 for both.
* hmm (readout mode, 2 states), fit 5.0 -> 0.42, bound 0.5; predict 4.0 -> 0.18, bound
  0.4. hmmlearn's k-means initialisation (scikit-learn's ``KMeans`` copies and centres its
  input) held two copies of the observations while it ran; on top, seqbench copied the
  kept rows and then their concatenation, and computed the emission densities of the
  whole split at once (hmmlearn builds (steps, S, D) temporaries: S copies, twice over).
  Rows kept whole now go to hmmlearn as a view, the densities are computed a chunk of
  rows at a time, and past ``INIT_SAMPLE`` steps the k-means start runs on a sample of
  that many steps (``test_hmm_sampled_start_reaches_hmmlearns_fit``): what remains
  (about 60 MiB here) is k-means on that 20 MiB sample, the same whatever the split's
  size.

* mlp, every step scored: fit 12.2 -> 8.2 -> 0.50: the design matrix (3.96 splits) and
  its standardised copy were built whole for scikit-learn; now the features of one
  mini-batch are built at a time (one ``partial_fit`` per batch), the standardisation
  and the validation loss are summed over blocks. What remains is block-sized working
  memory (16 MiB blocks of features and their centred copy, the positions' indices).
  Bound 0.6.

* ar, class targets (three classes), every step scored: fit 8.1 -> 0.36. The logistic
  regression handed scikit-learn's L-BFGS the whole design matrix and its standardised
  copy; its loss and gradient are now summed over blocks of whole sequences at every
  evaluation, the first 32 MiB of blocks kept between evaluations (a fixed budget: 0.2
  of this split). Bound 0.6.
* token inputs (X (100000, 100) int64 over 8 tokens, 162 MiB with Y and the mask), class
  targets, every step scored: ar fit 17.7 -> 0.42, mlp fit 2.34 -> 0.34, predict 2.27 ->
  0.58 for both (its output, class ids (N, T) int64, is 0.47 of the split). One-hot taps
  are sparse, but the logistic AR built them whole; the MLP held the positions' row and
  column indices and the epoch's order as int64 (three arrays each the size of X), and
  blocks were sized in entries (16 MiB of floats) while a sparse entry and what building
  it takes weigh about 32 bytes. Now: int32 positions (none when every step is scored),
  an int32 order, blocks sized in bytes, and predict keeps each block's class ids only,
  not (N, T, K) scores. Bounds 0.7 and 0.6 for fit, 0.8 for predict.
* the same token split for lstm and hmm: lstm predict 1.28 -> 0.59 (it kept float32
  logits (N, T, K), then the softmax made a second such array; now each batch is reduced
  to its class ids or probabilities on the device); hmm, every step scored (supervised:
  classes as states), fit 1.01 -> 0.33 (the counts gathered the scored labels and tokens
  whole, twice; now counted by bincount block by block of rows), predict 5.7 -> 0.60;
  last step scored (one HMM per class), predict 6.3 -> 0.67 (emission log-densities,
  forward variables and scores were (N, T, S) arrays of the whole split; now the causal
  filter runs over blocks of steps, its state carried, and whole-row decodings over
  chunks of rows). Bounds 0.25 and 0.6 for fit, 0.8 for predict.

Each measurement takes 2-5 s (most of it the interpreter and imports). Beside them, fast
checks that the memory-saving paths give the numbers of the plain ones, against
independent references (numpy's least squares, hmmlearn on the whole array, numpy's
mean and standard deviation, the whole split cast before batching).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from seqbench.data import SeqData
from seqbench.testing import COPIES_MODELS, dataset_copies, peak_reset_unavailable

MiB = 2**20

# family, mask shape, targets, bound on fit's extra copies, bound on predict's (see the
# docstring); real inputs X (5000, 100, 40)
CASES = [
    ("lstm", "many-to-one", "real", 0.25, 0.6),
    ("gru", "many-to-one", "real", 0.25, 0.6),
    ("rnn", "many-to-one", "real", 0.25, 0.6),
    ("ar", "many-to-one", "real", 0.25, 0.4),
    ("ar", "many-to-many-synced", "real", 0.6, 0.4),
    ("ar", "many-to-many-synced", "classes", 0.6, 0.4),
    ("mlp", "many-to-one", "real", 0.25, 0.4),
    ("mlp", "many-to-many-synced", "real", 0.6, 0.4),
    ("lds", "many-to-one", "real", 0.5, 0.5),
    ("hmm", "many-to-one", "real", 0.5, 0.4),
]
# token inputs X (100000, 100) over 8 tokens, class targets: the prediction's own output,
# class ids (N, T) int64, is 0.47 of this split
TOKEN_CASES = [
    ("ar", "many-to-many-synced", "classes", 0.7, 0.8),
    ("mlp", "many-to-many-synced", "classes", 0.6, 0.8),
    ("lstm", "many-to-many-synced", "classes", 0.25, 0.8),
    ("hmm", "many-to-many-synced", "classes", 0.6, 0.8),
    ("hmm", "many-to-one", "classes", 0.6, 0.8),
]


@pytest.mark.parametrize(
    ("family", "shape", "targets", "inputs", "fit_bound", "predict_bound"),
    [(*c[:3], "real", *c[3:]) for c in CASES] + [(*c[:3], "tokens", *c[3:]) for c in TOKEN_CASES],
    ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES] + [f"{c[0]}-tokens-{c[2]}" for c in TOKEN_CASES])
def test_family_holds_no_second_copy(family, shape, targets, inputs, fit_bound,
                                     predict_bound):
    why = peak_reset_unavailable()
    if why:
        pytest.skip(why)
    size = dict(n=100_000, D=8) if inputs == "tokens" else {}
    r = dataset_copies(family, COPIES_MODELS[family], shape=shape, targets=targets,
                       inputs=inputs, **size)
    split = r["split_bytes"]
    msg = (f"{family} ({shape}, {inputs} inputs, {targets} targets): split "
           f"{split / MiB:.0f} MiB, fit +{r['fit_growth'] / MiB:.0f} MiB "
           f"({r['fit_copies']:.2f} copies), predict +{r['predict_growth'] / MiB:.0f} MiB "
           f"({r['predict_copies']:.2f} copies, its output {r['output_bytes'] / MiB:.1f} MiB)")
    print(msg)
    assert split > 150 * MiB, msg  # big enough that one copy stands out of the noise
    assert r["fit_copies"] < fit_bound, msg
    assert r["predict_copies"] < predict_bound, msg


# -- the memory-saving paths give the plain paths' numbers ----------------------------------
def _real_data(rng, N=40, T=12, D=3, every_step=True):
    X = rng.normal(size=(N, T, D))
    Y = np.stack([X[..., 0] + 0.5 * np.roll(X[..., 1], 1, axis=1),
                  X[..., 2] - X[..., 0]], axis=-1) + 0.1 * rng.normal(size=(N, T, 2))
    mask = np.ones((N, T), bool) if every_step else rng.random((N, T)) < 0.6
    mask[0, 0] = True
    return SeqData(X, Y, mask)


@pytest.mark.parametrize("kind", ["real", "tokens"])
def test_ar_fit_by_blocks_is_least_squares_on_the_whole_design(rng, monkeypatch, kind):
    """The normal equations summed over blocks of a few positions give numpy's least-squares
    fit on the whole design matrix (delay taps plus an intercept column)."""
    import seqbench.models.autoregressive as ar

    p = 3
    if kind == "real":
        data = _real_data(rng, every_step=False)
    else:
        X = rng.integers(0, 4, size=(40, 12))
        Y = (np.roll(X, 1, axis=1) + 0.1 * rng.normal(size=X.shape))[..., None]
        data = SeqData(X, Y, rng.random(X.shape) < 0.7, input_size=4)
    monkeypatch.setattr(ar, "_CHUNK_BYTES", 400)  # blocks of a few positions
    model = ar.AutoRegressive(p=p, start_indicator=False).fit(data)
    assert len(list(model._scored_blocks(data)())) > 10  # the fit summed many blocks
    rows, cols = np.nonzero(data.mask)
    F = ar.delay_taps(data.X, p, data.input_size, rows, cols, start_indicator=False)
    F = F.toarray() if kind == "tokens" else F
    A = np.hstack([F, np.ones((len(F), 1))])
    sol = np.linalg.lstsq(A, data.Y[rows, cols], rcond=None)[0]  # (F + 1, K), minimum norm
    np.testing.assert_allclose(A @ np.vstack([model.coef_.T, model.intercept_]), A @ sol,
                               atol=1e-10)  # fitted values (tokens: W is not unique)
    if kind == "real":
        np.testing.assert_allclose(model.coef_, sol[:-1].T, atol=1e-10)
        np.testing.assert_allclose(model.intercept_, sol[-1], atol=1e-10)


@pytest.mark.parametrize("covariance_type", ["diag", "full"])
def test_hmm_emissions_by_chunks_are_hmmlearn_on_the_whole_array(rng, monkeypatch,
                                                                 covariance_type):
    import seqbench.models.hmm as hmm_mod

    data = _real_data(rng)
    model = hmm_mod.HiddenMarkov(n_states=3, n_iter=3, n_init=1, random_state=0,
                                 covariance_type=covariance_type).fit(data)
    hmm = model.hmms_[0]
    N, T, D = data.X.shape
    whole = hmm._compute_log_likelihood(data.X.reshape(N * T, D)).reshape(N, T, -1)
    monkeypatch.setattr(hmm_mod, "EMISSION_CHUNK_BYTES", 7 * T * 3 * D * 8)  # 7 rows a chunk
    np.testing.assert_allclose(model._log_emissions(hmm, data.X), whole, rtol=1e-13, atol=0)


def test_hmm_em_sees_whole_rows_as_a_view_and_prefixes_in_row_order(rng):
    from seqbench.models.hmm import HiddenMarkov

    X = rng.normal(size=(5, 6, 2))
    model = HiddenMarkov()
    flat = model._stack(X, np.full(5, 6))
    assert flat.shape == (30, 2) and np.shares_memory(flat, X)  # no copy
    lengths = np.array([6, 0, 2, 4, 0])
    expected = np.vstack([X[0], X[2, :2], X[3, :4]])
    np.testing.assert_array_equal(model._stack(X, lengths), expected)


def test_lds_standardisation_by_blocks_is_numpys_mean_and_std(rng):
    from seqbench.models.base import sequence_moments

    a = rng.normal(3.0, 2.0, size=(37, 11, 3))
    mask = rng.random((37, 11)) < 0.5
    mean, std = sequence_moments(a, block_bytes=5 * a[:1].nbytes)  # blocks of 5 sequences
    np.testing.assert_allclose(mean, a.reshape(-1, 3).mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(std, a.reshape(-1, 3).std(axis=0), rtol=1e-13)
    mean, std = sequence_moments(a, mask, block_bytes=5 * a[:1].nbytes)
    np.testing.assert_allclose(mean, a[mask].mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(std, a[mask].std(axis=0), rtol=1e-13)


def test_recurrent_training_reads_the_split_in_place_and_casts_batches(rng, monkeypatch):
    """On the CPU fit's tensors share the split's memory; the loss from them, a batch cast
    at a time, equals the loss from the whole split cast to float32 first (bit for bit).
    The cast tensors, moved and cast a few rows at a time, equal torch's whole cast."""
    torch = pytest.importorskip("torch")
    import seqbench.models.recurrent as recurrent
    from seqbench.models.recurrent import LSTMModel

    data = _real_data(rng, N=50)
    model = LSTMModel(hidden_size=5, max_steps=3, eval_every=3, batch_size=16,
                      random_state=0, device="cpu").fit(data)
    cpu = torch.device("cpu")
    lazy = model._tensors(data, cpu, lazy=True)
    assert np.shares_memory(lazy[0].numpy(), data.X) and lazy[0].dtype == torch.float64
    monkeypatch.setattr(recurrent, "MOVE_CHUNK_BYTES", 3 * data.X[:1].nbytes)  # 3 rows
    cast = model._tensors(data, cpu)
    assert cast[0].dtype == torch.float32 and cast[1].dtype == torch.float32
    assert torch.equal(cast[0], torch.as_tensor(data.X).float())
    assert torch.equal(cast[1], torch.as_tensor(data.Y).float())
    assert torch.equal(cast[2], torch.as_tensor(data.mask))
    with torch.no_grad():
        a = model._evaluate_loss(model.net_, *lazy, data.mask, batch=7)
        b = model._evaluate_loss(model.net_, *cast, data.mask, batch=7)
    assert a == b


@pytest.mark.parametrize("covariance_type", ["diag", "full", "tied", "spherical"])
def test_hmm_sampled_start_reaches_hmmlearns_fit(rng, monkeypatch, covariance_type):
    """Past ``INIT_SAMPLE`` steps, EM starts from k-means on a sample of the steps instead
    of all of them; on a well-separated 3-state Gaussian HMM both starts converge to the
    same fit as hmmlearn's own start from all the steps (means, covariances, likelihood),
    near the true means."""
    from hmmlearn import hmm

    import seqbench.models.hmm as hmm_mod

    true = hmm.GaussianHMM(n_components=3, covariance_type="full", random_state=0)
    true.startprob_ = np.array([0.6, 0.3, 0.1])
    true.transmat_ = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
    true.means_ = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    true.covars_ = np.array([np.eye(2), [[1.0, 0.3], [0.3, 1.0]], 0.5 * np.eye(2)])
    N, T = 40, 50
    X = np.stack([true.sample(T, random_state=int(s))[0] for s in rng.integers(0, 2**31, N)])
    mask = np.zeros((N, T), bool)
    mask[:, -1] = True
    data = SeqData(X, X[:, :, :1], mask)  # real targets: readout mode, EM on every step
    params = dict(n_states=3, n_iter=100, tol=1e-8, n_init=1, random_state=5,
                  covariance_type=covariance_type, mode="readout")
    monkeypatch.setattr(hmm_mod, "INIT_SAMPLE", 300)  # 2000 steps: the sampled start
    sampled = hmm_mod.HiddenMarkov(**params).fit(data).hmms_[0]
    assert sampled.init_params == "st"  # means and covariances came from the sample
    monkeypatch.setattr(hmm_mod, "INIT_SAMPLE", 2**16)  # the same data: hmmlearn's start
    reference = hmm_mod.HiddenMarkov(**params).fit(data).hmms_[0]
    assert reference.init_params == "stmc"
    def order(fit):  # the fitted state nearest each true mean
        return [int(np.argmin(((fit.means_ - mu) ** 2).sum(1))) for mu in true.means_]

    order_s, order_r = order(sampled), order(reference)
    assert sorted(order_s) == sorted(order_r) == [0, 1, 2]
    np.testing.assert_allclose(sampled.means_[order_s], reference.means_[order_r], atol=1e-4)
    np.testing.assert_allclose(sampled.means_[order_s], true.means_, atol=0.3)
    if covariance_type != "tied":  # hmmlearn's stored covariances, one per state
        np.testing.assert_allclose(sampled._covars_[order_s], reference._covars_[order_r],
                                   atol=1e-4)
    else:
        np.testing.assert_allclose(sampled._covars_, reference._covars_, atol=1e-4)
    flat, lengths = X.reshape(N * T, 2), np.full(N, T)
    assert sampled.score(flat, lengths) == pytest.approx(reference.score(flat, lengths),
                                                          rel=1e-7)


@pytest.mark.parametrize("entries", [50, 600])  # runs of 1 batch, of 3 batches
@pytest.mark.parametrize("kind", ["real", "classes"])
def test_mlp_batch_by_batch_is_sklearns_own_minibatch_loop(rng, monkeypatch, kind, entries):
    """The MLP builds the features of a run of mini-batches at a time; its weights equal
    those of scikit-learn's own mini-batch Adam loop (``partial_fit`` over the whole
    standardised design matrix, taken in the same shuffled order, batches of the same
    size)."""
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    import seqbench.models.autoregressive as ar

    p, B, epochs, seed = 3, 16, 3, 7
    data = _real_data(rng, N=30, every_step=False)
    if kind == "classes":
        Y = (data.X[..., 0] > 0).astype(int) + (data.X[..., 1] > 1)  # 3 classes
        data = SeqData(data.X, Y, data.mask, target_size=3)
    monkeypatch.setattr(ar, "_CHUNK_BYTES", 8 * entries)  # 11 entries per position
    model = ar.FeedForward(p=p, hidden_sizes=(6,), batch_size=B, max_iter=epochs,
                           patience=epochs, random_state=seed).fit(data)
    assert len(model.curve_) == epochs
    rows, cols = np.nonzero(data.mask)
    F = ar.delay_taps(data.X, p, data.input_size, rows, cols)  # the whole design
    Fz = (F - F.mean(axis=0)) / np.where(F.std(axis=0) > 0, F.std(axis=0), 1.0)
    y = data.Y[rows, cols]
    common = dict(hidden_layer_sizes=(6,), solver="adam", alpha=1e-4, batch_size=B,
                  learning_rate_init=2e-3, random_state=seed, shuffle=False)
    if kind == "classes":
        ref, target = MLPClassifier(**common), y
    else:
        ref, target = MLPRegressor(**common), (y - y.mean(axis=0)) / y.std(axis=0)
    order = np.random.default_rng(seed)
    after = []  # the reference's weights after each epoch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(epochs):
            perm = order.permutation(len(rows))
            if kind == "classes":
                ref.partial_fit(Fz[perm], target[perm], classes=np.arange(3))
            else:
                ref.partial_fit(Fz[perm], target[perm])
            after.append([w.copy() for w in ref.coefs_ + ref.intercepts_])
    # the model keeps its best epoch's weights (the training loss decides: no valid split)
    want = after[model.best_step_ - 1]
    for a, b in zip(model.net_.coefs_ + model.net_.intercepts_, want):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["tokens", "real"])
def test_hmm_supervised_counts_by_blocks_are_plain_counts(rng, monkeypatch, kind):
    """The supervised HMM (classes as states) counted block by block of rows equals the
    counts of a plain loop over every step: start, transitions between consecutive scored
    steps, token emissions; for real inputs each class's mean and (population) covariance
    from numpy, and the pooled ones for a class never seen."""
    import seqbench.models.hmm as hmm_mod

    N, T, K, V, pc = 30, 10, 3, 4, 0.5
    mask = rng.random((N, T)) < 0.8
    Y = rng.integers(0, 2 if kind == "real" else K, (N, T))  # real: class 2 never seen
    if kind == "tokens":
        X = (Y + rng.integers(0, 2, (N, T))) % V
        data = SeqData(X, Y, mask, input_size=V, target_size=K)
    else:
        X = rng.normal(size=(N, T, 2)) + Y[..., None]
        data = SeqData(X, Y, mask, target_size=K)
    monkeypatch.setattr(hmm_mod, "EMISSION_CHUNK_BYTES", 3 * X[:1].nbytes)  # blocks of 3 rows
    model = hmm_mod.HiddenMarkov(mode="supervised", pseudocount=pc,
                                 covariance_type="full").fit(data).hmms_[0]
    start, trans, emis = np.full(K, pc), np.full((K, K), pc), np.full((K, V), pc)
    for n in range(N):
        start[Y[n, 0]] += mask[n, 0]
        for t in range(T):
            if kind == "tokens" and mask[n, t]:
                emis[Y[n, t], X[n, t]] += 1
            if t + 1 < T and mask[n, t] and mask[n, t + 1]:
                trans[Y[n, t], Y[n, t + 1]] += 1
    np.testing.assert_allclose(model.startprob_, start / start.sum(), rtol=1e-12)
    np.testing.assert_allclose(model.transmat_, trans / trans.sum(1, keepdims=True), rtol=1e-12)
    if kind == "tokens":
        np.testing.assert_allclose(model.emissionprob_, emis / emis.sum(1, keepdims=True),
                                   rtol=1e-12)
        return
    floor = model.min_covar * np.eye(2)
    for c, x in [(0, X[mask & (Y == 0)]), (1, X[mask & (Y == 1)]), (2, X[mask])]:
        np.testing.assert_allclose(model.means_[c], x.mean(axis=0), rtol=1e-10)
        np.testing.assert_allclose(model._covars_[c], np.cov(x.T, bias=True) + floor,
                                   rtol=1e-10)


@pytest.mark.parametrize("mode, decode", [("supervised", "filter"), ("supervised", "viterbi"),
                                          ("readout", "filter"), ("readout", "posterior"),
                                          ("generative", "filter")])
def test_hmm_predictions_by_blocks_are_the_whole_arrays(rng, monkeypatch, mode, decode):
    """predict and predict_proba computed block by block (the causal filter one step at a
    time, its state carried, over all rows or chunks of rows; posterior and Viterbi
    estimates two rows at a time), and the readout's features gathered so, equal those of
    one block holding everything."""
    import seqbench.models.hmm as hmm_mod

    N, T, V = 24, 9, 4
    X = rng.integers(0, V, (N, T))
    if mode == "generative":
        Y, mask = np.zeros((N, T), np.int64), np.zeros((N, T), bool)
        Y[:, -1], mask[:, -1] = X[:, 0] % 2, True
    else:
        Y, mask = (X + np.roll(X, 1, axis=1)) % 2, rng.random((N, T)) < 0.7
    data = SeqData(X, Y, mask, input_size=V, target_size=2)
    params = dict(mode=mode, decode=decode, n_states=3, n_iter=5, random_state=0)
    whole = hmm_mod.HiddenMarkov(**params).fit(data)
    want = whole.predict(X), whole.predict_proba(X)
    # 2 rows a chunk, 1 step a block (4 (S + K) + (S + 1) = 24 floats a step and row);
    # then the filter also in chunks of rows: its carried states take 8 (S + 1) bytes a
    # row and model, so half of 640 bytes holds 5 rows (generative, 2 models) or 10
    for budget in (2 * T * 8 * 24, 640):
        monkeypatch.setattr(hmm_mod, "EMISSION_CHUNK_BYTES", budget)
        chunked = hmm_mod.HiddenMarkov(**params).fit(data)
        np.testing.assert_array_equal(chunked.predict(X), want[0])
        np.testing.assert_allclose(chunked.predict_proba(X), want[1], rtol=1e-12, atol=1e-15)
