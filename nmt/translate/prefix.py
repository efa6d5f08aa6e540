"""How long a target prefix may be: at most the pieces that its source's output length cap leaves
room for before the </s> after them. nmt-translate, `Translator` and nmt-serve refuse a longer one
by this one rule, each naming the prefix in its own terms (its line, its JSON field).

Why a bound: each forced piece is a decoding step, and a prefix longer than the cap raises it
(nmt/search/common.py, `prefix_caps`), so the cost of a request grew with its prefix alone, bounded
only by nmt-serve's --max-chars, and not at all in nmt-translate: at beam 16, 250 / 500 / 1 000
forced pieces took 1.0 / 2.8 / 8.5 s (issue 33), and one request of 20 000 characters would have held the
decoding worker for minutes. Within the cap, a prefix costs no more steps than a translation of
its source may take anyway.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from nmt.config import DecodeConfig
from nmt.search.common import max_lengths


class LongPrefix(NamedTuple):
    """A prefix over the bound: which one, its pieces, and what its source allows."""

    index: int
    pieces: int
    limit: int  # the output length cap less one, for the </s> after the prefix
    source: int  # its source's pieces, </s> included
    max_len_a: float
    max_len_b: int

    def reason(self) -> str:
        """Why it is refused, for a message that names the prefix first."""
        return (f"{self.pieces} pieces, more than the {self.limit} its source allows (the output length cap "
                f"max_len_a {self.max_len_a} x {self.source} source pieces + max_len_b {self.max_len_b}, "
                "less one for </s>)")


def long_prefix(src_lengths: list[int], prefix_lengths: list[int], opts: DecodeConfig) -> LongPrefix | None:
    """The first prefix (its pieces in `prefix_lengths`) longer than its source (the pieces the model
    reads, </s> included, in `src_lengths`) allows under `opts`' length cap, or None."""
    if not src_lengths:
        return None
    # The search's own caps: if their rule changes, the bound follows.
    limits = (max_lengths(torch.tensor(src_lengths), opts.max_len_a, opts.max_len_b) - 1).tolist()
    for index, (pieces, limit) in enumerate(zip(prefix_lengths, limits)):
        if pieces > limit:
            return LongPrefix(index, pieces, limit, src_lengths[index], opts.max_len_a, opts.max_len_b)
    return None
