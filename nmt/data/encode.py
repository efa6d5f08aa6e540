"""Tokenising blocks of pairs into Arrow list columns, in worker processes, in flat memory.

`write_tokenized` reads a split's blocks in this process and hands each to one of `procs` worker
processes (each loads the tokenizer once), at most two blocks per worker in flight, and writes the
results in order to an Arrow stream file that `datasets.Dataset.from_file` memory-maps. A block
carries its first line number, from which a sampled epoch's seeds derive (subword_sampling.py).
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from nmt.data import subword_sampling
from nmt.data.readers import Pairs
from nmt.data.subword_sampling import Draw
from nmt.data.tokenizer import Tokenizer
from nmt.vocab import EOS


class Encoded(NamedTuple):
    """A block's ids, flat, as Arrow list columns store them: row i is ids[offsets[i]:offsets[i + 1]]."""
    src_offsets: np.ndarray
    src_ids: np.ndarray
    tgt_offsets: np.ndarray
    tgt_ids: np.ndarray


def _encode_side(side, lines: list[str], eos: bool, drawn: tuple | None) -> tuple[np.ndarray, np.ndarray]:
    """`Side.encode` of each line (+ EOS), flat, without a Python loop per piece; with `drawn`
    (a Draw, this side's number, the block's first line number) each line's segmentation sampled."""
    if drawn is None:
        pieces = side.proc.encode(lines, num_threads=1)  # processes are the parallelism
    else:
        draw, number, first = drawn
        seeds = subword_sampling.line_seeds(draw, number, np.arange(first, first + len(lines)))
        pieces = subword_sampling.sample(side.sampling_proc, lines, seeds, draw)
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in pieces], out=offsets[1:])
    ids = side.model_ids[np.fromiter(itertools.chain.from_iterable(pieces), np.int64, count=offsets[-1])]
    if eos:
        ids = np.insert(ids, offsets[1:], EOS)
        offsets += np.arange(len(offsets))
    return offsets.astype(np.int32), ids.astype(np.int32)


def encode_pairs(tokenizer: Tokenizer, pairs: Pairs, draw: Draw | None = None, first_line: int = 0) -> Encoded:
    """The block's ids; with `draw`, its sampled sides drawn (`first_line`: the block's first line number)."""
    src_drawn = (draw, 0, first_line) if draw and draw.src else None
    tgt_drawn = (draw, 1, first_line) if draw and draw.tgt else None
    src = _encode_side(tokenizer.src, pairs.src, True, src_drawn)
    return Encoded(*src, *_encode_side(tokenizer.tgt, pairs.tgt, False, tgt_drawn))


def _record_batch(enc: Encoded, pairs: Pairs | None) -> pa.RecordBatch:
    """Columns `src_ids`, `tgt_ids`, and with `pairs` the text `src`, `tgt` first."""
    text = {"src": pa.array(pairs.src, pa.string()), "tgt": pa.array(pairs.tgt, pa.string())} if pairs else {}
    return pa.record_batch({**text, "src_ids": pa.ListArray.from_arrays(enc.src_offsets, enc.src_ids),
                            "tgt_ids": pa.ListArray.from_arrays(enc.tgt_offsets, enc.tgt_ids)})


_worker_tokenizer = None


def _start_worker(directory: str) -> None:
    global _worker_tokenizer
    _worker_tokenizer = Tokenizer.load(Path(directory))


def _encode_in_worker(pairs: Pairs, draw: Draw | None, first_line: int) -> Encoded:
    return encode_pairs(_worker_tokenizer, pairs, draw, first_line)


def _encoded(blocks, tokenizer: Tokenizer, procs: int, draw: Draw | None):
    """(block, its Encoded) in order; `procs` processes encode while this one reads the next blocks.

    At most two blocks per process are in flight, so memory does not grow with the corpus (a Pool's
    imap would read the whole input ahead).
    """
    blocks = iter(blocks)
    first = next(blocks, None)
    second = next(blocks, None)
    blocks = _numbered(itertools.chain([b for b in (first, second) if b is not None], blocks))
    if procs <= 1 or second is None:  # one block: nothing to share out
        yield from ((block, encode_pairs(tokenizer, block, draw, line)) for line, block in blocks)
        return
    directory = str(Path(next(iter(tokenizer.files.values()))).parent)
    with multiprocessing.Pool(procs, _start_worker, (directory,)) as pool:
        pending = collections.deque()
        for line, block in blocks:
            pending.append((block, pool.apply_async(_encode_in_worker, (block, draw, line))))
            if len(pending) > 2 * procs:
                block, result = pending.popleft()
                yield block, result.get()
        while pending:
            block, result = pending.popleft()
            yield block, result.get()


def _numbered(blocks):
    """(the block's first line number in the split, block)."""
    line = 0
    for block in blocks:
        yield line, block
        line += len(block.src)


def write_tokenized(blocks, tokenizer: Tokenizer, path: Path, keep_text: bool, procs: int,
                    draw: Draw | None = None) -> int:
    """Tokenise a split's blocks into an Arrow stream file at `path`; returns the number of pairs.
    With `draw`, the segmentation of its sides is sampled (nmt/data/subword_sampling.py)."""
    rows, writer = 0, None
    with pa.OSFile(str(path), "wb") as sink:
        for block, enc in _encoded(blocks, tokenizer, procs, draw):
            batch = _record_batch(enc, block if keep_text else None)
            writer = writer or pa.ipc.new_stream(sink, batch.schema)
            writer.write_batch(batch)
            rows += batch.num_rows
        if writer:
            writer.close()
    return rows
