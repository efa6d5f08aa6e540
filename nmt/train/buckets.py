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
from typing import NamedTuple

import torch
import torch.nn.functional as F

from nmt.vocab import PAD

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


def pad_rows_and_lengths(src: torch.Tensor, src_lengths: torch.Tensor, rows: int, src_len: int,
                         pad_row_token: int = PAD) -> tuple[torch.Tensor, torch.Tensor]:
    """src (B, S), src_lengths (B,) -> (rows, src_len), (rows,): PAD columns, then padded rows of
    `pad_row_token` followed by PAD, of length PAD_ROW_SOURCE_LENGTH."""
    B, S = src.shape
    src = F.pad(src, (0, src_len - S, 0, rows - B), value=PAD)  # (rows, src_len)
    src[B:, :PAD_ROW_SOURCE_LENGTH] = pad_row_token
    return src, F.pad(src_lengths, (0, rows - B), value=PAD_ROW_SOURCE_LENGTH)
