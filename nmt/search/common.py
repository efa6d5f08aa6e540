"""What every search strategy shares: the hypothesis, the output length cap, a step's log-probabilities
(with the forced tokens of a target prefix), and the loop of the strategies that extend one hypothesis
per row (greedy search and sampling).

A target prefix is a (B, P) tensor of token ids per sentence, padded with FREE: at step t < P a row
whose prefix holds a token there may only take that token, with its own log-probability, so that the
prefix is teacher-forced through the decoder inside the batched search and every strategy scores it
like the tokens it chooses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from nmt.config import DecodeConfig
from nmt.vocab import BOS, EOS

FREE = -1  # a prefix position past the end of a sentence's prefix: the search chooses


@dataclass
class Hypothesis:
    tokens: list[int]  # without BOS and EOS
    score: float  # sum of token log-probabilities (beam: divided by the length penalty)
    finished: bool  # ended before the length cap (False: reached it, where EOS is forced)
    attention: torch.Tensor | None = None  # (len(tokens) + 1, S) weights, the EOS row last


def max_lengths(src_lengths: torch.Tensor, a: float, b: int) -> torch.Tensor:
    """Output length cap per sentence (EOS included): a * source pieces-with-EOS + b."""
    return (src_lengths.float() * a).long() + b


def prefix_caps(caps: torch.Tensor, prefix: torch.Tensor | None) -> torch.Tensor:
    """The length caps (B,) raised so that each prefix (B, P) fits with the EOS after it: a prefix is
    never cut, and the cap and the forced tokens never meet at one step."""
    if prefix is None:
        return caps
    return torch.maximum(caps, (prefix != FREE).sum(1) + 1)


def forced_at(prefix: torch.Tensor | None, t: int) -> torch.Tensor | None:
    """Step t's forced tokens (B,) (FREE where the search chooses), or None past every prefix."""
    return prefix[:, t] if prefix is not None and t < prefix.size(1) else None


def log_probs(logits: torch.Tensor, t: int, opts: DecodeConfig, last: torch.Tensor | None = None,
              forced: torch.Tensor | None = None) -> torch.Tensor:
    """Step t's logits (..., V) -> log-probabilities in float.

    Before opts.min_len EOS is forbidden after normalising, as in fairseq: its probability is removed,
    not spread over the other tokens. Rows where `last` (broadcast over the leading dimensions) is
    True are at the length cap: only EOS may follow, with its own log-probability (fairseq), so that
    a hypothesis cut by the cap is scored like every other, EOS term included. Rows where `forced`
    (token ids, broadcast likewise) is not FREE may only take that token of their prefix, with its
    own log-probability (never EOS: a prefix has none, so no hypothesis ends inside its prefix).
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
    if forced is not None:
        vocabulary = torch.arange(normalised.size(-1), device=normalised.device)
        other = vocabulary != forced.unsqueeze(-1)  # (..., V): every token but the forced one
        out = torch.where((forced != FREE).unsqueeze(-1), normalised.masked_fill(other, float("-inf")), out)
    return out


def one_path_each(model, enc, caps: torch.Tensor, opts: DecodeConfig,
                  choose: Callable[[torch.Tensor, int], torch.Tensor], return_attention: bool = False,
                  prefix: torch.Tensor | None = None) -> list[Hypothesis]:
    """One hypothesis per row of `enc` (R rows, `caps` (R,) their length caps, already raised to fit
    `prefix` (R, P)), step t's token picked by `choose(log_probs (R, V), t)` (greedy: the most
    probable; sampling: a draw) unless the row's prefix forces it. A row's
    score is the sum of the log-probabilities of its tokens, EOS included; -inf where non-finite
    logits (fp16 overflow, NaN) left none, and such a row still ends with EOS at its cap."""
    R, device = caps.size(0), caps.device
    state = model.init_state(enc)
    tokens = torch.full((R,), BOS, dtype=torch.long, device=device)
    alive = torch.ones(R, dtype=torch.bool, device=device)
    steps, scores, attns = [], torch.zeros(R, device=device), []
    first_cap, last_cap = torch.stack(caps.aminmax()).tolist()  # one host read for both
    for t in range(last_cap):
        out = model.step(tokens, state, enc)
        # EOS forced at the cap; before the first cap no row is there: skip two passes over (R, V).
        at_cap = t + 1 >= caps if t + 1 >= first_cap else None
        forced = forced_at(prefix, t)  # (R,) or None
        lp = log_probs(out.logits, t, opts, at_cap, forced)  # (R, V)
        tokens = choose(lp, t)  # (R,)
        if at_cap is not None:  # EOS is the only choice there, even where the row's values are NaN
            tokens = tokens.masked_fill(at_cap, EOS)
        if forced is not None:  # likewise a prefix's token
            tokens = torch.where(forced != FREE, forced, tokens)
        scores += torch.where(alive, lp.gather(1, tokens[:, None]).squeeze(1), 0.0)  # ended rows may hold NaN
        steps.append(torch.where(alive, tokens, EOS))
        attns.append(out.attention)
        alive &= (tokens != EOS) & (t + 1 < caps)
        state = out.state
        if not alive.any():
            break
    scores = scores.masked_fill(scores.isnan(), float("-inf"))
    return _collect(torch.stack(steps, 1), scores, caps, torch.stack(attns, 1) if return_attention else None)


def _collect(seqs: torch.Tensor, scores: torch.Tensor, caps: torch.Tensor, attn) -> list[Hypothesis]:
    """(R, T) token matrix -> hypotheses cut at their EOS (there is one: it is forced at the cap)."""
    hyps = []
    for row, cap, score in zip(seqs.tolist(), caps.tolist(), scores.tolist()):
        end = row.index(EOS)
        hyps.append(Hypothesis(row[:end], score, end + 1 < cap, None))
    if attn is not None:
        for b, hyp in enumerate(hyps):
            hyp.attention = attn[b, :len(hyp.tokens) + 1].float().cpu()
    return hyps
