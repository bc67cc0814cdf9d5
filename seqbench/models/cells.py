"""Reference recurrent cells: the lecture's equations, one line each, in plain torch.

These cells are the plain reference the fused torch modules (``nn.LSTM``, ``nn.GRU``,
``nn.RNN``; cuDNN on GPU, oneDNN on CPU) are tested against. They are slow (a Python
loop over steps) and are not used for training. Every function takes the weights of
a torch module, converts their layout to the lecture's and unrolls over a sequence;
gradients flow back to the module's own parameters, so outputs *and* gradients can be
compared with the fused kernels.

Notation (``rnn-lecture-notes.md``): ``x_t`` input at step t, ``h_t`` hidden state,
``C_t`` LSTM cell state, ``[h_{t-1}, x_t]`` the concatenation of the previous hidden
state and the input (hidden state first), ``W_g · [h_{t-1}, x_t] + b_g`` one affine map
per gate ``g``, ``σ`` the logistic sigmoid, ``*`` the elementwise product. Shapes: N
sequences, T steps, D input size, H hidden size; every ``W_g`` is ``(H, H + D)``.

Layout conversion
-----------------
torch keeps the input and recurrent weights apart (``weight_ih`` ``(G·H, D)``,
``weight_hh`` ``(G·H, H)``, ``bias_ih`` and ``bias_hh`` ``(G·H,)``) and stacks the G
gates along the first axis, in the order **i, f, g, o** for the LSTM (``g`` is the
lecture's candidate ``C~_t``) and **r, z, n** for the GRU. The lecture's ``W_g`` is
``[W_hg | W_ig]`` (recurrent columns first, as in ``[h_{t-1}, x_t]``) and its bias is
``b_ig + b_hg``: torch's two biases only ever appear summed, except in the GRU's ``n``.

LSTM and plain RNN: torch computes exactly the lecture's equations, so the reference
equals the fused module up to floating-point rounding.

GRU: torch's cell is *not* the lecture's. Writing torch's gates with its own weights,

    r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

while the lecture has

    z_t = σ(W_z · [h_{t-1}, x_t])
    r_t = σ(W_r · [h_{t-1}, x_t])
    h~_t = tanh(W · [r_t * h_{t-1}, x_t])
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

The two differ in two places:

1. **Where the reset acts.** The lecture resets the state *before* the recurrent
   product, ``W_hn (r_t * h_{t-1})``; torch resets *after* it, ``r_t * (W_hn h_{t-1}
   + b_hn)`` (the cuDNN formulation), so ``r_t`` also scales the recurrent bias
   ``b_hn``. ``W (r * h) = r * (W h)`` for every ``r`` only when ``W`` is diagonal, so
   the two candidates are different functions in general.
2. **The role of z.** torch's ``z_t`` weights the *old* state, the lecture's weights
   the *new* candidate: torch's ``z_t`` is the lecture's ``1 - z_t``. Since
   ``1 - σ(a) = σ(-a)``, this is a reparametrisation (negate the z weights and biases),
   not a difference in what the cell can compute.

:func:`gru_cell` implements the lecture's form (with biases ``b_z``, ``b_r``, ``b``,
zero in the slide, kept because every torch cell has them), and
:meth:`GRUWeights.from_torch` maps a torch GRU onto it: ``W_z = -[W_hz | W_iz]``,
``b_z = -(b_iz + b_hz)``, ``W_r = [W_hr | W_ir]``, ``b_r = b_ir + b_hr``,
``W = [W_hn | W_in]``, ``b = b_in + b_hn``. The result equals torch's GRU exactly when
``r_t`` is all ones or when ``W_hn`` is diagonal and ``b_hn = 0``; otherwise it is the
nearest lecture-form cell, a different function. :func:`gru_cell_torch_form` is the
variant with torch's reset placement and torch's z, which equals ``nn.GRU`` up to
rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import SeqbenchError

if TYPE_CHECKING:  # torch is imported lazily, like everywhere in seqbench
    from torch import Tensor


# -- layout conversion ------------------------------------------------------------------
def _layer_params(module, layer: int, gates: int):
    """torch's (W_ih, W_hh, b_ih, b_hh) of one layer, each split into its ``gates`` blocks."""
    import torch

    if getattr(module, "bidirectional", False):
        raise SeqbenchError(f"reference cells: expected a unidirectional {type(module).__name__}, "
                            "got bidirectional=True")
    if getattr(module, "proj_size", 0):
        raise SeqbenchError(f"reference cells: expected an LSTM without projection, "
                            f"got proj_size={module.proj_size}")
    if not 0 <= layer < module.num_layers:
        raise SeqbenchError(f"reference cells: expected a layer in [0, {module.num_layers}), "
                            f"got {layer}")
    W_ih = getattr(module, f"weight_ih_l{layer}")  # (G·H, D)
    W_hh = getattr(module, f"weight_hh_l{layer}")  # (G·H, H)
    if module.bias:
        b_ih = getattr(module, f"bias_ih_l{layer}")  # (G·H,)
        b_hh = getattr(module, f"bias_hh_l{layer}")  # (G·H,)
    else:
        b_ih = b_hh = torch.zeros(W_ih.shape[0], dtype=W_ih.dtype, device=W_ih.device)
    return (W_ih.chunk(gates), W_hh.chunk(gates), b_ih.chunk(gates), b_hh.chunk(gates))


def _cat(W_h: Tensor, W_x: Tensor) -> Tensor:
    """The lecture's W acting on [h_{t-1}, x_t]: recurrent columns first, (H, H + D)."""
    import torch

    return torch.cat([W_h, W_x], dim=1)


# -- LSTM -------------------------------------------------------------------------------
@dataclass
class LSTMWeights:
    """One LSTM layer in the lecture's layout: each ``W_*`` is (H, H + D), each ``b_*`` (H,)."""

    W_i: Tensor
    b_i: Tensor
    W_f: Tensor
    b_f: Tensor
    W_C: Tensor
    b_C: Tensor
    W_o: Tensor
    b_o: Tensor

    @classmethod
    def from_torch(cls, lstm, layer: int = 0) -> LSTMWeights:
        """Layer ``layer`` of an ``nn.LSTM`` (torch's gate order i, f, g, o)."""
        (xi, xf, xg, xo), (hi, hf, hg, ho), (ai, af, ag, ao), (ci, cf, cg, co) = \
            _layer_params(lstm, layer, 4)
        return cls(_cat(hi, xi), ai + ci, _cat(hf, xf), af + cf,
                   _cat(hg, xg), ag + cg, _cat(ho, xo), ao + co)


def lstm_cell(x_t: Tensor, h_prev: Tensor, C_prev: Tensor, w: LSTMWeights
              ) -> tuple[Tensor, Tensor]:
    """One LSTM step: (N, D), (N, H), (N, H) -> h_t (N, H), C_t (N, H)."""
    import torch

    hx = torch.cat([h_prev, x_t], dim=-1)                # [h_{t-1}, x_t]  (N, H + D)
    i_t = torch.sigmoid(hx @ w.W_i.T + w.b_i)            # i_t = σ(W_i·[h_{t-1}, x_t] + b_i)
    f_t = torch.sigmoid(hx @ w.W_f.T + w.b_f)            # f_t = σ(W_f·[h_{t-1}, x_t] + b_f)
    C_tilde = torch.tanh(hx @ w.W_C.T + w.b_C)           # C~_t = tanh(W_C·[h_{t-1}, x_t] + b_C)
    C_t = f_t * C_prev + i_t * C_tilde                   # C_t = f_t * C_{t-1} + i_t * C~_t
    o_t = torch.sigmoid(hx @ w.W_o.T + w.b_o)            # o_t = σ(W_o·[h_{t-1}, x_t] + b_o)
    h_t = o_t * torch.tanh(C_t)                          # h_t = o_t * tanh(C_t)
    return h_t, C_t


# -- GRU --------------------------------------------------------------------------------
@dataclass
class GRUWeights:
    """One GRU layer in the lecture's form: ``W_z``, ``W_r``, ``W`` (H, H + D); biases (H,)."""

    W_z: Tensor
    b_z: Tensor
    W_r: Tensor
    b_r: Tensor
    W: Tensor
    b: Tensor

    @classmethod
    def from_torch(cls, gru, layer: int = 0) -> GRUWeights:
        """The lecture-form GRU nearest to layer ``layer`` of an ``nn.GRU`` (gate order r, z, n).

        z is negated (torch's z is the lecture's 1 - z) and the candidate's two biases are
        summed; the cell equals torch's only when r is all ones, or when ``W_hn`` is
        diagonal and ``b_hn = 0`` (module docstring)."""
        (xr, xz, xn), (hr, hz, hn), (ar, az, an), (cr, cz, cn) = _layer_params(gru, layer, 3)
        return cls(-_cat(hz, xz), -(az + cz), _cat(hr, xr), ar + cr, _cat(hn, xn), an + cn)


def gru_cell(x_t: Tensor, h_prev: Tensor, w: GRUWeights) -> Tensor:
    """One step of the lecture's GRU: (N, D), (N, H) -> h_t (N, H)."""
    import torch

    hx = torch.cat([h_prev, x_t], dim=-1)                # [h_{t-1}, x_t]  (N, H + D)
    z_t = torch.sigmoid(hx @ w.W_z.T + w.b_z)            # z_t = σ(W_z·[h_{t-1}, x_t] + b_z)
    r_t = torch.sigmoid(hx @ w.W_r.T + w.b_r)            # r_t = σ(W_r·[h_{t-1}, x_t] + b_r)
    rhx = torch.cat([r_t * h_prev, x_t], dim=-1)         # [r_t * h_{t-1}, x_t]
    h_tilde = torch.tanh(rhx @ w.W.T + w.b)              # h~_t = tanh(W·[r_t*h_{t-1}, x_t] + b)
    h_t = (1 - z_t) * h_prev + z_t * h_tilde             # h_t = (1-z_t)*h_{t-1} + z_t*h~_t
    return h_t


@dataclass
class TorchGRUWeights:
    """One GRU layer for :func:`gru_cell_torch_form`: ``W_r``, ``W_z`` (H, H + D) act on
    ``[h_{t-1}, x_t]`` as in the lecture (``z`` is torch's, the lecture's ``1 - z``); the
    candidate keeps torch's split ``W_xn`` (H, D), ``W_hn`` (H, H) and its two biases,
    because the reset acts between the recurrent product and the sum."""

    W_r: Tensor
    b_r: Tensor
    W_z: Tensor
    b_z: Tensor
    W_xn: Tensor
    b_xn: Tensor
    W_hn: Tensor
    b_hn: Tensor

    @classmethod
    def from_torch(cls, gru, layer: int = 0) -> TorchGRUWeights:
        """Layer ``layer`` of an ``nn.GRU``, exactly (gate order r, z, n)."""
        (xr, xz, xn), (hr, hz, hn), (ar, az, an), (cr, cz, cn) = _layer_params(gru, layer, 3)
        return cls(_cat(hr, xr), ar + cr, _cat(hz, xz), az + cz, xn, an, hn, cn)


def gru_cell_torch_form(x_t: Tensor, h_prev: Tensor, w: TorchGRUWeights) -> Tensor:
    """One step of torch's GRU (reset after the recurrent product, z weights the old
    state): (N, D), (N, H) -> h_t (N, H)."""
    import torch

    hx = torch.cat([h_prev, x_t], dim=-1)                # [h_{t-1}, x_t]  (N, H + D)
    r_t = torch.sigmoid(hx @ w.W_r.T + w.b_r)            # r_t = σ(W_r·[h_{t-1}, x_t] + b_r)
    z_t = torch.sigmoid(hx @ w.W_z.T + w.b_z)            # z_t = σ(W_z·[h_{t-1}, x_t] + b_z)
    n_t = torch.tanh(x_t @ w.W_xn.T + w.b_xn             # n_t = tanh(W_xn x_t + b_xn
                     + r_t * (h_prev @ w.W_hn.T + w.b_hn))  #   + r_t * (W_hn h_{t-1} + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_prev                 # h_t = (1-z_t)*n_t + z_t*h_{t-1}
    return h_t


# -- plain RNN --------------------------------------------------------------------------
@dataclass
class RNNWeights:
    """One plain RNN layer: ``W`` (H, H + D), ``b`` (H,), ``nonlinearity`` 'tanh' or 'relu'."""

    W: Tensor
    b: Tensor
    nonlinearity: str = "tanh"

    @classmethod
    def from_torch(cls, rnn, layer: int = 0) -> RNNWeights:
        """Layer ``layer`` of an ``nn.RNN``, with its nonlinearity."""
        (x,), (h,), (a,), (c,) = _layer_params(rnn, layer, 1)
        return cls(_cat(h, x), a + c, rnn.nonlinearity)


def rnn_cell(x_t: Tensor, h_prev: Tensor, w: RNNWeights) -> Tensor:
    """One step of the plain recurrence: (N, D), (N, H) -> h_t (N, H)."""
    import torch

    hx = torch.cat([h_prev, x_t], dim=-1)                # [h_{t-1}, x_t]  (N, H + D)
    a_t = hx @ w.W.T + w.b                               # a_t = W·[h_{t-1}, x_t] + b
    if w.nonlinearity == "tanh":
        return torch.tanh(a_t)                           # h_t = tanh(a_t)
    if w.nonlinearity == "relu":
        return torch.relu(a_t)                           # h_t = max(0, a_t)
    raise SeqbenchError(f"rnn_cell: expected nonlinearity 'tanh' or 'relu', got {w.nonlinearity!r}")


# -- unrolling whole (multi-layer) modules ---------------------------------------------
def _time_major(module, x: Tensor) -> Tensor:
    """(N, T, D) or (T, N, D) as the module expects -> (T, N, D)."""
    if x.dim() != 3:
        raise SeqbenchError(f"reference cells: expected a 3-d input, got shape {tuple(x.shape)}")
    return x.transpose(0, 1) if module.batch_first else x


def _batch_major_out(module, out: list[Tensor]) -> Tensor:
    import torch

    y = torch.stack(out)  # (T, N, H)
    return y.transpose(0, 1) if module.batch_first else y


def _zeros(module, x: Tensor) -> Tensor:
    import torch

    return torch.zeros(module.num_layers, x.shape[1], module.hidden_size,
                       dtype=x.dtype, device=x.device)


def run_lstm(lstm, x: Tensor, state: tuple[Tensor, Tensor] | None = None
             ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Unroll :func:`lstm_cell` with the weights of ``lstm`` (an ``nn.LSTM``); the same call
    signature and return value as ``lstm(x, state)``: the top layer's h at every step and the
    final (h_n, c_n), each (num_layers, N, H)."""
    import torch

    seq = _time_major(lstm, x)  # (T, N, D)
    h0, c0 = state if state is not None else (_zeros(lstm, seq), _zeros(lstm, seq))
    h_n, c_n = [], []
    for layer in range(lstm.num_layers):
        w = LSTMWeights.from_torch(lstm, layer)
        h, C = h0[layer], c0[layer]
        outs = []
        for x_t in seq:
            h, C = lstm_cell(x_t, h, C, w)
            outs.append(h)
        seq = torch.stack(outs)  # (T, N, H): the next layer's input
        h_n.append(h)
        c_n.append(C)
    return _batch_major_out(lstm, list(seq)), (torch.stack(h_n), torch.stack(c_n))


def run_gru(gru, x: Tensor, h0: Tensor | None = None, form: str = "lecture"
            ) -> tuple[Tensor, Tensor]:
    """Unroll the GRU with the weights of ``gru`` (an ``nn.GRU``): ``form="lecture"`` uses
    :func:`gru_cell` with :meth:`GRUWeights.from_torch`, ``form="torch"`` uses
    :func:`gru_cell_torch_form`. Returns like ``gru(x, h0)``."""

    if form == "lecture":
        cell, weights = gru_cell, GRUWeights.from_torch
    elif form == "torch":
        cell, weights = gru_cell_torch_form, TorchGRUWeights.from_torch
    else:
        raise SeqbenchError(f"run_gru: expected form 'lecture' or 'torch', got {form!r}")
    return _unroll_single_state(gru, x, h0, weights, cell)


def run_rnn(rnn, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Unroll :func:`rnn_cell` with the weights of ``rnn`` (an ``nn.RNN``, tanh or ReLU);
    returns like ``rnn(x, h0)``."""
    return _unroll_single_state(rnn, x, h0, RNNWeights.from_torch, rnn_cell)


def _unroll_single_state(module, x: Tensor, h0: Tensor | None, weights, cell):
    """Unroll ``cell`` layer by layer over ``x`` for a module whose state is one tensor h
    (GRU, RNN), with each layer's weights from ``weights(module, layer)``."""
    import torch

    seq = _time_major(module, x)
    h0 = h0 if h0 is not None else _zeros(module, seq)
    h_n = []
    for layer in range(module.num_layers):
        w = weights(module, layer)
        h = h0[layer]
        outs = []
        for x_t in seq:
            h = cell(x_t, h, w)  # one step of the layer's recurrence
            outs.append(h)
        seq = torch.stack(outs)  # (T, N, H): the next layer's inputs
        h_n.append(h)
    return _batch_major_out(module, list(seq)), torch.stack(h_n)


__all__ = [
    "GRUWeights",
    "LSTMWeights",
    "RNNWeights",
    "TorchGRUWeights",
    "gru_cell",
    "gru_cell_torch_form",
    "lstm_cell",
    "rnn_cell",
    "run_gru",
    "run_lstm",
    "run_rnn",
]

