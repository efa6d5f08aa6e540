"""What every search strategy shares: the hypothesis, the output length cap, a step's log-probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nmt.config import DecodeConfig
from nmt.tokenizer import EOS


@dataclass
class Hypothesis:
    tokens: list[int]  # without BOS and EOS
    score: float  # sum of token log-probabilities (beam: divided by the length penalty)
    finished: bool  # ended with EOS (False: stopped at the length cap)
    attention: torch.Tensor | None = None  # (len(tokens) + 1, S) weights, EOS row included when finished


def max_lengths(src_lengths: torch.Tensor, a: float, b: int) -> torch.Tensor:
    """Output length cap per sentence (EOS included): a * source pieces-with-EOS + b."""
    return (src_lengths.float() * a).long() + b


def log_probs(logits: torch.Tensor, t: int, opts: DecodeConfig) -> torch.Tensor:
    """Step t's logits (..., V) -> log-probabilities in float. Before opts.min_len EOS is forbidden
    after normalising, as in fairseq: its probability is removed, not spread over the other tokens."""
    out = logits.float().log_softmax(-1)
    if t < opts.min_len:
        out[..., EOS] = float("-inf")
    return out
