"""Sampling: each token drawn at random from the model's (reshaped) distribution, the batch together.

At every step the log-probabilities are reshaped in this order, as in fairseq and Hugging Face:

    temperature  log p / T, renormalised (T < 1 sharpens, T > 1 flattens)
    top-k        keep the k most probable tokens
    top-p        keep the fewest most probable tokens whose mass reaches p (nucleus sampling):
                 a token is kept when the mass of the tokens before it is below p, so the most
                 probable token always stays
    renormalise  the kept tokens' probabilities, then draw one

At the length cap only EOS may follow (nmt/search/common.py), as in greedy and beam search.
A hypothesis's score is the sum of the model's own log-probabilities of the drawn tokens (before
temperature and truncation), so that samples can be compared and reranked like search output.
Draws come from a `torch.Generator`: the same seed, input and batch give the same samples.
"""

from __future__ import annotations

import torch

from nmt.config import DecodeConfig
from nmt.errors import NmtError
from nmt.search.common import Hypothesis, max_lengths, one_path_each


def truncate(log_probs: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """log_probs (N, V) -> the log-probabilities to draw from (N, V): reshaped, truncated tokens at
    -inf, renormalised."""
    if not 0 < top_p <= 1:
        raise NmtError(f"top_p: must be in (0, 1], got {top_p}")
    out = (log_probs / temperature).log_softmax(-1)
    if 0 < top_k < out.size(-1):
        kth = out.topk(top_k, dim=-1).values[:, -1:]  # (N, 1)
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p < 1:
        sorted_lp, order = out.sort(dim=-1, descending=True)
        before = sorted_lp.exp().cumsum(-1) - sorted_lp.exp()  # mass of the tokens ranked above
        drop = torch.zeros_like(out, dtype=torch.bool).scatter(-1, order, before >= top_p)
        out = out.masked_fill(drop, float("-inf"))
    return out.log_softmax(-1)


@torch.inference_mode()
def sample(model, src: torch.Tensor, src_lengths: torch.Tensor, opts: DecodeConfig, n: int = 1,
           generator: torch.Generator | None = None, return_attention: bool = False) -> list[list[Hypothesis]]:
    """`n` samples per sentence, each drawn independently, best score first. Uses opts' length
    cap, min_len, temperature, top_k and top_p; the B*n samples advance together as one batch."""
    B = src.size(0)
    rows = torch.arange(B, device=src.device).repeat_interleave(n)  # (B*n,) sentence of each sample
    caps = max_lengths(src_lengths, opts.max_len_a, opts.max_len_b)[rows]  # (B*n,)
    enc = model.encode(src, src_lengths).select(rows)

    def draw(lp: torch.Tensor) -> torch.Tensor:  # (B*n, V) -> (B*n,)
        drawn = truncate(lp, opts.temperature, opts.top_k, opts.top_p).exp()
        return torch.multinomial(drawn, 1, generator=generator).squeeze(1)

    hyps = one_path_each(model, enc, caps, opts, draw, return_attention)
    return [sorted(hyps[b * n:(b + 1) * n], key=lambda h: -h.score) for b in range(B)]
