"""Recurrent decoder with Bahdanau attention, in Bahdanau's order: attend with the previous state, then update.

For target position t, with E the target embedding and s the top-layer decoder state:

    c_t, α_t = attention(s_{t-1}, memory)              # attend with the previous state
    s_t      = cell(W E y_{t-1} + b + C c_t, s_{t-1})    # rnn / lstm / gru, L layers (nmt/model/cells.py)
    o_t      = tanh(W_o [s_t; c_t; E y_{t-1}])          # attentional output ("readout"), R units
    p(y_t | y_<t, x) = softmax(W_out o_t)               # W_out may be tied to E (then R = E)

As in Bahdanau et al. (2015, appendix A.2.2), the first layer reads the previous word and the
context through separate matrices W and C (W is the first layer's input matrix in `rnn`).
s_0 comes from the bridge: s_0 = tanh(W_b [h→_last; h←_first]) (and likewise the LSTM cell).

Departures from the paper, each on purpose:
- The readout is one tanh layer over the *new* state s_t, where the paper has a maxout layer over
  the previous one, s_{t-1}: the output then sees the update it follows (as in JoeyNMT, OpenNMT-py
  and Nematus), and tanh needs no pool size.
- s_0 reads both directions' summaries, where the paper reads the backward one only (W_s h←_1):
  the forward direction's last state summarises the source too, for one more matrix block.
- The cell may be a GRU (the paper's gated unit), an LSTM or a plain tanh RNN, in L layers.
`step` runs one position; `forward` (teacher forcing) runs the same update at every position; what
does not depend on the recurrence (W E y + b, the readout and the output layer) runs once over all
positions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from nmt.model.attention import BahdanauAttention
from nmt.model.cells import StackedCell
from nmt.model.encoder import EncoderOutput


@dataclass
class DecoderState:
    hidden: torch.Tensor  # (L, B, H)
    cell: torch.Tensor | None  # (L, B, H) LSTM cell state; None for GRU/RNN

    def select(self, index: torch.Tensor) -> "DecoderState":
        """Rows `index` of the batch: beam search reorders and prunes hypotheses with this."""
        cell = None if self.cell is None else self.cell.index_select(1, index)
        return DecoderState(self.hidden.index_select(1, index), cell)


class StepOutput(NamedTuple):
    logits: torch.Tensor  # (B, V)
    state: DecoderState
    attention: torch.Tensor  # (B, S)


class ReadoutParts(NamedTuple):
    """W_o's columns by the input they read: W_o [s; c; E y] = W_s s + W_c c + W_e E y."""
    state: torch.Tensor  # (R, H)
    context: torch.Tensor  # (R, M)
    embed: torch.Tensor  # (R, E)


class Readout(nn.Linear):
    """o = tanh(W_o [s; c; E y] + b), one matrix over the three inputs (one product in training).
    `parts` names its columns, so that a rewrite (nmt/translate/inference.py) can apply them apart without
    knowing the order of the concatenation."""

    def __init__(self, state_size: int, context_size: int, embed_size: int, size: int):
        super().__init__(state_size + context_size + embed_size, size)
        self.sizes = (state_size, context_size, embed_size)

    def forward(self, s: torch.Tensor, context: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(..., H), (..., M), (..., E) -> (..., R)."""
        return torch.tanh(super().forward(torch.cat([s, context, y], -1)))

    def parts(self) -> ReadoutParts:
        return ReadoutParts(*self.weight.split(self.sizes, dim=1))


class Decoder(nn.Module):
    def __init__(self, cell: str, vocab_size: int, embed_size: int, hidden_size: int,
                 memory_size: int, attention_size: int, readout_size: int, num_layers: int,
                 dropout: float, tie_embeddings: bool, padding_idx: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_size, padding_idx=padding_idx)
        self.dropout = nn.Dropout(dropout)
        self.attention = BahdanauAttention(hidden_size, memory_size, attention_size)
        self.rnn = StackedCell(cell, embed_size, hidden_size, num_layers, dropout if num_layers > 1 else 0.0)
        self.context_gates = nn.Linear(memory_size, self.rnn.input[0].out_features, bias=False)  # C
        self.bridge = nn.Linear(memory_size, hidden_size)
        self.cell_bridge = nn.Linear(memory_size, hidden_size) if cell == "lstm" else None
        self.readout = Readout(hidden_size, memory_size, embed_size, readout_size)  # W_o
        self.out = nn.Linear(readout_size, vocab_size, bias=False)  # W_out
        if tie_embeddings:
            self.out.weight = self.embed.weight

    def prepare(self, enc: EncoderOutput) -> EncoderOutput:
        """The attention keys, projected once per batch."""
        return dataclasses.replace(enc, keys=self.attention.project_keys(enc.memory))  # (B, S, A)

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        hidden = torch.tanh(self.bridge(enc.final))  # (L, B, H)
        cell = None if self.cell_bridge is None else torch.tanh(self.cell_bridge(enc.final_cell))
        return DecoderState(hidden, cell)

    def step(self, tokens: torch.Tensor, state: DecoderState, enc: EncoderOutput) -> StepOutput:
        """tokens (B,) previous outputs -> logits (B, V) for the next position."""
        y = self.dropout(self.embed(tokens))  # (B, E)
        state, context, alpha = self._advance(self.rnn.input[0](y), state, enc)
        return StepOutput(self.out(self._readout(state.hidden[-1], context, y)), state, alpha)

    def forward(self, tgt_in: torch.Tensor, enc: EncoderOutput) -> torch.Tensor:
        """Teacher forcing: tgt_in (B, T) -> logits (B, T, V)."""
        ys = self.dropout(self.embed(tgt_in))  # (B, T, E)
        wys = self.rnn.input[0](ys)  # (B, T, G*H)
        state = self.init_state(enc)
        tops, contexts = [], []
        for wy in wys.unbind(1):  # unbind, not wys[:, t]: indexing's backward writes a (B, T, G*H) zero tensor per t
            state, context, _ = self._advance(wy, state, enc)
            tops.append(state.hidden[-1])
            contexts.append(context)
        return self.out(self._readout(torch.stack(tops, 1), torch.stack(contexts, 1), ys))

    def _advance(self, wy: torch.Tensor, state: DecoderState, enc: EncoderOutput):
        """wy = W E y_{t-1} + b (B, G*H): attend with s_{t-1}, then update every layer
        -> (s_t, c_t (B, M), α_t (B, S))."""
        context, alpha = self.attention(state.hidden[-1], enc.keys, enc.memory, enc.mask)
        hidden, cell = self.rnn(wy + self.context_gates(context), state.hidden, state.cell)
        return DecoderState(hidden, cell), context, alpha

    def _readout(self, s: torch.Tensor, context: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """o = tanh(W_o [s; c; E y]) on (..., H), (..., M), (..., E) -> (..., R), then dropout."""
        return self.dropout(self.readout(s, context, y))
