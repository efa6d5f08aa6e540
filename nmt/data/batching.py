"""Token batches of tokenised pairs: the length filter, batches of a token budget, padding.

Training pairs that are empty, too long or too unbalanced are left out of the batches (and
counted); evaluation pairs never are. A batch holds pairs of similar source length, up to a budget
of padded target tokens, in an order shuffled per epoch from the seed alone, so that a resumed run
meets the same batches.
"""

from __future__ import annotations

import bisect
from typing import NamedTuple

import numpy as np
import pyarrow.compute as pc
import torch

from nmt.vocab import BOS, EOS, PAD


class Batch(NamedTuple):
    src: torch.Tensor  # (B, S) source ids ending in EOS, right-padded
    src_lengths: torch.Tensor  # (B,)
    tgt_in: torch.Tensor  # (B, T) BOS + target ids
    tgt_out: torch.Tensor  # (B, T) target ids + EOS, PAD where tgt_in is padding


def lengths(ds) -> tuple[np.ndarray, np.ndarray]:
    """Source lengths (with EOS) and target lengths (without BOS/EOS), read from the Arrow list offsets.

    int32, as all per-example arrays here: batching holds a few of them for every training pair.
    """
    table = ds.with_format("arrow")
    src = pc.list_value_length(table["src_ids"]).to_numpy().astype(np.int32)
    tgt = pc.list_value_length(table["tgt_ids"]).to_numpy().astype(np.int32)
    return src, tgt


def filter_pairs(ds, max_len: int, max_ratio: float) -> tuple[np.ndarray, dict]:
    """Rows of the training pairs to keep: not empty, at most `max_len` pieces, a length ratio of at most
    `max_ratio`. Applied on load from the stored lengths (as fairseq filters by size), so changing a
    filter setting needs no new preparation."""
    src, tgt = lengths(ds)
    src = src - 1  # without the EOS the tokenizer appended
    empty = (src == 0) | (tgt == 0)
    long = ~empty & ((src > max_len) | (tgt > max_len))
    ratio = ~empty & ~long & (np.maximum(src, tgt) > max_ratio * np.minimum(src, tgt))
    keep = np.flatnonzero(~(empty | long | ratio)).astype(np.int32)
    counts = {"kept": len(keep), "empty": int(empty.sum()), "too_long": int(long.sum()),
              "bad_ratio": int(ratio.sum())}
    return keep, counts


def _batch_ends(widths: list[int], max_tokens: int) -> list[int]:
    """Ends of greedy batches over ascending `widths`: a batch takes rows while rows x widest <= max_tokens.

    With ascending widths, rows x widest grows with each row, so each batch end is a binary search:
    millions of examples are batched in about a second.
    """
    ends, start = [], 0
    while start < len(widths):
        cost = lambda end: widths[end - 1] * (end - start)  # noqa: E731 (padded tokens of rows start..end-1)
        hi = min(len(widths), start + max(1, max_tokens // widths[start]))  # no batch holds more rows
        start += 1 + bisect.bisect_right(range(start + 2, hi + 1), max_tokens, key=cost)  # the first row always fits
        ends.append(start)
    return ends


def token_batches(src_lens, tgt_lens, max_tokens: int, seed: int, epoch: int,
                  shuffle: bool = True) -> list[np.ndarray]:
    """Group example indices into batches of at most `max_tokens` padded target tokens (with EOS).

    Examples are shuffled, then sorted by length inside pools of about 100 batches, so padding
    stays low while batches still mix across the corpus. The order depends only on (seed, epoch).
    """
    n = len(tgt_lens)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(np.arange(n, dtype=np.int32)) if shuffle else np.arange(n, dtype=np.int32)
    pool = max(1, int(100 * max_tokens / max(1.0, float(np.mean(tgt_lens)) + 1))) if n else 1
    batches: list[np.ndarray] = []
    for start in range(0, n, pool):
        chunk = order[start:start + pool]
        chunk = chunk[np.lexsort((src_lens[chunk], tgt_lens[chunk]))]  # by target length, then source
        batches += np.split(chunk, _batch_ends((tgt_lens[chunk] + 1).tolist(), max_tokens)[:-1])
    if shuffle:
        rng.shuffle(batches)
    return batches


class TokenBatchSampler:
    """A batch sampler over `token_batches` of `rows` (default: all); `use_epoch` changes the shuffle.

    Deliberately not named `set_epoch`: Accelerate calls `set_epoch` with its own iteration counter,
    which restarts at 0 on the loader that `skip_first_batches` builds when a run resumes mid-epoch.
    """

    def __init__(self, ds, max_tokens: int, seed: int, shuffle: bool = True, rows: np.ndarray | None = None):
        self.src_lens, self.tgt_lens = lengths(ds)
        self.rows = np.arange(len(self.tgt_lens), dtype=np.int32) if rows is None else np.asarray(rows)
        self.src_lens, self.tgt_lens = self.src_lens[self.rows], self.tgt_lens[self.rows]
        self.max_tokens, self.seed, self.shuffle, self.epoch = max_tokens, seed, shuffle, 0
        self._batches = None

    def use_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._batches = epoch, None

    def use_data(self, ds, rows: np.ndarray) -> None:
        """Batch `rows` of `ds` from now on: an epoch's sampled segmentation, of other lengths."""
        self.src_lens, self.tgt_lens = (lens[rows] for lens in lengths(ds))
        self.rows, self._batches = np.asarray(rows), None

    def batches(self) -> list[np.ndarray]:
        """Batches of dataset rows."""
        if self._batches is None:
            self._batches = [self.rows[b] for b in token_batches(self.src_lens, self.tgt_lens, self.max_tokens,
                                                                 self.seed, self.epoch, self.shuffle)]
        return self._batches

    def __iter__(self):
        return (batch.tolist() for batch in self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def pad(seqs: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(seqs), max(len(s) for s in seqs)), PAD, dtype=torch.long)
    for row, seq in enumerate(seqs):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


def collate(rows: list[dict]) -> Batch:
    src = [r["src_ids"] for r in rows]
    tgt = [r["tgt_ids"] for r in rows]
    return Batch(
        src=pad(src),
        src_lengths=torch.tensor([len(s) for s in src], dtype=torch.long),
        tgt_in=pad([[BOS] + t for t in tgt]),
        tgt_out=pad([t + [EOS] for t in tgt]),
    )


class Segmented(torch.utils.data.Dataset):
    """The ids columns of a tokenised split, which `use` swaps for another segmentation of the same
    pairs (a DataLoader keeps the dataset it was made with, so an epoch's draw is swapped in here)."""

    def __init__(self, ds):
        self.use(ds)

    def use(self, ds) -> None:
        self.columns = ds.select_columns(["src_ids", "tgt_ids"])

    def __len__(self) -> int:
        return len(self.columns)

    def __getitem__(self, row: int) -> dict:
        return self.columns[row]

    def __getitems__(self, rows: list[int]) -> list[dict]:
        return self.columns.__getitems__(rows)


def make_loader(ds, max_tokens: int, seed: int, shuffle: bool, rows: np.ndarray | None = None):
    """A DataLoader of `Batch`es over a tokenised split (its `rows`, default all), plus its sampler;
    `loader.dataset` is the split's `Segmented` view."""
    sampler = TokenBatchSampler(ds, max_tokens, seed, shuffle, rows)
    # An own generator: creating an iterator must not draw from the global RNG (exact resume).
    loader = torch.utils.data.DataLoader(Segmented(ds), batch_sampler=sampler, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(seed))
    return loader, sampler
