"""Recurrent networks trained with torch's fused modules (cuDNN on GPU, oneDNN on CPU).

One network shape serves every recurrent family: an input layer (an embedding for
tokens, a linear projection for real inputs), a recurrent core (``nn.LSTM``,
``nn.GRU`` or ``nn.RNN``), and a linear head. The families: :class:`LSTMModel`,
:class:`GRUModel`, :class:`RNNModel` (tanh) and :class:`IRNNModel` (ReLU, identity
recurrent weights). The lecture's equations for each cell, checked against these
fused modules, are in :mod:`seqbench.models.cells`.

Training (shared by every family): mini-batches drawn by a per-epoch permutation
from a generator seeded by ``random_state``; Adam or SGD; gradient-norm clipping;
a budget of ``max_steps`` optimiser steps (and optionally ``max_epochs``); the
validation loss (the training loss of the last ``eval_every`` steps when no
validation split is given) is read every ``eval_every`` steps, the best weights are
kept and restored at the end, and training stops after ``patience`` evaluations
without improvement. The loss is the mean over the scored positions of the batch
(cross-entropy for classes, squared error averaged over the K outputs for reals),
with the head applied at the scored positions only. No step waits for the device:
the scored positions are counted on the host (from the numpy mask) and gathered on
the device by a sort of the mask, where boolean indexing would synchronise; the loss
is read back only at the evaluations. A NaN or infinite training or validation loss
raises :class:`~seqbench.errors.DivergedError`.

Memory: no split is held twice on one device. On the CPU, training and validation read
the split's numpy arrays in place (tensors sharing their memory, float64 inputs left
float64) and cast each batch (float32 inputs, long or float32 targets) after taking its
rows, which gives the values a whole-split cast would; on a CUDA device each split is
moved once, cast on the way in chunks of ``MOVE_CHUNK_BYTES``, and batches are taken
there. Evaluation and prediction take slices of at most 1024 sequences, fewer where T is
long (:func:`eval_rows`: the gate pre-activations of every step of a slice stay within
``EVAL_BYTES``), and prediction fills one output array.

Precision: ``precision="bf16"`` runs the training and validation forward passes under
``torch.autocast(bfloat16)``; the weights stay float32 and the loss is computed in
float32. The linear input projection (real inputs) and the head run in bfloat16; a token
embedding is a lookup that autocast leaves in float32. The recurrent core runs in
bfloat16 where autocast runs the fused RNN in bfloat16 (the CPU: the LSTM and plain RNN
cores, and a GRU core when its input comes in bfloat16, from the linear projection; after
an embedding the GRU runs in float32), else in float32: torch's autocast has run the
cuDNN RNN in float16 whatever dtype it was asked for (probed once per device by
:func:`seqbench.models.torchnet.autocast_rnn_dtype`). Prediction runs in float32.

With ``tbptt=U`` the gradient is truncated: the sequence is processed in chunks of
U steps counted from its first step (steps 0..U-1, U..2U-1, ...), the hidden state
carried forward but detached between chunks, the chunks' gradients summed, and one
optimiser step taken per batch (so the step budget means the same with and without
truncation). A scored step t therefore sends its gradient back to the start of its
own chunk, (t mod U) + 1 steps, not U steps: between 1 and U, set by where t falls
(a last step t = 24 with U = 4, 12 or 24 reaches back 1 step; with U = 25 the whole
sequence). Chunks of a batch without scored positions add nothing to the gradient:
those before the last scored chunk only carry the state forward (run without a
graph), those after it are skipped. With ``U >= T`` the gradient is exactly full BPTT.

Gradient decay (the lecture's vanishing-gradient bound, measured): for the last
scored step T of a sequence (steps counted from 1), ``||∂s_T/∂s_{T-k}||_F`` for
k = 1..K, averaged over a few sequences (up to 8, and at most 256 // S for a state of
size S: 2 for a default LSTM, whose state (h, C) has 128 values; 4 for a default GRU or
RNN), with K = min(T - 1, 100), T the smallest over those sequences. The state ``s_t``
is everything the recurrence carries from step t to t+1: h_t for the GRU and plain
RNNs, the pair (h_t, C_t) as one vector of size 2H for the LSTM (so the cell's
constant-error path is included), concatenated over layers when ``num_layers > 1``. It is computed
once before training (``grad_decay_init_``, on the first training sequences) and
on request by :meth:`RecurrentModel.diagnostics`, never inside the training loop.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np

from ..data import SeqData
from ..errors import DivergedError, SeqbenchError
from .base import SeqModel, is_device_name, is_int, is_real, need, seed_of


def resolve_device(device: str):
    """``"auto"`` -> the first CUDA device when there is one, else the CPU.

    For a CUDA device, ``CUBLAS_WORKSPACE_CONFIG`` is set to ``:4096:8`` unless it is set
    already: with cuBLAS's default workspaces the order of a reduction (and so the
    rounding) can change between runs (torch's reproducibility notes); the variable is
    read when cuBLAS starts in the process, so it holds for jobs that are the first to use
    CUDA there, as in seqbench's worker processes."""
    import torch

    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise SeqbenchError(
                f"device: expected 'auto', 'cpu' or 'cuda[:i]', got {device!r}") from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise SeqbenchError(f"device: {device!r} asked for, but torch sees no CUDA device")
    if dev.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return dev


def net_input(x):
    """A batch of inputs as the network takes them: real inputs as float32; token ids as
    they are when int32 or int64 (what ``nn.Embedding`` indexes with), else (uint8,
    int16, ...: any integer type ``SeqData`` accepts) as int64."""
    import torch

    if x.is_floating_point():
        return x.float()
    return x if x.dtype in (torch.int32, torch.int64) else x.long()


def current_device(device):
    """A context in which ``device`` is torch's current CUDA device (nothing on the CPU), so
    that what torch makes on the current device (cuBLAS handles, streams, a CUDA graph's
    capture stream) is made on the job's GPU, not on cuda:0, when a job runs on another
    GPU of the machine."""
    import torch

    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _build_net(cell: str, input_kind: str, input_size: int, embed_size: int, hidden_size: int,
               num_layers: int, target_size: int, nonlinearity: str):
    from .torchnet import RecurrentNet

    return RecurrentNet(cell, input_kind, input_size, embed_size, hidden_size, num_layers,
                        target_size, nonlinearity)


#: bytes of a numpy array moved (and cast) at once by _on_device
MOVE_CHUNK_BYTES = 64 * 2**20
#: bytes of the gate pre-activations of one evaluation slice (see eval_rows)
EVAL_BYTES = 64 * 2**20


def eval_rows(T: int, hidden_size: int, limit: int = 1024) -> int:
    """Sequences per evaluation slice: at most ``limit``, and at most as many as keep the
    input part of the gates of every step, (rows, T, 4H) float32 (torch computes it for
    all steps at once), within ``EVAL_BYTES``; at least 1."""
    return int(max(1, min(limit, EVAL_BYTES // max(1, T * 4 * hidden_size * 4))))


def _on_device(a: np.ndarray, device, dtype=None):
    """The numpy array ``a`` as one tensor of ``dtype`` (None: its own) on ``device``, filled
    ``MOVE_CHUNK_BYTES`` of ``a`` at a time: torch makes a copy to another device with a
    change of dtype through a temporary as large as the copy (it converts on one side
    first), so chunks keep that temporary chunk-sized. On the CPU in ``a``'s own dtype it
    is ``a`` itself, shared without a copy."""
    import torch

    src = torch.as_tensor(a)  # shares memory with a
    dtype = src.dtype if dtype is None else dtype
    if src.device == device and src.dtype == dtype:
        return src
    out = torch.empty(src.shape, dtype=dtype, device=device)
    _fill(out, a)
    return out


def _fill(out, a: np.ndarray) -> None:
    """Copy the numpy array ``a`` into the tensor ``out`` (same shape, any dtype and
    device), ``MOVE_CHUNK_BYTES`` of ``a`` at a time (a cast makes chunk-sized
    temporaries only)."""
    import torch

    src = torch.as_tensor(a)  # shares memory with a
    rows = max(1, MOVE_CHUNK_BYTES // max(a[:1].nbytes, 1))
    for s in range(0, len(a), rows):
        out[s:s + rows].copy_(src[s:s + rows])


# -- gradient decay ----------------------------------------------------------------------
def _state_vector(state, L: int, H: int):
    """torch's recurrent state -> one vector per sequence: h (L, B, H) -> (B, L·H); an LSTM's
    (h, c) -> (B, 2·L·H) = [h of every layer, c of every layer]."""
    import torch

    parts = state if isinstance(state, tuple) else (state,)
    return torch.cat([p.transpose(0, 1).reshape(p.shape[1], L * H) for p in parts], dim=1)


def _state_tensors(s, lstm: bool, L: int, H: int):
    """Inverse of :func:`_state_vector`: (B, S) -> h (L, B, H), or (h, c) for an LSTM."""
    def unflat(v):
        return v.reshape(v.shape[0], L, H).transpose(0, 1).contiguous()

    if lstm:
        return unflat(s[:, :L * H]), unflat(s[:, L * H:])
    return unflat(s)


def _cell_step(core):
    """One step of ``core`` (a torch ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN``, every layer) as a
    function of the whole state vector: ``step(x_t (B, E), s (B, S)) -> s' (B, S)`` (the
    layout of :func:`_state_vector`), by torch's fused single-step cells (``torch.lstm_cell``
    and its kin, what ``nn.LSTMCell`` runs) on the core's own weights, detached: a
    vector-Jacobian product through it computes no weight gradients, and it avoids the
    per-call set-up of a whole-sequence cuDNN call for one step."""
    import torch

    L, H = core.num_layers, core.hidden_size
    lstm = isinstance(core, torch.nn.LSTM)
    weights = [[getattr(core, f"{name}_l{layer}").detach()
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
               for layer in range(L)]
    if lstm:
        cell = torch.lstm_cell
    elif isinstance(core, torch.nn.GRU):
        cell = torch.gru_cell
    else:
        cell = torch.rnn_tanh_cell if core.nonlinearity == "tanh" else torch.rnn_relu_cell

    def step(x, s):
        # split, not slices: its backward is one cat, each slice's a zero-filled copy of s
        parts = s.split(H, dim=1)  # h of every layer, then (an LSTM) C of every layer
        hs, cs = [], []
        for layer in range(L):
            if lstm:
                h, c = cell(x, (parts[layer], parts[L + layer]), *weights[layer])
                cs.append(c)
            else:
                h = cell(x, parts[layer], *weights[layer])
            hs.append(h)
            x = h  # the next layer's input
        return torch.cat(hs + cs, dim=1)

    return step


def gradient_decay(net, X: np.ndarray, mask: np.ndarray, *, max_k: int = 100,
                   n_sequences: int = 8, max_rows: int = 1024) -> dict[str, list]:
    """``||∂s_T/∂s_{T-k}||_F`` for k = 1..K, averaged over a few sequences of ``X``.

    ``net`` is a :class:`~seqbench.models.torchnet.RecurrentNet`; ``s_t`` is its whole
    recurrent state after step t (h, or the LSTM's (h, C) as one vector; every layer);
    T is each sequence's last scored step (0-based index ``t_end``), and
    K = min(min over the sequences of t_end, ``max_k``), the lecture's T - 1 capped.
    The sequences are the first ``n`` of ``X`` with a scored position, where
    ``n = min(n_sequences, max(1, max_rows // S))`` for a state of size S (the exact
    Jacobians are computed for S seed directions at once, so this bounds the batch at
    ``max_rows`` rows). Deterministic: no randomness is drawn.

    Exact, by reverse-mode accumulation: a forward pass without a graph stores the
    states s_{T-K} .. s_T; then, from G_0 = I (S x S), G_k = G_{k-1} · ∂s_{T-k+1}/∂s_{T-k}
    is one vector-Jacobian product through one step of the cell (re-run from the stored
    state, by :func:`_cell_step`), so memory stays at one step's graph. Returns
    ``{"k": [1..K], "norm": [...]}`` (plain lists; empty when K < 1).
    """
    import torch

    rows, ends, K = decay_plan(net, mask, max_k, n_sequences, max_rows)
    if K < 1:
        return {"k": [], "norm": []}
    device = next(net.parameters()).device
    with torch.autocast(device.type, enabled=False):
        s0, window = decay_start(net, X, rows, ends, K)
        values = decay_norms(_cell_step(net.core), s0, window).cpu().tolist()
    return {"k": list(range(1, K + 1)), "norm": [float(v) for v in values]}


def state_size(core) -> int:
    """S, the size of the whole recurrent state of a torch ``nn.LSTM``/``GRU``/``RNN``
    core: h of every layer, and an LSTM's C too (the layout of :func:`_state_vector`)."""
    import torch

    return core.num_layers * core.hidden_size * (2 if isinstance(core, torch.nn.LSTM) else 1)


def decay_plan(net, mask: np.ndarray, max_k: int, n_sequences: int,
               max_rows: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The sequences :func:`gradient_decay` uses and its K: (row indices, each row's last
    scored step t_end, K); K < 1 when there is nothing to measure."""
    S = state_size(net.core)
    has_scored = np.flatnonzero(mask.any(axis=1))
    n = min(n_sequences, max(1, max_rows // S), len(has_scored))
    rows = has_scored[:n]
    ends = np.array([np.flatnonzero(mask[i])[-1] for i in rows], dtype=np.int64)
    return rows, ends, int(min(ends.min(), max_k)) if n else 0


def decay_start(net, X: np.ndarray, rows: np.ndarray, ends: np.ndarray, K: int):
    """Without a graph: s_{T-K} of each of the n sequences ``rows`` (n, S), and the
    inputs of their last K steps through the input layer, (n, K, E)."""
    import torch

    core = net.core
    L, H = core.num_layers, core.hidden_size
    device = next(net.parameters()).device
    n = len(rows)
    S = state_size(core)
    with torch.no_grad():
        e = net.inp(net_input(torch.as_tensor(X[rows], device=device)))  # (n, T, E)
        starts = ends - K  # s_{T-K} is the state after inputs 0..t_end-K
        s0 = torch.zeros(n, S, device=device)
        for length in np.unique(starts + 1):
            group = np.flatnonzero(starts + 1 == length)
            _, st = core(e[group, :length])
            s0[torch.as_tensor(group, device=device)] = _state_vector(st, L, H)
        window = torch.stack([e[i, ends[i] - K + 1:ends[i] + 1] for i in range(n)])
    return s0, window


def decay_norms(step, s0, window):
    """``||∂s_T/∂s_{T-k}||_F`` for k = 1..K, each the mean over the n sequences: a (K,)
    tensor, or (M, K) for M networks advanced together. ``s0`` (..., n, S) the states
    s_{T-K}, ``window`` (..., n, K, E) the inputs of the last K steps, ``step(x, s)`` one
    step of the cell on (..., R, E) inputs and (..., R, S) states (the leading dimension,
    if any, indexes the networks)."""
    import torch

    *lead, n, S = s0.shape
    K = window.shape[-2]
    with torch.no_grad():
        states = [s0]  # s_{T-K}, ..., s_T
        for j in range(K):
            states.append(step(window[..., j, :], states[-1]))
    with torch.enable_grad():
        # (..., n·S, S): row (i, a) = e_a^T
        G = torch.eye(S, device=s0.device).repeat(*lead, n, 1)
        # G is carried scaled to norm 1 per sequence, its scale as a float64 log: the
        # product of K Jacobians falls below float32's range (1e-38) within tens of steps
        # of a tanh RNN, and would read 0 there
        log_scale = torch.zeros((*lead, n), dtype=torch.float64, device=s0.device)
        norms = []
        for k in range(1, K + 1):
            j = K - k  # the step from states[j] = s_{T-k} to states[j + 1]
            s_prev = states[j].repeat_interleave(S, dim=-2).requires_grad_(True)
            x_j = window[..., j, :].repeat_interleave(S, dim=-2)
            (G,) = torch.autograd.grad(step(x_j, s_prev), s_prev, G)
            # G = ∂s_T/∂s_{T-k} / scale, stacked per sequence: Frobenius norm, times the
            # scale, mean over sequences
            size = torch.linalg.vector_norm(G.reshape(*lead, n, S * S), dim=-1)
            log_scale = log_scale + torch.log(size.double())  # -inf for an exact 0
            norms.append(torch.exp(log_scale).mean(-1))
            G = G / torch.where(size > 0, size, 1.0).repeat_interleave(S, dim=-1)[..., None]
    return torch.stack(norms, dim=-1)


def _many_to_one(mask: np.ndarray) -> bool:
    """Whether exactly the last step of every row of ``mask`` (N, T) is scored."""
    return bool(mask[:, -1].all()) and not mask[:, :-1].any()


class RecurrentModel(SeqModel):
    """A recurrent network (``cell`` = ``"lstm"``, ``"gru"`` or ``"rnn"``) with a head on
    every scored position, trained as the module docstring describes. Subclasses fix
    ``cell`` (and ``nonlinearity``) and may re-initialise weights in
    :meth:`_init_weights`. Fitted state: ``net_``, ``curve_``, ``best_step_`` (the step
    whose weights were kept), ``n_steps_``, ``device_`` and ``grad_decay_init_``.

    Parameters
    ----------
    Each value is checked at fit (:meth:`_check_params`), and when the model is built by
    name (:func:`~seqbench.registry.make_model`). Defaults in brackets; the subclasses
    take the same parameters (:class:`RNNModel` and :class:`IRNNModel` with another
    default ``lr``), and some take one more of their own.

    hidden_size : [64] H, the units of each recurrent layer (the size of h_t, and of the
        LSTM's cell state C_t); the head reads the last layer's h_t. An int >= 1.
    num_layers : [1] recurrent layers stacked in the core (torch's ``num_layers``): each
        layer after the first reads the h_t of the layer below. An int >= 1.
    embed_size : [None] E, the width of the input layer's output, which the core reads:
        the embedding size for token inputs (``nn.Embedding(input_size, E)``), the
        output size of the linear projection for real inputs (``nn.Linear(D, E)``).
        ``None`` means E = ``hidden_size``; else an int >= 1.
    optimizer : ["adam"] ``"adam"`` (``torch.optim.Adam``, torch's default betas and eps)
        or ``"sgd"`` (``torch.optim.SGD``, no momentum).
    lr : [0.01] the learning rate, constant throughout training (no schedule); a float
        > 0. :class:`RNNModel` defaults to 0.003, :class:`IRNNModel` to 0.001.
    weight_decay : [0.0] the optimiser's ``weight_decay``: torch adds ``weight_decay * w``
        to the gradient of every parameter (the input layer, the core, the head, biases
        included); for Adam too, so it is an L2 penalty, not AdamW's decoupled decay. A
        float >= 0.
    batch_size : [64] sequences per optimiser step: B = ``min(batch_size, N)`` for N
        training sequences. Each epoch draws a new permutation of the training sequences
        and cuts it into ``N // B`` full batches; the rest of the permutation (fewer than
        B sequences) goes unused in that epoch. An int >= 1.
    max_steps : [1000] the budget of optimiser steps, one per batch (with ``tbptt`` too).
        An int >= 1.
    max_epochs : [None] if set, the budget is at most ``max_epochs`` epochs, that is
        ``max_epochs * (N // B)`` steps, when that is fewer than ``max_steps``. None or
        an int >= 1.
    eval_every : [50] optimiser steps between evaluations. At every ``eval_every``-th
        step, and at the last step of the budget, a point is appended to ``curve_``:
        ``step``, ``train_loss`` (the mean of the batch losses since the previous
        evaluation) and, when fit is given a validation split, ``valid_loss`` (the mean
        loss over every scored position of that split). The point's score, the
        validation loss (else that training loss), decides which weights are kept and
        counts towards ``patience``; a NaN or infinite loss raises
        :class:`~seqbench.errors.DivergedError` there. An int >= 1.
    patience : [10] training stops once ``patience`` evaluations in a row have not
        lowered the best score by more than 1e-6, that is after ``patience * eval_every``
        steps without improvement; a counter of evaluations, not of steps or epochs.
        Whether it stops early or not, the weights of the best evaluation are restored
        at the end (``best_step_``). An int >= 1.
    clip_norm : [1.0] before each optimiser step the gradients of all parameters are
        scaled so that their global L2 norm is at most ``clip_norm``
        (``torch.nn.utils.clip_grad_norm_``). None: no clipping; else a float > 0.
    tbptt : [None] U, truncated backpropagation through time: the sequences are processed
        in chunks of U steps from their first step, with the state detached between
        chunks, so a scored step's gradient reaches back to its chunk's start, between 1
        and U steps (module docstring). None, or U at least the data's T, is full BPTT;
        else an int >= 1.
    precision : ["fp32"] ``"fp32"``, or ``"bf16"``: the training and validation forward
        passes run under ``torch.autocast(bfloat16)`` with float32 weights and a float32
        loss (which layers then run in bfloat16: module docstring); prediction and the
        gradient-decay diagnostic run in float32 either way.
    device : ["auto"] ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:i"``, resolved at fit
        (:func:`resolve_device`): ``"auto"`` is ``"cuda"``, torch's current CUDA device,
        when torch sees one, else the CPU; a CUDA device asked for on a machine without
        one is an error at fit. ``device_`` records the device used.
    random_state : [None] the seed: None (taken as 0, so unseeded runs repeat too), an
        int in ``[0, 2**32)`` or a numpy ``RandomState`` (an int drawn from it each time
        a seed is taken). The seed initialises the weights (``torch.manual_seed`` inside
        ``torch.random.fork_rng``, so the global random state is left as it was) and the
        torch generator that draws each epoch's permutation.
    """

    _tags = {"uses_torch": True, "device_aware": True, "seeded": True}
    cell = "lstm"
    nonlinearity = "tanh"
    #: gradient decay: largest k, number of sequences, and row budget (see gradient_decay)
    grad_decay_max_k = 100
    grad_decay_sequences = 8
    grad_decay_rows = 256

    def __init__(
        self,
        hidden_size: int = 64,
        num_layers: int = 1,
        embed_size: int | None = None,
        optimizer: str = "adam",
        lr: float = 0.01,
        weight_decay: float = 0.0,
        batch_size: int = 64,
        max_steps: int = 1000,
        max_epochs: int | None = None,
        eval_every: int = 50,
        patience: int = 10,
        clip_norm: float | None = 1.0,
        tbptt: int | None = None,
        precision: str = "fp32",
        device: str = "auto",
        random_state: int | None = None,
    ) -> None:
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.embed_size = embed_size
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.max_epochs = max_epochs
        self.eval_every = eval_every
        self.patience = patience
        self.clip_norm = clip_norm
        self.tbptt = tbptt
        self.precision = precision
        self.device = device
        self.random_state = random_state

    # -- hooks -----------------------------------------------------------------------
    def _init_weights(self, net) -> None:
        """Re-initialise ``net`` after torch's default init (identity init, say)."""

    # -- validation --------------------------------------------------------------------
    def _check_params(self) -> None:
        """Raise a one-line :class:`SeqbenchError` for the first bad parameter."""
        need(self, is_int(self.hidden_size, 1), "hidden_size", "an int >= 1")
        need(self, is_int(self.num_layers, 1), "num_layers", "an int >= 1")
        need(self, self.embed_size is None or is_int(self.embed_size, 1), "embed_size",
             "None or an int >= 1")
        need(self, self.optimizer in ("adam", "sgd"), "optimizer", "'adam' or 'sgd'")
        need(self, is_real(self.lr) and self.lr > 0, "lr", "a float > 0")
        need(self, is_real(self.weight_decay) and self.weight_decay >= 0, "weight_decay",
             "a float >= 0")
        need(self, is_int(self.batch_size, 1), "batch_size", "an int >= 1")
        need(self, is_int(self.max_steps, 1), "max_steps", "an int >= 1")
        need(self, self.max_epochs is None or is_int(self.max_epochs, 1), "max_epochs",
             "None or an int >= 1")
        need(self, is_int(self.eval_every, 1), "eval_every", "an int >= 1")
        need(self, is_int(self.patience, 1), "patience", "an int >= 1")
        need(self, self.clip_norm is None or (is_real(self.clip_norm) and self.clip_norm > 0),
             "clip_norm", "None or a float > 0")
        need(self, self.tbptt is None or is_int(self.tbptt, 1), "tbptt", "None or an int >= 1")
        need(self, self.precision in ("fp32", "bf16"), "precision", "'fp32' or 'bf16'")
        need(self, is_device_name(self.device), "device", "'auto', 'cpu' or 'cuda[:i]'")
        seed_of(self.random_state, self)

    # -- training ----------------------------------------------------------------------
    def _position_loss(self, out, y, mean: bool = False):
        """Loss at each of P positions: (P, K) outputs, (P,) class ids or (P, K) targets ->
        (P,); cross-entropy for classes, squared error averaged over the K outputs for reals.
        ``mean``: their mean over the P positions instead, a scalar, in one reduction."""
        import torch.nn.functional as F

        out = out.float()
        if self.target_kind_ == "classes":  # -log p(y_t | x_1..t)
            return F.cross_entropy(out, y, reduction="mean" if mean else "none")
        if mean:  # the mean over P of (1/K) Σ_k is the mean over all P·K squared errors
            return F.mse_loss(out, y)
        return F.mse_loss(out, y, reduction="none").mean(-1)  # (1/K) Σ_k (ŷ_tk - y_tk)²

    def _last_step_loss(self, net, x, y):
        """Backpropagate the mean loss of a many-to-one batch (exactly the last step of
        every row scored) and return it (detached): ``x`` (B, T[, D]), ``y`` the targets
        of the last step only, (B[, K]). The head at the last step and one mean-reducing
        loss, as a hand-written loop does it: no mask, and no count from the host."""
        x, y = self._cast(x, y)
        h, _ = net.hidden(x)  # (B, T, H)
        loss = self._position_loss(net.head(h[:, -1]), y, mean=True)
        loss.backward()
        return loss.detach()

    def _masked_loss(self, net, h, y, m, k: int):
        """Σ over the scored positions of the loss, with the head applied there only.

        ``h`` (B, T', H), ``y`` (B, T'[, K]), ``m`` (B, T') the mask on the device and
        ``k`` its number of scored positions, known on the host. The scored positions are
        gathered by a stable sort of the mask (their k indices come first) rather than by
        boolean indexing, which would make the host wait for the device to learn k.
        (Many-to-one batches take :meth:`_last_step_loss` instead: ``h[:, -1]``, the
        same positions in the same order without the sort, which on the CPU costs 0.12 ms
        of a 3.5 ms step.)"""
        import torch

        B, Tc = m.shape
        h = h.reshape(B * Tc, h.shape[-1])  # (B·T', H)
        y = y.reshape(B * Tc, *y.shape[2:])  # (B·T'[, K])
        if k < B * Tc:
            idx = torch.argsort(m.reshape(-1).to(torch.int8), descending=True, stable=True)[:k]
            h, y = h.index_select(0, idx), y.index_select(0, idx)  # (k, H), (k[, K])
        return self._position_loss(net.head(h), y).sum()

    def _tensors(self, data: SeqData, device, lazy: bool = False):
        """A split as tensors (X, Y, M) on ``device``, never a whole second copy of it on the
        host or on the device.

        On a CUDA device: the one device copy, in the network's dtypes (see :meth:`_cast`),
        filled chunk by chunk (:func:`_on_device`). On the CPU with ``lazy`` (what fit
        uses): the numpy arrays themselves, shared without a copy in their own dtypes
        (float64 inputs stay float64), each batch cast by :meth:`_cast` after its rows are
        taken, which gives the same values as casting the whole split first. On the CPU
        without ``lazy``: cast whole (a float32 copy of float64 inputs), for callers that
        hand the tensors to the network directly."""
        import torch

        if lazy and device.type == "cpu":
            return torch.as_tensor(data.X), torch.as_tensor(data.Y), torch.as_tensor(data.mask)
        x_dtype = torch.float32 if data.input_kind == "real" else None
        y_dtype = torch.long if data.target_kind == "classes" else torch.float32
        return (_on_device(data.X, device, x_dtype), _on_device(data.Y, device, y_dtype),
                _on_device(data.mask, device, torch.bool))

    def _cast(self, x, y):
        """One batch in the network's dtypes: :func:`net_input`, long class ids or float32
        real targets; tensors already so are returned as they are (no copy)."""
        return net_input(x), (y.long() if self.target_kind_ == "classes" else y.float())

    def _batch_loss(self, net, x, y, m, mask: np.ndarray):
        """Backpropagate the mean loss over the scored positions of one batch and return it
        (detached). ``m`` is the batch's mask on the device, ``mask`` the same as a numpy
        array, from which the host reads counts without waiting for the device. With
        ``tbptt=U < T`` the sequences are cut into chunks of U steps, the state detached
        between chunks; chunks without scored positions skip their backward pass (before
        the last scored chunk) or all work (after it)."""
        import torch

        T = x.shape[1]
        U = self.tbptt
        if (U is None or U >= T) and _many_to_one(mask):
            return self._last_step_loss(net, x, y[:, -1])
        x, y = self._cast(x, y)  # (B, T[, D]), (B, T[, K])
        n_scored = max(int(mask.sum()), 1)
        if U is None or U >= T:
            h, _ = net.hidden(x)  # (B, T, H)
            loss = self._masked_loss(net, h, y, m, int(mask.sum())) / n_scored
            loss.backward()
            return loss.detach()
        counts = mask.sum(axis=0)  # (T,) scored positions per step
        starts = [s for s in range(0, T, U) if counts[s:s + U].any()]
        total = torch.zeros((), device=x.device)
        state = None
        done = 0  # the state carries the inputs before step `done`
        for s in starts:
            if s > done:  # no scored position in [done, s): carry the state, no graph
                with torch.no_grad():
                    _, state = net.hidden(x[:, done:s], state)
            h, state = net.hidden(x[:, s:s + U], state)  # (B, U, H)
            k = int(counts[s:s + U].sum())
            loss = self._masked_loss(net, h, y[:, s:s + U], m[:, s:s + U], k) / n_scored
            loss.backward()
            total = total + loss.detach()
            state = tuple(t.detach() for t in state) if isinstance(state, tuple) else state.detach()
            done = s + U
        return total

    def _evaluate_loss(self, net, X, Y, M, mask: np.ndarray, batch: int | None = None) -> float:
        """Mean loss over the scored positions of a whole split (``mask`` = M on the host),
        ``batch`` sequences at a time (None: :func:`eval_rows`)."""
        import torch

        batch = batch or eval_rows(X.shape[1], self.hidden_size)
        total = torch.zeros((), device=X.device)
        with torch.inference_mode():
            for s in range(0, X.shape[0], batch):
                x, y = self._cast(X[s:s + batch], Y[s:s + batch])
                h, _ = net.hidden(x)
                k = int(mask[s:s + batch].sum())
                total += self._masked_loss(net, h, y, M[s:s + batch], k)
        return float(total) / max(int(mask.sum()), 1)

    def _fit(self, data: SeqData, valid: SeqData | None) -> None:
        self._check_params()
        device = resolve_device(self.device)
        with current_device(device):
            self._fit_on(data, valid, device)

    def _initial_net(self, data: SeqData, device):
        """The untrained network for ``data`` on ``device``, its weights drawn under
        ``random_state`` inside ``fork_rng`` (the global random state is left as it was);
        stacked training builds each member's network with this too."""
        import torch

        embed = self.embed_size or self.hidden_size
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed_of(self.random_state))
            net = _build_net(self.cell, data.input_kind, data.input_size, embed, self.hidden_size,
                             self.num_layers, data.target_size, self.nonlinearity)
            self._init_weights(net)
        return net.to(device)

    def _fit_on(self, data: SeqData, valid: SeqData | None, device) -> None:
        import torch

        seed = seed_of(self.random_state)
        net = self._initial_net(data, device)
        # the gradient-decay curve of the untrained network (deterministic, no RNG drawn)
        self.grad_decay_init_ = gradient_decay(
            net, data.X, data.mask, max_k=self.grad_decay_max_k,
            n_sequences=self.grad_decay_sequences, max_rows=self.grad_decay_rows)
        gen = torch.Generator().manual_seed(seed)
        if self.optimizer == "adam":
            opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.SGD(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        X, Y, M = self._tensors(data, device, lazy=True)  # no second copy of the split
        V = (*self._tensors(valid, device, lazy=True), valid.mask) if valid is not None else None
        N = X.shape[0]
        B, steps_per_epoch, max_steps = self._step_budget(N)
        # every batch many-to-one (the adding problem, Jane recall, ...), with full BPTT
        last_only = (self.tbptt is None or self.tbptt >= data.T) and _many_to_one(data.mask)
        autocast = (
            torch.autocast(device.type, dtype=torch.bfloat16)
            if self.precision == "bf16" else contextlib.nullcontext()
        )

        curve: list[dict[str, Any]] = []
        best = (float("inf"), None, 0)
        bad = 0
        running = torch.zeros((), device=device)
        since = 0
        step = 0
        net.train()
        while step < max_steps:
            perm_host = torch.randperm(N, generator=gen)
            perm = perm_host.to(device)
            for b in range(steps_per_epoch):
                idx = perm[b * B:(b + 1) * B]
                opt.zero_grad(set_to_none=True)
                if last_only:  # no mask or count per step: the host's work is the launches
                    with autocast:
                        loss = self._last_step_loss(net, X[idx], Y[idx, -1])
                else:
                    mask = data.mask[perm_host[b * B:(b + 1) * B].numpy()]  # (B, T), host
                    with autocast:
                        loss = self._batch_loss(net, X[idx], Y[idx], M[idx], mask)
                if self.clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), self.clip_norm)
                opt.step()
                running += loss
                since += 1
                step += 1
                last = step >= max_steps
                if step % self.eval_every == 0 or last:
                    train_loss = float(running) / since
                    running.zero_()
                    since = 0
                    if not np.isfinite(train_loss):
                        raise DivergedError(f"training loss became {train_loss} at step {step}")
                    point = {"step": step, "train_loss": train_loss}
                    if V is not None:
                        net.eval()
                        with autocast:
                            point["valid_loss"] = self._evaluate_loss(net, *V)
                        net.train()
                        score = point["valid_loss"]
                        if not np.isfinite(score):
                            raise DivergedError(f"validation loss became {score} at step {step}")
                    else:
                        score = train_loss
                    curve.append(point)
                    if score < best[0] - 1e-6:
                        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                        best, bad = (score, state, step), 0
                    else:
                        bad += 1
                    if bad >= self.patience:
                        last = True
                if last:
                    break
            if step >= max_steps or bad >= self.patience:
                break
        if best[1] is not None:
            net.load_state_dict(best[1])
        net.eval()
        self.net_ = net
        self.device_ = str(device)
        self.curve_ = curve
        self.best_step_ = best[2]
        self.n_steps_ = step

    def _step_budget(self, n: int) -> tuple[int, int, int]:
        """(batch size, steps per epoch, optimiser steps) for ``n`` training sequences:
        ``max_steps``, capped at ``max_epochs`` epochs when that is set."""
        batch = min(self.batch_size, n)
        per_epoch = max(n // batch, 1)
        steps = self.max_steps
        if self.max_epochs is not None:
            steps = min(steps, self.max_epochs * per_epoch)
        return batch, per_epoch, steps

    # -- diagnostics -------------------------------------------------------------------
    def _diagnostics(self, data: SeqData) -> dict[str, Any]:
        """``{"grad_decay": {"k": [...], "init": [...], "trained": [...]}}``: the norm
        ``||∂s_T/∂s_{T-k}||_F`` (module docstring) at initialisation (measured in fit on
        the first training sequences, ``grad_decay_init_``) and with the fitted weights
        (on the first sequences of ``data``), for the k both cover."""
        trained = gradient_decay(self.net_, data.X, data.mask, max_k=self.grad_decay_max_k,
                                 n_sequences=self.grad_decay_sequences,
                                 max_rows=self.grad_decay_rows)
        return self.decay_diagnostics(trained)

    def decay_diagnostics(self, trained: dict[str, list]) -> dict[str, Any]:
        """:meth:`diagnostics` from the curve of the fitted network, ``trained`` (as
        :func:`gradient_decay` returns it; stacked training measures its members'
        together)."""
        self._check_fitted()
        init = self.grad_decay_init_
        K = min(len(init["k"]), len(trained["k"]))
        return {"grad_decay": {"k": list(range(1, K + 1)), "init": init["norm"][:K],
                               "trained": trained["norm"][:K]}}

    # -- prediction --------------------------------------------------------------------
    def _outputs(self, X: np.ndarray, batch: int | None = None, how: str = "raw") -> np.ndarray:
        """Head outputs at every step, ``batch`` sequences at a time (None:
        :func:`eval_rows`), each batch reduced before the next: ``how="raw"``, (N, T, K)
        float32 logits or real predictions; ``"proba"``, their softmax (N, T, K) float32;
        ``"ids"``, the class of the highest logit (N, T) int64."""
        import torch

        net = self.net_
        device = next(net.parameters()).device
        N, T = X.shape[:2]
        batch = batch or eval_rows(T, self.hidden_size)
        if how == "ids":
            out = np.empty((N, T), dtype=np.int64)  # (N, T)
        else:
            out = np.empty((N, T, self.target_size_), dtype=np.float32)  # (N, T, K)
        with torch.inference_mode():
            for s in range(0, N, batch):
                x = net_input(torch.as_tensor(X[s:s + batch], device=device))
                h, _ = net.hidden(x)
                z = net.head(h).float()  # (B, T, K)
                if how == "proba":
                    z = torch.softmax(z, dim=-1)
                elif how == "ids":
                    z = z.argmax(dim=-1)  # (B, T)
                out[s:s + batch] = z.cpu().numpy()
        return out

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._outputs(X, how="proba")

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._outputs(X, how="ids" if self.target_kind_ == "classes" else "raw")

    def _n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.net_.parameters()))

    def __getstate__(self):
        state = super().__getstate__()
        net = state.get("net_")
        if net is not None and next(net.parameters()).device.type != "cpu":
            # pickle a CPU copy so a model fitted on a GPU loads anywhere
            import copy

            state = dict(state)
            state["net_"] = copy.deepcopy(net).to("cpu")
        return state


def _set_second_gate_bias(net, hidden_size: int, value: float) -> None:
    """Start the second gate of torch's layout (the LSTM's forget gate f in i, f, g, o; the
    GRU's update gate z in r, z, n; rows H..2H) at bias ``value``: every layer's input-side
    bias b_i* is set to it and the recurrent-side b_h* zeroed, so the two sum to it."""
    import torch

    H = hidden_size
    with torch.no_grad():
        for name, p in net.core.named_parameters():
            if name.startswith("bias_ih"):
                p[H:2 * H].fill_(value)
            elif name.startswith("bias_hh"):
                p[H:2 * H].zero_()


def _need_real(model, name: str) -> None:
    need(model, is_real(getattr(model, name)), name, "a float")


class LSTMModel(RecurrentModel):
    """LSTM (Hochreiter & Schmidhuber 1997) in torch's fused ``nn.LSTM``.

    Gates i, f, o, candidate C~ and the updates C_t = f_t * C_{t-1} + i_t * C~_t,
    h_t = o_t * tanh(C_t), as in the lecture (:func:`seqbench.models.cells.lstm_cell`).
    Initialisation: torch's default (every weight and bias uniform in ±1/sqrt(H)), except
    that the forget-gate bias starts at ``forget_bias`` (1.0 by default, Jozefowicz et
    al. 2015; torch's two forget biases, ``b_if`` set and ``b_hf`` zeroed, sum to it), so
    the cell keeps its contents at initialisation. For the gradient-decay diagnostic
    the state is the pair (h_t, C_t) as one vector.

    Parameters
    ----------
    Those of :class:`RecurrentModel`, with the same defaults (``lr=0.01``), and:

    forget_bias : [1.0] the forget-gate bias at initialisation, a finite number: in
        every layer ``b_if`` is set to it and ``b_hf`` zeroed (so ``forget_bias=0``
        zeroes both, unlike torch's default).
    """

    cell = "lstm"

    def __init__(self, hidden_size: int = 64, num_layers: int = 1, embed_size: int | None = None,
                 optimizer: str = "adam", lr: float = 0.01, weight_decay: float = 0.0,
                 batch_size: int = 64, max_steps: int = 1000, max_epochs: int | None = None,
                 eval_every: int = 50, patience: int = 10, clip_norm: float | None = 1.0,
                 tbptt: int | None = None, precision: str = "fp32", device: str = "auto",
                 random_state: int | None = None, forget_bias: float = 1.0) -> None:
        super().__init__(hidden_size, num_layers, embed_size, optimizer, lr, weight_decay,
                         batch_size, max_steps, max_epochs, eval_every, patience, clip_norm,
                         tbptt, precision, device, random_state)
        self.forget_bias = forget_bias

    def _init_weights(self, net) -> None:
        _set_second_gate_bias(net, self.hidden_size, self.forget_bias)  # i, f, g, o: f

    def _check_params(self) -> None:
        super()._check_params()
        _need_real(self, "forget_bias")


class GRUModel(RecurrentModel):
    """GRU (Cho et al. 2014) in torch's fused ``nn.GRU``.

    torch's GRU resets the state *after* the recurrent product and lets z weight the old
    state: n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn)),
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}; the lecture's form resets before it,
    tanh(W·[r_t * h_{t-1}, x_t]), with z weighting the candidate (the difference is
    spelled out in :mod:`seqbench.models.cells`). Initialisation: torch's default, every
    weight and bias uniform in ±1/sqrt(H), except that the update-gate bias starts at
    ``update_bias`` (1.0 by default; torch's two z biases, ``b_iz`` set and ``b_hz``
    zeroed, sum to it), so that at initialisation z_t leans towards keeping h_{t-1} — the
    GRU's analogue of the LSTM's forget-gate bias (``update_bias=None`` leaves the torch
    default). For the gradient-decay diagnostic the state is h_t.

    Parameters
    ----------
    Those of :class:`RecurrentModel`, with the same defaults (``lr=0.01``), and:

    update_bias : [1.0] the update-gate (z) bias at initialisation: a finite number (in
        every layer ``b_iz`` is set to it and ``b_hz`` zeroed, so 0 starts z_t at 1/2, as
        ``forget_bias=0`` does the LSTM's f_t), or ``None`` to leave both at torch's
        default (uniform in ±1/sqrt(H)).
    """

    cell = "gru"
    version = 2  # 2: update_bias=0 sets the z biases to 0 (it meant None before)

    def __init__(self, hidden_size: int = 64, num_layers: int = 1, embed_size: int | None = None,
                 optimizer: str = "adam", lr: float = 0.01, weight_decay: float = 0.0,
                 batch_size: int = 64, max_steps: int = 1000, max_epochs: int | None = None,
                 eval_every: int = 50, patience: int = 10, clip_norm: float | None = 1.0,
                 tbptt: int | None = None, precision: str = "fp32", device: str = "auto",
                 random_state: int | None = None, update_bias: float | None = 1.0) -> None:
        super().__init__(hidden_size, num_layers, embed_size, optimizer, lr, weight_decay,
                         batch_size, max_steps, max_epochs, eval_every, patience, clip_norm,
                         tbptt, precision, device, random_state)
        self.update_bias = update_bias

    def _init_weights(self, net) -> None:
        if self.update_bias is not None:
            _set_second_gate_bias(net, self.hidden_size, self.update_bias)  # r, z, n: z

    def _check_params(self) -> None:
        super()._check_params()
        if self.update_bias is not None:
            _need_real(self, "update_bias")


class RNNModel(RecurrentModel):
    """Plain (Elman) RNN with tanh units in torch's fused ``nn.RNN``.

    h_t = tanh(W·[h_{t-1}, x_t] + b) (:func:`seqbench.models.cells.rnn_cell`).

    Initialisation: torch's default, every weight and bias uniform in ±1/sqrt(H). Since
    tanh' <= 1, ``||∂h_T/∂h_{T-k}||_2`` is bounded by ``||W_hh||_2^k``: the lecture's
    vanishing gradient when the recurrent weights are small.

    The default learning rate is 0.003 rather than the other families' 0.01: with Adam
    at 0.01 the tanh RNN often stalls near chance on Jane recall at lag 4 (default
    splits of seeds 0-2, hidden size 64, 300 steps: accuracy 0.10, 0.69 and 0.13), while
    at 0.003 all three seeds reach 1.0 within 600 steps.

    Parameters
    ----------
    Those of :class:`RecurrentModel`, with the same defaults except ``lr=0.003`` (above);
    no others.
    """

    cell = "rnn"
    nonlinearity = "tanh"

    def __init__(self, hidden_size: int = 64, num_layers: int = 1, embed_size: int | None = None,
                 optimizer: str = "adam", lr: float = 0.003, weight_decay: float = 0.0,
                 batch_size: int = 64, max_steps: int = 1000, max_epochs: int | None = None,
                 eval_every: int = 50, patience: int = 10, clip_norm: float | None = 1.0,
                 tbptt: int | None = None, precision: str = "fp32", device: str = "auto",
                 random_state: int | None = None) -> None:
        super().__init__(hidden_size, num_layers, embed_size, optimizer, lr, weight_decay,
                         batch_size, max_steps, max_epochs, eval_every, patience, clip_norm,
                         tbptt, precision, device, random_state)


class IRNNModel(RecurrentModel):
    """IRNN (Le, Jaitly & Hinton 2015): ReLU RNN whose recurrent weights start at identity.

    h_t = max(0, W·[h_{t-1}, x_t] + b), in torch's fused ``nn.RNN``.

    Initialisation (non-default): every recurrent matrix ``W_hh`` is the identity and
    both biases are zero, so at initialisation the recurrence copies its state forward
    and ``∂h_t/∂h_{t-1}`` is the identity on the units that are active (a 0/1 diagonal,
    neither vanishing nor exploding along them); the input weights ``W_ih`` are drawn
    from N(0, ``input_std``²) (std 0.001 by default, as in the Keras reproduction of the
    paper's pixel-by-pixel MNIST experiment), so inputs perturb the state only gently at
    first. The input layer (embedding or linear projection) and the head keep torch's
    defaults.

    Training defaults: the gradient norm is clipped at 1 (``clip_norm=1.0``, as in the
    Keras reproduction), which an unbounded ReLU recurrence needs. The paper trained
    with SGD at learning rates tuned per task by grid search, for its own loss scaling;
    seqbench's loss is a mean over scored positions, so those rates do not carry over,
    and the default here is Adam with ``lr=0.001``. Measured on Jane recall
    at lag 20 (hidden size 64, 2000 training sequences, 1000 steps with early stopping
    off, seeds 0 and 1 for the splits and the model): at ``lr=0.01`` one seed's
    validation loss climbs back from 5e-9 to 0.10 late in training (the best checkpoint,
    at step 800, is the one kept), at ``lr=0.001`` both converge smoothly to below 1e-7.

    Parameters
    ----------
    Those of :class:`RecurrentModel`, with the same defaults except ``lr=0.001`` (above),
    and:

    input_std : [0.001] the standard deviation of the normal initialisation of every
        layer's input weights ``W_ih`` (with ``num_layers > 1``, also the weights from
        the layer below), a finite number >= 0 (0 makes them zero).
    """

    cell = "rnn"
    nonlinearity = "relu"

    def __init__(self, hidden_size: int = 64, num_layers: int = 1, embed_size: int | None = None,
                 optimizer: str = "adam", lr: float = 0.001, weight_decay: float = 0.0,
                 batch_size: int = 64, max_steps: int = 1000, max_epochs: int | None = None,
                 eval_every: int = 50, patience: int = 10, clip_norm: float | None = 1.0,
                 tbptt: int | None = None, precision: str = "fp32", device: str = "auto",
                 random_state: int | None = None, input_std: float = 0.001) -> None:
        super().__init__(hidden_size, num_layers, embed_size, optimizer, lr, weight_decay,
                         batch_size, max_steps, max_epochs, eval_every, patience, clip_norm,
                         tbptt, precision, device, random_state)
        self.input_std = input_std

    def _check_params(self) -> None:
        super()._check_params()
        need(self, is_real(self.input_std) and self.input_std >= 0, "input_std",
             "a float >= 0")

    def _init_weights(self, net) -> None:
        import torch

        with torch.no_grad():
            for name, p in net.core.named_parameters():
                if name.startswith("weight_hh"):
                    p.copy_(torch.eye(p.shape[0]))      # W_hh = I
                elif name.startswith("weight_ih"):
                    p.normal_(0.0, self.input_std)      # W_ih ~ N(0, input_std²)
                else:
                    p.zero_()                           # b_ih = b_hh = 0
