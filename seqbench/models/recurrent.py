"""Recurrent networks trained with torch's fused modules (cuDNN on GPU, oneDNN on CPU).

One network shape serves every recurrent family: an input layer (an embedding for
tokens, a linear projection for real inputs), a recurrent core (``nn.LSTM``,
``nn.GRU`` or ``nn.RNN``), and a linear head applied at the scored positions only.

Training (shared by every family): mini-batches drawn by a per-epoch permutation
from a generator seeded by ``random_state``; Adam or SGD; gradient-norm clipping;
a budget of ``max_steps`` optimiser steps (and optionally ``max_epochs``); the
validation loss is read every ``eval_every`` steps, the best weights are kept and
training stops after ``patience`` evaluations without improvement. The loss is
only read back from the device at those evaluations, never per step. A NaN or
infinite loss raises :class:`~seqbench.errors.DivergedError`.

With ``tbptt=U`` the gradient is truncated to U steps: the sequence is processed
in chunks of U steps, the hidden state carried forward but detached between
chunks, the chunks' gradients summed, and one optimiser step taken per batch
(so the step budget means the same with and without truncation).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data import SeqData
from ..errors import DivergedError, SeqbenchError
from .base import SeqModel, seed_of


def resolve_device(device: str):
    """``"auto"`` -> the first CUDA device when there is one, else the CPU."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise SeqbenchError(f"device: expected 'auto', 'cpu' or 'cuda[:i]', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SeqbenchError(f"device: {device!r} asked for, but torch sees no CUDA device")
    return dev


def _build_net(cell: str, input_kind: str, input_size: int, embed_size: int, hidden_size: int,
               num_layers: int, target_size: int, nonlinearity: str):
    import torch.nn as nn

    class RecurrentNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if input_kind == "tokens":
                self.inp = nn.Embedding(input_size, embed_size)
            else:
                self.inp = nn.Linear(input_size, embed_size)
            if cell == "lstm":
                self.core = nn.LSTM(embed_size, hidden_size, num_layers, batch_first=True)
            elif cell == "gru":
                self.core = nn.GRU(embed_size, hidden_size, num_layers, batch_first=True)
            else:
                self.core = nn.RNN(embed_size, hidden_size, num_layers, batch_first=True,
                                   nonlinearity=nonlinearity)
            self.head = nn.Linear(hidden_size, target_size)

        def hidden(self, x, state=None):
            """(N, T) or (N, T, D) inputs -> (N, T, H) hidden states and the final state."""
            return self.core(self.inp(x), state)

    return RecurrentNet()


class RecurrentModel(SeqModel):
    """A recurrent network (``cell`` = ``"lstm"``, ``"gru"`` or ``"rnn"``) with a head on
    every scored position. Subclasses fix ``cell`` and may re-initialise weights in
    :meth:`_init_weights`."""

    _tags = {"uses_torch": True, "device_aware": True}
    cell = "lstm"
    nonlinearity = "tanh"

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
        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise SeqbenchError(
                    f"{type(self).__name__} parameter {name!r}: expected {expected}, "
                    f"got {getattr(self, name)!r}"
                )

        need(self.hidden_size >= 1, "hidden_size", "an int >= 1")
        need(self.num_layers >= 1, "num_layers", "an int >= 1")
        need(self.optimizer in ("adam", "sgd"), "optimizer", "'adam' or 'sgd'")
        need(self.lr > 0, "lr", "a float > 0")
        need(self.batch_size >= 1, "batch_size", "an int >= 1")
        need(self.max_steps >= 1, "max_steps", "an int >= 1")
        need(self.max_epochs is None or self.max_epochs >= 1, "max_epochs", "None or an int >= 1")
        need(self.eval_every >= 1, "eval_every", "an int >= 1")
        need(self.patience >= 1, "patience", "an int >= 1")
        need(self.tbptt is None or self.tbptt >= 1, "tbptt", "None or an int >= 1")
        need(self.precision in ("fp32", "bf16"), "precision", "'fp32' or 'bf16'")

    # -- training ----------------------------------------------------------------------
    def _loss_fn(self):
        import torch.nn.functional as F

        if self.target_kind_ == "classes":
            return lambda logits, y: F.cross_entropy(logits.float(), y, reduction="sum")
        return lambda out, y: F.mse_loss(out.float(), y, reduction="sum") / y.shape[-1]

    def _tensors(self, data: SeqData, device):
        import torch

        X = torch.as_tensor(data.X, device=device)
        if data.input_kind == "real":
            X = X.float()
        Y = torch.as_tensor(data.Y, device=device)
        Y = Y.long() if data.target_kind == "classes" else Y.float()
        M = torch.as_tensor(data.mask, device=device)
        return X, Y, M

    def _batch_loss(self, net, x, y, m, loss_fn):
        """Summed loss over the scored positions of one batch (sequence chunks with tbptt)."""
        import torch

        n_scored = m.sum().clamp(min=1)
        U = self.tbptt
        if U is None or U >= x.shape[1]:
            h, _ = net.hidden(x)  # (B, T, H)
            loss = loss_fn(net.head(h[m]), y[m]) / n_scored
            loss.backward()
            return loss.detach()
        total = torch.zeros((), device=x.device)
        state = None
        for s in range(0, x.shape[1], U):
            h, state = net.hidden(x[:, s:s + U], state)  # (B, U, H)
            mc = m[:, s:s + U]
            loss = loss_fn(net.head(h[mc]), y[:, s:s + U][mc]) / n_scored
            loss.backward()
            total = total + loss.detach()
            state = tuple(t.detach() for t in state) if isinstance(state, tuple) else state.detach()
        return total

    def _evaluate_loss(self, net, X, Y, M, loss_fn, batch: int = 1024) -> float:
        import torch

        total = torch.zeros((), device=X.device)
        with torch.inference_mode():
            for s in range(0, X.shape[0], batch):
                h, _ = net.hidden(X[s:s + batch])
                m = M[s:s + batch]
                total += loss_fn(net.head(h[m]), Y[s:s + batch][m])
        return float(total) / max(int(M.sum()), 1)

    def _fit(self, data: SeqData, valid: SeqData | None) -> None:
        import torch

        self._check_params()
        seed = seed_of(self.random_state)
        device = resolve_device(self.device)
        embed = self.embed_size or self.hidden_size
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            net = _build_net(self.cell, data.input_kind, data.input_size, embed, self.hidden_size,
                             self.num_layers, data.target_size, self.nonlinearity)
            self._init_weights(net)
        net.to(device)
        gen = torch.Generator().manual_seed(seed)
        if self.optimizer == "adam":
            opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.SGD(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_fn = self._loss_fn()
        X, Y, M = self._tensors(data, device)
        V = self._tensors(valid, device) if valid is not None else None
        N = X.shape[0]
        B = min(self.batch_size, N)
        steps_per_epoch = max(N // B, 1)
        max_steps = self.max_steps
        if self.max_epochs is not None:
            max_steps = min(max_steps, self.max_epochs * steps_per_epoch)
        autocast = (
            torch.autocast(device.type, dtype=torch.bfloat16)
            if self.precision == "bf16" else _nullcontext()
        )

        curve: list[dict[str, Any]] = []
        best = (float("inf"), None, 0)
        bad = 0
        running = torch.zeros((), device=device)
        since = 0
        step = 0
        net.train()
        while step < max_steps:
            perm = torch.randperm(N, generator=gen).to(device)
            for b in range(steps_per_epoch):
                idx = perm[b * B:(b + 1) * B]
                opt.zero_grad(set_to_none=True)
                with autocast:
                    loss = self._batch_loss(net, X[idx], Y[idx], M[idx], loss_fn)
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
                            point["valid_loss"] = self._evaluate_loss(net, *V, loss_fn)
                        net.train()
                        score = point["valid_loss"]
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

    # -- prediction --------------------------------------------------------------------
    def _outputs(self, X: np.ndarray, batch: int = 1024) -> np.ndarray:
        """Head outputs at every step: (N, T, K) logits or real predictions."""
        import torch

        net = self.net_
        device = next(net.parameters()).device
        outs = []
        with torch.inference_mode():
            for s in range(0, X.shape[0], batch):
                x = torch.as_tensor(X[s:s + batch], device=device)
                if self.input_kind_ == "real":
                    x = x.float()
                h, _ = net.hidden(x)
                outs.append(net.head(h).float().cpu())
        return torch.cat(outs).numpy()

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        import torch

        return torch.softmax(torch.from_numpy(self._outputs(X)), dim=-1).numpy()

    def _predict(self, X: np.ndarray) -> np.ndarray:
        out = self._outputs(X)
        return out.argmax(-1) if self.target_kind_ == "classes" else out

    def n_parameters(self) -> int:
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


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class LSTMModel(RecurrentModel):
    """LSTM (Hochreiter & Schmidhuber 1997) in torch's fused ``nn.LSTM``.

    The forget-gate bias starts at ``forget_bias`` (1.0 by default, Jozefowicz et al.
    2015), so the cell keeps its contents at initialisation; torch's own default is
    a small random bias.
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
        import torch

        H = self.hidden_size
        with torch.no_grad():
            for name, p in net.core.named_parameters():
                if name.startswith("bias_ih"):  # gate order in torch: i, f, g, o
                    p[H:2 * H].fill_(self.forget_bias)
                elif name.startswith("bias_hh"):
                    p[H:2 * H].zero_()
