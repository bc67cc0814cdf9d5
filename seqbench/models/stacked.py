"""Stacked training: M LSTM models of one shape trained together as one module.

Small recurrent jobs leave a large GPU idle: a step's time is kernel-launch latency,
not arithmetic. Stacking turns M such jobs (the seeds of one configuration, or
configurations of one shape that differ in the parameters of :data:`PER_MEMBER`: seed,
learning rate, weight decay, clipping threshold, patience, step budget, forget-gate
bias) into one job whose weights carry a leading model dimension M, advanced step by
step with batched matrix products (``torch.bmm``), so each kernel does M models' work.
On CUDA the whole train step (forward, backward, per-member clipping, the optimiser) is
captured once in a CUDA graph and replayed, so a step costs one graph launch whatever T
is; inside it, each time step of a layer is two kernels forward (the recurrent product,
then torch's fused LSTM cell, what ``nn.LSTMCell`` runs on CUDA) and two backward (the
fused cell's backward, then dL/dh_{t-1}), and W_hh's gradient is one product over all
steps (:data:`RECURRENCE`). On the CPU, where torch has no fused cell, autograd
differentiates the step-by-step loop.

Equivalence with training alone. Member m computes what ``LSTMModel`` with the same
parameters (its own ``random_state``, ``lr``, ...) computes when fitted alone on its own
data:

* its initial weights are those of the single model (built by the same code under the
  same seed, then copied into the stack);
* its batches come from the same per-seed generator (one ``randperm`` per epoch);
* its loss is the mean over the scored positions of its batch (the head is applied at
  every position and unscored positions are multiplied by 0, so no step depends on
  host-side counts: the same value as gathering the scored positions);
* its gradient norm is clipped on its own, at its own ``clip_norm`` (torch's
  ``clip_grad_norm_`` formula: ``g <- g * min(1, c / (||g|| + 1e-6))`` with ``||g||``
  over that member's parameters only; no clipping where ``clip_norm`` is None);
* Adam and SGD are elementwise, so one optimiser over the stacked parameters, with a
  learning rate and a weight decay per member (:class:`MemberOptimizer`, torch's
  ``Adam``/``SGD`` update rules), is the per-member optimiser;
* evaluation, best-weights checkpointing, early stopping (its own ``patience``), its
  own step budget (``max_steps``, ``max_epochs``) and the learning curve are per
  member; a member that has stopped is still computed (its later updates are
  discarded: its best weights were saved).

The losses and gradients agree with the single models to float32 rounding (the sums
run in another order than in the fused ``nn.LSTM``), which ``tests/test_stacked.py``
checks. Chaotic training amplifies rounding, so after many steps the weights of a
stacked member and of the same model trained alone may drift apart, as two runs on
different hardware would.

Scope: LSTM (``LSTMModel`` and subclasses) with any ``num_layers``, token or real
inputs, class or real targets, fp32 or bf16 autocast; not ``tbptt`` (a truncated
gradient would need a host-side chunk plan per member). The members must agree in
every parameter outside :data:`PER_MEMBER` (sizes, optimiser, batch size,
``eval_every``, precision, device): those fix the module's shapes and the batch plan.
:func:`fit_stacked` returns one fitted ``LSTMModel`` per member, ready to predict and
store as its own row.

Memory: no split is held twice on one device (:class:`MemberSplits`). On a CUDA
device the members' splits are stacked into one tensor per array there, filled member by
member in chunks (the host holds only the callers' ``SeqData``); on the CPU the loop reads
the members' own numpy arrays in place and casts each batch.

Shapes: M members, N sequences, B batch, T steps, D input size, E embedding size,
H hidden size, K target size.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from ..data import SeqData
from ..errors import DivergedError, IncompatibleError, SeqbenchError
from .base import seed_of
from .recurrent import (
    LSTMModel,
    _many_to_one,
    current_device,
    decay_norms,
    decay_plan,
    decay_start,
    net_input,
    resolve_device,
    state_size,
)

#: The parameters in which the members of one stack may differ (each member trains with
#: its own value); every other parameter must be the same for all members.
PER_MEMBER = ("random_state", "lr", "weight_decay", "clip_norm", "patience", "max_steps",
              "max_epochs", "forget_bias")


def _lstm_update(g, c):
    """One LSTM step from its gate pre-activations ``g`` (..., 4H), in torch's gate order
    i, f, g, o, and C_{t-1} ``c`` (..., H): (h_t, C_t, saved), ``saved`` the activated
    gates and tanh(C_t), (i, f, C~, o, tanh C_t), which :func:`_pointwise_back` takes."""
    import torch

    i, f, gg, o = g.chunk(4, dim=-1)
    i, f, o, gg = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o), torch.tanh(gg)
    c = f * c + i * gg  # C_t = f_t * C_{t-1} + i_t * C~_t
    tc = torch.tanh(c)
    return o * tc, c, (i, f, gg, o, tc)  # h_t = o_t * tanh(C_t)


#: how the stacked module runs each layer's recurrence: ``"hand"``, :func:`_recurrence`
#: with its backward written out (per step one fused pointwise kernel each way where
#: :func:`fused_cell` finds them, and W_hh's gradient as one product over all steps);
#: ``"autograd"``, :func:`_autograd_recurrence`; ``"auto"`` (the default), "hand" where the
#: fused kernels run (float32 on CUDA), else "autograd" (on the CPU, with no fused kernel,
#: the written-out backward measures no faster). Under bf16 autocast always "autograd".
RECURRENCE = "auto"

_FUSED_CELL: dict[str, bool] = {}

#: torch's fused cell kernels choose 32-bit index arithmetic by the size of their
#: workspace (one step's gates) alone, so a strided input whose offsets reach past this
#: would overflow it: such inputs are made contiguous first
_INDEX32 = 2**31 - 1


def fused_cell(device) -> bool:
    """Whether the stacked recurrence uses torch's fused LSTM cell kernels
    (``aten::_thnn_fused_lstm_cell`` and its backward, what ``nn.LSTMCell`` runs on CUDA)
    on ``device``: probed once per device, on a few rows of random gates against
    :func:`_pointwise`'s and :func:`_pointwise_back`'s formulas written in torch
    operations (to float32 rounding, forward and backward; the gate input strided, as
    training passes it). They are private operators, with a CUDA kernel only: on the
    CPU, where the operator or its CUDA kernel is missing, or where it disagrees, False.
    Any other error (out of memory, a CUDA error) is raised, not cached."""
    import torch

    key = str(device)
    if key not in _FUSED_CELL:
        ok = False
        if torch.device(device).type == "cuda":
            if torch.cuda.is_current_stream_capturing():  # the probe reads its results
                raise SeqbenchError("fused_cell: probe the device before a CUDA graph "
                                    "capture, not during one")
            gen = torch.Generator().manual_seed(0)  # the global random state is untouched
            gx = torch.randn(6, 2, 12, generator=gen).to(device)[:, 1]  # rows 24 apart
            hg = torch.randn(6, 12, generator=gen).to(device)
            c, dh, dc = torch.randn(3, 6, 3, generator=gen).to(device)
            try:
                got, want = [], []
                with torch.autocast("cuda", enabled=False), torch.no_grad():
                    for fused, out in ((True, got), (False, want)):
                        h, c_t, saved = _pointwise(gx, hg, c, fused)
                        out += [h, c_t, *_pointwise_back(dh, dc, c, c_t, saved, fused),
                                *_pointwise_back(dh, None, c, c_t, saved, fused)]
                ok = all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(got, want))
            except (AttributeError, NotImplementedError):  # no operator, or no CUDA kernel
                ok = False
        _FUSED_CELL[key] = ok
    return _FUSED_CELL[key]


def _pointwise(gx_t, hg, c, fused: bool):
    """One LSTM step's pointwise part on rows (R, ·): gates ``gx_t + hg`` (R, 4H) and
    C_{t-1} ``c`` (R, H) -> (h_t, C_t, saved), ``saved`` a tuple of what
    :func:`_pointwise_back` needs. ``fused``: torch's CUDA kernel behind ``nn.LSTMCell``
    (one launch; it saves the activated gates); otherwise the same formulas in torch
    operations (any device and dtype)."""
    import torch

    if fused:
        h, c, gates = torch.ops.aten._thnn_fused_lstm_cell(gx_t, hg, c)
        return h, c, (gates,)
    return _lstm_update(gx_t + hg, c)


def _pointwise_back(dh, dc, c_prev, c, saved, fused: bool):
    """The vector-Jacobian product of :func:`_pointwise`: from dL/dh_t ``dh`` and dL/dC_t
    ``dc`` (None: 0) to (dL/d gates (R, 4H), dL/dC_{t-1}), the gates' gradients taken
    before their activations: dC = dh·o·(1 - tanh²C_t) + dc; d i = dC·C~·i(1-i);
    d f = dC·C_{t-1}·f(1-f); d C~ = dC·i·(1-C~²); d o = dh·tanh(C_t)·o(1-o);
    dC_{t-1} = dC·f."""
    import torch

    if fused:
        d_gates, d_c, _ = torch.ops.aten._thnn_fused_lstm_cell_backward_impl(
            dh, dc, c_prev, c, saved[0], False)
        return d_gates, d_c
    i, f, gg, o, tc = saved
    d_cell = dh * o * (1 - tc * tc)
    if dc is not None:
        d_cell = d_cell + dc
    d_i = d_cell * gg * i * (1 - i)
    d_f = d_cell * c_prev * f * (1 - f)
    d_g = d_cell * i * (1 - gg * gg)
    d_o = dh * tc * o * (1 - o)
    return torch.cat([d_i, d_f, d_g, d_o], dim=-1), d_cell * f


def _fuses(gx, w_hh) -> bool:
    """Whether :func:`_recurrence` runs its steps through the fused kernels: float32 on a
    device where :func:`fused_cell` found them."""
    import torch

    return gx.dtype == w_hh.dtype == torch.float32 and gx.is_cuda and fused_cell(gx.device)


def _recurrence(gx, w_hh, keep: bool, save: bool):
    """The LSTM recurrence of M stacked layers: ``gx`` (M, B, T, 4H) the input part of
    every gate (W_ih x_t + b_ih + b_hh), ``w_hh`` (M, 4H, H). Returns the hidden states
    (M, B, T, H) (with ``keep``; else h_T alone, (M, B, 1, H)) and, with ``save``, what
    the backward of :func:`_recurrence_function` needs: h of every step (M, B, T, H), the
    list of C_{-1}..C_{T-1} (each (M·B, H)) and that of each step's :func:`_pointwise`
    saves (lists: stacking them would copy them)."""
    import torch

    M, B, T, G = gx.shape
    H = G // 4
    fused = _fuses(gx, w_hh)
    whole = fused and gx.numel() > _INDEX32  # steps strided past 32-bit offsets: copied
    w_t = w_hh.transpose(1, 2)  # (M, H, 4H)
    steps = gx.unbind(2)  # T views (M, B, 4H); each reshapes to (M·B, 4H) without a copy
    h = gx.new_zeros(M, B, H)
    c = gx.new_zeros(M * B, H)
    hs, cs, saves = [], [c], []
    for t in range(T):
        hg = torch.bmm(h, w_t).view(M * B, G)  # W_hh h_{t-1}
        x_t = steps[t].reshape(M * B, G)
        h, c, saved = _pointwise(x_t.contiguous() if whole else x_t, hg, c, fused)
        h = h.view(M, B, H)
        if keep or save:
            hs.append(h)
        if save:
            cs.append(c)
            saves.append(saved)
    if not (keep or save):
        return h.unsqueeze(2), None
    Hs = torch.stack(hs, dim=2)  # (M, B, T, H)
    return (Hs if keep else h.unsqueeze(2)), ((Hs, cs, saves) if save else None)


def _autograd_recurrence(gx, w_hh, keep: bool):
    """:func:`_recurrence`'s hidden states, left to autograd to differentiate step by
    step: the default on the CPU, and under bf16 autocast, whose casts it follows (the
    fused kernels want one dtype throughout)."""
    import torch

    M, B, T, G = gx.shape
    # unbound once into T views: indexing gx[:, :, t] inside the loop would make each
    # step's backward a zero-filled gradient of the whole of gx (O(T²) memory traffic);
    # unbind's backward is one stack
    steps = gx.unbind(2)
    w_t = w_hh.transpose(1, 2)  # (M, H, 4H)
    h = gx.new_zeros(M, B, G // 4)
    c = gx.new_zeros(M, B, G // 4)
    outs = []
    for t in range(T):
        h, c, _ = _lstm_update(torch.baddbmm(steps[t], h, w_t), c)  # + W_hh h_{t-1}
        if keep:
            outs.append(h)
    return torch.stack(outs, dim=2) if keep else h.unsqueeze(2)


def _recurrence_function():
    """The autograd Function of :func:`_recurrence` (defined lazily: torch is imported
    only when used).

    Its backward is backpropagation through time by hand: per step one pointwise
    vector-Jacobian product (one kernel on CUDA) and one batched product for dL/dh_{t-1};
    dL/dW_hh is one batched product over all steps at the end, Σ_t dgates_tᵀ h_{t-1}.
    Autograd through the step-by-step loop launches some twenty kernels per step and
    accumulates dW_hh step by step. Each step's saves are freed as the backward pass
    reaches it, so it runs once per forward pass (no ``retain_graph``) and is not
    differentiable itself."""
    import torch
    from torch.autograd.function import once_differentiable

    class Recurrence(torch.autograd.Function):
        @staticmethod
        def forward(ctx, gx, w_hh, keep):
            out, (Hs, cs, saves) = _recurrence(gx, w_hh, keep, save=True)
            ctx.keep = keep
            ctx.fused = _fuses(gx, w_hh)
            ctx.save_for_backward(w_hh, Hs)
            # intermediates, none of them an input or output: held by ctx itself
            ctx.cs, ctx.saves = cs, saves
            return out

        @staticmethod
        @once_differentiable
        def backward(ctx, d_out):
            if ctx.saves is None:
                raise SeqbenchError("the stacked recurrence's backward pass runs once per "
                                    "forward pass (it frees its saves as it goes)")
            w_hh, Hs = ctx.saved_tensors
            Cs, saves = ctx.cs, ctx.saves
            ctx.cs = ctx.saves = None
            M, B, T, H = Hs.shape
            d_gates = [None] * T
            dh = None  # dL/dh_t from step t+1
            dc = None
            for t in reversed(range(T)):
                if ctx.keep:
                    dh = d_out[:, :, t] if dh is None else dh + d_out[:, :, t]
                elif t == T - 1:
                    dh = d_out[:, :, 0]
                # contiguous: a strided d_out could reach past the kernel's 32-bit offsets
                dg, dc = _pointwise_back(dh.reshape(M * B, H).contiguous(), dc, Cs[t],
                                         Cs[t + 1], saves[t], ctx.fused)
                Cs[t + 1] = saves[t] = None  # step t's saves are spent
                d_gates[t] = dg = dg.view(M, B, 4 * H)
                if t:
                    dh = torch.bmm(dg, w_hh)  # dL/dh_{t-1} through W_hh h_{t-1}
            # dL/d gx in one kernel (written step by step into one tensor, it would be
            # one copy kernel per step); the spent saves, as large, are freed by now
            DG = torch.stack(d_gates, dim=2)  # (M, B, T, 4H)
            del d_gates
            # dL/dW_hh = Σ_t dgates_tᵀ h_{t-1}, h_{-1} = 0: one product over all steps,
            # the h's shifted one step (an H-sized copy; DG, 4H wide, is not copied)
            h_prev = torch.cat([Hs.new_zeros(M, B, 1, H), Hs[:, :, :-1]], dim=2)
            d_w = torch.bmm(DG.view(M, B * T, 4 * H).transpose(1, 2),
                            h_prev.view(M, B * T, H))
            return DG, d_w, None

    return Recurrence


def _stacked_module():
    """The torch module class (defined lazily: torch is imported only when used)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    Recurrence = _recurrence_function()

    class StackedLSTM(nn.Module):
        """M :class:`~seqbench.models.torchnet.RecurrentNet` LSTMs stacked along a leading
        model dimension; ``forward`` takes (M, B, T[, D]) inputs."""

        def __init__(self, nets) -> None:
            super().__init__()
            net0 = nets[0]
            self.M = len(nets)
            self.tokens = isinstance(net0.inp, nn.Embedding)
            self.num_layers = net0.core.num_layers
            self.H = net0.core.hidden_size

            def stack(get):
                return nn.Parameter(torch.stack([get(n).detach().clone() for n in nets]))

            if self.tokens:
                self.V = net0.inp.num_embeddings
                self.emb = stack(lambda n: n.inp.weight)  # (M, V, E)
            else:
                self.in_w = stack(lambda n: n.inp.weight)  # (M, E, D)
                self.in_b = stack(lambda n: n.inp.bias)  # (M, E)
            for layer in range(self.num_layers):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    key = f"{name}_l{layer}"
                    setattr(self, key, stack(lambda n, key=key: getattr(n.core, key)))
            self.head_w = stack(lambda n: n.head.weight)  # (M, K, H)
            self.head_b = stack(lambda n: n.head.bias)  # (M, K)
            # on the members' device, as the stacked parameters are
            self.register_buffer("offsets", torch.arange(
                self.M, device=self.head_w.device).view(self.M, 1))

        def keyed(self) -> list[tuple[str, Any]]:
            """(key of the single ``RecurrentNet``'s state dict, stacked parameter) pairs."""
            pairs = ([("inp.weight", self.emb)] if self.tokens
                     else [("inp.weight", self.in_w), ("inp.bias", self.in_b)])
            for layer in range(self.num_layers):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    key = f"{name}_l{layer}"
                    pairs.append((f"core.{key}", getattr(self, key)))
            return pairs + [("head.weight", self.head_w), ("head.bias", self.head_b)]

        def member_state(self, m: int, grad: bool = False) -> dict[str, Any]:
            """Member m's weights (or, with ``grad``, their gradients), keyed as the state
            dict of a single ``RecurrentNet``."""
            return {k: (p.grad if grad else p)[m].detach().clone() for k, p in self.keyed()}

        def embed(self, x):
            """(M, B, T) tokens or (M, B, T, D) reals -> (M, B, T, E)."""
            M, B, T = x.shape[:3]
            if self.tokens:
                # member m's row v of its table is row m·V + v of the flattened tables;
                # index_select's backward is an index_add (no host sync, capturable)
                rows = (x.reshape(M, B * T) + self.offsets * self.V).reshape(-1)
                table = self.emb.reshape(M * self.V, -1)
                return table.index_select(0, rows).reshape(M, B, T, -1)
            # e = W_in x + b_in, one batched product per member
            e = torch.baddbmm(self.in_b.unsqueeze(1), x.reshape(M, B * T, -1),
                              self.in_w.transpose(1, 2))  # (M, B·T, E)
            return e.reshape(M, B, T, -1)

        def hidden(self, x, last_only: bool = False):
            """(M, B, T[, D]) -> (M, B, T, H) hidden states of the last layer; with
            ``last_only``, its state after the last step alone, (M, B, 1, H): no per-step
            outputs are kept, so in the backward pass each h_t gets its gradient from the
            next step only (no per-step accumulation)."""
            z = self.embed(x)
            M, B, T = z.shape[:3]
            H = self.H
            for layer in range(self.num_layers):
                keep = not (last_only and layer == self.num_layers - 1)
                w_ih = getattr(self, f"weight_ih_l{layer}")  # (M, 4H, In)
                w_hh = getattr(self, f"weight_hh_l{layer}")  # (M, 4H, H)
                b = getattr(self, f"bias_ih_l{layer}") + getattr(self, f"bias_hh_l{layer}")
                # the input part of every gate at every step at once: W_ih x_t + b_ih + b_hh
                gx = torch.baddbmm(b.unsqueeze(1), z.reshape(M, B * T, -1),
                                   w_ih.transpose(1, 2)).reshape(M, B, T, 4 * H)
                if not self._by_hand(gx, w_hh):
                    z = _autograd_recurrence(gx, w_hh, keep)
                elif torch.is_grad_enabled() and (gx.requires_grad or w_hh.requires_grad):
                    z = Recurrence.apply(gx, w_hh, keep)  # (M, B, T or 1, H)
                else:
                    z = _recurrence(gx, w_hh, keep, save=False)[0]
            return z

        def _by_hand(self, gx, w_hh) -> bool:
            """Whether :meth:`hidden` runs :func:`_recurrence` (its backward by hand)
            rather than :func:`_autograd_recurrence`, by :data:`RECURRENCE`."""
            if RECURRENCE not in ("auto", "hand", "autograd"):
                raise SeqbenchError(f"seqbench.models.stacked.RECURRENCE: expected 'auto', "
                                    f"'hand' or 'autograd', got {RECURRENCE!r}")
            if torch.is_autocast_enabled(gx.device.type):
                return False  # bf16: the autograd loop follows autocast's casts
            return RECURRENCE == "hand" or (RECURRENCE == "auto" and _fuses(gx, w_hh))

        def head(self, h):
            """(M, B, T, H) -> (M, B, T, K): y = W_out h + b_out per member."""
            M, B, T, H = h.shape
            out = torch.baddbmm(self.head_b.unsqueeze(1), h.reshape(M, B * T, H),
                                self.head_w.transpose(1, 2))
            return out.reshape(M, B, T, -1)

        def member_losses(self, x, y, m, classes: bool, last_only: bool = False):
            """Mean loss over each member's scored positions: (M,). ``y`` holds valid
            values everywhere (unscored positions are zeroed once, on load).
            ``last_only``: the caller knows that exactly the last step of every row is
            scored (many-to-one), so the head and the loss see that step alone."""
            if last_only:
                y, m = y[:, :, -1:], m[:, :, -1:]
            out = self.head(self.hidden(x, last_only)).float()  # (M, B, T or 1, K)
            K = out.shape[-1]
            if classes:
                per = F.cross_entropy(out.reshape(-1, K), y.reshape(-1),
                                      reduction="none").reshape(m.shape)  # -log p(y_t | x_1..t)
            else:
                per = F.mse_loss(out, y, reduction="none").mean(-1)  # (1/K) Σ_k (ŷ - y)²
            w = m.to(per.dtype)
            n_scored = w.sum((1, 2)).clamp_min(1.0)  # (M,)
            return (per * w).sum((1, 2)) / n_scored, n_scored

    return StackedLSTM


class MemberSplits:
    """The members' splits (one array each of X, Y, mask per member) as the training loop
    reads them, in the network's dtypes (float32 real inputs, long class ids or float32
    real targets) with unscored targets read as 0 (so the masked loss is finite); never a
    whole second copy of a split on one device.

    On a CUDA device: one stacked tensor per array, X (M, N, T[, D]), Y (M, N, T[, K]),
    mask (M, N, T), filled member by member and chunk by chunk from the numpy arrays
    (:func:`~seqbench.models.recurrent._fill`), so the host never holds a stacked copy;
    batches are gathered on the device (:func:`_rows`, capturable). On the CPU: the
    members' numpy arrays themselves, shared without a copy, each batch's rows taken
    per member, then cast and stacked (the values the stacked tensor would give).
    """

    def __init__(self, datas: list[SeqData], device, stacked: bool | None = None) -> None:
        """``stacked``: the stacked-tensor layout (None: on a CUDA device only; True on
        the CPU gives the CUDA layout there, which the tests compare with the CPU one)."""
        import torch

        from .recurrent import _fill

        self.M, self.N, self.T = len(datas), *datas[0].X.shape[:2]
        # every member's split scores exactly the last step of each row (many-to-one)
        self.many_to_one = all(_many_to_one(d.mask) for d in datas)
        self.real = datas[0].input_kind == "real"
        self.classes = datas[0].target_kind == "classes"
        self.parts = None
        if not (device.type != "cpu" if stacked is None else stacked):
            self.parts = [(torch.as_tensor(d.X), torch.as_tensor(d.Y), torch.as_tensor(d.mask))
                          for d in datas]  # shared with the numpy arrays
            return
        d0 = datas[0]
        x_dtype = torch.float32 if self.real else torch.long
        y_dtype = torch.long if self.classes else torch.float32
        self.X = torch.empty((self.M, *d0.X.shape), dtype=x_dtype, device=device)
        self.Y = torch.empty((self.M, *d0.Y.shape), dtype=y_dtype, device=device)
        self.Mk = torch.empty((self.M, *d0.mask.shape), dtype=torch.bool, device=device)
        for m, d in enumerate(datas):
            _fill(self.X[m], d.X)
            _fill(self.Y[m], d.Y)
            _fill(self.Mk[m], d.mask)
            unscored = ~self.Mk[m] if self.classes else ~self.Mk[m].unsqueeze(-1)
            self.Y[m].masked_fill_(unscored, 0)  # -1 ids or NaN where nothing is scored
        # flat index of each member's row 0 (M, 1), for _rows
        self.first = (torch.arange(self.M, device=device) * self.N).view(self.M, 1)

    def _cast(self, x, y, mk):
        """One member's rows in the network's dtypes, unscored targets 0."""
        import torch

        x = net_input(x)
        if self.classes:
            return x, torch.where(mk, y, 0).long(), mk
        return x, torch.where(mk.unsqueeze(-1), y, 0.0).float(), mk

    def _per_member(self, pick):
        """(X, Y, mask) stacked over members of ``pick(m, array)`` (CPU path)."""
        import torch

        got = [self._cast(pick(m, X), pick(m, Y), pick(m, Mk))
               for m, (X, Y, Mk) in enumerate(self.parts)]
        return tuple(torch.stack(a) for a in zip(*got))

    def rows(self, idx):
        """Member m's rows ``idx[m]``, for every m: (M, B) -> x (M, B, T[, D]), y, mask."""
        if self.parts is not None:
            return self._per_member(lambda m, A: A.index_select(0, idx[m]))
        return (_rows(self.X, idx, self.first), _rows(self.Y, idx, self.first),
                _rows(self.Mk, idx, self.first))

    def chunk(self, s: int, e: int):
        """Sequences s..e-1 of every member: x (M, e-s, T[, D]), y, mask."""
        if self.parts is not None:
            return self._per_member(lambda m, A: A[s:e])
        return self.X[:, s:e], self.Y[:, s:e], self.Mk[:, s:e]


def _rows(A, idx, first):
    """``A[m, idx[m]]`` for every member: (M, N, ...) and (M, B) -> (M, B, ...), by one
    index_select on the flattened rows; ``first`` (M, 1) = m·N, the flat index of each
    member's row 0, made once on the device (no host sync or copy here: capturable)."""
    M, N = A.shape[:2]
    flat = A.reshape(M * N, *A.shape[2:])
    return flat.index_select(0, (idx + first).reshape(-1)).reshape(M, idx.shape[1], *A.shape[2:])


def shared_params(model) -> dict[str, Any]:
    """``model``'s parameters that every member of its stack must share (all but
    :data:`PER_MEMBER`)."""
    return {k: v for k, v in model.get_params().items() if k not in PER_MEMBER}


class MemberOptimizer:
    """Adam or SGD over stacked parameters (leading dimension M), member m with learning
    rate ``lr[m]`` and weight decay ``weight_decay[m]``: torch's ``Adam`` (defaults
    betas (0.9, 0.999), eps 1e-8, no amsgrad) and ``SGD`` (no momentum) update rules,
    elementwise, so member m's slice moves as its own optimiser would move it alone.

    Everything stays on the device (the step count too), so :meth:`step` can be captured
    in a CUDA graph.

    Adam, with g = grad + λ_m θ (L2 weight decay, as torch's ``Adam``):
    m ← β1 m + (1-β1) g;  v ← β2 v + (1-β2) g²;
    θ ← θ - (lr_m / (1-β1^t)) · m / (sqrt(v) / sqrt(1-β2^t) + eps).
    SGD: θ ← θ - lr_m (grad + λ_m θ).
    """

    def __init__(self, params, kind: str, lr, weight_decay, betas=(0.9, 0.999),
                 eps: float = 1e-8) -> None:
        import torch

        self.params = list(params)
        device = self.params[0].device
        self.kind = kind
        self.M = self.params[0].shape[0]
        # per-member scalars in float64 (torch's optimisers hold them as Python floats)
        self.lr = torch.tensor(lr, dtype=torch.float64, device=device)  # (M,)
        self.wd = torch.tensor(weight_decay, dtype=torch.float32, device=device)  # (M,)
        self.any_wd = any(w != 0 for w in weight_decay)
        self.beta1, self.beta2 = betas
        self.eps = eps
        if kind == "adam":
            self.t = torch.zeros((), dtype=torch.float64, device=device)
            self.exp_avg = [torch.zeros_like(p) for p in self.params]
            self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _per(self, x, p):
        """A per-member (M,) vector shaped to broadcast over ``p`` (M, ...)."""
        return x.to(p.dtype).view(self.M, *([1] * (p.dim() - 1)))

    def step(self) -> None:
        import torch

        with torch.no_grad():
            if self.kind == "sgd":
                for p in self.params:
                    g = p.grad
                    if self.any_wd:
                        g = g + self._per(self.wd, p) * p  # grad + λ_m θ
                    p.sub_(self._per(self.lr, p) * g)  # θ ← θ - lr_m g
                return
            b1, b2 = self.beta1, self.beta2
            self.t.add_(1)
            step_size = self.lr / (1 - torch.pow(b1, self.t))  # lr_m / (1 - β1^t), (M,)
            bc2_sqrt = torch.sqrt(1 - torch.pow(b2, self.t))  # sqrt(1 - β2^t)
            for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
                g = p.grad
                if self.any_wd:
                    g = g + self._per(self.wd, p) * p
                m.lerp_(g, 1 - b1)  # m ← β1 m + (1-β1) g
                v.mul_(b2).addcmul_(g, g, value=1 - b2)  # v ← β2 v + (1-β2) g²
                denom = (v.sqrt() / bc2_sqrt.to(p.dtype)).add_(self.eps)
                p.sub_(self._per(step_size, p) * (m / denom))


def _check(models, datas, valids, shape) -> None:
    if not models:
        raise SeqbenchError("fit_stacked: expected at least one model, got none")
    if not all(isinstance(m, LSTMModel) for m in models):
        raise SeqbenchError("fit_stacked: expected LSTMModel instances, got "
                            + ", ".join(sorted({type(m).__name__ for m in models})))
    if len({type(m) for m in models}) != 1:
        raise SeqbenchError("fit_stacked: expected models of one class, got "
                            + ", ".join(sorted({type(m).__name__ for m in models})))
    ref = shared_params(models[0])
    for i, m in enumerate(models):
        p = shared_params(m)
        if p != ref:
            diff = sorted(k for k in p if p[k] != ref[k])
            raise SeqbenchError(f"fit_stacked: model {i} differs from model 0 in {diff}; "
                                "expected models that differ only in "
                                + ", ".join(PER_MEMBER))
        m._check_params()
    if models[0].tbptt is not None:
        raise SeqbenchError(f"fit_stacked: expected tbptt=None, got {models[0].tbptt!r}")
    if len(datas) != len(models):
        raise SeqbenchError(f"fit_stacked: expected {len(models)} training sets (one per "
                            f"model), got {len(datas)}")
    if valids is not None and len(valids) != len(models):
        raise SeqbenchError(f"fit_stacked: expected {len(models)} validation sets, "
                            f"got {len(valids)}")
    for what, group in (("data", datas), ("valid", valids or [])):
        if any(d is None for d in group):
            raise SeqbenchError(f"fit_stacked: {what} holds None; expected SeqData for every "
                                "model (or valid=None for all)")
        for i, d in enumerate(group):
            if not isinstance(d, SeqData):
                raise SeqbenchError(f"fit_stacked: {what}[{i}]: expected SeqData, "
                                    f"got {type(d).__name__}")
            for attr in ("input_kind", "target_kind", "input_size", "target_size"):
                if getattr(d, attr) != getattr(datas[0], attr):
                    raise SeqbenchError(f"fit_stacked: {what}[{i}].{attr}: expected "
                                        f"{getattr(datas[0], attr)!r} as in data[0], "
                                        f"got {getattr(d, attr)!r}")
            if d.X.shape != group[0].X.shape:
                raise SeqbenchError(f"fit_stacked: {what}[{i}].X: expected shape "
                                    f"{group[0].X.shape} as {what}[0], got {d.X.shape}")
    why = models[0].incompatibility(datas[0], shape)
    if why:
        raise IncompatibleError(why)


def fit_stacked(models: list[LSTMModel], datas: list[SeqData],
                valids: list[SeqData] | None = None, *, shape: str | None = None,
                cuda_graph: bool | str = "auto", warmup: int = 3) -> list[Any]:
    """Fit ``models[m]`` on ``datas[m]`` (early stopping on ``valids[m]``) for every m, all
    in one stacked module; return, per member, the fitted model (the same object, with the
    fitted attributes a single ``fit`` sets) or the :class:`DivergedError` it met.

    The models must be of one ``LSTMModel`` class and differ only in the parameters of
    :data:`PER_MEMBER` (each member trains with its own seed, learning rate, weight
    decay, clipping threshold, patience, step budget and forget-gate bias); the training
    sets (and the validation sets) must share one shape. ``cuda_graph``:
    ``"auto"`` captures the train step in a CUDA graph on a CUDA device (after ``warmup``
    eager steps, which are real training steps; ``warmup >= 1``), ``False`` never,
    ``True`` requires CUDA. On a CUDA device it runs with that device current
    (:func:`~seqbench.models.recurrent.current_device`).
    """
    _check(models, datas, valids, shape)
    device = resolve_device(models[0].device)
    with current_device(device):
        return _fit_stacked(models, datas, valids, device, cuda_graph, warmup)


def _fit_stacked(models, datas, valids, device, cuda_graph, warmup) -> list[Any]:
    """:func:`fit_stacked` once its inputs are checked and its device resolved."""
    import torch

    M = len(models)
    proto = models[0]
    if cuda_graph not in (True, False, "auto"):
        raise SeqbenchError(f"fit_stacked: cuda_graph: expected True, False or 'auto', "
                            f"got {cuda_graph!r}")
    if cuda_graph is True and device.type != "cuda":
        raise SeqbenchError(f"fit_stacked: cuda_graph=True needs a CUDA device, got {device}")
    if not (isinstance(warmup, int) and not isinstance(warmup, bool) and warmup >= 1):
        # a capture must follow eager steps on its stream: they create what a capture
        # cannot (cuBLAS's handle and workspace for that stream, autograd's lazy state)
        raise SeqbenchError(f"fit_stacked: warmup: expected an int >= 1, got {warmup!r}")
    use_graph = device.type == "cuda" and cuda_graph in (True, "auto")
    data0 = datas[0]
    for model, data in zip(models, datas):
        model.input_kind_, model.input_size_ = data.input_kind, data.input_size
        model.target_kind_, model.target_size_ = data.target_kind, data.target_size

    # the single models' initial networks, built by the code LSTMModel._fit uses
    nets = [model._initial_net(data, device) for model, data in zip(models, datas)]
    seeds = [seed_of(model.random_state) for model in models]
    # the gradient-decay curve of each untrained network, the members advanced together
    for model, decay in zip(models, members_decay(models, nets, datas)):
        model.grad_decay_init_ = decay
    stacked = _stacked_module()(nets).to(device)
    params = list(stacked.parameters())
    opt = MemberOptimizer(params, proto.optimizer, [float(m.lr) for m in models],
                          [float(m.weight_decay) for m in models])
    classes = data0.target_kind == "classes"
    splits = MemberSplits(datas, device)  # no second copy of a split on one device
    V = MemberSplits(valids, device) if valids is not None else None
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    N = splits.N
    B, steps_per_epoch, _ = proto._step_budget(N)  # batch_size is shared: B, epochs too
    budgets = [model._step_budget(N)[2] for model in models]  # each member's step budget
    max_steps = max(budgets)

    def autocast():
        if proto.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=not use_graph)

    running = torch.zeros(M, device=device)
    idx = torch.zeros(M, B, dtype=torch.long, device=device)  # the batch rows (static)
    # each member's clipping threshold; inf (min(1, inf) = 1) where it has none
    clips = [float("inf") if m.clip_norm is None else float(m.clip_norm) for m in models]
    clip = None if all(c == float("inf") for c in clips) else torch.tensor(clips, device=device)

    def train_step() -> None:
        """One step of every member from the rows in ``idx``; no host sync."""
        with autocast():
            # many-to-one training splits: the head and loss at the last step only
            loss, _ = stacked.member_losses(*splits.rows(idx), classes, splits.many_to_one)
        loss.sum().backward()  # member m's parameters get member m's gradient only
        if clip is not None:
            # per-member norm over that member's parameters: ||g_m|| = sqrt(Σ_p ||g_{p,m}||²)
            sq = torch.stack([p.grad.reshape(M, -1).square().sum(1) for p in params]).sum(0)
            coef = (clip / (sq.sqrt() + 1e-6)).clamp(max=1.0)  # min(1, c_m / (||g_m|| + 1e-6))
            for p in params:
                p.grad.mul_(coef.view(M, *([1] * (p.dim() - 1))))
        opt.step()
        running.add_(loss.detach())

    graph = None
    side = torch.cuda.Stream(device) if use_graph else None
    curves: list[list[dict[str, Any]]] = [[] for _ in range(M)]
    best_score = [float("inf")] * M
    best_state: list[dict | None] = [None] * M
    best_step = [0] * M
    bad = [0] * M
    done = [False] * M
    n_steps = [0] * M
    errors: list[Exception | None] = [None] * M
    last_eval = [0] * M  # running[m] sums the steps since member m's last evaluation
    step = 0
    stacked.train()
    while step < max_steps and not all(done):
        perms = torch.stack([torch.randperm(N, generator=g) for g in gens]).to(device)  # (M, N)
        for b in range(steps_per_epoch):
            idx.copy_(perms[:, b * B:(b + 1) * B], non_blocking=True)
            if not use_graph:
                opt.zero_grad()
                train_step()
            elif step < warmup:  # eager warm-up steps on a side stream, as graphs need
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    opt.zero_grad()
                    train_step()
                torch.cuda.current_stream(device).wait_stream(side)
            else:
                if graph is None:
                    opt.zero_grad()
                    graph = torch.cuda.CUDAGraph()
                    # captured on the warm-up stream, which lives on the module's device:
                    # torch.cuda.graph's own capture stream is made once per process on
                    # whatever device is current then (cuda:0 for a job on cuda:1)
                    with torch.cuda.graph(graph, stream=side):
                        train_step()
                graph.replay()  # on the capture device's current stream
            step += 1
            # a member is evaluated every eval_every steps and at the end of its budget
            due = [not done[m] and (step % proto.eval_every == 0 or step >= budgets[m])
                   for m in range(M)]
            if any(due):
                sums = running.tolist()
                running.mul_(torch.tensor([not d for d in due], device=device))  # restart due
                valid_loss = None
                if V is not None:
                    stacked.eval()
                    with autocast():
                        valid_loss = _evaluate(stacked, V)
                    stacked.train()
                for m in range(M):
                    if not due[m]:
                        continue
                    train_loss = sums[m] / (step - last_eval[m])
                    last_eval[m] = step
                    point = {"step": step, "train_loss": train_loss}
                    score = train_loss
                    if not np.isfinite(score):
                        errors[m] = DivergedError(f"training loss became {score} at step {step}")
                    elif valid_loss is not None:
                        point["valid_loss"] = score = valid_loss[m]
                        if not np.isfinite(score):
                            errors[m] = DivergedError(
                                f"validation loss became {score} at step {step}")
                    n_steps[m] = step
                    if errors[m] is not None:
                        done[m] = True
                        continue
                    curves[m].append(point)
                    if score < best_score[m] - 1e-6:
                        best_score[m], best_step[m], bad[m] = score, step, 0
                        best_state[m] = stacked.member_state(m)
                    else:
                        bad[m] += 1
                    if bad[m] >= models[m].patience or step >= budgets[m]:
                        done[m] = True
            if all(done) or step >= max_steps:
                break
    out: list[Any] = []
    for m, model in enumerate(models):
        if errors[m] is not None:
            out.append(errors[m])
            continue
        net = nets[m]
        net.load_state_dict(best_state[m] if best_state[m] is not None
                            else stacked.member_state(m))
        net.eval()
        model.net_ = net
        model.device_ = str(device)
        model.curve_ = curves[m]
        model.best_step_ = best_step[m]
        model.n_steps_ = n_steps[m]
        model.stacked_ = M
        out.append(model)
    return out


def _evaluate(stacked, splits: MemberSplits) -> list[float]:
    """Each member's mean loss over the scored positions of its whole split, in slices of
    :func:`~seqbench.models.recurrent.eval_rows` sequences over all members (that // M
    per member: the working memory of one model's evaluation slice, whatever M; the gate
    pre-activations of every step are (M, B, T, 4H))."""
    import torch

    from .recurrent import eval_rows

    batch = max(1, eval_rows(splits.T, stacked.H) // splits.M)
    total = torch.zeros(splits.M, device=next(stacked.parameters()).device)
    count = torch.zeros_like(total)
    with torch.inference_mode():
        for s in range(0, splits.N, batch):
            x, y, mk = splits.chunk(s, s + batch)
            loss, n = stacked.member_losses(x, y, mk, splits.classes)
            total += loss * n  # loss was divided by max(n, 1)
            count += mk.sum((1, 2)).float()
    return (total / count.clamp_min(1.0)).tolist()


def members_decay(models: list[LSTMModel], nets, datas: list[SeqData]) -> list[dict]:
    """The gradient-decay curve of each network ``nets[m]`` on ``datas[m]``, by
    ``models[m]``'s settings (``grad_decay_max_k``, ``grad_decay_sequences``,
    ``grad_decay_rows``): the members of equal settings measured together by
    :func:`member_gradient_decay`."""
    groups: dict[tuple[int, int, int], list[int]] = {}
    for m, model in enumerate(models):
        key = (model.grad_decay_max_k, model.grad_decay_sequences, model.grad_decay_rows)
        groups.setdefault(key, []).append(m)
    out: list[dict] = [{}] * len(models)
    for (max_k, n_sequences, max_rows), ms in groups.items():
        got = member_gradient_decay([nets[m] for m in ms], [datas[m].X for m in ms],
                                    [datas[m].mask for m in ms], max_k=max_k,
                                    n_sequences=n_sequences, max_rows=max_rows)
        for m, decay in zip(ms, got):
            out[m] = decay
    return out


#: floats of one network's share of the largest tensor in member_gradient_decay, times the
#: networks advanced together: at most this many (64 MiB of float32)
DECAY_FLOATS = 2**24


def _members_cell_step(cores):
    """One step of M ``nn.LSTM`` cores of one shape, advanced together: ``step(x (M, R, E),
    s (M, R, S)) -> s' (M, R, S)``, the state laid out as :func:`gradient_decay`'s
    (h of every layer, then C of every layer), torch's gate order i, f, g, o; weights
    detached (vector-Jacobian products through it compute no weight gradients)."""
    import torch

    L, H = cores[0].num_layers, cores[0].hidden_size

    def stacked(name):
        return [torch.stack([getattr(c, f"{name}_l{layer}").detach() for c in cores])
                for layer in range(L)]

    w_ih = [w.transpose(1, 2) for w in stacked("weight_ih")]  # (M, In, 4H)
    w_hh = [w.transpose(1, 2) for w in stacked("weight_hh")]  # (M, H, 4H)
    bias = [(a + b).unsqueeze(1) for a, b in zip(stacked("bias_ih"), stacked("bias_hh"))]

    def step(x, s):
        parts = s.split(H, dim=-1)  # split, not slices (see recurrent._cell_step)
        hs, cs = [], []
        for layer in range(L):
            h, c = parts[layer], parts[L + layer]
            g = torch.baddbmm(torch.baddbmm(bias[layer], x, w_ih[layer]), h, w_hh[layer])
            h, c, _ = _lstm_update(g, c)
            hs.append(h)
            cs.append(c)
            x = h  # the next layer's input
        return torch.cat(hs + cs, dim=-1)

    return step


def member_gradient_decay(nets, Xs: list, masks: list, *, max_k: int, n_sequences: int,
                          max_rows: int) -> list[dict[str, list]]:
    """:func:`~seqbench.models.recurrent.gradient_decay` of each LSTM ``nets[m]`` (one
    shape, one device) on ``Xs[m]``, ``masks[m]``, the networks whose K and number of
    sequences agree advanced together, a group of them at a time (``DECAY_FLOATS``): one
    batched product per step for all of them, where one network at a time launches as
    many kernels each (on a GPU the diagnostic's time is those launches). The same norms
    as one network at a time, to float32 rounding."""
    import torch

    out: list[dict[str, list] | None] = [None] * len(nets)
    groups: dict[tuple[int, int], list[int]] = {}
    plans = []
    for m, (net, mask) in enumerate(zip(nets, masks)):
        rows, ends, K = decay_plan(net, mask, max_k, n_sequences, max_rows)
        plans.append((rows, ends, K))
        if K < 1:
            out[m] = {"k": [], "norm": []}
        else:
            groups.setdefault((K, len(rows)), []).append(m)
    S, H = state_size(nets[0].core), nets[0].core.hidden_size
    for (K, n), members in groups.items():
        per_net = n * S * max(S, 4 * H)  # the largest tensor of a step, per network
        size = max(1, DECAY_FLOATS // per_net)
        for c in range(0, len(members), size):
            chunk = members[c:c + size]
            device = next(nets[chunk[0]].parameters()).device
            with torch.autocast(device.type, enabled=False):
                starts = [decay_start(nets[m], Xs[m], plans[m][0], plans[m][1], K)
                          for m in chunk]
                s0 = torch.stack([s for s, _ in starts])  # (M, n, S)
                window = torch.stack([w for _, w in starts])  # (M, n, K, E)
                step = _members_cell_step([nets[m].core for m in chunk])
                values = decay_norms(step, s0, window).cpu().tolist()  # (M, K)
            for m, norms in zip(chunk, values):
                out[m] = {"k": list(range(1, K + 1)), "norm": [float(v) for v in norms]}
    return out


def member_gradients(models: list[LSTMModel], datas: list[SeqData]) -> list[dict[str, Any]]:
    """The gradient of each member's loss on its first training batch, at initialisation,
    as computed by the stacked module, keyed like the single network's parameters (for
    checking the stacked computation against single models). CPU or the models' device;
    no clipping, no optimiser step."""
    import torch

    _check(models, datas, None, None)
    proto = models[0]
    device = resolve_device(proto.device)
    nets = [model._initial_net(data, device) for model, data in zip(models, datas)]
    stacked = _stacked_module()(nets).to(device)
    splits = MemberSplits(datas, device)
    N = splits.N
    B = min(proto.batch_size, N)
    idx = torch.stack([torch.randperm(N, generator=torch.Generator().manual_seed(
        seed_of(m.random_state)))[:B] for m in models]).to(device)
    loss, _ = stacked.member_losses(*splits.rows(idx), splits.classes, splits.many_to_one)
    loss.sum().backward()
    return [{"loss": float(loss[m].detach()), **stacked.member_state(m, grad=True)}
            for m in range(len(models))]
