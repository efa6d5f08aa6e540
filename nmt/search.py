"""Decoding: greedy search and batched beam search over the model's `encode` / `init_state` / `step`.

Outputs exclude BOS and EOS. A hypothesis that hit the length cap without EOS has `finished=False`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nmt.config import DecodeConfig
from nmt.tokenizer import BOS, EOS


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float  # sum of token log-probabilities (beam: divided by the length penalty)
    finished: bool  # ended with EOS (False: stopped at the length cap)
    attention: torch.Tensor | None = None  # (len(tokens) + 1, S) weights, EOS row included when finished


def max_lengths(src_lengths: torch.Tensor, a: float, b: int) -> torch.Tensor:
    """Output length cap per sentence (EOS included): a * source words-with-EOS + b."""
    return (src_lengths.float() * a).long() + b


def step_logits(logits: torch.Tensor, t: int, opts: DecodeConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Step t's logits (..., V) in float and their log-normaliser (...): log-probabilities are
    logits - log_norm, never written out. Before opts.min_len EOS is forbidden after normalising,
    as in fairseq: its probability is removed, not spread over the other tokens."""
    logits = logits.float()
    log_norm = logits.logsumexp(-1)
    if t < opts.min_len:
        logits = logits.clone()  # the model's output is not ours to write to
        logits[..., EOS] = float("-inf")
    return logits, log_norm


@torch.inference_mode()
def greedy_search(model, src: torch.Tensor, src_lengths: torch.Tensor, opts: DecodeConfig,
                  return_attention: bool = False) -> list[Hypothesis]:
    """Pick the most probable token at each step; all sentences of the batch advance together.
    Uses opts' length cap and min_len (beam size and length penalty do not apply)."""
    B = src.size(0)
    caps = max_lengths(src_lengths, opts.max_len_a, opts.max_len_b)  # (B,)
    enc = model.encode(src, src_lengths)
    state = model.init_state(enc)
    tokens = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    alive = torch.ones(B, dtype=torch.bool, device=src.device)
    steps, scores, attns = [], torch.zeros(B, device=src.device), []
    for t in range(int(caps.max())):
        out = model.step(tokens, state, enc)
        logits, log_norm = step_logits(out.logits, t, opts)  # (B, V), (B,)
        best, tokens = logits.max(dim=-1)
        scores += (best - log_norm) * alive  # the chosen token's log-probability
        steps.append(torch.where(alive, tokens, EOS))
        attns.append(out.attention)
        alive &= (tokens != EOS) & (t + 1 < caps)
        state = out.state
        if not alive.any():
            break
    return _collect(torch.stack(steps, 1), scores, caps, torch.stack(attns, 1) if return_attention else None)


def _collect(seqs: torch.Tensor, scores: torch.Tensor, caps: torch.Tensor, attn) -> list[Hypothesis]:
    """(B, T) token matrix -> hypotheses cut at the first EOS or at the cap."""
    hyps = []
    for b, row in enumerate(seqs.tolist()):
        cap = int(caps[b])
        end = row.index(EOS) if EOS in row[:cap] else cap
        finished = end < cap
        keep = end + 1 if finished else end
        weights = None if attn is None else attn[b, :keep].float().cpu()
        hyps.append(Hypothesis(row[:end], float(scores[b]), finished, weights))
    return hyps
