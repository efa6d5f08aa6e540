"""Training's decoder loop replayed as CUDA graphs, one per shape bucket, behind `train.cuda_graphs`.

On a GPU the decoder's position-by-position loop (Bahdanau's attention needs the previous state) is
about twenty small kernels per position forward and more backward, and the GPU waits on their
launches (issue 28). A CUDA graph records the whole teacher-forced pass, forward and backward, once
per shape, then replays it as one launch. Graphs need fixed shapes, so each batch is padded to its
bucket (nmt/train/buckets.py, where padding is shown to change nothing) and the logits are cut back to the
batch's own (B, T). With dropout 0 the loss and every gradient are the eager path's; with dropout the
captured pass draws its masks in another order and over the padded shape: other masks than eager's,
so another loss and other gradients, of the same distribution.

What is captured: the decoder from the encoder's output on (key projection, bridge, the loop, the
readout and the output layer), via `torch.cuda.make_graphed_callables`. The encoder stays eager:
cuDNN's packed layers are few launches already, and packing reads the lengths on the host.
What is not: evaluation, scoring and decoding (the model in eval mode, or without gradients) run
the plain `Seq2Seq.forward`, the reference. The model's weights, and so its checkpoints, are the
same objects either way: only the bound `forward` of the training model is replaced.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nmt.errors import NmtError
from nmt.model.encoder import EncoderOutput
from nmt.train.buckets import Buckets, Shape, pad_rows_and_lengths
from nmt.vocab import PAD


log = logging.getLogger("nmt.cuda_graphs")


def use_cuda_graphs(setting: str, device: torch.device) -> bool:
    """train.cuda_graphs (one of its config choices) resolved for `device`: auto = on for CUDA, off
    elsewhere; on off CUDA, an error."""
    if setting == "on" and device.type != "cuda":
        raise NmtError(f"train.cuda_graphs: on needs a CUDA device, and this run is on {device.type}; use auto or off")
    return setting == "on" or (setting == "auto" and device.type == "cuda")


class TeacherForced(nn.Module):
    """The decoder's teacher-forced pass as a function of tensors alone, as a graph takes them:
    tgt_in (B, T), memory (B, S, M), mask (B, S), final (L, B, M) [, final_cell (L, B, M)] -> logits (B, T, V)."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, tgt_in, memory, mask, final, *final_cell):
        enc = EncoderOutput(memory, mask, final, final_cell[0] if final_cell else None)
        return self.decoder(tgt_in, self.decoder.prepare(enc))


def capture(module: TeacherForced, args: tuple) -> Callable:
    """`module` recorded as a CUDA graph, forward and backward, for the shapes of `args`.

    Capture needs autocast's weight cache off (its casts would be recorded once and go stale as
    the weights change); autocast's dtype, if it is on, is the training's."""
    device = "cuda"
    sample = tuple(a.detach().clone().requires_grad_(a.requires_grad) for a in args)
    with torch.autocast(device, dtype=torch.get_autocast_dtype(device), enabled=torch.is_autocast_enabled(device),
                        cache_enabled=False):
        return torch.cuda.make_graphed_callables(module, sample)


class BucketedForward:
    """`Seq2Seq.forward` for training: the batch padded to its bucket, the encoder eager, the decoder
    from `record`'s graph for that bucket (recorded at its first batch), the logits cut back to (B, T, V).

    `record(module, args)` makes the graph; on a CPU the tests pass one that returns `module` itself,
    which runs this whole path (padding, the tensor-only decoder, the cut) eagerly."""

    def __init__(self, model: nn.Module, record: Callable, buckets: Buckets = Buckets()):
        self.model, self.record, self.buckets = model, record, buckets
        self.plain = model.forward  # the bound Seq2Seq.forward: the reference path
        self.graphs: dict[Shape, Callable] = {}

    def __call__(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        if not (self.model.training and torch.is_grad_enabled()):
            return self.plain(src, src_lengths, tgt_in)
        (B, S), T = src.shape, tgt_in.size(1)
        bucket = self.buckets.of(Shape(B, S, T))
        src, src_lengths = pad_rows_and_lengths(src, src_lengths, bucket.rows, bucket.src)  # (B', S')
        tgt_in = F.pad(tgt_in, (0, bucket.tgt - T, 0, bucket.rows - B), value=PAD)  # (B', T')
        enc = self.model.encoder(src, src_lengths)
        args = (tgt_in, enc.memory, enc.mask, enc.final) + (() if enc.final_cell is None else (enc.final_cell,))
        if bucket not in self.graphs:
            log.info("capturing the decoder for bucket rows %d, source %d, target %d (%d graphs)", *bucket,
                     len(self.graphs) + 1)
            self.graphs[bucket] = self.record(TeacherForced(self.model.decoder), args)
        return self.graphs[bucket](*args)[:B, :T]  # (B, T, V): padded rows and positions get zero gradient


def _own_gradient(grad: torch.Tensor) -> torch.Tensor:
    return grad.clone()


def capture_training(model: nn.Module) -> BucketedForward:
    """Make `model`'s training forward the bucketed, captured one (before Accelerate wraps it in autocast).

    Each graph keeps its own memory pool: buckets replay in any order, and a pool shared between
    separate captures is safe only when they replay in the order they were captured. A graph's
    backward returns the decoder's weight gradients in its static buffers, which autograd may adopt
    as `.grad` (it steals a gradient nobody else holds) and the next replay would then overwrite;
    a hook on each decoder weight hands autograd a copy instead (one copy per weight per update)."""
    bucketed = BucketedForward(model, capture)
    for param in model.decoder.parameters():
        param.register_hook(_own_gradient)
    model.forward = bucketed  # an instance attribute: state_dict, saving and eval are untouched
    return bucketed
