"""Stacked training (seqbench.models.stacked) against the same LSTMs trained alone.

The reference is ``LSTMModel`` itself: torch's fused ``nn.LSTM``, its own batch order,
loss and ``clip_grad_norm_``; the stacked module shares none of that code (per-step
batched products, a masked loss over every position, per-member clipping)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqbench.data import SeqData
from seqbench.errors import DivergedError, SeqbenchError
from seqbench.models.recurrent import LSTMModel, _build_net
from seqbench.models.stacked import MemberSplits, fit_stacked, member_gradients

SEEDS = [3, 4, 5]


def _data(seed: int, kind: str, N: int = 48, T: int = 9, V: int = 6, D: int = 2,
          K: int = 3) -> SeqData:
    """``kind``: "tokens" or "real", with "-last" many-to-one (the last step of every row
    scored; else also step 3 of about half the rows)."""
    r = np.random.default_rng(seed)
    kind, _, last = kind.partition("-")
    mask = np.zeros((N, T), dtype=bool)
    mask[:, -1] = True
    if not last and T > 4:
        mask[:, 3] = r.random(N) < 0.5  # a varying number of scored positions per batch
    if kind == "tokens":
        X = r.integers(0, V, size=(N, T))
        Y = r.integers(0, K, size=(N, T))
        Y[~mask] = -1  # unscored positions hold values the loss must never read
        return SeqData(X, Y, mask, input_size=V, target_size=K)
    X = r.normal(size=(N, T, D)).astype(np.float32)
    Y = r.normal(size=(N, T, K)).astype(np.float32)
    Y[~mask] = np.nan
    return SeqData(X, Y, mask, input_size=D, target_size=K)


def _params(**kw):
    return {"hidden_size": 8, "batch_size": 16, "max_steps": 5, "eval_every": 1,
            "patience": 100, "clip_norm": 0.02, "device": "cpu", **kw}


def _single_gradient(model: LSTMModel, data: SeqData) -> dict:
    """The gradient of the single model's loss on its first batch, by LSTMModel's own code
    (on ``model.device``: cpu here, cuda in test_gpu.py)."""
    seed = model.random_state
    device = torch.device(model.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _build_net("lstm", data.input_kind, data.input_size, model.hidden_size,
                         model.hidden_size, model.num_layers, data.target_size, "tanh")
        model._init_weights(net)
    net.to(device)
    model.target_kind_ = data.target_kind
    X, Y, M = model._tensors(data, device)
    perm = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(seed))
    idx = perm[:min(model.batch_size, X.shape[0])]
    loss = model._batch_loss(net, X[idx.to(device)], Y[idx.to(device)], M[idx.to(device)],
                             data.mask[idx.numpy()])
    return {"loss": float(loss), **{k: p.grad for k, p in net.named_parameters()}}


def check_first_gradients(params: dict, datas: list[SeqData]) -> None:
    """Each stacked member's loss and gradient on its first batch equal the same model's
    alone (LSTMModel's own code, on ``params["device"]``), to float32 rounding."""
    stacked = member_gradients([LSTMModel(random_state=s, **params) for s in SEEDS], datas)
    for s, data, got in zip(SEEDS, datas, stacked):
        want = _single_gradient(LSTMModel(random_state=s, **params), data)
        assert set(got) == set(want)
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
        for key in want:
            if key != "loss":
                torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-6,
                                           msg=f"seed {s}, gradient of {key}")


@pytest.mark.parametrize("kind", ["tokens", "real", "tokens-last", "real-last"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_first_gradients_equal_single_models(kind, num_layers, seed):
    check_first_gradients(_params(num_layers=num_layers), [_data(seed + s, kind) for s in SEEDS])


@pytest.mark.parametrize("kind", ["tokens", "real", "tokens-last", "real-last"])
@pytest.mark.parametrize("recurrence", ["auto", "hand"])
def test_training_curves_and_weights_equal_single_models(kind, recurrence, seed, monkeypatch):
    """Whole fits, stacked against alone; "hand" runs the written-out backward (what
    CUDA runs) on the CPU."""
    from seqbench.models import stacked as st

    monkeypatch.setattr(st, "RECURRENCE", recurrence)
    params = _params()
    train = [_data(seed + s, kind) for s in SEEDS]
    valid = [_data(seed + 100 + s, kind, N=20) for s in SEEDS]
    grads = [_single_gradient(LSTMModel(random_state=s, **params), d)
             for s, d in zip(SEEDS, train)]
    norms = [torch.sqrt(sum(g.square().sum() for k, g in gr.items() if k != "loss"))
             for gr in grads]
    assert min(norms) > 0.02, "the clipping threshold must be active for this test to bite"
    alone = [LSTMModel(random_state=s, **params).fit(d, v)
             for s, d, v in zip(SEEDS, train, valid)]
    together = fit_stacked([LSTMModel(random_state=s, **params) for s in SEEDS], train, valid)
    for a, b, v in zip(alone, together, valid):
        assert isinstance(b, LSTMModel)
        assert len(a.curve_) == len(b.curve_) == 5
        for pa, pb in zip(a.curve_, b.curve_):
            assert pb["step"] == pa["step"]
            assert pb["train_loss"] == pytest.approx(pa["train_loss"], rel=1e-5)
            assert pb["valid_loss"] == pytest.approx(pa["valid_loss"], rel=1e-5)
        assert (b.best_step_, b.n_steps_) == (a.best_step_, a.n_steps_)
        sa, sb = a.net_.state_dict(), b.net_.state_dict()
        for key in sa:
            torch.testing.assert_close(sb[key], sa[key], rtol=1e-4, atol=1e-5)
        real = kind.startswith("real")
        np.testing.assert_allclose(b.predict(v.X) if real else b.predict_proba(v.X),
                                   a.predict(v.X) if real else a.predict_proba(v.X),
                                   rtol=1e-4, atol=1e-5)
        assert b.grad_decay_init_["norm"] == pytest.approx(a.grad_decay_init_["norm"])


# members that differ in every per-member parameter: learning rate, weight decay,
# clipping (active, looser, none), forget-gate bias, patience and step budget
CONFIGS = [
    {"random_state": 3, "lr": 0.05, "weight_decay": 0.0, "clip_norm": 0.02,
     "forget_bias": 1.0, "patience": 100, "max_steps": 16},
    {"random_state": 3, "lr": 0.5, "weight_decay": 0.01, "clip_norm": None,
     "forget_bias": 0.0, "patience": 1, "max_steps": 16},
    {"random_state": 4, "lr": 0.2, "weight_decay": 0.001, "clip_norm": 0.5,
     "forget_bias": 2.0, "patience": 100, "max_steps": 7, "max_epochs": 2},
]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("recurrence", ["auto", "hand"])
def test_same_shape_configurations_equal_single_models(optimizer, recurrence, seed,
                                                        monkeypatch):
    """A stack of different configurations of one shape: each member trains as its own
    configuration alone (curves, stopping step, weights), including one that stops on its
    patience and one whose budget (max_epochs) ends first."""
    from seqbench.models import stacked as st

    monkeypatch.setattr(st, "RECURRENCE", recurrence)
    base = {"hidden_size": 8, "batch_size": 16, "eval_every": 2, "device": "cpu",
            "optimizer": optimizer}
    models = [LSTMModel(**base, **c) for c in CONFIGS]
    train = [_data(seed + i, "tokens") for i in (0, 0, 1)]  # members 0, 1: the same data
    valid = [_data(seed + 100 + i, "tokens", N=20) for i in range(3)]
    alone = [LSTMModel(**base, **c).fit(d, v) for c, d, v in zip(CONFIGS, train, valid)]
    together = fit_stacked(models, train, valid)
    assert alone[2].n_steps_ == 6  # max_epochs 2 x 3 steps per epoch (48 rows / 16)
    assert alone[1].n_steps_ < 16, "member 1 must stop on its patience for this test"
    for i, (a, b) in enumerate(zip(alone, together)):
        assert isinstance(b, LSTMModel)
        assert (b.n_steps_, b.best_step_) == (a.n_steps_, a.best_step_), f"member {i}"
        assert [p["step"] for p in b.curve_] == [p["step"] for p in a.curve_]
        for pa, pb in zip(a.curve_, b.curve_):
            assert pb["train_loss"] == pytest.approx(pa["train_loss"], rel=1e-5)
            assert pb["valid_loss"] == pytest.approx(pa["valid_loss"], rel=1e-5)
        sa, sb = a.net_.state_dict(), b.net_.state_dict()
        for key in sa:
            torch.testing.assert_close(sb[key], sa[key], rtol=1e-4, atol=1e-5,
                                       msg=f"member {i}: {key}")
    # the configurations matter: members 0 and 1 start from the same recurrent weights
    # (same seed) and see the same data, but end far apart (beyond the tolerances above)
    w0, w1 = (m.net_.state_dict()["core.weight_hh_l0"] for m in together[:2])
    assert (w0 - w1).abs().max() > 1e-3


def test_early_stopping_is_per_member(seed):
    """Members stop at their own evaluation; each keeps its own best weights."""
    params = _params(max_steps=40, eval_every=2, patience=2, lr=0.05, clip_norm=None)
    train = [_data(seed + s, "tokens", N=32) for s in SEEDS]
    valid = [_data(seed + 50 + s, "tokens", N=32) for s in SEEDS]
    alone = [LSTMModel(random_state=s, **params).fit(d, v)
             for s, d, v in zip(SEEDS, train, valid)]
    together = fit_stacked([LSTMModel(random_state=s, **params) for s in SEEDS], train, valid)
    assert any(a.n_steps_ < 40 for a in alone), "some member must stop early for this test"
    for a, b in zip(alone, together):
        assert (b.n_steps_, b.best_step_) == (a.n_steps_, a.best_step_)
        assert [p["valid_loss"] for p in b.curve_] == pytest.approx(
            [p["valid_loss"] for p in a.curve_], rel=1e-4)


def test_without_validation_uses_train_loss(seed):
    params = _params(max_steps=4, eval_every=2)
    train = [_data(seed + s, "tokens") for s in SEEDS[:2]]
    alone = [LSTMModel(random_state=s, **params).fit(d) for s, d in zip(SEEDS, train)]
    together = fit_stacked([LSTMModel(random_state=s, **params) for s in SEEDS[:2]], train)
    for a, b in zip(alone, together):
        assert [p["train_loss"] for p in b.curve_] == pytest.approx(
            [p["train_loss"] for p in a.curve_], rel=1e-5)
        assert "valid_loss" not in b.curve_[0]


def test_bf16_autocast_runs_on_cpu_and_only_when_asked(seed):
    train = [_data(seed + s, "tokens") for s in SEEDS[:2]]
    runs = {prec: fit_stacked([LSTMModel(random_state=s, **_params(precision=prec,
                                                                    max_steps=3))
                               for s in SEEDS[:2]], train)
            for prec in ("fp32", "bf16")}
    for m32, m16 in zip(runs["fp32"], runs["bf16"]):
        l32 = [p["train_loss"] for p in m32.curve_]
        l16 = [p["train_loss"] for p in m16.curve_]
        assert all(np.isfinite(l16))
        assert l16 != l32  # bf16 products round differently: autocast was on
        assert l16 == pytest.approx(l32, rel=0.02)


@pytest.mark.parametrize("kind", ["tokens", "real"])
def test_single_model_core_runs_in_float32_where_autocast_would_use_float16(
        kind, seed, monkeypatch):
    """The single models' bf16 rule (seqbench.models.torchnet.autocast_rnn_dtype: CUDA's
    autocast runs cuDNN RNNs in float16), exercised on the CPU by making the probe answer
    float16 there: under bf16 autocast the fused core's states are exactly those of a
    float32 run of the core on the same input layer output, while the input layer and the
    head stay in bfloat16; with the CPU's true answer (bfloat16, oneDNN) the core runs in
    bfloat16."""
    from seqbench.models import torchnet

    data = _data(seed, kind)
    torch.manual_seed(seed)
    net = _build_net("lstm", data.input_kind, data.input_size, 8, 8, 1, data.target_size,
                     "tanh")
    x = torch.as_tensor(data.X)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        e = net.inp(x)
        h_default, _ = net.hidden(x)
        monkeypatch.setitem(torchnet._RNN_AUTOCAST_DTYPES, ("cpu", torch.bfloat16),
                            torch.float16)
        h, (h_T, c_T) = net.hidden(x)
        out = net.head(h)
    assert h_default.dtype == torch.bfloat16  # the CPU's autocast: bf16 core
    assert e.dtype == (torch.float32 if kind == "tokens" else torch.bfloat16)
    want, (want_h, want_c) = net.core(e.detach().float())  # autocast off: float32
    assert h.dtype == c_T.dtype == torch.float32
    torch.testing.assert_close(h, want, rtol=0, atol=0)
    torch.testing.assert_close((h_T, c_T), (want_h, want_c), rtol=0, atol=0)
    assert out.dtype == torch.bfloat16  # the head stays under autocast


def test_diverged_member_is_reported_alone(seed):
    """A member whose loss overflows gets the DivergedError its single model raises; the
    other member trains as it would alone."""
    train = [_data(seed + s, "real") for s in SEEDS[:2]]
    Y = np.where(train[1].mask[..., None], 1e30, train[1].Y).astype(np.float32)
    train[1] = SeqData(train[1].X, Y, train[1].mask, input_size=2, target_size=3)
    params = _params(max_steps=2)
    with pytest.raises(DivergedError):
        LSTMModel(random_state=SEEDS[1], **params).fit(train[1])
    alone = LSTMModel(random_state=SEEDS[0], **params).fit(train[0])
    out = fit_stacked([LSTMModel(random_state=s, **params) for s in SEEDS[:2]], train)
    assert isinstance(out[1], DivergedError)
    assert [p["train_loss"] for p in out[0].curve_] == pytest.approx(
        [p["train_loss"] for p in alone.curve_], rel=1e-5)


@pytest.mark.parametrize("change, message", [
    ({"hidden_size": 4}, "differs from model 0 in ['hidden_size']"),
    ({"tbptt": 3}, "differs from model 0"),
    ({"batch_size": 8}, "differs from model 0 in ['batch_size']"),
    ({"eval_every": 3, "optimizer": "sgd"}, "differs from model 0 in ['eval_every', 'optimizer']"),
])
def test_models_must_differ_only_in_seed(change, message, seed):
    train = [_data(seed + s, "tokens") for s in SEEDS[:2]]
    models = [LSTMModel(random_state=0, **_params()),
              LSTMModel(random_state=1, **_params(**change))]
    with pytest.raises(SeqbenchError, match=message.replace("[", r"\[").replace("]", r"\]")):
        fit_stacked(models, train)


def test_bad_inputs_are_rejected(seed):
    a, b = _data(seed, "tokens"), _data(seed + 1, "tokens", N=40)
    models = [LSTMModel(random_state=s, **_params()) for s in (0, 1)]
    with pytest.raises(SeqbenchError, match=r"data\[1\].X: expected shape \(48, 9\)"):
        fit_stacked(models, [a, b])
    with pytest.raises(SeqbenchError, match="expected 2 training sets"):
        fit_stacked(models, [a])
    with pytest.raises(SeqbenchError, match="tbptt=None"):
        fit_stacked([LSTMModel(random_state=s, **_params(tbptt=2)) for s in (0, 1)], [a, a])
    with pytest.raises(SeqbenchError, match="cuda_graph=True needs a CUDA device"):
        fit_stacked(models, [a, a], cuda_graph=True)
    for warmup in (0, 2.0, True):
        with pytest.raises(SeqbenchError, match=r"warmup: expected an int >= 1, got"):
            fit_stacked(models, [a, a], warmup=warmup)


@pytest.mark.parametrize("kind", ["tokens", "real"])
def test_member_splits_layouts_agree_and_cpu_keeps_no_copy(kind, seed):
    """The CPU layout (the members' own arrays, rows cast per batch) and the stacked
    layout used on CUDA (built here on the CPU) give the same batches, bit for bit, with
    the network's dtypes and unscored targets 0; the CPU layout shares the arrays'
    memory (no second copy of a split)."""
    datas = [_data(seed + s, kind) for s in SEEDS]
    cpu = torch.device("cpu")
    lazy, stacked = MemberSplits(datas, cpu), MemberSplits(datas, cpu, stacked=True)
    for (X, Y, Mk), d in zip(lazy.parts, datas):
        assert all(np.shares_memory(t.numpy(), a) for t, a in ((X, d.X), (Y, d.Y),
                                                                (Mk, d.mask)))
    idx = torch.stack([torch.randperm(48, generator=torch.Generator().manual_seed(s))[:16]
                       for s in SEEDS])
    for got, want in ((lazy.rows(idx), stacked.rows(idx)),
                      (lazy.chunk(5, 30), stacked.chunk(5, 30))):
        for a, b in zip(got, want):
            assert a.dtype == b.dtype and torch.equal(a, b)
    x, y, mk = lazy.rows(idx)
    assert x.dtype == (torch.float32 if kind == "real" else torch.int64)
    assert y.dtype == (torch.float32 if kind == "real" else torch.int64)
    # the rows are member m's rows idx[m], targets where scored and 0 elsewhere
    for m, d in enumerate(datas):
        rows = idx[m].numpy()
        np.testing.assert_array_equal(mk[m].numpy(), d.mask[rows])
        want_y = d.Y[rows]
        want_y = np.where(d.mask[rows] if kind == "tokens" else d.mask[rows][..., None],
                          want_y, 0)
        np.testing.assert_array_equal(y[m].numpy(), want_y.astype(y.numpy().dtype))
        np.testing.assert_array_equal(x[m].numpy(), d.X[rows].astype(x.numpy().dtype))


def stacked_batch(kind: str, M: int, B: int, T: int, H: int = 4, num_layers: int = 1,
                  device: str = "cpu", dtype=torch.float32):
    """A stacked module of M LSTMs (hidden size H, seeds 0..M-1) and one batch of its
    members' rows 0..B-1 of ``_data(m, kind)`` (in ``dtype``): (module, x, y, mask)."""
    from seqbench.models.stacked import _stacked_module

    datas = [_data(s, kind, N=B, T=T) for s in range(M)]
    nets = [LSTMModel(hidden_size=H, num_layers=num_layers, random_state=s)
            ._initial_net(d, torch.device(device)) for s, d in enumerate(datas)]
    module = _stacked_module()(nets).to(dtype)
    splits = MemberSplits(datas, torch.device(device), stacked=True)
    x, y, mk = splits.rows(torch.arange(B, device=device).repeat(M, 1))
    if kind.startswith("real"):
        x, y = x.to(dtype), y.to(dtype)
    return module, x, y, mk


def _backward_bytes(T: int, M: int = 2, B: int = 8, H: int = 4) -> int:
    """Bytes allocated by the backward pass of one stacked training batch of length T."""
    from torch.profiler import ProfilerActivity, profile

    stacked, x, y, mk = stacked_batch("real", M, B, T, H)
    loss, _ = stacked.member_losses(x, y, mk, False)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss.sum().backward()
    return sum(max(0, e.self_cpu_memory_usage) for e in prof.key_averages())


@pytest.mark.parametrize("recurrence", ["autograd", "hand"])
def test_stacked_backward_memory_grows_linearly_with_length(recurrence, monkeypatch):
    """Backpropagation through time does O(T) work: the bytes the backward pass allocates
    double when T doubles. (Indexing the gate inputs step by step once made every step's
    backward a zero-filled gradient of the whole sequence's gates: 3.8x per doubling.)"""
    from seqbench.models import stacked as st

    monkeypatch.setattr(st, "RECURRENCE", recurrence)
    small, large = _backward_bytes(60), _backward_bytes(120)
    assert small > 0
    assert large / small < 2.5, f"T 60 -> 120: backward bytes x{large / small:.2f}"


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("chunked", [False, True])
def test_member_gradient_decay_equals_one_network_at_a_time(num_layers, chunked, monkeypatch,
                                                             seed):
    """Networks measured together give each network's own gradient_decay: members whose
    K differ (measured in separate groups), one with nothing to measure, and groups split
    into chunks (one network at a time when chunked)."""
    from seqbench.models import stacked
    from seqbench.models.recurrent import gradient_decay

    if chunked:
        monkeypatch.setattr(stacked, "DECAY_FLOATS", 1)
    datas = [_data(seed + s, "tokens", T=12) for s in range(5)]
    datas[1].mask[:, -1] = False  # last scored step 3 here: K = 3, not 11
    datas[2].mask[:, 1:] = False  # no scored step after the first: nothing to measure
    datas[2].mask[:, 0] = True
    nets = [LSTMModel(hidden_size=6, num_layers=num_layers, random_state=s)
            ._initial_net(d, torch.device("cpu")) for s, d in enumerate(datas)]
    options = {"max_k": 100, "n_sequences": 4, "max_rows": 64}
    got = stacked.member_gradient_decay(nets, [d.X for d in datas], [d.mask for d in datas],
                                        **options)
    for net, data, g in zip(nets, datas, got):
        want = gradient_decay(net, data.X, data.mask, **options)
        assert g["k"] == want["k"]
        assert g["norm"] == pytest.approx(want["norm"], rel=1e-5, abs=0)
    assert [len(g["k"]) for g in got] == [11, 3, 0, 11, 11]


def stacked_losses(kind: str, num_layers: int, T: int, last: bool, recurrence: str,
                   monkeypatch, M: int = 3, B: int = 5, device: str = "cpu",
                   dtype=torch.float64):
    """Member losses and gradients of one stacked batch (in float64 unless ``dtype``), the
    recurrence run as ``recurrence`` says (:data:`seqbench.models.stacked.RECURRENCE`)."""
    from seqbench.models import stacked as st

    monkeypatch.setattr(st, "RECURRENCE", recurrence)
    module, x, y, mk = stacked_batch(kind + ("-last" if last else ""), M, B, T,
                                     num_layers=num_layers, device=device, dtype=dtype)
    loss, _ = module.member_losses(x, y, mk, kind == "tokens", last)
    loss.sum().backward()
    with torch.no_grad():  # the evaluation path: no graph, nothing saved
        unrecorded, _ = module.member_losses(x, y, mk, kind == "tokens", last)
    torch.testing.assert_close(unrecorded, loss.detach(), rtol=1e-12, atol=1e-7)
    return loss.detach(), {k: p.grad for k, p in module.named_parameters()}


@pytest.mark.parametrize("kind", ["tokens", "real"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("T", [1, 2, 9])
@pytest.mark.parametrize("last", [False, True])
def test_backward_by_hand_equals_autograd(kind, num_layers, T, last, monkeypatch):
    """The stacked recurrence with its backward written out (the formulas of torch's fused
    CUDA cell, and W_hh's gradient as one product over all steps) against autograd through
    the lecture's step-by-step equations, in float64: the same losses and gradients of
    every parameter. A wrong sign, gate or time shift in the hand backward fails it."""
    want_loss, want = stacked_losses(kind, num_layers, T, last, "autograd", monkeypatch)
    got_loss, got = stacked_losses(kind, num_layers, T, last, "hand", monkeypatch)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-12, atol=0)
    assert set(got) == set(want)
    if T > 1:  # W_hh's gradient sums over the steps: it must be there to be checked
        assert want["weight_hh_l0"].abs().max() > 1e-6
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-9, atol=1e-12,
                                   msg=f"gradient of {key}")


@pytest.mark.parametrize("kind", ["tokens-last", "real"])
def test_first_gradients_equal_single_models_with_backward_by_hand(kind, seed, monkeypatch):
    """The hand-written backward (what CUDA runs) against LSTMModel trained alone."""
    from seqbench.models import stacked as st

    monkeypatch.setattr(st, "RECURRENCE", "hand")
    check_first_gradients(_params(num_layers=2), [_data(seed + s, kind) for s in SEEDS])


def test_fused_cell_is_cuda_only_and_recurrence_mode_is_checked(monkeypatch):
    from seqbench.models import stacked as st

    assert st.fused_cell("cpu") is False  # no CPU kernel: the formulas run there
    monkeypatch.setattr(st, "RECURRENCE", "fast")
    with pytest.raises(SeqbenchError, match="expected 'auto', 'hand' or 'autograd'"):
        member_gradients([LSTMModel(random_state=s, **_params()) for s in (0, 1)],
                         [_data(s, "real") for s in (0, 1)])


@pytest.mark.parametrize("limit", [10, 2**31 - 1])
def test_fused_kernel_inputs_past_32bit_offsets_are_contiguous(limit, monkeypatch):
    """torch's fused cell kernels choose 32-bit offsets by their workspace's size (one
    step's gates) alone, so a strided gate input whose offsets pass 2**31 - 1 must reach
    them contiguous. The limit is lowered here, and the formulas stand in for the CUDA
    kernels; the gradients stay autograd's either way."""
    from seqbench.models import stacked as st

    want_loss, want = stacked_losses("real", 1, 6, False, "autograd", monkeypatch)
    seen = {"gates": [], "dh": []}
    pointwise, back = st._pointwise, st._pointwise_back

    def fake_pointwise(gx_t, hg, c, fused):
        assert fused
        seen["gates"].append(gx_t.is_contiguous())
        return pointwise(gx_t, hg, c, False)

    def fake_back(dh, dc, c_prev, c, saved, fused):
        assert fused
        seen["dh"].append(dh.is_contiguous())
        return back(dh, dc, c_prev, c, saved, False)

    monkeypatch.setattr(st, "_pointwise", fake_pointwise)
    monkeypatch.setattr(st, "_pointwise_back", fake_back)
    monkeypatch.setattr(st, "_fuses", lambda gx, w_hh: True)
    monkeypatch.setattr(st, "_INDEX32", limit)
    got_loss, got = stacked_losses("real", 1, 6, False, "hand", monkeypatch)
    assert all(seen["dh"]) and len(seen["dh"]) == 6
    if limit == 10:
        assert all(seen["gates"])
    else:  # the steps of an ordinary gx are strided views, handed over as they are
        assert not any(seen["gates"])
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-12, atol=0)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-9, atol=1e-12)


def test_backward_by_hand_runs_once_per_forward(monkeypatch):
    """The written-out backward frees each step's saves as it goes: a second pass (with
    retain_graph) is refused with a clear error, not run on freed state."""
    from seqbench.models import stacked as st

    monkeypatch.setattr(st, "RECURRENCE", "hand")
    module, x, y, mk = stacked_batch("real", 2, 4, 5)
    loss, _ = module.member_losses(x, y, mk, False)
    loss.sum().backward(retain_graph=True)
    with pytest.raises(SeqbenchError, match="runs once per forward pass"):
        loss.sum().backward()
