"""One update of a recurrent layer whose input projection has already been computed.

`nn.GRU`/`nn.LSTM`/`nn.RNN` compute W_ih x inside every call. The decoder's first-layer input is
[embedding; context], and both halves of that projection are cheaper to assemble outside the cell:
the embedding half for all target positions in one matmul, the context half as attention weights
over memory projected once per batch (see decoder.py). These functions take the finished input
projection `gates_x` (B, G*H) and the recurrent one `gates_h` = W_hh h + b_hh (computed by the
caller with the layer's own `nn.Module` weights, so checkpoints are unchanged) and apply the cell's
recurrence with PyTorch's gate order and equations.
"""

from __future__ import annotations

import torch


def gru(gates_x, gates_h, h, c):
    """r, z, n gates: n = tanh(x_n + r * (W_hn h + b_hn)), h' = (1 - z) n + z h."""
    r_x, z_x, n_x = gates_x.chunk(3, -1)
    r_h, z_h, n_h = gates_h.chunk(3, -1)
    r = torch.sigmoid(r_x + r_h)
    z = torch.sigmoid(z_x + z_h)
    n = torch.tanh(n_x + r * n_h)
    return n + z * (h - n), None


def lstm(gates_x, gates_h, h, c):
    """i, f, g, o gates: c' = σ(f) c + σ(i) tanh(g), h' = σ(o) tanh(c')."""
    i, f, g, o = (gates_x + gates_h).chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def rnn(gates_x, gates_h, h, c):
    """h' = tanh(x + W_hh h + b_hh)."""
    return torch.tanh(gates_x + gates_h), None


CELLS = {"gru": gru, "lstm": lstm, "rnn": rnn}
GATES = {"gru": 3, "lstm": 4, "rnn": 1}
