"""The lecture's reference cells against torch's fused modules.

The same weights go into ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` and into the reference
cells of :mod:`seqbench.models.cells`; outputs, final states and gradients (with respect
to the inputs, the initial state and every weight) must agree to rounding. The
lecture-form GRU is a different function from torch's; it is checked against the cases
where the two provably coincide and against a one-step example worked out by hand.
"""

from __future__ import annotations

import math

import pytest
import torch

from seqbench.errors import SeqbenchError
from seqbench.models import cells

D, H, N, T = 3, 5, 4, 7


def _inputs(module, gen, dtype=torch.float64):
    """Random inputs (batch- or time-major as the module expects) and initial states."""
    shape = (N, T, D) if module.batch_first else (T, N, D)
    x = torch.randn(shape, generator=gen, dtype=dtype).requires_grad_(True)
    h0 = torch.randn(module.num_layers, N, H, generator=gen, dtype=dtype).requires_grad_(True)
    c0 = torch.randn(module.num_layers, N, H, generator=gen, dtype=dtype).requires_grad_(True)
    return x, h0, c0


def _randomise(module, gen, scale=0.5):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _grads(outputs, wrt, gen):
    """Gradients of a random linear functional of ``outputs`` (one draw shared by both runs)."""
    weights = [torch.randn(o.shape, generator=gen, dtype=o.dtype) for o in outputs]
    loss = sum((o * w).sum() for o, w in zip(outputs, weights))
    return torch.autograd.grad(loss, wrt)


def _compare(fused_out, ref_out, wrt, seed, rtol, atol):
    for a, b in zip(fused_out, ref_out):
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol)
    ga = _grads(fused_out, wrt, torch.Generator().manual_seed(seed + 1))
    gb = _grads(ref_out, wrt, torch.Generator().manual_seed(seed + 1))
    assert any(g.abs().max() > 1e-3 for g in ga)  # the comparison is not between zeros
    for a, b in zip(ga, gb):
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype, rtol, atol", [(torch.float64, 1e-10, 1e-12),
                                                (torch.float32, 1e-5, 1e-6)])
def test_lstm_matches_fused(seed, dtype, rtol, atol):
    gen = torch.Generator().manual_seed(seed)
    lstm = torch.nn.LSTM(D, H, num_layers=2, batch_first=True).to(dtype)
    _randomise(lstm, gen)
    x, h0, c0 = _inputs(lstm, gen, dtype)
    y, (h_n, c_n) = lstm(x, (h0, c0))
    y_ref, (h_ref, c_ref) = cells.run_lstm(lstm, x, (h0, c0))
    wrt = [x, h0, c0, *lstm.parameters()]
    _compare([y, h_n, c_n], [y_ref, h_ref, c_ref], wrt, seed, rtol, atol)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_matches_fused(seed, nonlinearity):
    gen = torch.Generator().manual_seed(seed)
    rnn = torch.nn.RNN(D, H, num_layers=2, nonlinearity=nonlinearity).double()
    _randomise(rnn, gen)
    x, h0, _ = _inputs(rnn, gen)
    y, h_n = rnn(x, h0)
    y_ref, h_ref = cells.run_rnn(rnn, x, h0)
    if nonlinearity == "relu":  # both sides of the kink are exercised
        assert (y == 0).any() and (y > 0).any()
    _compare([y, h_n], [y_ref, h_ref], [x, h0, *rnn.parameters()], seed, 1e-10, 1e-12)


def test_rnn_float32_and_no_bias(seed):
    gen = torch.Generator().manual_seed(seed)
    rnn = torch.nn.RNN(D, H, bias=False, batch_first=True)
    _randomise(rnn, gen)
    x, h0, _ = _inputs(rnn, gen, torch.float32)
    y, h_n = rnn(x, h0)
    y_ref, h_ref = cells.run_rnn(rnn, x, h0)
    _compare([y, h_n], [y_ref, h_ref], [x, h0, *rnn.parameters()], seed, 1e-5, 1e-6)


@pytest.mark.parametrize("batch_first", [False, True])
def test_gru_torch_form_matches_fused(seed, batch_first):
    gen = torch.Generator().manual_seed(seed)
    gru = torch.nn.GRU(D, H, num_layers=2, batch_first=batch_first).double()
    _randomise(gru, gen)
    x, h0, _ = _inputs(gru, gen)
    y, h_n = gru(x, h0)
    y_ref, h_ref = cells.run_gru(gru, x, h0, form="torch")
    _compare([y, h_n], [y_ref, h_ref], [x, h0, *gru.parameters()], seed, 1e-10, 1e-12)


def test_gru_torch_form_float32(seed):
    gen = torch.Generator().manual_seed(seed)
    gru = torch.nn.GRU(D, H)
    x, h0, _ = _inputs(gru, gen, torch.float32)
    y, h_n = gru(x, h0)
    y_ref, h_ref = cells.run_gru(gru, x, h0, form="torch")
    _compare([y, h_n], [y_ref, h_ref], [x, h0, *gru.parameters()], seed, 1e-5, 1e-6)


# -- the lecture's GRU ---------------------------------------------------------------------
def _gru_blocks(gru):
    """torch's weight_hh / bias_hh / bias_ih of layer 0, as views of the r, z, n blocks."""
    return (gru.weight_hh_l0.data.view(3, H, H), gru.bias_hh_l0.data.view(3, H),
            gru.bias_ih_l0.data.view(3, H))


def test_lecture_gru_equals_torch_when_W_hn_is_diagonal(seed):
    """W (r * h) = r * (W h) for a diagonal W, so with b_hn = 0 the reset's placement does
    not matter and the lecture's GRU (z -> 1 - z) must equal torch's for *any* reset."""
    gen = torch.Generator().manual_seed(seed)
    gru = torch.nn.GRU(D, H).double()
    _randomise(gru, gen, scale=0.8)
    W_hh, b_hh, _ = _gru_blocks(gru)
    W_hh[2] = torch.diag(torch.randn(H, generator=gen, dtype=torch.float64))  # W_hn diagonal
    b_hh[2] = 0.0  # b_hn = 0
    x, h0, _ = _inputs(gru, gen)
    y, h_n = gru(x, h0)
    y_ref, h_ref = cells.run_gru(gru, x, h0, form="lecture")
    # the reset gate really varies, so the identity is exercised, not side-stepped
    w = cells.GRUWeights.from_torch(gru)
    r = torch.sigmoid(torch.cat([h0[0], x[0]], -1) @ w.W_r.T + w.b_r)
    assert r.min() < 0.3 and r.max() > 0.7
    # gradients agree for the inputs, the initial state and the input weights; those for
    # W_hn's off-diagonal entries and b_hn legitimately differ (the identity holds only
    # at this point of weight space)
    wrt = [x, h0, gru.weight_ih_l0, gru.bias_ih_l0]
    _compare([y, h_n], [y_ref, h_ref], wrt, seed, 1e-10, 1e-12)


def test_lecture_gru_equals_torch_when_reset_is_saturated(seed):
    """With r_t = 1 (reset bias +40: σ(40) rounds to 1 in float64) both candidates read
    tanh(W_hn h + W_in x + b_in + b_hn) for a full W_hn; only z's role is mirrored."""
    gen = torch.Generator().manual_seed(seed)
    gru = torch.nn.GRU(D, H).double()
    _randomise(gru, gen, scale=0.5)
    _, b_hh, b_ih = _gru_blocks(gru)
    b_ih[0] = 40.0
    x, h0, _ = _inputs(gru, gen)
    y, h_n = gru(x, h0)
    y_ref, h_ref = cells.run_gru(gru, x, h0, form="lecture")
    for a, b in zip([y, h_n], [y_ref, h_ref]):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    assert b_hh[2].abs().min() > 0  # the recurrent candidate bias is in play


def test_lecture_gru_differs_from_torch_in_general(seed):
    gen = torch.Generator().manual_seed(seed)
    gru = torch.nn.GRU(D, H).double()
    _randomise(gru, gen, scale=0.8)
    x, h0, _ = _inputs(gru, gen)
    y, _ = gru(x, h0)
    y_ref, _ = cells.run_gru(gru, x, h0, form="lecture")
    assert (y - y_ref).abs().max() > 1e-3


def test_gru_one_step_by_hand():
    """H = 2, D = 1, worked on paper: h_{t-1} = (1, -1), x_t = 2, z = 1/2 (zero weights),
    r = (3/4, 1/2) (biases ln 3 and 0), candidate rows W = [[0, 1, 1/2], [1, 0, 0]].

    Lecture: W·[r*h, x] = W·(3/4, -1/2, 2) = (-1/2 + 1, 3/4) = (1/2, 3/4),
             h_t = (1/2)(1, -1) + (1/2) tanh(1/2, 3/4).
    torch:   W_in x + r * (W_hn h) = (1, 0) + (3/4, 1/2) * (-1, 1) = (1/4, 1/2),
             h_t = (1/2) tanh(1/4, 1/2) + (1/2)(1, -1)."""
    dt = torch.float64
    h = torch.tensor([[1.0, -1.0]], dtype=dt)
    x = torch.tensor([[2.0]], dtype=dt)
    zero = torch.zeros(2, 3, dtype=dt)
    W = torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 0.0]], dtype=dt)
    b_r = torch.tensor([math.log(3.0), 0.0], dtype=dt)
    lecture = cells.GRUWeights(W_z=zero, b_z=torch.zeros(2, dtype=dt), W_r=zero, b_r=b_r,
                               W=W, b=torch.zeros(2, dtype=dt))
    expected = [0.5 + 0.5 * math.tanh(0.5), -0.5 + 0.5 * math.tanh(0.75)]
    torch.testing.assert_close(cells.gru_cell(x, h, lecture)[0],
                               torch.tensor(expected, dtype=dt), rtol=0, atol=1e-15)

    # the same numbers in an nn.GRU (gate order r, z, n) and in the torch-form cell
    gru = torch.nn.GRU(1, 2).double()
    with torch.no_grad():
        for p in gru.parameters():
            p.zero_()
        gru.bias_ih_l0[0:2] = b_r
        gru.weight_hh_l0[4:6] = W[:, :2]  # W_hn
        gru.weight_ih_l0[4:6] = W[:, 2:]  # W_in
    expected_torch = [0.5 * math.tanh(0.25) + 0.5, 0.5 * math.tanh(0.5) - 0.5]
    y, _ = gru(x[None], h[None])
    torch.testing.assert_close(y[0, 0], torch.tensor(expected_torch, dtype=dt),
                               rtol=0, atol=1e-15)
    w_torch = cells.TorchGRUWeights.from_torch(gru)
    torch.testing.assert_close(cells.gru_cell_torch_form(x, h, w_torch)[0],
                               torch.tensor(expected_torch, dtype=dt), rtol=0, atol=1e-15)
    # and the mapping of that nn.GRU onto the lecture's form gives the lecture's numbers:
    # z is 1/2 either way, so only the reset's placement separates the two results
    torch.testing.assert_close(cells.gru_cell(x, h, cells.GRUWeights.from_torch(gru))[0],
                               torch.tensor(expected, dtype=dt), rtol=0, atol=1e-15)


def test_lecture_gru_z_weights_the_candidate():
    """z = 1 replaces the state by the candidate, z = 0 keeps it (the lecture's roles)."""
    dt = torch.float64
    h = torch.tensor([[0.3, -0.2]], dtype=dt)
    x = torch.tensor([[1.0]], dtype=dt)
    zero = torch.zeros(2, 3, dtype=dt)
    W = torch.tensor([[0.5, 0.0, 1.0], [0.0, 0.5, -1.0]], dtype=dt)
    for b_z, expected in [(40.0, torch.tanh(torch.tensor([[1.15, -1.1]], dtype=dt))),
                          (-40.0, h)]:
        w = cells.GRUWeights(W_z=zero, b_z=torch.full((2,), b_z, dtype=dt), W_r=zero,
                             b_r=torch.full((2,), 40.0, dtype=dt), W=W,
                             b=torch.zeros(2, dtype=dt))
        torch.testing.assert_close(cells.gru_cell(x, h, w), expected, rtol=0, atol=1e-15)


# -- layout and errors --------------------------------------------------------------------
def test_lstm_layout_gate_order():
    """torch stacks i, f, g, o: the forget gate's weights are the second block."""
    lstm = torch.nn.LSTM(D, H)
    w = cells.LSTMWeights.from_torch(lstm)
    assert w.W_f.shape == (H, H + D)
    torch.testing.assert_close(w.W_f[:, :H], lstm.weight_hh_l0[H:2 * H])
    torch.testing.assert_close(w.W_f[:, H:], lstm.weight_ih_l0[H:2 * H])
    torch.testing.assert_close(w.b_C, lstm.bias_ih_l0[2 * H:3 * H] + lstm.bias_hh_l0[2 * H:3 * H])


def test_unsupported_modules_are_refused():
    with pytest.raises(SeqbenchError, match="bidirectional"):
        cells.LSTMWeights.from_torch(torch.nn.LSTM(D, H, bidirectional=True))
    with pytest.raises(SeqbenchError, match="proj_size"):
        cells.LSTMWeights.from_torch(torch.nn.LSTM(D, H, proj_size=2))
    with pytest.raises(SeqbenchError, match="layer"):
        cells.RNNWeights.from_torch(torch.nn.RNN(D, H), layer=1)
    with pytest.raises(SeqbenchError, match="form"):
        cells.run_gru(torch.nn.GRU(D, H), torch.zeros(T, N, D), form="cudnn")
    with pytest.raises(SeqbenchError, match="3-d"):
        cells.run_rnn(torch.nn.RNN(D, H), torch.zeros(T, D))
