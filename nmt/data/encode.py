"""Tokenising blocks of pairs into Arrow list columns, in worker processes, in flat memory.

`write_tokenized` reads a split's blocks in this process and hands each to one of `procs` worker
processes (each loads the tokenizer once), at most two blocks per worker in flight, and writes the
results in order to an Arrow stream file that `datasets.Dataset.from_file` memory-maps.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from nmt.data.readers import Pairs
from nmt.data.tokenizer import Tokenizer
from nmt.vocab import EOS


class Encoded(NamedTuple):
    """A block's ids, flat, as Arrow list columns store them: row i is ids[offsets[i]:offsets[i + 1]]."""
    src_offsets: np.ndarray
    src_ids: np.ndarray
    tgt_offsets: np.ndarray
    tgt_ids: np.ndarray


def _encode_side(side, lines: list[str], eos: bool) -> tuple[np.ndarray, np.ndarray]:
    """`Side.encode` of each line (+ EOS), flat, without a Python loop per piece."""
    pieces = side.proc.encode(lines, num_threads=1)  # processes are the parallelism
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in pieces], out=offsets[1:])
    ids = side.model_ids[np.fromiter(itertools.chain.from_iterable(pieces), np.int64, count=offsets[-1])]
    if eos:
        ids = np.insert(ids, offsets[1:], EOS)
        offsets += np.arange(len(offsets))
    return offsets.astype(np.int32), ids.astype(np.int32)


def encode_pairs(tokenizer: Tokenizer, pairs: Pairs) -> Encoded:
    src = _encode_side(tokenizer.src, pairs.src, eos=True)
    return Encoded(*src, *_encode_side(tokenizer.tgt, pairs.tgt, eos=False))


def _record_batch(enc: Encoded, pairs: Pairs | None) -> pa.RecordBatch:
    """Columns `src_ids`, `tgt_ids`, and with `pairs` the text `src`, `tgt` first."""
    text = {"src": pa.array(pairs.src, pa.string()), "tgt": pa.array(pairs.tgt, pa.string())} if pairs else {}
    return pa.record_batch({**text, "src_ids": pa.ListArray.from_arrays(enc.src_offsets, enc.src_ids),
                            "tgt_ids": pa.ListArray.from_arrays(enc.tgt_offsets, enc.tgt_ids)})


_worker_tokenizer = None


def _start_worker(directory: str) -> None:
    global _worker_tokenizer
    _worker_tokenizer = Tokenizer.load(Path(directory))


def _encode_in_worker(pairs: Pairs) -> Encoded:
    return encode_pairs(_worker_tokenizer, pairs)


def _encoded(blocks, tokenizer: Tokenizer, procs: int):
    """(block, its Encoded) in order; `procs` processes encode while this one reads the next blocks.

    At most two blocks per process are in flight, so memory does not grow with the corpus (a Pool's
    imap would read the whole input ahead).
    """
    blocks = iter(blocks)
    first = next(blocks, None)
    second = next(blocks, None)
    blocks = itertools.chain([b for b in (first, second) if b is not None], blocks)
    if procs <= 1 or second is None:  # one block: nothing to share out
        yield from ((block, encode_pairs(tokenizer, block)) for block in blocks)
        return
    directory = str(Path(next(iter(tokenizer.files.values()))).parent)
    with multiprocessing.Pool(procs, _start_worker, (directory,)) as pool:
        pending = collections.deque()
        for block in blocks:
            pending.append((block, pool.apply_async(_encode_in_worker, (block,))))
            if len(pending) > 2 * procs:
                block, result = pending.popleft()
                yield block, result.get()
        while pending:
            block, result = pending.popleft()
            yield block, result.get()


def write_tokenized(blocks, tokenizer: Tokenizer, path: Path, keep_text: bool, procs: int) -> int:
    """Tokenise a split's blocks into an Arrow stream file at `path`; returns the number of pairs."""
    rows, writer = 0, None
    with pa.OSFile(str(path), "wb") as sink:
        for block, enc in _encoded(blocks, tokenizer, procs):
            batch = _record_batch(enc, block if keep_text else None)
            writer = writer or pa.ipc.new_stream(sink, batch.schema)
            writer.write_batch(batch)
            rows += batch.num_rows
        if writer:
            writer.close()
    return rows
