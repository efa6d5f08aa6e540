"""The sequence-to-sequence model: encoder, bridge, attention decoder, and its initialisation.

Search and training see only `encode`, `init_state`, `step` and `forward`; nothing here knows
about devices, processes or the cell type beyond building the layers.
"""

from __future__ import annotations

import torch
from torch import nn

from nmt.config import ModelConfig
from nmt.model.cells import StackedCell
from nmt.model.decoder import Decoder, DecoderState, StepOutput
from nmt.model.encoder import Encoder, EncoderOutput
from nmt.vocab import PAD


class Seq2Seq(nn.Module):
    def __init__(self, cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int, initialise: bool = True):
        super().__init__()
        self.encoder = Encoder(cfg.cell, src_vocab_size, cfg.embed_size, cfg.hidden_size,
                               cfg.num_layers, cfg.dropout, PAD)
        self.decoder = Decoder(cfg.cell, tgt_vocab_size, cfg.embed_size, cfg.decoder_hidden_size,
                               self.encoder.output_size, cfg.attention_size,
                               cfg.readout, cfg.num_layers,
                               cfg.dropout, cfg.tie_embeddings, PAD)
        if initialise:  # False where a checkpoint's weights replace every one (its orthogonal QRs cost seconds)
            init_weights(self, cfg.init, cfg.init_range)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        """src (B, S), src_lengths (B,) -> memory, mask, final states, and the attention keys."""
        return self.decoder.prepare(self.encoder(src, src_lengths))

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        return self.decoder.init_state(enc)

    def step(self, tokens: torch.Tensor, state: DecoderState, enc: EncoderOutput) -> StepOutput:
        """tokens (B*K,) and state rows are hypotheses, K per sentence of enc (B rows), sentence-major."""
        return self.decoder.step(tokens, state, enc)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) for decoder input tgt_in (B, T)."""
        return self.decoder(tgt_in, self.encode(src, src_lengths))


def init_weights(model: nn.Module, scheme: str, scale: float) -> None:
    """Initialise every weight of `model` by `scheme` (ModelConfig.init), then the recurrence and padding.

    `uniform` (every weight in ±scale, OpenNMT-py's default `param_init`) trains faster than `xavier`
    (measured in docs/benchmarks.md, "Initialisation"). Both schemes then make the
    recurrent matrices orthogonal per gate, which keeps a plain tanh RNN's recurrence from exploding
    at the start, and give an LSTM's forget gate a bias of 1.
    """
    if scheme == "uniform":
        for param in model.parameters():
            nn.init.uniform_(param, -scale, scale)
    else:
        _xavier(model)
    for module in model.modules():
        if isinstance(module, StackedCell):
            for W, U in zip(module.input, module.recurrent):
                _recurrence(U.weight, W.bias, U.bias, module.kind == "lstm")
        elif isinstance(module, nn.RNNBase):  # the encoder's: weight_hh_l0, weight_hh_l0_reverse, ...
            for name, weight in module.named_parameters():
                if name.startswith("weight_hh"):
                    layer = name.removeprefix("weight_hh")
                    _recurrence(weight, getattr(module, f"bias_ih{layer}"), getattr(module, f"bias_hh{layer}"),
                                module.mode == "LSTM")
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()


def _xavier(model: nn.Module) -> None:
    """Xavier input weights, zero biases, N(0, 1) embeddings."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.RNNBase)):
            for name, param in module.named_parameters(recurse=False):
                (nn.init.zeros_ if name.startswith("bias") else nn.init.xavier_uniform_)(param)
    # Embeddings last: a tied output projection must end up with the embedding's initialisation.
    # Unit variance (PyTorch's default): with Xavier input weights, smaller embeddings give the
    # recurrent layers near-zero inputs and training stalls for epochs (measured: 0.5 nats worse
    # after one Multi30k epoch with std 1/sqrt(E)).
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=1.0)


def _recurrence(weight: torch.Tensor, input_bias: torch.Tensor, recurrent_bias: torch.Tensor, lstm: bool) -> None:
    """One layer's recurrent matrix (G*H, H) orthogonal per gate; an LSTM's forget-gate bias (the sum
    of both biases, gate order i, f, g, o) is 1."""
    H = weight.size(1)
    with torch.no_grad():
        for gate in weight.split(H):
            nn.init.orthogonal_(gate)
        if lstm:
            input_bias[H:2 * H] = 1.0
            recurrent_bias[H:2 * H] = 0.0


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
