"""Bidirectional recurrent encoder over packed sequences."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

RNN_CLASSES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


@dataclass
class EncoderOutput:
    memory: torch.Tensor  # (B, S, 2H) states of both directions, zero at padding
    mask: torch.Tensor  # (B, S) bool, True = real token
    final: torch.Tensor  # (L, B, 2H) last forward and first backward state of each layer
    final_cell: torch.Tensor | None  # (L, B, 2H) LSTM cell states, None for GRU/RNN
    keys: torch.Tensor | None = None  # (B, S, A) attention keys, projected once per batch

    def select(self, index: torch.Tensor) -> "EncoderOutput":
        """Rows `index` of the batch (beam search drops finished sentences with this)."""
        pick = lambda t, dim: None if t is None else t.index_select(dim, index)
        return EncoderOutput(pick(self.memory, 0), pick(self.mask, 0), pick(self.final, 1),
                             pick(self.final_cell, 1), pick(self.keys, 0))


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, max_len) bool mask, True on real positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class Encoder(nn.Module):
    """Embeddings, dropout, and a bidirectional `rnn`/`lstm`/`gru` of `num_layers` layers."""

    def __init__(self, cell: str, vocab_size: int, embed_size: int, hidden_size: int,
                 num_layers: int, dropout: float, padding_idx: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_size, padding_idx=padding_idx)
        self.dropout = nn.Dropout(dropout)
        self.rnn = RNN_CLASSES[cell](embed_size, hidden_size, num_layers=num_layers, batch_first=True,
                                     bidirectional=True, dropout=dropout if num_layers > 1 else 0.0)
        self.has_cell_state = cell == "lstm"
        self.output_size = 2 * hidden_size
        # True: the recurrent layers leave autocast and run in fp32 (set by nmt/precision.py where a
        # backend's reduced-precision RNN is unsound or missing).
        self.recurrent_in_fp32 = False

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        B, S = src.shape
        x = self.dropout(self.embed(src))  # (B, S, E)
        packed = pack_padded_sequence(x, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        with torch.autocast(x.device.type, enabled=False) if self.recurrent_in_fp32 else nullcontext():
            out, final = self.rnn(packed)
        # total_length keeps S fixed even when no sentence fills it (DDP replicas must agree on shapes).
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=S)  # (B, S, 2H)
        hidden, cell = final if self.has_cell_state else (final, None)
        return EncoderOutput(memory, length_mask(src_lengths, S), _join_directions(hidden),
                             None if cell is None else _join_directions(cell))


def _join_directions(h: torch.Tensor) -> torch.Tensor:
    """(2L, B, H) ordered layer-major, forward first -> (L, B, 2H)."""
    two_l, B, H = h.shape
    return h.view(two_l // 2, 2, B, H).transpose(1, 2).reshape(two_l // 2, B, 2 * H)
