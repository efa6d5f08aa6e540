"""A trained model rewritten for decoding: the same function as `Seq2Seq.step` (tests check it),
with the products that do not depend on the step taken out of it. Training never uses this.
What each rewrite buys is measured in docs/benchmarks.md ("Decoding speed-ups").

The decoder's first layer and its readout read the embedding and the context only through linear
maps, so their shares of both are precomputed:

- `embedding_table`: every target piece's terms W_e E y + b, one (V, G*H + R) row each: a lookup per
  step instead of a (B*K, E) x (E, G*H + R) product.
- `context_weights`: since W_c c_t = Σ_j α_tj W_c m_j, the memory is multiplied by the weights that
  read the context once per batch; a step then weighs S rows per sentence instead of pushing each
  of its B*K contexts through a (M, G*H + R) matrix.
- `padded_output`: MKL's sgemm runs faster when the output width is a multiple of 8, so the output
  rows are padded here, never in a checkpoint, and the extra logits cut.
- `sigmoid_attention`: the attention's scores through σ instead of tanh, equal up to a constant the
  softmax ignores; on CPUs where torch's tanh is slow (three times σ on an AVX2 EPYC) the largest
  elementwise pass of a step, (B, K, S, A), costs a third.

`int8_kernel` runs the products that run at every step (the output layer, the readout's state term,
the query projection, the recurrent matrices) as `nmt.translate.int8.Int8Linear`: 7-bit weights with one scale
per output row, 8-bit activations with one scale per row (per hypothesis) chosen on the fly, exact
integer sums (by that kernel: nmt/translate/int8.py). A row's int8 products are thus bit for bit the same whatever else is in
the batch: int8 adds no batch dependence to fp32's. The encoder, attention, cells and the
once-per-batch products stay fp32: the states they produce feed every step. Where a step's time
goes: docs/decoding.md.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nmt.model.attention import weigh
from nmt.model.decoder import DecoderState, StepOutput
from nmt.model.encoder import EncoderOutput
from nmt.translate.int8 import Int8Linear, quantize_linears


@dataclass
class PreparedSource:
    """The encoder's output, the memory through the weights that read the context, and the keys doubled."""
    enc: EncoderOutput  # without memory and keys: init_state reads its final states, the steps its mask
    values: torch.Tensor  # (B, S, G*H + R)
    doubled_keys: torch.Tensor  # (B, S, A): 2 W_k m_j (sigmoid_attention)

    def select(self, index: torch.Tensor) -> "PreparedSource":
        """Rows `index` of the batch (beam search drops finished sentences with this)."""
        return PreparedSource(self.enc.select(index), self.values.index_select(0, index),
                              self.doubled_keys.index_select(0, index))


def embedding_table(decoder) -> torch.Tensor:
    """(V, G*H + R): the first layer's and the readout's embedding terms for every target piece."""
    W, readout = decoder.rnn.input[0], decoder.readout
    weight = torch.cat([W.weight, readout.parts().embed])  # (G*H + R, E)
    return F.linear(decoder.embed.weight, weight, torch.cat([W.bias, readout.bias]))


def context_weights(decoder) -> torch.Tensor:
    """(G*H + R, M): the first layer's and the readout's weights on the context."""
    return torch.cat([decoder.context_gates.weight, decoder.readout.parts().context])


def padded_output(weight: torch.Tensor, multiple: int = 8) -> torch.Tensor:
    """(V, R) output rows padded with zeros to a multiple of `multiple`."""
    pad = -weight.size(0) % multiple
    return torch.cat([weight, weight.new_zeros(pad, weight.size(1))]) if pad else weight


def sigmoid_attention(attention, query: torch.Tensor, doubled_keys: torch.Tensor, values: torch.Tensor,
                      mask: torch.Tensor, doubled_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BahdanauAttention.forward with tanh(z) = 2σ(2z) - 1: vᵀ tanh(z) = (2v)ᵀ σ(2z) - Σv, and the
    softmax ignores the constant -Σv. 2z = 2 W_k m_j + 2 W_q s in one add (`doubled_keys` (B, S, A),
    `doubled_v` (A,)); doubling is exact in floating point, so σ reads twice the plain path's sum.
    query (B*K, Q) -> context (B*K, M), α (B*K, S), as the plain attention."""
    B, S, A = doubled_keys.shape
    q = attention.query_proj(query).view(B, -1, 1, A)  # (B, K, 1, A)
    scores = torch.add(doubled_keys.unsqueeze(1), q, alpha=2).sigmoid_() @ doubled_v  # (B, K, S)
    return weigh(scores, values, mask)


def frozen_linear(weight: torch.Tensor) -> nn.Linear:
    """An nn.Linear without bias holding `weight` (out, in), so that it can be quantized like any layer."""
    # Built on the meta device: no random initialisation of weights replaced at once (a shortlist
    # builds one per batch, nmt/translate/shortlist.py).
    layer = nn.Linear(weight.size(1), weight.size(0), bias=False, device="meta", dtype=weight.dtype)
    layer.weight = nn.Parameter(weight, requires_grad=False)
    return layer


def per_step_layers(model) -> list[str]:
    """The nn.Linear layers of `model` that run once per decoding step."""
    rnn = model.decoder.rnn
    return (["decoder.attention.query_proj"] + [f"decoder.rnn.recurrent.{i}" for i in range(len(rnn.recurrent))]
            + [f"decoder.rnn.input.{i}" for i in range(1, len(rnn.input))])


class InferenceModel(nn.Module):
    """`encode` / `init_state` / `step` of a frozen `Seq2Seq`: a snapshot of its weights, so build
    it again after changing them. With `int8_kernel` (nmt.translate.int8.KERNELS), the per-step
    products run on 8-bit weights summed by it (on a copy of the model; `model` is left as it is)."""

    def __init__(self, model, int8_kernel=None):
        super().__init__()
        self.model = copy.deepcopy(model).eval() if int8_kernel else model.eval()
        dec = self.model.decoder
        with torch.no_grad():
            self.register_buffer("table", embedding_table(dec), persistent=False)
            self.register_buffer("context_weights", context_weights(dec), persistent=False)
            self.register_buffer("doubled_v", 2 * dec.attention.v.weight[0], persistent=False)  # (A,)
            self.out = frozen_linear(padded_output(dec.out.weight))  # (V', R)
            self.state_out = frozen_linear(dec.readout.parts().state.clone())  # (R, H)
        self.gates, self.vocab_size = dec.context_gates.out_features, dec.out.out_features
        self.int8_kernel = int8_kernel
        if int8_kernel:
            quantize_linears(self, self.per_step_names(), int8_kernel)

    def per_step_names(self) -> list[str]:
        """The nn.Linear layers under self that run once per step: int8 quantizes these."""
        return ["out", "state_out"] + [f"model.{name}" for name in per_step_layers(self.model)]

    def per_step_linears(self) -> list[nn.Module]:
        return [self.get_submodule(name) for name in self.per_step_names()]

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> PreparedSource:
        enc = self.model.encode(src, src_lengths)
        values, doubled_keys = F.linear(enc.memory, self.context_weights), 2 * enc.keys
        # The steps read `values` and `doubled_keys` only: the memory and the keys are dropped, so
        # that beam search's `select` of the active sentences copies neither.
        return PreparedSource(dataclasses.replace(enc, memory=None, keys=None), values, doubled_keys)

    def init_state(self, source: PreparedSource) -> DecoderState:
        return self.model.init_state(source.enc)

    def attend(self, query: torch.Tensor, source: PreparedSource) -> tuple[torch.Tensor, torch.Tensor]:
        """The context through the weights that read it (B*K, G*H + R) and α (B*K, S) for s_{t-1} `query`."""
        attention = self.model.decoder.attention
        return sigmoid_attention(attention, query, source.doubled_keys, source.values, source.enc.mask, self.doubled_v)

    def step(self, tokens: torch.Tensor, state: DecoderState, source: PreparedSource) -> StepOutput:
        """As Decoder.step: attend with s_{t-1}, update the layers, read out, project to the vocabulary."""
        o, state, alpha = self.read_out(tokens, state, source)
        return StepOutput(self.out(o)[:, :self.vocab_size], state, alpha)

    def read_out(self, tokens: torch.Tensor, state: DecoderState, source: PreparedSource):
        """`step` up to the output layer -> (o (B, R), the new state, α (B, S)); a shortlist
        (nmt/translate/shortlist.py) projects o to its own rows."""
        dec = self.model.decoder
        terms, alpha = self.attend(state.hidden[-1], source)  # (B, G*H + R)
        x0, read = (terms + F.embedding(tokens, self.table)).split([self.gates, self.table.size(1) - self.gates], -1)
        hidden, cell = dec.rnn(x0, state.hidden, state.cell)
        return torch.tanh(self.state_out(hidden[-1]) + read), DecoderState(hidden, cell), alpha  # o: (B, R)

    def output_rows(self, ids: torch.Tensor) -> nn.Module:
        """The output layer restricted to target pieces `ids` (V_s,): (B, R) -> (B, V_s') logits, the
        first V_s of them `step`'s columns `ids` (padded as `out` is). Under int8 the rows are quantized
        as the whole layer's are, one scale per row, so each logit is the one `step` gives; only the
        packing is redone, once per batch."""
        with torch.no_grad():
            layer = frozen_linear(padded_output(self.model.decoder.out.weight.index_select(0, ids)))
        return Int8Linear(layer, self.int8_kernel) if self.int8_kernel else layer
