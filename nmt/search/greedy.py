"""Greedy search: the most probable token at each step, all sentences of the batch together."""

from __future__ import annotations

import torch

from nmt.config import DecodeConfig
from nmt.search.common import Hypothesis, log_probs, max_lengths
from nmt.tokenizer import BOS, EOS


@torch.inference_mode()
def greedy_search(model, src: torch.Tensor, src_lengths: torch.Tensor, opts: DecodeConfig,
                  return_attention: bool = False) -> list[Hypothesis]:
    """One hypothesis per sentence. Uses opts' length cap and min_len (beam size and length
    penalty do not apply)."""
    B = src.size(0)
    caps = max_lengths(src_lengths, opts.max_len_a, opts.max_len_b)  # (B,)
    enc = model.encode(src, src_lengths)
    state = model.init_state(enc)
    tokens = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    alive = torch.ones(B, dtype=torch.bool, device=src.device)
    steps, scores, attns = [], torch.zeros(B, device=src.device), []
    for t in range(int(caps.max())):
        out = model.step(tokens, state, enc)
        best, tokens = log_probs(out.logits, t, opts, t + 1 >= caps).max(dim=-1)  # (B,), (B,); EOS at the cap
        scores += best * alive
        steps.append(torch.where(alive, tokens, EOS))
        attns.append(out.attention)
        alive &= (tokens != EOS) & (t + 1 < caps)
        state = out.state
        if not alive.any():
            break
    return _collect(torch.stack(steps, 1), scores, caps, torch.stack(attns, 1) if return_attention else None)


def _collect(seqs: torch.Tensor, scores: torch.Tensor, caps: torch.Tensor, attn) -> list[Hypothesis]:
    """(B, T) token matrix -> hypotheses cut at their EOS (there is one: it is forced at the cap)."""
    hyps = []
    for row, cap, score in zip(seqs.tolist(), caps.tolist(), scores.tolist()):
        end = row.index(EOS)
        hyps.append(Hypothesis(row[:end], score, end + 1 < cap, None))
    if attn is not None:
        for b, hyp in enumerate(hyps):
            hyp.attention = attn[b, :len(hyp.tokens) + 1].float().cpu()
    return hyps
