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
    finished: bool  # ended before the length cap (False: reached it, where EOS is forced)
    attention: torch.Tensor | None = None  # (len(tokens) + 1, S) weights, the EOS row last


def max_lengths(src_lengths: torch.Tensor, a: float, b: int) -> torch.Tensor:
    """Output length cap per sentence (EOS included): a * source pieces-with-EOS + b."""
    return (src_lengths.float() * a).long() + b


def log_probs(logits: torch.Tensor, t: int, opts: DecodeConfig, last: torch.Tensor | None = None) -> torch.Tensor:
    """Step t's logits (..., V) -> log-probabilities in float.

    Before opts.min_len EOS is forbidden after normalising, as in fairseq: its probability is removed,
    not spread over the other tokens. Rows where `last` (broadcast over the leading dimensions) is
    True are at the length cap: only EOS may follow, with its own log-probability (fairseq), so that
    a hypothesis cut by the cap is scored like every other, EOS term included.
    """
    normalised = logits.float().log_softmax(-1)
    out = normalised
    if t < opts.min_len:
        out = normalised.clone()
        out[..., EOS] = float("-inf")
    if last is not None:
        only_eos = torch.full_like(normalised, float("-inf"))
        only_eos[..., EOS] = normalised[..., EOS]
        out = torch.where(last.unsqueeze(-1), only_eos, out)
    return out
