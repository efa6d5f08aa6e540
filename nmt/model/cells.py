"""The decoder's recurrent cells, stepped one position at a time, in PyTorch's gate order.

Each layer has an input matrix W and a recurrent matrix U (G gates of H units each). With
x = W x_t + b (B, G*H) and u = U h_{t-1} + b_h (B, G*H):

    rnn:   h_t = tanh(x + u)
    gru:   r = σ(x_r + u_r),  z = σ(x_z + u_z),  n = tanh(x_n + r ∘ u_n),  h_t = (1 − z) ∘ n + z ∘ h_{t-1}
    lstm:  i, f, g, o = x + u;  c_t = σ(f) ∘ c_{t-1} + σ(i) ∘ tanh(g),  h_t = σ(o) ∘ tanh(c_t)

The encoder runs nn.RNN/nn.GRU/nn.LSTM over whole sequences (cuDNN on a GPU); the decoder cannot,
because its input at t depends on its state at t-1 through the attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rnn_update(x, u, h, c):
    return torch.tanh(x + u), None


def gru_update(x, u, h, c):
    r_x, z_x, n_x = x.chunk(3, -1)
    r_u, z_u, n_u = u.chunk(3, -1)
    r = torch.sigmoid(r_x + r_u)
    z = torch.sigmoid(z_x + z_u)
    n = torch.tanh(n_x + r * n_u)
    return n + z * (h - n), None  # (1 − z) n + z h


def lstm_update(x, u, h, c):
    i, f, g, o = (x + u).chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


UPDATES = {"rnn": rnn_update, "gru": gru_update, "lstm": lstm_update}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


class StackedCell(nn.Module):
    """`num_layers` layers of one cell; each layer above the first reads the output of the one
    below through dropout (where nn.RNN, nn.GRU and nn.LSTM apply their `dropout`)."""

    def __init__(self, kind: str, input_size: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        gates = GATES[kind] * hidden_size
        self.input = nn.ModuleList(nn.Linear(input_size if layer == 0 else hidden_size, gates)
                                   for layer in range(num_layers))  # W, b
        self.recurrent = nn.ModuleList(nn.Linear(hidden_size, gates) for _ in range(num_layers))  # U, b_h
        self.kind, self.hidden_size, self.dropout = kind, hidden_size, dropout
        self.update = UPDATES[kind]

    def forward(self, x0: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor | None):
        """x0 (B, G*H) the first layer's input projection, hidden (L, B, H), cell (L, B, H) or None
        -> new (hidden, cell), same shapes. The caller computes x0 with `self.input[0]` (W x + b):
        the decoder adds the context's share to it, and in training projects all positions at once."""
        new_hidden, new_cell = [], []
        for layer, U in enumerate(self.recurrent):
            x = x0 if layer == 0 else self.input[layer](F.dropout(new_hidden[-1], self.dropout, self.training))
            c = None if cell is None else cell[layer]
            h, c = self.update(x, U(hidden[layer]), hidden[layer], c)
            new_hidden.append(h)
            new_cell.append(c)
        return torch.stack(new_hidden), None if cell is None else torch.stack(new_cell)
