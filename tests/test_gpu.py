"""Torch models on a CUDA device (skipped without one; run by scripts/gpu_check.sh).

References: the same model's network evaluated on the CPU, and the single LSTMModel
trained alone on the GPU for stacked training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_stacked import SEEDS, check_first_gradients, stacked_losses
from test_stacked import _data as _stack_data
from test_stacked import _params as _stack_params

from seqbench.data import SeqData
from seqbench.models.recurrent import LSTMModel
from seqbench.models.stacked import fit_stacked, fused_cell

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _data(seed: int, N: int = 128, T: int = 12, V: int = 6, K: int = 3) -> SeqData:
    r = np.random.default_rng(seed)
    X = r.integers(0, V, size=(N, T))
    mask = np.zeros((N, T), dtype=bool)
    mask[:, -1] = True
    Y = np.full((N, T), -1)
    Y[:, -1] = X[:, -3] % K  # learnable: recall the token two steps before the end
    return SeqData(X, Y, mask, input_size=V, target_size=K)


@pytest.fixture
def exact_fp32():
    """Plain fp32 products in cuDNN and cuBLAS (no TF32), so rounding is float32's."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_lstm_fits_on_cuda_with_auto_device(seed, exact_fp32):
    data, test = _data(seed, N=2000), _data(seed + 1, N=200)
    model = LSTMModel(hidden_size=32, max_steps=200, eval_every=20, batch_size=32, lr=0.01,
                      device="auto", random_state=0).fit(data, test)
    assert model.device_.startswith("cuda")
    assert next(model.net_.parameters()).is_cuda
    # the rule is learnt (on the CPU the same run reaches accuracy 1.0, loss 0.006)
    accuracy = (model.predict(test.X)[:, -1] == test.Y[:, -1]).mean()
    assert accuracy > 0.9, "training on the GPU must learn the recall"
    # the same network evaluated on the CPU gives the same outputs
    cpu_net = model.net_.to("cpu")
    with torch.inference_mode():
        h, _ = cpu_net.hidden(torch.as_tensor(test.X))
        want = torch.softmax(cpu_net.head(h), -1).numpy()
    model.net_.to("cuda")
    np.testing.assert_allclose(model.predict_proba(test.X), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("gru", 1), ("irnn", 1)])
def test_gradient_decay_on_cuda_equals_cpu(cell, layers, seed, exact_fp32):
    """The gradient-decay diagnostic of one network, on the GPU and on the CPU: the same
    Jacobian norms (torch's fused single-step cells on each device)."""
    from seqbench import make_model
    from seqbench.models.recurrent import gradient_decay

    data = _data(seed, N=16, T=30)
    model = make_model(cell, hidden_size=24, num_layers=layers, random_state=0)
    net = model._initial_net(data, torch.device("cpu"))
    want = gradient_decay(net, data.X, data.mask)
    got = gradient_decay(net.to("cuda"), data.X, data.mask)
    assert got["k"] == want["k"] == list(range(1, 30))
    np.testing.assert_allclose(got["norm"], want["norm"], rtol=1e-4)


def test_bf16_autocast_runs_on_cuda(seed):
    data = _data(seed)
    fp32 = LSTMModel(hidden_size=32, max_steps=20, eval_every=5, device="cuda",
                     random_state=0).fit(data)
    bf16 = LSTMModel(hidden_size=32, max_steps=20, eval_every=5, device="cuda",
                     precision="bf16", random_state=0).fit(data)
    losses = [p["train_loss"] for p in bf16.curve_]
    assert all(np.isfinite(losses))
    # autocast is used when asked (bf16 rounds differently), and only then
    assert losses != [p["train_loss"] for p in fp32.curve_]
    assert losses == pytest.approx([p["train_loss"] for p in fp32.curve_], rel=0.05)


def _assert_weights_close(got: dict, want: dict, lr: float) -> None:
    """Weights after a few Adam steps, stacked against alone. Adam divides each gradient
    element by its running root mean square, so where an element's gradient is at the
    level of float32 rounding its step (up to about lr) follows that rounding: on CUDA the
    stacked products and cuDNN round differently, and a handful of such elements drift
    apart by a fraction of lr. So: at least 99% of the elements to rounding, every element
    within lr / 10 (a member trained on another member's data, a wrong clip or a missed
    step moves most elements by about lr per step)."""
    for key in want:
        a, b = got[key].float(), want[key].float()
        close = torch.isclose(a, b, rtol=1e-3, atol=1e-4)
        assert close.float().mean() >= 0.99, f"{key}: {int((~close).sum())} of {a.numel()} differ"
        assert (a - b).abs().max() <= lr / 10, f"{key}: max difference {(a - b).abs().max()}"


@pytest.mark.parametrize("kind", ["tokens", "real"])
def test_stacked_first_gradients_on_cuda_equal_single_models(kind, seed, exact_fp32):
    """Stacked training's promise, on the GPU: each member's loss and gradient on its first batch
    equal the same model's alone (LSTMModel's own cuDNN code), to float32 rounding."""
    check_first_gradients(_stack_params(num_layers=2, device="cuda"),
                          [_stack_data(seed + s, kind) for s in SEEDS])


def test_fused_lstm_cell_kernels_are_found_on_cuda():
    """Stacked training's recurrence runs torch's fused LSTM cell kernels on CUDA (one
    launch per step each way): the probe found them and they agree with the formulas."""
    assert fused_cell(torch.device("cuda")), "the stacked recurrence fell back to the formulas"


@pytest.mark.parametrize("kind", ["tokens", "real"])
@pytest.mark.parametrize("last", [False, True])
def test_stacked_backward_by_hand_on_cuda_equals_autograd(kind, last, monkeypatch,
                                                            exact_fp32):
    """On CUDA the written-out backward runs the fused kernels: the same losses and
    gradients as autograd through the step-by-step equations, to float32 rounding."""
    args = (kind, 2, 9, last)
    want_loss, want = stacked_losses(*args, "autograd", monkeypatch, device="cuda",
                                     dtype=torch.float32)
    got_loss, got = stacked_losses(*args, "hand", monkeypatch, device="cuda",
                                   dtype=torch.float32)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-5, atol=1e-7)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-6,
                                   msg=f"gradient of {key}")


@pytest.mark.parametrize("graph", [False, True])
def test_stacked_on_cuda_matches_single_models(graph, seed, exact_fp32):
    seeds = [3, 4, 5]
    params = dict(hidden_size=16, batch_size=32, max_steps=8, eval_every=1, patience=100,
                  clip_norm=0.05, device="cuda")
    train = [_data(seed + s) for s in seeds]
    valid = [_data(seed + 50 + s, N=40) for s in seeds]
    alone = [LSTMModel(random_state=s, **params).fit(d, v)
             for s, d, v in zip(seeds, train, valid)]
    together = fit_stacked([LSTMModel(random_state=s, **params) for s in seeds], train, valid,
                           cuda_graph=graph, warmup=2)
    for a, b in zip(alone, together):
        assert isinstance(b, LSTMModel)
        assert [p["train_loss"] for p in b.curve_] == pytest.approx(
            [p["train_loss"] for p in a.curve_], rel=1e-4)
        assert [p["valid_loss"] for p in b.curve_] == pytest.approx(
            [p["valid_loss"] for p in a.curve_], rel=1e-4)
        _assert_weights_close(b.net_.state_dict(), a.net_.state_dict(), a.lr)


def test_stacked_bf16_with_graph_runs(seed):
    params = dict(hidden_size=16, batch_size=32, max_steps=6, eval_every=2, device="cuda",
                  precision="bf16")
    out = fit_stacked([LSTMModel(random_state=s, **params) for s in (0, 1)],
                      [_data(seed), _data(seed + 1)], cuda_graph=True, warmup=2)
    for model in out:
        assert all(np.isfinite(p["train_loss"]) for p in model.curve_)


def _real(seed: int, N: int = 128, T: int = 12, D: int = 3) -> SeqData:
    r = np.random.default_rng(seed)
    X = r.normal(size=(N, T, D))  # float64, cast to float32 on the way to the device
    mask = np.zeros((N, T), dtype=bool)
    mask[:, -1] = True
    mask[:, 5] = r.random(N) < 0.5
    Y = np.full((N, T, 1), np.nan)  # unscored targets must never be read
    Y[mask] = (X[:, :, 0].cumsum(axis=1)[mask] / 4)[:, None]
    return SeqData(X, Y, mask)


@pytest.mark.parametrize("graph", [False, True])
def test_stacked_configurations_on_cuda_match_single_models(graph, seed, exact_fp32):
    """Members differing in lr, weight decay, clipping and budget, real float64 inputs
    (cast on the device), a CUDA graph or not: each as its configuration trained alone."""
    configs = [dict(random_state=3, lr=0.01, clip_norm=0.05, max_steps=8),
               dict(random_state=4, lr=0.003, weight_decay=0.01, clip_norm=None, max_steps=8),
               dict(random_state=5, lr=0.02, clip_norm=1.0, max_steps=6)]
    base = dict(hidden_size=16, batch_size=32, eval_every=2, patience=100, device="cuda")
    train = [_real(seed + i) for i in range(3)]
    valid = [_real(seed + 50 + i, N=40) for i in range(3)]
    alone = [LSTMModel(**base, **c).fit(d, v) for c, d, v in zip(configs, train, valid)]
    together = fit_stacked([LSTMModel(**base, **c) for c in configs], train, valid,
                           cuda_graph=graph, warmup=2)
    for a, b in zip(alone, together):
        assert isinstance(b, LSTMModel)
        assert (b.n_steps_, [p["step"] for p in b.curve_]) == (a.n_steps_,
                                                              [p["step"] for p in a.curve_])
        assert [p["valid_loss"] for p in b.curve_] == pytest.approx(
            [p["valid_loss"] for p in a.curve_], rel=1e-4)
        _assert_weights_close(b.net_.state_dict(), a.net_.state_dict(), a.lr)


def _module_output_dtypes(fit) -> dict[str, set]:
    """The dtypes of every torch module's tensor outputs during ``fit()``, by module class."""
    seen: dict[str, set] = {}

    def hook(module, args, out):
        flat = []
        for o in out if isinstance(out, tuple) else (out,):
            flat.extend(o if isinstance(o, tuple) else (o,))
        seen.setdefault(type(module).__name__, set()).update(
            t.dtype for t in flat if isinstance(t, torch.Tensor))

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        fit()
    finally:
        handle.remove()
    return seen


def test_bf16_on_cuda_never_runs_in_float16(seed):
    """precision="bf16" on CUDA: the input layer and the head in bfloat16, the cuDNN core
    in bfloat16 where torch's autocast runs it so, else in float32 (autocast has run cuDNN
    RNNs in float16 whatever dtype it was given: seqbench.models.torchnet's
    autocast_rnn_dtype); nothing in float16."""
    from seqbench.models.torchnet import autocast_rnn_dtype

    core = autocast_rnn_dtype(torch.device("cuda"), torch.bfloat16)
    print("torch.autocast(bfloat16) runs cuDNN's LSTM in", core)
    model = LSTMModel(hidden_size=32, max_steps=4, eval_every=2, device="cuda",
                      precision="bf16", random_state=0)
    model.grad_decay_max_k = 0  # the diagnostic runs without autocast: left out here
    seen = _module_output_dtypes(lambda: model.fit(_real(seed)))
    assert seen["LSTM"] == {torch.bfloat16 if core == torch.bfloat16 else torch.float32}
    assert seen["Linear"] == {torch.bfloat16}  # the input projection and the head
    assert all(torch.float16 not in dtypes for dtypes in seen.values())
    assert all(np.isfinite(p["train_loss"]) for p in model.curve_)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_stacked_graph_on_a_device_that_is_not_current(seed):
    """A stack on cuda:1 while cuda:0 is current (a GPU slot of a two-GPU machine): the
    graph is captured on the module's device and gives what eager steps give."""
    params = dict(hidden_size=16, batch_size=32, max_steps=6, eval_every=2, patience=100,
                  device="cuda:1")
    train = [_data(seed), _data(seed + 1)]
    runs = [fit_stacked([LSTMModel(random_state=s, **params) for s in (0, 1)], train,
                        cuda_graph=graph, warmup=2) for graph in (False, True)]
    assert torch.cuda.current_device() == 0
    for eager, graphed in zip(*runs):
        assert next(graphed.net_.parameters()).device == torch.device("cuda:1")
        assert [p["train_loss"] for p in graphed.curve_] == pytest.approx(
            [p["train_loss"] for p in eager.curve_], rel=1e-5)


def test_same_seed_same_numbers_on_cuda(seed):
    """The same seed on the same device gives the same numbers: a single model twice, bit
    for bit; a stack twice, to rounding only (its embedding gradient is summed with atomic
    adds, whose order can vary)."""
    params = dict(hidden_size=16, batch_size=32, max_steps=12, eval_every=3, device="cuda")
    data, valid = _data(seed), _data(seed + 1, N=40)
    a, b = (LSTMModel(random_state=0, **params).fit(data, valid) for _ in range(2))
    assert a.curve_ == b.curve_
    for key, value in a.net_.state_dict().items():
        assert torch.equal(value, b.net_.state_dict()[key]), key
    np.testing.assert_array_equal(a.predict_proba(valid.X), b.predict_proba(valid.X))
    runs = [fit_stacked([LSTMModel(random_state=s, **params) for s in (0, 1)],
                        [data, _data(seed + 2)], [valid, valid], cuda_graph=True, warmup=2)
            for _ in range(2)]
    for x, y in zip(*runs):
        assert [p["valid_loss"] for p in x.curve_] == pytest.approx(
            [p["valid_loss"] for p in y.curve_], rel=1e-5)
