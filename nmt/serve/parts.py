"""A decoding batch cut by sentence length into parts that decode at once, each on a thread of its own.

Why: a batch of requests comes in arrival order, and its search runs until its longest sentence
ends. Offline decoding sorts the whole input by length first; a server cannot wait for that. Most
steps of an unsorted batch run a tail of a few long sentences, where a step's fixed cost (one small
operator after another) leaves a CPU's cores idle. Cut by length, each part's sentences end at about
the same step, and on a CPU two parts on one core each decode the batch faster than the whole batch
on both (docs/serving.md). A GPU wants one large batch: there, one part.
"""

from __future__ import annotations

from typing import Callable

from nmt.translate.workers import thread_pool


def balanced_parts(lengths: list[int], parts: int) -> list[list[int]]:
    """The indices of `lengths`, longest first, cut into at most `parts` runs of about equal cost.

    A sentence costs about its length squared: about as many steps as it has pieces, each step over
    about as many rows of attention (balanced so, the parts end closer together than by length)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    total = sum(lengths[i] ** 2 for i in order) or 1
    groups: list[list[int]] = [[] for _ in range(parts)]
    spent = 0
    for i in order:
        groups[min(parts - 1, parts * spent // total)].append(i)
        spent += lengths[i] ** 2
    return [group for group in groups if group]


class PartedDecoder:
    """Decodes the parts of a batch on `parts` threads, each with `torch_threads` of torch's CPU threads."""

    def __init__(self, parts: int, torch_threads: int):
        self.parts = parts
        self._pool = thread_pool(parts, torch_threads, "nmt-part")

    def map(self, decode: Callable[[list[int]], list], lengths: list[int]) -> list:
        """`decode(indices)` gives one result per index; the results of every part, in the batch's order.
        A lone part decodes on the pool too, with the same share of threads as any part."""
        groups = balanced_parts(lengths, self.parts)
        results: list = [None] * len(lengths)
        for group, found in zip(groups, self._pool.map(decode, groups)):
            for index, result in zip(group, found):
                results[index] = result
        return results

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
