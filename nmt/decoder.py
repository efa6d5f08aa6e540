"""Recurrent decoder with Bahdanau attention, in Bahdanau's order (attend with the previous state).

For target position t, with E the target embedding and s the top-layer decoder state:

    c_t, α_t = attention(s_{t-1}, keys, memory)            # attend with the previous state
    s_t      = cell([E y_{t-1}; c_t], s_{t-1})               # rnn / lstm / gru, L layers
    o_t      = tanh(W_o [s_t; c_t; E y_{t-1}])               # attentional output layer
    p(y_t | y_<t, x) = softmax(W_out o_t)                    # W_out may be tied to E

s_0 comes from the bridge: s_0 = tanh(W_b [h→_last; h←_first]) (and likewise the LSTM cell).

The context c_t enters the step only through linear maps (the first layer's input weights and
W_o), and W c_t = Σ_j α_tj (W m_j): so the memory is multiplied by those weights once per batch
(`prepare`), and each step sums S projected rows instead of pushing c_t through a (2H x G*H)
matrix. Likewise the embedding's share of the input and output layers is one matmul over all
target positions in training. The weights are those of `rnn` and `readout`, sliced by what they read.
`step` runs one position; `forward` (teacher forcing) runs the same update over all positions
and applies the output layer once to every position after the loop; its products with tensors
that every position reads go through `nmt.loop.Loop`, which sums their gradients once per loop.

In decoding (no gradients, eval mode) the embedding terms of a step are rows of a (V, G*H + E)
table, one per target piece, computed once for the current weights: a lookup instead of a
(B*K, E) x (E, G*H + E) product per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from nmt.attention import BahdanauAttention
from nmt.cells import CELLS, GATES
from nmt.encoder import RNN_CLASSES, EncoderOutput
from nmt.loop import DIRECT, Loop


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
        # MKL's sgemm runs about 1.5x faster when the output width is a multiple of 8 (320 rows x
        # 256 -> 3 963: 7.5 ms, -> 3 968: 4.9 ms), so the output layer has padding rows. A decoding
        # step cuts their logits off; teacher forcing multiplies by the real rows only, because the
        # loss needs contiguous (B, T, V) logits and copying them out costs more than the padding saves.
        # The padding rows never receive a gradient: the model is the unpadded one.
        self.vocab_size, padded = vocab_size, -(-vocab_size // 8) * 8
        self.embed = nn.Embedding(padded if tie_embeddings else vocab_size, embed_size, padding_idx=padding_idx)
        self.dropout = nn.Dropout(dropout)
        self.attention = BahdanauAttention(hidden_size, memory_size, attention_size)
        self.rnn = RNN_CLASSES[cell](embed_size + memory_size, hidden_size, num_layers=num_layers,
                                     batch_first=True, dropout=dropout if num_layers > 1 else 0.0)
        self.update, self.gate_size = CELLS[cell], GATES[cell] * hidden_size
        self.has_cell_state = cell == "lstm"
        self.bridge = nn.Linear(memory_size, hidden_size)
        self.cell_bridge = nn.Linear(memory_size, hidden_size) if self.has_cell_state else None
        self.readout = nn.Linear(hidden_size + memory_size + embed_size, embed_size)
        self.out = nn.Linear(embed_size, padded, bias=False)
        if tie_embeddings:
            self.out.weight = self.embed.weight
        self.sizes = (hidden_size, memory_size, embed_size)
        self._table, self._table_key = None, None

    def prepare(self, enc: EncoderOutput) -> EncoderOutput:
        """Attention keys and the memory through the context's weights, once per batch."""
        H, M, E = self.sizes
        reads_context = torch.cat([self.rnn.weight_ih_l0[:, E:], self.readout.weight[:, H:H + M]])
        enc.keys = self.attention.project_keys(enc.memory)  # (B, S, A)
        enc.values = F.linear(enc.memory, reads_context)  # (B, S, G*H + E)
        return enc

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        hidden = torch.tanh(self.bridge(enc.final))
        cell = None if self.cell_bridge is None else torch.tanh(self.cell_bridge(enc.final_cell))
        return DecoderState(hidden.contiguous(), None if cell is None else cell.contiguous())

    def _embedding_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The weights that read the embedding: first-layer input gates and readout, (G*H + E, E) and bias."""
        H, M, E = self.sizes
        return (torch.cat([self.rnn.weight_ih_l0[:, :E], self.readout.weight[:, H + M:]]),
                torch.cat([self.rnn.bias_ih_l0, self.readout.bias]))

    def _embedding_table(self) -> torch.Tensor:
        """(V, G*H + E): every piece's embedding terms, rebuilt when a weight it reads has changed
        (in-place updates bump a tensor's version; loading or moving the model changes its storage)."""
        reads = (self.embed.weight, self.rnn.weight_ih_l0, self.rnn.bias_ih_l0, self.readout.weight, self.readout.bias)
        key = tuple((w._version, w.data_ptr()) for w in reads)
        if key != self._table_key:
            self._table, self._table_key = F.linear(self.embed.weight, *self._embedding_weights()), key
        return self._table

    def _embed(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B,) or (B, T) -> the embedding's first-layer input gates (..., G*H) and readout term (..., E)."""
        if self.training or torch.is_grad_enabled():
            both = F.linear(self.dropout(self.embed(tokens)), *self._embedding_weights())
        else:
            both = F.embedding(tokens, self._embedding_table())
        return both.split([self.gate_size, self.sizes[2]], -1)

    def _advance(self, x_gates: torch.Tensor, state: DecoderState, enc: EncoderOutput, ops=DIRECT):
        """One position: attend with the previous top state, then update each layer. x_gates (B, G*H).
        `ops` computes the products with tensors that every position reads (see nmt/loop.py)."""
        mixed, weights = self.attention(state.hidden[-1], enc.keys, enc.values, enc.mask, ops)  # (B, G*H + E)
        gates_context, read_context = mixed.split([self.gate_size, self.sizes[2]], -1)
        x = x_gates + gates_context
        hidden, cells = [], []
        for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.rnn.all_weights):
            if layer:  # nn.GRU's dropout between layers, on the layer below's output
                x = ops.linear(F.dropout(hidden[-1], self.rnn.dropout, self.training), w_ih, b_ih)
            c = None if state.cell is None else state.cell[layer]
            h, c = self.update(x, ops.linear(state.hidden[layer], w_hh, b_hh), state.hidden[layer], c)
            hidden.append(h)
            cells.append(c)
        state = DecoderState(torch.stack(hidden), None if state.cell is None else torch.stack(cells))
        return state, read_context, weights

    def _readout(self, top: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
        """Attentional output layer on (B, H) or (B, T, H); `rest` holds the context and embedding
        terms -> (..., E), the input of the output projection."""
        return self.dropout(torch.tanh(F.linear(top, self.readout.weight[:, :self.sizes[0]]) + rest))

    def step(self, tokens: torch.Tensor, state: DecoderState, enc: EncoderOutput) -> StepOutput:
        """tokens (B,) previous outputs -> logits (B, V) for the next position."""
        x_gates, read_emb = self._embed(tokens)
        state, read_context, weights = self._advance(x_gates, state, enc)
        logits = self.out(self._readout(state.hidden[-1], read_context + read_emb))[:, :self.vocab_size]
        return StepOutput(logits, state, weights)

    def forward(self, tgt_in: torch.Tensor, enc: EncoderOutput) -> torch.Tensor:
        """Teacher forcing: tgt_in (B, T) -> logits (B, T, V)."""
        x_gates, read_emb = self._embed(tgt_in)  # (B, T, G*H), (B, T, E): all positions at once
        state = self.init_state(enc)
        tops, reads = [], []
        # unbind, not x_gates[:, t]: the gradient of each indexed position would be a zero (B, T, G*H)
        # tensor with one filled column, summed over T in backward.
        loop = Loop()
        for x_t in x_gates.unbind(1):
            state, read_context, _ = self._advance(x_t, state, enc, loop)
            tops.append(state.hidden[-1])
            reads.append(read_context)
        # The output layer does not feed back, so it runs once over all positions.
        o = self._readout(torch.stack(tops, 1), torch.stack(reads, 1) + read_emb)
        return F.linear(o, self.out.weight[:self.vocab_size])
