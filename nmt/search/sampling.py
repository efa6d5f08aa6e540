"""Sampling: each token drawn at random from the model's (reshaped) distribution, the batch together.

At every step the log-probabilities are reshaped in this order, as in Hugging Face's warpers:

    temperature  log p / T, renormalised (T < 1 sharpens, T > 1 flattens)
    top-k        keep the k most probable tokens, exactly k: of the tokens tied at the k-th value,
                 torch.topk chooses which stay (unspecified; on the CPU not the lowest ids for
                 small vocabularies)
    top-p        renormalise the kept tokens, then keep the fewest most probable of them whose mass
                 reaches p (nucleus sampling): a token is kept when the mass of the tokens before
                 it is below p, so the most probable token always stays
    renormalise  the kept tokens' probabilities, then draw one

At the length cap only EOS may follow (nmt/search/common.py), as in greedy and beam search.
A hypothesis's score is the sum of the model's own log-probabilities of the drawn tokens (before
temperature and truncation), so that samples can be compared and reranked like search output.

What is reproducible: sample j of a sentence depends only on decode.seed, the sentence's source
token ids, j and the decode settings, never on its position in the input, its batch or batch-mates.
Each sample row draws from a uniform stream of its own, seeded with a hash of (seed, source ids, j),
one number per step (inverse-CDF sampling). So a line gives the same samples alone or in a batch,
and identical lines give identical samples. The draw reads the model's probabilities, so it is as
batch-invariant as the model's logits are: exactly on one machine in fp32, to rounding elsewhere.
"""

from __future__ import annotations

import hashlib

import torch

from nmt.config import DecodeConfig
from nmt.errors import NmtError
from nmt.search.common import Hypothesis, max_lengths, one_path_each, prefix_caps


def truncate(log_probs: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """log_probs (N, V) -> the log-probabilities to draw from (N, V): reshaped, truncated tokens at
    -inf, renormalised."""
    if not 0 < top_p <= 1:
        raise NmtError(f"top_p: must be in (0, 1], got {top_p}")
    out = (log_probs / temperature).log_softmax(-1)
    if 0 < top_k < out.size(-1):
        # Exactly k: a threshold on the k-th value would keep every token tied with it.
        kept = out.topk(top_k, dim=-1).indices  # (N, k)
        out = torch.full_like(out, float("-inf")).scatter(-1, kept, out.gather(-1, kept)).log_softmax(-1)
    if top_p < 1:
        sorted_lp, order = out.sort(dim=-1, descending=True)
        before = sorted_lp.exp().cumsum(-1) - sorted_lp.exp()  # mass of the tokens ranked above
        drop = torch.zeros_like(out, dtype=torch.bool).scatter(-1, order, before >= top_p)
        out = out.masked_fill(drop, float("-inf"))
    return out.log_softmax(-1)


def row_uniforms(seed: int, src: torch.Tensor, src_lengths: torch.Tensor, caps: torch.Tensor, n: int) -> torch.Tensor:
    """(B*n, max cap) float64 uniforms in [0, 1): row b*n + j is sample j of sentence b, its first
    cap numbers drawn from a generator seeded with a hash of (seed, the sentence's ids, j)."""
    width, generator = int(caps.max()), torch.Generator()
    rows = []
    for ids, length, cap in zip(src.tolist(), src_lengths.tolist(), caps.tolist()):
        for j in range(n):
            key = hashlib.blake2b(repr((seed, ids[:length], j)).encode(), digest_size=8).digest()
            generator.manual_seed(int.from_bytes(key, "little") >> 1)  # 63 bits: manual_seed takes an int64
            # A stream's length is the line's own cap, never the batch's: its numbers stay the line's.
            drawn = torch.rand(cap, generator=generator, dtype=torch.float64)
            rows.append(torch.cat([drawn, drawn.new_zeros(width - cap)]))
    return torch.stack(rows)


def inverse_cdf(log_probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """log_probs (R, V), uniform (R,) in [0, 1) -> (R,) the token whose cumulative mass first
    exceeds uniform x total mass. In float64, so that the target stays below the total and a
    token of probability 0 is never drawn."""
    cdf = log_probs.double().exp().cumsum(-1)  # (R, V)
    target = uniform[:, None] * cdf[:, -1:]  # (R, 1)
    # Non-finite rows (NaN logits) have no token to find: the clamp keeps the index in range.
    return torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_(max=cdf.size(-1) - 1)


@torch.inference_mode()
def sample(model, src: torch.Tensor, src_lengths: torch.Tensor, opts: DecodeConfig, n: int = 1,
           return_attention: bool = False, prefix: torch.Tensor | None = None) -> list[list[Hypothesis]]:
    """`n` samples per sentence, each drawn independently, best score first, each continuing the
    sentence's `prefix` (B, P) if given. Uses opts' length cap, min_len, temperature, top_k, top_p
    and seed; the B*n samples advance together as one batch."""
    B = src.size(0)
    rows = torch.arange(B, device=src.device).repeat_interleave(n)  # (B*n,) sentence of each sample
    sentence_caps = prefix_caps(max_lengths(src_lengths, opts.max_len_a, opts.max_len_b), prefix)  # (B,)
    uniforms = row_uniforms(opts.seed, src, src_lengths, sentence_caps, n).to(src.device)  # (B*n, max cap)
    enc = model.encode(src, src_lengths).select(rows)

    def draw(lp: torch.Tensor, t: int) -> torch.Tensor:  # (B*n, V) -> (B*n,)
        return inverse_cdf(truncate(lp, opts.temperature, opts.top_k, opts.top_p), uniforms[:, t])

    hyps = one_path_each(model, enc, sentence_caps[rows], opts, draw, return_attention,
                         None if prefix is None else prefix[rows])
    return [sorted(hyps[b * n:(b + 1) * n], key=lambda h: -h.score) for b in range(B)]
