"""The torch module behind every recurrent model (imported only when a model is fitted).

Kept in its own module, at top level, so fitted models pickle by reference.
"""

from __future__ import annotations

import torch
from torch import nn


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
        """(N, T) or (N, T, D) inputs -> (N, T, H) hidden states and the final state."""
        return self.core(self.inp(x), state)
