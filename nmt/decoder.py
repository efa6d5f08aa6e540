"""Recurrent decoder with Bahdanau attention, in Bahdanau's order (attend with the previous state).

For target position t, with E the target embedding and s the top-layer decoder state:

    c_t, α_t = attention(s_{t-1}, keys, memory)            # attend with the previous state
    s_t      = cell([E y_{t-1}; c_t], s_{t-1})               # rnn / lstm / gru, L layers
    o_t      = tanh(W_o [s_t; c_t; E y_{t-1}])               # attentional output layer
    p(y_t | y_<t, x) = softmax(W_out o_t)                    # W_out may be tied to E

s_0 comes from the bridge: s_0 = tanh(W_b [h→_last; h←_first]) (and likewise the LSTM cell).
`step` runs one position; `forward` (teacher forcing) runs the same update over all positions
and applies the output layer once to every position after the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from nmt.attention import BahdanauAttention
from nmt.encoder import RNN_CLASSES, EncoderOutput


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


class Decoder(nn.Module):
    def __init__(self, cell: str, vocab_size: int, embed_size: int, hidden_size: int,
                 memory_size: int, attention_size: int, num_layers: int, dropout: float,
                 tie_embeddings: bool, padding_idx: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_size, padding_idx=padding_idx)
        self.dropout = nn.Dropout(dropout)
        self.attention = BahdanauAttention(hidden_size, memory_size, attention_size)
        self.rnn = RNN_CLASSES[cell](embed_size + memory_size, hidden_size, num_layers=num_layers,
                                     batch_first=True, dropout=dropout if num_layers > 1 else 0.0)
        self.has_cell_state = cell == "lstm"
        self.bridge = nn.Linear(memory_size, hidden_size)
        self.cell_bridge = nn.Linear(memory_size, hidden_size) if self.has_cell_state else None
        self.readout = nn.Linear(hidden_size + memory_size + embed_size, embed_size)
        self.out = nn.Linear(embed_size, vocab_size, bias=False)
        if tie_embeddings:
            self.out.weight = self.embed.weight

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        hidden = torch.tanh(self.bridge(enc.final))
        cell = None if self.cell_bridge is None else torch.tanh(self.cell_bridge(enc.final_cell))
        return DecoderState(hidden.contiguous(), None if cell is None else cell.contiguous())

    def _advance(self, emb: torch.Tensor, state: DecoderState, enc: EncoderOutput):
        """One position: attend with the previous top state, then update the cell. emb (B, E)."""
        context, weights = self.attention(state.hidden[-1], enc.keys, enc.memory, enc.mask)
        x = torch.cat([emb, context], dim=-1).unsqueeze(1)  # (B, 1, E + 2H)
        rnn_state = (state.hidden, state.cell) if self.has_cell_state else state.hidden
        _, rnn_state = self.rnn(x, rnn_state)
        hidden, cell = rnn_state if self.has_cell_state else (rnn_state, None)
        return DecoderState(hidden, cell), context, weights

    def predict(self, top: torch.Tensor, context: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Attentional output layer and projection; works on (B, H) or (B, T, H) alike -> logits (..., V)."""
        o = torch.tanh(self.readout(torch.cat([top, context, emb], dim=-1)))
        return self.out(self.dropout(o))

    def step(self, tokens: torch.Tensor, state: DecoderState, enc: EncoderOutput) -> StepOutput:
        """tokens (B,) previous outputs -> logits (B, V) for the next position."""
        emb = self.dropout(self.embed(tokens))  # (B, E)
        state, context, weights = self._advance(emb, state, enc)
        return StepOutput(self.predict(state.hidden[-1], context, emb), state, weights)

    def forward(self, tgt_in: torch.Tensor, enc: EncoderOutput) -> torch.Tensor:
        """Teacher forcing: tgt_in (B, T) -> logits (B, T, V)."""
        emb = self.dropout(self.embed(tgt_in))  # (B, T, E)
        state = self.init_state(enc)
        tops, contexts = [], []
        for t in range(tgt_in.size(1)):
            state, context, _ = self._advance(emb[:, t], state, enc)
            tops.append(state.hidden[-1])
            contexts.append(context)
        # The output layer does not feed back, so it runs once over all positions.
        return self.predict(torch.stack(tops, 1), torch.stack(contexts, 1), emb)
