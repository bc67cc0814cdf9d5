"""The torch module behind every recurrent model (imported only when a model is fitted).

Kept in its own module, at top level, so fitted models pickle by reference.
"""

from __future__ import annotations

import torch
from torch import nn

_RNN_AUTOCAST_DTYPES: dict[tuple[str, torch.dtype], torch.dtype] = {}


def autocast_rnn_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The dtype in which ``torch.autocast(device.type, dtype)`` runs a fused ``nn.LSTM``
    on ``device``: probed once per device and dtype on a one-unit LSTM (initialised inside
    ``fork_rng``, so the global random state is left as it was).

    It is not always the dtype asked for: autocast's wrapper of the cuDNN RNN
    (aten/src/ATen/cudnn/AutocastRNN.cpp) has cast the input, the state and the weights to
    float16 whatever dtype autocast was given, so ``precision="bf16"`` would train the
    recurrence in float16 without loss scaling (small gradients flushed to zero); the
    CPU's autocast runs it in bfloat16 (oneDNN), as asked. Where the probe itself fails,
    float32."""
    key = (str(device), dtype)
    if key not in _RNN_AUTOCAST_DTYPES:
        with torch.random.fork_rng(devices=[]):  # its initialisation draws on the CPU's
            lstm = nn.LSTM(1, 1).to(device)
        try:
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype):
                got = lstm(torch.zeros(1, 1, 1, device=device))[0].dtype
        except RuntimeError:  # no fused kernel for it (oneDNN has no float16 LSTM)
            got = torch.float32  # then the core runs in float32
        _RNN_AUTOCAST_DTYPES[key] = got
    return _RNN_AUTOCAST_DTYPES[key]


class RecurrentNet(nn.Module):
    """Input layer (embedding for tokens, linear for reals) -> recurrent core -> linear head."""

    def __init__(self, cell: str, input_kind: str, input_size: int, embed_size: int,
                 hidden_size: int, num_layers: int, target_size: int,
                 nonlinearity: str = "tanh") -> None:
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

    def hidden(self, x: torch.Tensor, state=None):
        """(N, T) or (N, T, D) inputs -> (N, T, H) hidden states and the final state.

        Under autocast, where autocast would run the fused core in another dtype than the
        one it was given (:func:`autocast_rnn_dtype`: float16 for bfloat16 on CUDA), the
        core runs in float32 (autocast off for it, its input cast to float32); the input
        layer and whatever follows (the head) stay under autocast."""
        e = self.inp(x)
        kind = e.device.type
        if torch.is_autocast_enabled(kind):
            asked = torch.get_autocast_dtype(kind)
            if autocast_rnn_dtype(e.device, asked) != asked:
                with torch.autocast(kind, enabled=False):
                    return self.core(e.float(), state)
        return self.core(e, state)
