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
        best, tokens = log_probs(out.logits, t, opts).max(dim=-1)  # (B,), (B,)
        scores += best * alive
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
