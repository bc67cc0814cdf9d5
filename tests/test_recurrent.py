"""The torch recurrent families: training features, every data kind and shape, learning,
and the gradient-decay diagnostic checked against closed forms and the reference cells."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from sklearn.base import clone

import seqbench as sb
from seqbench.data import SeqData
from seqbench.errors import DivergedError, SeqbenchError
from seqbench.models import cells
from seqbench.models.recurrent import (
    GRUModel,
    IRNNModel,
    LSTMModel,
    RNNModel,
    _build_net,
    gradient_decay,
)

FAMILIES = {"lstm": LSTMModel, "gru": GRUModel, "rnn": RNNModel, "irnn": IRNNModel}


# -- data builders --------------------------------------------------------------------------
def _mask(shape: str, N: int, T: int, rng) -> np.ndarray:
    mask = np.zeros((N, T), dtype=bool)
    if shape == "many-to-one":
        mask[:, -1] = True
    elif shape == "every-step":
        mask[:] = True
    elif shape == "output-region":
        mask[:, T // 2:] = True
    elif shape == "one-to-many":
        mask[:, 1:] = True
    elif shape == "ragged":  # right-padded sequences of different lengths, last step scored
        mask[np.arange(N), rng.integers(2, T, size=N)] = True
    return mask


def _data(rng, input_kind: str, target_kind: str, shape: str, N=40, T=9, V=6, D=2, K=3):
    X = rng.integers(0, V, size=(N, T)) if input_kind == "tokens" else \
        rng.normal(size=(N, T, D)).astype(np.float32)
    mask = _mask(shape, N, T, rng)
    if target_kind == "classes":
        Y = rng.integers(0, K, size=(N, T))
        Y[~mask] = -1  # unscored positions may hold anything
    else:
        Y = rng.normal(size=(N, T, K)).astype(np.float32)
        Y[~mask] = np.nan
    return SeqData(X, Y, mask, input_size=V if input_kind == "tokens" else D,
                   target_size=K)


def _delay_data(rng, n: int, T: int = 12, delay: int = 2) -> SeqData:
    """Real inputs x_t ~ N(0, 1); target y_t = x_{t-delay}, scored from t = delay on."""
    X = rng.normal(size=(n, T, 1)).astype(np.float32)
    Y = np.zeros_like(X)
    Y[:, delay:] = X[:, :-delay]
    mask = np.zeros((n, T), dtype=bool)
    mask[:, delay:] = True
    return SeqData(X, Y, mask)


def _fitted(model_cls, data, **params):
    """A model fitted for one step, so its private training pieces can be called."""
    params = {"hidden_size": 8, "max_steps": 1, "random_state": 0, "device": "cpu", **params}
    return model_cls(**params).fit(data)


def _param_grads(net):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for p in net.parameters()]


# -- every kind of data, every mask -----------------------------------------------------
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("input_kind", ["tokens", "real"])
@pytest.mark.parametrize("target_kind", ["classes", "real"])
@pytest.mark.parametrize("shape", ["many-to-one", "every-step", "output-region",
                                   "one-to-many", "ragged"])
def test_every_kind_and_shape(rng, family, input_kind, target_kind, shape):
    data = _data(rng, input_kind, target_kind, shape)
    model = FAMILIES[family](hidden_size=6, max_steps=3, eval_every=2, random_state=0,
                             device="cpu").fit(data, data)
    pred = model.predict(data.X)
    N, T = data.X.shape[:2]
    if target_kind == "classes":
        assert pred.shape == (N, T)
        proba = model.predict_proba(data.X)
        assert proba.shape == (N, T, data.target_size)
        np.testing.assert_allclose(proba.sum(-1), 1.0, rtol=1e-5)
    else:
        assert pred.shape == (N, T, data.target_size)
        assert np.isfinite(pred).all()
    assert all(np.isfinite(p["train_loss"]) and np.isfinite(p["valid_loss"])
               for p in model.curve_)
    # causal: changing the inputs after step t0 leaves every output up to t0 unchanged
    t0 = 4
    X2 = data.X.copy()
    X2[:, t0 + 1:] = X2[::-1, t0 + 1:]
    out1, out2 = model._outputs(data.X), model._outputs(X2)
    np.testing.assert_array_equal(out1[:, :t0 + 1], out2[:, :t0 + 1])
    assert not np.allclose(out1[:, t0 + 1:], out2[:, t0 + 1:])


def test_unscored_targets_do_not_enter_the_loss(rng):
    """Targets at unscored positions (here garbage) leave the loss and gradients alone."""
    data = _data(rng, "real", "real", "output-region")
    model = _fitted(LSTMModel, data)
    X, Y, M = model._tensors(data, torch.device("cpu"))
    assert torch.isnan(torch.as_tensor(data.Y)[~torch.as_tensor(data.mask)]).all()
    Y2 = Y.clone()
    Y2[~M] = 1e6
    with torch.no_grad():
        h, _ = model.net_.hidden(X)
        k = int(data.mask.sum())
        loss1 = float(model._masked_loss(model.net_, h, Y, M, k))
        loss2 = float(model._masked_loss(model.net_, h, Y2, M, k))
    assert np.isfinite(loss1) and loss1 == loss2
    # the loss is the squared error (averaged over K) summed over the scored positions
    out = model.predict(data.X)
    direct = ((out - data.Y) ** 2).mean(-1)[data.mask].sum()
    assert loss1 == pytest.approx(direct, rel=1e-5)


# -- truncated BPTT -----------------------------------------------------------------------
def test_tbptt_of_at_least_T_steps_is_full_bptt(rng):
    data = _data(rng, "real", "classes", "every-step", T=9)
    model = _fitted(GRUModel, data)
    X, Y, M = model._tensors(data, torch.device("cpu"))
    grads = {}
    for U in (None, 9, 20):
        model.tbptt = U
        model.net_.zero_grad()
        model._batch_loss(model.net_, X, Y, M, data.mask)
        grads[U] = _param_grads(model.net_)
    for U in (9, 20):
        assert all(torch.equal(a, b) for a, b in zip(grads[None], grads[U]))


@pytest.mark.parametrize("family", ["lstm", "gru", "rnn"])
def test_tbptt_cuts_the_gradient_after_U_steps(rng, family):
    """A loss at the last step: with U < T its gradient w.r.t. inputs before the last
    chunk is exactly zero; with full BPTT it is not."""
    T, U = 12, 5  # chunks [0, 5), [5, 10), [10, 12)
    data = _data(rng, "real", "real", "many-to-one", T=T)
    model = _fitted(FAMILIES[family], data)
    X, Y, M = model._tensors(data, torch.device("cpu"))
    input_grad = {}
    for tbptt in (None, U):
        model.tbptt = tbptt
        x = X.clone().requires_grad_(True)
        model._batch_loss(model.net_, x, Y, M, data.mask)
        input_grad[tbptt] = x.grad.abs().sum(dim=(0, 2))  # (T,)
    assert (input_grad[U][:10] == 0).all()
    assert (input_grad[U][10:] > 0).all()
    assert (input_grad[None] > 0).all()
    # within the last chunk the truncated gradient is the full one
    torch.testing.assert_close(input_grad[U][10:], input_grad[None][10:], rtol=1e-5, atol=0)


def test_tbptt_gradient_is_the_sum_of_the_chunks_gradients(rng):
    """Truncated BPTT, written out plainly: each chunk's loss backpropagated from the state
    the earlier inputs left (held constant), the chunks' gradients summed. Chunks without
    scored positions, which fit runs without a graph or skips, contribute nothing; the
    loss itself is the full forward pass's."""
    T, U = 12, 3
    data = _data(rng, "tokens", "classes", "every-step", T=T)
    mask = np.zeros_like(data.mask)
    mask[:, [4, 5]] = True  # only the second chunk is scored ...
    mask[::2, 7] = True     # ... and, for half the sequences, the third
    data = SeqData(data.X, data.Y, mask, input_size=data.input_size,
                   target_size=data.target_size)
    model = _fitted(LSTMModel, data)
    net = model.net_
    X, Y, M = model._tensors(data, torch.device("cpu"))
    model.tbptt = None
    full = model._batch_loss(net, X, Y, M, data.mask)
    model.tbptt = U
    net.zero_grad()
    loss = model._batch_loss(net, X, Y, M, data.mask)
    grads = _param_grads(net)

    net.zero_grad()
    reference = 0.0
    for s in range(0, T, U):
        with torch.no_grad():
            state = net.hidden(X[:, :s])[1] if s else None
        h, _ = net.hidden(X[:, s:s + U], state)
        m = M[:, s:s + U]
        chunk = torch.nn.functional.cross_entropy(
            net.head(h[m]), Y[:, s:s + U][m], reduction="sum") / M.sum()
        chunk.backward()
        reference += float(chunk.detach())
    torch.testing.assert_close(loss, full, rtol=1e-6, atol=0)
    assert float(loss) == pytest.approx(reference, rel=1e-6)
    for a, b in zip(_param_grads(net), grads):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
    assert any(g.abs().max() > 0 for g in grads)


def test_fit_with_tbptt_trains(rng):
    """Delay-2 regression is learnable within chunks of U = 4 steps."""
    train, valid = _delay_data(rng, 400, T=16), _delay_data(rng, 100, T=16)
    model = GRUModel(hidden_size=16, max_steps=300, tbptt=4, random_state=0,
                     device="cpu").fit(train, valid)
    mse = float(((model.predict(valid.X) - valid.Y) ** 2)[valid.mask].mean())
    assert mse < 0.1


# -- budget, early stopping, divergence, determinism -------------------------------------
def test_max_epochs_caps_steps(rng):
    data = _data(rng, "tokens", "classes", "many-to-one", N=100)
    model = RNNModel(hidden_size=4, batch_size=20, max_steps=1000, max_epochs=2,
                     eval_every=3, patience=100, random_state=0, device="cpu").fit(data)
    assert model.n_steps_ == 2 * (100 // 20)
    assert model.curve_[-1]["step"] == model.n_steps_


def test_max_epochs_with_a_partial_last_batch_counts_whole_batches_only(rng):
    """N = 110, B = 20: an epoch is N // B = 5 steps (the docstring's ``max_epochs *
    (N // B)``), so two epochs are 10 steps, not 2 * ceil(110 / 20) = 12."""
    data = _data(rng, "tokens", "classes", "many-to-one", N=110)
    model = RNNModel(hidden_size=4, batch_size=20, max_steps=1000, max_epochs=2,
                     eval_every=3, patience=100, random_state=0, device="cpu")
    assert model._step_budget(110) == (20, 5, 10)
    model.fit(data)
    assert model.n_steps_ == 10 and model.curve_[-1]["step"] == 10


def test_early_stopping_restores_the_best_weights(rng):
    """Noise targets: the validation loss rises once the network memorises its 48
    training sequences, so training stops early and the best checkpoint comes back."""
    train = _data(rng, "tokens", "classes", "every-step", N=48, T=8, V=12, K=4)
    valid = _data(rng, "tokens", "classes", "every-step", N=200, T=8, V=12, K=4)
    params = dict(hidden_size=48, lr=0.02, batch_size=16, max_steps=600, eval_every=6,
                  patience=4, random_state=0, device="cpu")
    model = LSTMModel(**params).fit(train, valid)
    losses = [p["valid_loss"] for p in model.curve_]
    assert model.n_steps_ < 600  # stopped early ...
    assert model.best_step_ < model.n_steps_
    best = int(np.argmin(losses))
    assert model.best_step_ == model.curve_[best]["step"]
    assert len(losses) - 1 - best == params["patience"]
    # ... and the fitted weights are the best checkpoint's: their validation cross-entropy,
    # computed from predict_proba, is the curve's minimum
    proba = model.predict_proba(valid.X)
    p_true = np.take_along_axis(proba, valid.Y[..., None], -1)[..., 0]
    assert -np.log(p_true[valid.mask]).mean() == pytest.approx(losses[best], rel=1e-5)
    # a run stopped at the best step (the same trajectory up to it) predicts identically
    again = LSTMModel(**{**params, "max_steps": model.best_step_}).fit(train, valid)
    np.testing.assert_array_equal(again.predict_proba(valid.X), proba)


def test_without_validation_the_training_loss_selects(rng):
    data = _delay_data(rng, 64)
    model = GRUModel(hidden_size=8, max_steps=40, eval_every=10, random_state=0,
                     device="cpu").fit(data)
    losses = [p["train_loss"] for p in model.curve_]
    assert "valid_loss" not in model.curve_[0]
    assert model.best_step_ == model.curve_[int(np.argmin(losses))]["step"]


def test_divergence_raises(rng):
    data = _delay_data(rng, 64)
    data = SeqData(data.X * 100, data.Y * 100, data.mask)
    model = RNNModel(hidden_size=16, optimizer="sgd", lr=1e4, clip_norm=None,
                     max_steps=200, eval_every=20, random_state=0, device="cpu")
    with pytest.raises(DivergedError, match="loss became"):
        model.fit(data, data)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_same_seed_same_predictions(rng, family):
    data = _data(rng, "tokens", "classes", "every-step")
    make = FAMILIES[family]
    a, b, c = (make(hidden_size=8, max_steps=20, random_state=s, device="cpu").fit(data)
               for s in (3, 3, 4))
    np.testing.assert_array_equal(a.predict_proba(data.X), b.predict_proba(data.X))
    assert a.curve_ == b.curve_
    assert not np.array_equal(a.predict_proba(data.X), c.predict_proba(data.X))


# -- learning ------------------------------------------------------------------------------
LEARN = {  # hidden size and step budget with which each family learns lag-4 recall
    "lstm": dict(hidden_size=32, max_steps=300),
    "gru": dict(hidden_size=32, max_steps=300),
    "rnn": dict(hidden_size=64, max_steps=400),
    "irnn": dict(hidden_size=32, max_steps=300),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_learns_jane_recall_at_lag_4(seed, family):
    task = sb.make_task("jane-recall", lag=4)
    train, valid, test = task.splits(seed=seed, n_train=2000, n_valid=300, n_test=500)
    model = sb.make_model(family, random_state=seed, device="cpu", **LEARN[family])
    result = sb.evaluate(model.fit(train, valid), task, test)
    assert result["score"] >= 0.9, result["score"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_learns_a_delayed_copy_of_real_inputs(rng, seed, family):
    train, valid, test = (_delay_data(rng, n) for n in (1000, 200, 300))
    # the IRNN's cautious default rate (0.001) needs about 800 steps here; 0.003 needs 300
    extra = {"lr": 0.003} if family == "irnn" else {}
    model = FAMILIES[family](hidden_size=16, max_steps=400, random_state=seed,
                             device="cpu", **extra).fit(train, valid)
    mse = float(((model.predict(test.X) - test.Y) ** 2)[test.mask].mean())
    variance = float(test.Y[test.mask].var())
    assert mse < 0.1 * variance, (mse, variance)


# -- initialisation ------------------------------------------------------------------------
def _built(model, input_kind="real", input_size=3, target_size=2):
    """The network ``model`` would start training from (built and initialised as in fit)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = _build_net(model.cell, input_kind, input_size,
                         model.embed_size or model.hidden_size, model.hidden_size,
                         model.num_layers, target_size, model.nonlinearity)
        model._init_weights(net)
    return net


def test_irnn_initialisation():
    model = IRNNModel(hidden_size=64, num_layers=2, input_std=0.01)
    net = _built(model)
    assert net.core.nonlinearity == "relu"
    for layer in range(2):
        torch.testing.assert_close(getattr(net.core, f"weight_hh_l{layer}"), torch.eye(64))
        assert (getattr(net.core, f"bias_ih_l{layer}") == 0).all()
        assert (getattr(net.core, f"bias_hh_l{layer}") == 0).all()
        w_ih = getattr(net.core, f"weight_ih_l{layer}")
        assert float(w_ih.detach().std()) == pytest.approx(0.01, rel=0.1)
        assert abs(float(w_ih.detach().mean())) < 0.001


def test_lstm_forget_bias():
    net = _built(LSTMModel(hidden_size=5, forget_bias=2.0))
    b = net.core.bias_ih_l0 + net.core.bias_hh_l0
    torch.testing.assert_close(b[5:10], torch.full((5,), 2.0))


def test_gru_update_bias_keeps_the_state_at_initialisation(rng):
    """In every layer the update-gate (z) biases, rows H:2H of torch's r, z, n layout, sum
    to ``update_bias`` with b_hz = 0. One step from h_prev with zero input, against numpy's
    GRU step with z = sigmoid(update_bias + W_hz h_prev): z > 1/2 everywhere, so
    h - h_prev = (1 - z)(n - h_prev) is under half the way to the candidate n."""
    H, b = 5, 1.0
    net = _built(GRUModel(hidden_size=H, num_layers=2, update_bias=b))
    for layer in (0, 1):
        b_ih = getattr(net.core, f"bias_ih_l{layer}").detach()
        b_hh = getattr(net.core, f"bias_hh_l{layer}").detach()
        torch.testing.assert_close(b_ih[H:2 * H], torch.full((H,), b))
        torch.testing.assert_close(b_hh[H:2 * H], torch.zeros(H))
    core = torch.nn.GRU(net.core.input_size, H, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(core, f"{name}_l0").copy_(getattr(net.core, f"{name}_l0"))
    h0 = rng.uniform(-0.5, 0.5, size=(4, H))
    with torch.no_grad():
        _, h1 = core(torch.zeros(4, 1, core.input_size),
                     torch.as_tensor(h0[None], dtype=torch.float32))
    W = core.weight_hh_l0.detach().double().numpy()
    bi = core.bias_ih_l0.detach().double().numpy()
    bh = core.bias_hh_l0.detach().double().numpy()

    def sigmoid(a):
        return 1 / (1 + np.exp(-a))

    r = sigmoid(bi[:H] + bh[:H] + h0 @ W[:H].T)
    z = sigmoid(b + h0 @ W[H:2 * H].T)
    n = np.tanh(bi[2 * H:] + r * (h0 @ W[2 * H:].T + bh[2 * H:]))
    np.testing.assert_allclose(h1[0].double().numpy(), (1 - z) * n + z * h0, atol=1e-6)
    assert (z > 0.5).all()
    assert (np.abs(h1[0].numpy() - h0) < 0.5 * np.abs(n - h0) + 1e-6).all()


def test_gru_update_bias_zero_is_zero_and_none_is_torchs_default():
    """update_bias=0 zeroes both z biases (z starts at 1/2, as forget_bias=0 does the
    LSTM's f); None leaves torch's default, uniform in ±1/sqrt(H), b_hz included."""
    H = 5
    zero = _built(GRUModel(hidden_size=H, update_bias=0.0))
    torch.testing.assert_close(zero.core.bias_ih_l0[H:2 * H].detach(), torch.zeros(H))
    torch.testing.assert_close(zero.core.bias_hh_l0[H:2 * H].detach(), torch.zeros(H))
    default = _built(GRUModel(hidden_size=H, update_bias=None)).core.bias_hh_l0.detach()
    assert (default[H:2 * H].abs() > 0).all() and (default.abs() <= H ** -0.5).all()
    with pytest.raises(SeqbenchError, match="update_bias"):
        sb.make_model("gru", update_bias=float("nan"))


# -- gradient decay ------------------------------------------------------------------------
def _hidden_states(net, x):
    with torch.no_grad():
        h, _ = net.hidden(torch.as_tensor(x))
    return h.double().numpy()  # (N, T, H)


def _tanh_rnn_decay(spectral: float, X: np.ndarray, ends: np.ndarray):
    """A tanh RNN (H = 6) with ||W_hh||_2 = ``spectral``: its ``gradient_decay`` on ``X``
    scored at step ``ends[i]`` of row i, the float64 product of its per-step Jacobians
    diag(1 - h_t²) W_hh (the mean over rows of ||∂h_T/∂h_{T-k}||_F, k = 1..min(ends)),
    and W_hh."""
    H, N = 6, len(X)
    net = _build_net("rnn", "real", X.shape[2], 5, H, 1, 2, "tanh")
    with torch.no_grad():
        W = net.core.weight_hh_l0
        W.mul_(spectral / torch.linalg.matrix_norm(W, ord=2))
    mask = np.zeros(X.shape[:2], dtype=bool)
    mask[np.arange(N), ends] = True
    gd = gradient_decay(net, X, mask)
    K = int(ends.min())
    assert gd["k"] == list(range(1, K + 1))
    h = _hidden_states(net, X)
    Wn = W.detach().double().numpy()
    expected = np.zeros(K)
    for i in range(N):
        J = np.eye(H)
        for k in range(1, K + 1):
            J = J @ (np.diag(1 - h[i, ends[i] - k + 1] ** 2) @ Wn)  # ∂h_T/∂h_{T-k}
            expected[k - 1] += np.linalg.norm(J) / N
    return gd, expected, Wn


def test_grad_decay_tanh_rnn_matches_the_product_and_the_lecture_bound(rng):
    """h_t = tanh(a_t): ∂h_t/∂h_{t-1} = diag(1 - h_t²) W_hh, so ∂h_T/∂h_{T-k} is the
    product of k such factors, and since tanh' <= 1 its norm is at most
    ||W_hh||_F ||W_hh||_2^(k-1) (the lecture's (γ_v γ_g')^k with the Frobenius norm)."""
    X = rng.normal(size=(5, 14, 3)).astype(np.float32)
    ends = rng.integers(8, 14, size=5)  # ragged: each sequence's last scored step
    gd, expected, Wn = _tanh_rnn_decay(0.6, X, ends)  # small recurrent weights
    np.testing.assert_allclose(gd["norm"], expected, rtol=1e-5)
    norms = np.array(gd["norm"])
    K = len(norms)
    spectral, frobenius = 0.6, float(np.linalg.norm(Wn))
    assert (norms <= frobenius * spectral ** np.arange(K) * (1 + 1e-6)).all()
    # each further step multiplies by diag(g') W_hh, whose 2-norm is at most 0.6:
    # ||J_{k+1}||_F <= ||J_k||_F ||diag(g') W_hh||_2, a geometric decay step by step
    assert (norms[1:] <= spectral * norms[:-1] * (1 + 1e-6)).all()
    assert norms[-1] < spectral ** (K - 1) * norms[0] * (1 + 1e-6)


def test_grad_decay_stays_exact_far_below_float32s_range(rng):
    """A tanh RNN with ||W_hh||_2 = 0.2 over 90 steps: ∂h_T/∂h_{T-k} falls to about 1e-70,
    far below the smallest float32 (1e-45). Each value still matches the float64 product
    of the per-step Jacobians to float32 rounding, and none reads 0."""
    X = rng.normal(size=(2, 91, 3)).astype(np.float32)
    gd, expected, _ = _tanh_rnn_decay(0.2, X, np.array([90, 90]))
    assert len(expected) == 90 and expected[-1] < 1e-50
    np.testing.assert_allclose(gd["norm"], expected, rtol=1e-4)


def test_grad_decay_lstm_matches_the_reference_cells_jacobian(rng):
    """The LSTM's state is (h, C) of every layer; its Jacobian is recomputed with
    torch.autograd.functional.jacobian through the lecture's cell equations in float64."""
    model = LSTMModel(hidden_size=4, num_layers=2, embed_size=3)
    net = _built(model, input_kind="tokens", input_size=7)
    X = rng.integers(0, 7, size=(1, 10))
    mask = np.zeros((1, 10), dtype=bool)
    mask[0, 8] = True  # T = step 8
    gd = gradient_decay(net, X, mask)
    assert gd["k"] == list(range(1, 9))
    core = copy.deepcopy(net.core).double()
    with torch.no_grad():
        e = net.inp(torch.as_tensor(X)).double()  # (1, 10, 3)
    L, H = 2, 4
    for k in (1, 3, 8):
        start = 8 - k  # s_{T-k}: the state after inputs 0..start
        _, (h0, c0) = cells.run_lstm(core, e[:, :start + 1]) if start >= 0 else (None, None)
        s0 = torch.cat([h0.reshape(L * H), c0.reshape(L * H)]).detach()

        def step(s, start=start, k=k):
            h, c = s[:L * H].reshape(L, 1, H), s[L * H:].reshape(L, 1, H)
            _, (h_n, c_n) = cells.run_lstm(core, e[:, start + 1:start + 1 + k], (h, c))
            return torch.cat([h_n.reshape(-1), c_n.reshape(-1)])

        J = torch.autograd.functional.jacobian(step, s0)  # (2LH, 2LH)
        assert gd["norm"][k - 1] == pytest.approx(float(torch.linalg.norm(J)), rel=1e-4)


def test_grad_decay_irnn_at_init_counts_the_units_that_stay_active(rng):
    """At the IRNN's initialisation ∂h_t/∂h_{t-1} = diag(1[h_t > 0]) I, so
    ||∂h_T/∂h_{T-k}||_F = sqrt(number of units active at every step T-k+1..T): it never
    exceeds sqrt(H) and never increases with k (no explosion, only switching off)."""
    H = 16
    model = IRNNModel(hidden_size=H, input_std=0.3)
    net = _built(model)
    X = rng.normal(size=(4, 12, 3)).astype(np.float32)
    mask = _mask("many-to-one", 4, 12, rng)
    gd = gradient_decay(net, X, mask)
    active = _hidden_states(net, X) > 0  # (N, T, H)
    expected = [np.mean([np.sqrt(active[i, 12 - k:].all(0).sum()) for i in range(4)])
                for k in range(1, 12)]
    np.testing.assert_allclose(gd["norm"], expected, rtol=1e-6)
    assert gd["norm"][0] <= np.sqrt(H) and np.all(np.diff(gd["norm"]) <= 0)
    assert gd["norm"][-1] > 1  # gradients still flow after 11 steps ...
    tanh = _built(RNNModel(hidden_size=H))
    assert gradient_decay(tanh, X, mask)["norm"][-1] < 0.1 * gd["norm"][-1]  # ... unlike tanh


def test_diagnostics_init_and_trained(rng):
    train, valid = _delay_data(rng, 300, T=12), _delay_data(rng, 50, T=12)
    model = RNNModel(hidden_size=8, max_steps=150, random_state=0, device="cpu")
    model.fit(train, valid)
    out = model.diagnostics(valid)
    gd = out["grad_decay"]
    assert set(gd) == {"k", "init", "trained"}
    assert gd["k"] == list(range(1, 12))  # K = T - 1
    assert len(gd["init"]) == len(gd["trained"]) == 11
    assert json.loads(json.dumps(out)) == out
    assert all(isinstance(v, float) and v >= 0 for v in gd["init"] + gd["trained"])
    assert gd["init"] == model.grad_decay_init_["norm"]
    assert not np.allclose(gd["init"], gd["trained"], rtol=1e-2)  # training changed it
    # the init curve is measured before training: with weights that barely move it is
    # the trained curve
    still = RNNModel(hidden_size=8, optimizer="sgd", lr=1e-12, max_steps=1,
                     random_state=0, device="cpu").fit(train)
    gd = still.diagnostics(train)["grad_decay"]
    np.testing.assert_allclose(gd["init"], gd["trained"], rtol=1e-5)


def test_grad_decay_caps_k_at_100(rng):
    data = _data(rng, "tokens", "classes", "many-to-one", N=3, T=130)
    model = GRUModel(hidden_size=4, max_steps=1, random_state=0, device="cpu").fit(data)
    gd = model.diagnostics(data)["grad_decay"]
    assert gd["k"] == list(range(1, 101))
    assert len(gd["init"]) == len(gd["trained"]) == 100


def test_grad_decay_of_a_single_step_task_is_empty(rng):
    data = _data(rng, "real", "real", "every-step", T=1)
    model = LSTMModel(hidden_size=4, max_steps=2, random_state=0, device="cpu").fit(data)
    assert model.diagnostics(data) == {"grad_decay": {"k": [], "init": [], "trained": []}}


def test_diagnostics_needs_a_fit_and_matching_data(rng):
    data = _data(rng, "tokens", "classes", "many-to-one")
    with pytest.raises(SeqbenchError, match="not fitted"):
        LSTMModel().diagnostics(data)
    model = _fitted(LSTMModel, data)
    with pytest.raises(SeqbenchError, match="expected tokens"):
        model.diagnostics(_data(rng, "real", "classes", "many-to-one"))


# -- parameters, registry -----------------------------------------------------------------
@pytest.mark.parametrize("family, params, name", [
    ("lstm", {"hidden_size": 0}, "hidden_size"),
    ("gru", {"lr": -1.0}, "lr"),
    ("rnn", {"optimizer": "rmsprop"}, "optimizer"),
    ("lstm", {"tbptt": 0}, "tbptt"),
    ("gru", {"clip_norm": 0.0}, "clip_norm"),
    ("rnn", {"embed_size": 0}, "embed_size"),
    ("lstm", {"weight_decay": -0.1}, "weight_decay"),
    ("lstm", {"lr": float("nan")}, "lr"),
    ("gru", {"max_epochs": 0}, "max_epochs"),
    ("irnn", {"input_std": -1.0}, "input_std"),
    ("lstm", {"forget_bias": "one"}, "forget_bias"),
    ("rnn", {"precision": "fp16"}, "precision"),
    ("gru", {"device": "tpu"}, "device"),
])
def test_bad_parameters_are_refused(rng, family, params, name):
    data = _data(rng, "tokens", "classes", "many-to-one")
    with pytest.raises(SeqbenchError, match=name):
        FAMILIES[family](**params).fit(data)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_registry_and_clone(family):
    model = sb.make_model(family, hidden_size=12, random_state=1)
    assert isinstance(model, FAMILIES[family])
    twin = clone(model)
    assert twin.get_params() == model.get_params()
    assert model.tags()["uses_torch"] and model.tags()["device_aware"]
    with pytest.raises(SeqbenchError, match="unknown parameter"):
        sb.make_model(family, hiden_size=12)
