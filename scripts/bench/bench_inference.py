#!/usr/bin/env python
"""What each decoding speed-up of nmt/translate/inference.py buys: its pieces, each switched off in turn, on
identical weights and batches, taking turns.

    scripts/bench/bench_inference.py [--search beam|greedy] [--rounds 8] [--threads 1]

A JoeyNMT-sized model (recipes/multi30k_de_en/joeynmt_equiv.yaml's sizes, 5 483 / 3 963 pieces) with
random weights decodes 64 sentences of 8-19 pieces to the length cap (EOS forbidden), so every
variant runs the same steps. With one thread the figure is the process's CPU time, which other
processes on the machine disturb far less than wall time; --threads 2 times the wall clock.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import torch
import torch.nn.functional as F

from common import clock
from nmt.config import DecodeConfig, ModelConfig
from nmt.model.decoder import DecoderState, StepOutput
from nmt.model.seq2seq import Seq2Seq
from nmt.search import beam_search, greedy_search
from nmt.translate.inference import InferenceModel, PreparedSource, frozen_linear


class NoPadding(InferenceModel):
    def __init__(self, model):
        super().__init__(model)
        self.out = frozen_linear(self.out.weight[:self.vocab_size].contiguous())


class NoTable(InferenceModel):
    """The embedding terms as a product per step."""

    def __init__(self, model):
        super().__init__(model)
        dec = model.decoder
        self.embed_weight = torch.cat([dec.rnn.input[0].weight, dec.readout.parts().embed]).detach()
        self.embed_bias = torch.cat([dec.rnn.input[0].bias, dec.readout.bias]).detach()
        self.table = None

    def step(self, tokens, state, source):
        dec = self.model.decoder
        return self._finish(F.linear(dec.embed(tokens), self.embed_weight, self.embed_bias), state, source)

    def _finish(self, embedded, state, source):
        dec = self.model.decoder
        terms, alpha = self.attend(state.hidden[-1], source)
        x0, read = (terms + embedded).split([self.gates, embedded.size(1) - self.gates], -1)
        hidden, cell = dec.rnn(x0, state.hidden, state.cell)
        o = torch.tanh(self.state_out(hidden[-1]) + read)
        return StepOutput(self.out(o)[:, :self.vocab_size], DecoderState(hidden, cell), alpha)


class NoContextWeights(InferenceModel):
    """The context through the weights that read it, per step."""

    def encode(self, src, src_lengths):
        enc = self.model.encode(src, src_lengths)
        return PreparedSource(enc, enc.memory, 2 * enc.keys)

    def step(self, tokens, state, source):
        dec = self.model.decoder
        context, alpha = self.attend(state.hidden[-1], source)
        terms = F.linear(context, self.context_weights) + F.embedding(tokens, self.table)
        x0, read = terms.split([self.gates, terms.size(1) - self.gates], -1)
        hidden, cell = dec.rnn(x0, state.hidden, state.cell)
        o = torch.tanh(self.state_out(hidden[-1]) + read)
        return StepOutput(self.out(o)[:, :self.vocab_size], DecoderState(hidden, cell), alpha)


class TanhAttention(InferenceModel):
    """The attention's scores as the paper writes them, vᵀ tanh(W_q s + W_k m_j)."""

    def encode(self, src, src_lengths):
        prepared = super().encode(src, src_lengths)
        return dataclasses.replace(prepared, doubled_keys=prepared.doubled_keys / 2)  # W_k m_j: halving is exact

    def attend(self, query, source):
        return self.model.decoder.attention(query, source.doubled_keys, source.values, source.enc.mask)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search", choices=("beam", "greedy"), default="beam")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ModelConfig(embed_size=256, hidden_size=256, decoder_hidden_size=512, attention_size=512)
    model = Seq2Seq(cfg, 5483, 3963).eval()
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(8, 20, (64,), generator=g)
    src = torch.randint(4, 5483, (64, int(lengths.max())), generator=g)
    src[torch.arange(src.size(1))[None] >= lengths[:, None]] = 0
    opts = DecodeConfig(beam_size=5, max_len_a=1.0, max_len_b=5, min_len=1000)
    search = beam_search if args.search == "beam" else greedy_search
    variants = {"Seq2Seq itself": model, "InferenceModel": InferenceModel(model),
                "without padded_output": NoPadding(model), "without embedding_table": NoTable(model),
                "without context_weights": NoContextWeights(model),
                "without sigmoid_attention": TanhAttention(model)}
    seconds = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, m in variants.items():
            start = clock()
            search(m, src, lengths, opts)
            seconds[name].append(clock() - start)
    best = statistics.median(seconds["InferenceModel"])
    print(f"{args.search} search, 64 sentences, {args.threads} thread(s), median of {args.rounds}\n")
    print("| variant | seconds | speed relative to InferenceModel |\n|---|---|---|")
    for name, values in seconds.items():
        print(f"| {name} | {statistics.median(values):.3f} | {best / statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
