"""Greedy search: the most probable token at each step, all sentences of the batch together."""

from __future__ import annotations

import torch

from nmt.config import DecodeConfig
from nmt.search.common import Hypothesis, max_lengths, one_path_each, prefix_caps


@torch.inference_mode()
def greedy_search(model, src: torch.Tensor, src_lengths: torch.Tensor, opts: DecodeConfig,
                  return_attention: bool = False, prefix: torch.Tensor | None = None) -> list[Hypothesis]:
    """One hypothesis per sentence, continuing its `prefix` (B, P) if given (nmt/search/common.py).
    Uses opts' length cap and min_len (beam size and length penalty do not apply)."""
    caps = prefix_caps(max_lengths(src_lengths, opts.max_len_a, opts.max_len_b), prefix)  # (B,)
    return one_path_each(model, model.encode(src, src_lengths), caps, opts, lambda lp, t: lp.argmax(-1),
                         return_attention, prefix)
