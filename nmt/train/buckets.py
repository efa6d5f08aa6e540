"""Shape buckets: batch shapes rounded up to a few sizes, so that a few captured CUDA graphs serve every batch.

A captured graph replays fixed shapes (nmt/train/cuda_graphs.py). Each dimension of a batch, rows B,
source length S and target length T, is rounded up to the next rung of a ladder: multiples of
`step` that grow by at least `ratio` each rung, so the rungs are few and the padding each costs is
bounded by about `ratio`. The choice depends on the shape alone, so it is deterministic and covers
every batch of every epoch.

Padding changes nothing (tests/test_buckets.py):
- padded source positions are PAD beyond `src_lengths`: the encoder packs them away and the
  attention mask hides them;
- padded target positions are PAD in `tgt_out`, which the loss ignores (nmt/train/update.py);
- a padded row is all PAD with a source length of 1, not 0: packing needs one position, and an
  attention row with every position masked would give NaN, which a zero gradient does not cancel
  (NaN x 0 = NaN). Its target is all PAD, so it adds nothing to the loss or to any gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, NamedTuple

import torch
import torch.nn.functional as F

from nmt.data.batching import Batch
from nmt.data.tokenizer import EOS, PAD

PAD_ROW_SOURCE_LENGTH = 1  # see the module docstring: packing needs one position, attention one unmasked


class Shape(NamedTuple):
    rows: int  # B
    src: int  # S
    tgt: int  # T


@dataclass(frozen=True)
class Ladder:
    """Sizes a dimension is rounded up to: step, then each rung at least `ratio` times the one before,
    a multiple of step."""

    step: int
    ratio: float

    def round_up(self, n: int) -> int:
        rung = self.step
        while rung < n:
            rung = self.step * math.ceil(max(rung + self.step, rung * self.ratio) / self.step)
        return rung


@dataclass(frozen=True)
class Buckets:
    """One ladder per dimension. Rows come in multiples of 8 (tensor-core tiles); lengths in
    multiples of 4, a rung at most 25% above the one below. Measured on Multi30k's training batches
    (docs/training.md, "CUDA graphs"): the ratio of padded to real target tokens and the number of
    distinct buckets, which is the number of graphs."""

    rows: Ladder = Ladder(8, 1.25)
    src: Ladder = Ladder(4, 1.25)
    tgt: Ladder = Ladder(4, 1.25)

    def of(self, shape: Shape) -> Shape:
        return Shape(self.rows.round_up(shape.rows), self.src.round_up(shape.src), self.tgt.round_up(shape.tgt))


def batch_shape(batch: Batch) -> Shape:
    B, S = batch.src.shape
    return Shape(B, S, batch.tgt_in.size(1))


def pad_rows_and_lengths(src: torch.Tensor, src_lengths: torch.Tensor, rows: int, src_len: int,
                         pad_row_token: int = PAD) -> tuple[torch.Tensor, torch.Tensor]:
    """src (B, S), src_lengths (B,) -> (rows, src_len), (rows,): PAD columns, then padded rows of
    `pad_row_token` followed by PAD, of length PAD_ROW_SOURCE_LENGTH."""
    B, S = src.shape
    src = F.pad(src, (0, src_len - S, 0, rows - B), value=PAD)  # (rows, src_len)
    src[B:, :PAD_ROW_SOURCE_LENGTH] = pad_row_token
    return src, F.pad(src_lengths, (0, rows - B), value=PAD_ROW_SOURCE_LENGTH)


def pad_batch(batch: Batch, shape: Shape) -> Batch:
    """`batch` padded to `shape` (at least as large in every dimension): the same loss and gradients."""
    B, S, T = batch_shape(batch)
    if shape.rows < B or shape.src < S or shape.tgt < T:
        raise ValueError(f"bucket {tuple(shape)} is smaller than the batch {(B, S, T)}")
    src, src_lengths = pad_rows_and_lengths(batch.src, batch.src_lengths, shape.rows, shape.src)
    grow = (0, shape.tgt - T, 0, shape.rows - B)
    return Batch(src, src_lengths, F.pad(batch.tgt_in, grow, value=PAD), F.pad(batch.tgt_out, grow, value=PAD))


def pad_sources(src: torch.Tensor, src_lengths: torch.Tensor, buckets: Buckets) -> tuple[torch.Tensor, torch.Tensor]:
    """A decoding batch, src (B, S), padded to its (rows, source length) bucket. Padded rows are the
    empty sentence (EOS alone), a sentence like any other; their hypotheses are to be dropped."""
    B, S = src.shape
    return pad_rows_and_lengths(src, src_lengths, buckets.rows.round_up(B), buckets.src.round_up(S), EOS)


def padding_ratio(shapes: Iterable[tuple[Shape, int]], buckets: Buckets) -> dict:
    """Over (shape, real target tokens) pairs, e.g. an epoch's batches: padded target tokens
    (bucket rows x bucket T) over real (non-PAD) ones, the same over the batches' own padding, and
    the number of distinct buckets (graphs to capture)."""
    real = own = padded = 0
    seen = set()
    for shape, tokens in shapes:
        bucket = buckets.of(shape)
        seen.add(bucket)
        real, own, padded = real + tokens, own + shape.rows * shape.tgt, padded + bucket.rows * bucket.tgt
    return {"padded_over_real": round(padded / max(real, 1), 3), "unbucketed_over_real": round(own / max(real, 1), 3),
            "buckets": len(seen), "batches_tokens": real}


def epoch_shapes(loader) -> Iterable[tuple[Shape, int]]:
    """(shape, real target tokens) of each batch of a loader of `Batch`es."""
    for batch in loader:
        yield batch_shape(batch), int((batch.tgt_out != PAD).sum())


def decode_in_bucket(search, src: torch.Tensor, src_lengths: torch.Tensor, buckets: Buckets) -> list:
    """`search(src, src_lengths)` (greedy or beam: one result per row) run on the batch padded to its
    bucket; the padded rows' results are dropped. Attention, if asked for, has the bucket's S columns."""
    return search(*pad_sources(src, src_lengths, buckets))[: src.size(0)]
