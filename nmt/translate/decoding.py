"""Tokenised sources to hypotheses: length-sorted batches, each searched by the chosen strategy
(greedy, beam or sampling), decoded on `decode.workers` threads (workers.py), back in input order."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import torch

from nmt.config import DecodeConfig
from nmt.data.batching import pad
from nmt.search import FREE, Hypothesis, beam_search, greedy_search, sample
from nmt.translate.shortlist import Shortlister
from nmt.translate.workers import batch_map, shares


def pad_prefixes(prefixes: list[list[int]], device: torch.device) -> torch.Tensor | None:
    """Target prefixes (token ids) -> (B, P) padded with FREE, or None where no sentence has one."""
    width = max((len(p) for p in prefixes), default=0)
    if width == 0:
        return None
    out = torch.full((len(prefixes), width), FREE, dtype=torch.long)
    for row, ids in enumerate(prefixes):
        out[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out.to(device)


@dataclass
class Batch:
    """Sentences of similar length, padded: one search call."""
    rows: list[int]  # their indices in the input
    src: torch.Tensor  # (B, S)
    lengths: torch.Tensor  # (B,)
    prefix: torch.Tensor | None  # (B, P) forced tokens padded with FREE, or None


def length_sorted_batches(src_ids: list[list[int]], prefix_ids: list[list[int]] | None, size: int,
                          device: torch.device) -> list[Batch]:
    """The sources in batches of `size`, shortest first: a batch's sentences end at about the same step."""
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    batches = []
    for start in range(0, len(order), size):
        rows = order[start:start + size]
        prefix = pad_prefixes([prefix_ids[i] for i in rows], device) if prefix_ids else None
        batches.append(Batch(rows, pad([src_ids[i] for i in rows]).to(device),
                             torch.tensor([len(src_ids[i]) for i in rows], device=device), prefix))
    return batches


def search(model, batch: Batch, opts: DecodeConfig, nbest: int, return_attention: bool) -> list[list[Hypothesis]]:
    """One batch's n-best lists (or samples), by opts' strategy."""
    if opts.sampling:
        return sample(model, batch.src, batch.lengths, opts, nbest, return_attention, batch.prefix)
    if opts.beam_size == 1 and nbest == 1:
        return [[h] for h in greedy_search(model, batch.src, batch.lengths, opts, return_attention, batch.prefix)]
    return beam_search(model, batch.src, batch.lengths, opts, nbest, return_attention, batch.prefix)


def decode_ids(model, src_ids: list[list[int]], opts: DecodeConfig, device: torch.device,
               nbest: int = 1, return_attention: bool = False, prefix_ids: list[list[int]] | None = None,
               precision=contextlib.nullcontext, shortlist: Shortlister | None = None) -> list[list[Hypothesis]]:
    """N-best lists (or `nbest` samples with opts.sampling) for tokenised sources, decoded in
    batches of similar length on opts.workers threads (nmt/translate/workers.py), in input order;
    each continues its target prefix in `prefix_ids` (token ids, [] for none) if given.
    `precision()`: the context each batch runs in (autocast), entered in the thread that decodes it.
    With `shortlist`, each batch is decoded over its own shortlist of target pieces
    (nmt/translate/shortlist.py), `model` left unused."""
    batches = length_sorted_batches(src_ids, prefix_ids, opts.batch_size, device)

    def decode(batch: Batch) -> list[list[Hypothesis]]:
        with torch.inference_mode(), precision():
            if shortlist is None:
                return search(model, batch, opts, nbest, return_attention)
            restricted = shortlist.restrict(batch.src, batch.lengths, batch.prefix)
            found = search(restricted.model, dataclasses.replace(batch, prefix=restricted.prefix), opts, nbest,
                           return_attention)
            return restricted.to_target(found)

    results: list[list[Hypothesis]] = [[] for _ in src_ids]
    # Longest first: the workers then end on short batches instead of one waiting for the longest.
    batches.reverse()
    with batch_map(shares(opts.workers, len(batches), device)) as run:
        for batch, found in zip(batches, run(decode, batches)):
            for i, hyps in zip(batch.rows, found):
                results[i] = hyps
    return results
