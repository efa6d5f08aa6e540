"""One update of a recurrent layer whose input projection has already been computed.

`nn.GRU`/`nn.LSTM`/`nn.RNN` compute W_ih x inside every call. The decoder's first-layer input is
[embedding; context], and both halves of that projection are cheaper to assemble outside the cell:
the embedding half for all target positions in one matmul, the context half as attention weights
over memory projected once per batch (see decoder.py). These functions take the finished input
projection `gates_x` (B, G*H) and apply the cell's recurrence with PyTorch's gate order and
equations, reading the weights of the layer's own `nn.Module`, so checkpoints are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gru(gates_x, h, c, w_hh, b_hh):
    """r, z, n gates: n = tanh(x_n + r * (W_hn h + b_hn)), h' = (1 - z) n + z h."""
    r_x, z_x, n_x = gates_x.chunk(3, -1)
    r_h, z_h, n_h = F.linear(h, w_hh, b_hh).chunk(3, -1)
    r = torch.sigmoid(r_x + r_h)
    z = torch.sigmoid(z_x + z_h)
    n = torch.tanh(n_x + r * n_h)
    return n + z * (h - n), None


def lstm(gates_x, h, c, w_hh, b_hh):
    """i, f, g, o gates: c' = σ(f) c + σ(i) tanh(g), h' = σ(o) tanh(c')."""
    i, f, g, o = (gates_x + F.linear(h, w_hh, b_hh)).chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def rnn(gates_x, h, c, w_hh, b_hh):
    """h' = tanh(x + W_hh h + b_hh)."""
    return torch.tanh(gates_x + F.linear(h, w_hh, b_hh)), None


CELLS = {"gru": gru, "lstm": lstm, "rnn": rnn}
GATES = {"gru": 3, "lstm": 4, "rnn": 1}
