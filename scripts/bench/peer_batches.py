"""How many updates an epoch takes in OpenNMT-py 3.5.1, so that it can be given batches equal to ours.

    python scripts/bench/peer_batches.py                 # self-check on hand-worked buckets
    $ONMT_VENV/bin/python scripts/bench/peer_batches.py  # and against OpenNMT-py's own batch_iter

Ours (nmt/data/splits.py) fills a batch while rows x (longest target + EOS) <= train.max_tokens. OpenNMT-py
(onmt/inputters/dynamic_iterator.py, `batch_iter`) sorts a bucket of examples by (source length,
BOS + target + EOS length), then closes a batch once rows x longest of (source, BOS + target + EOS)
reaches `batch_size`, leaving out the row that went over; a source already in the open batch is
dropped. With one bucket per pass over the corpus (the harness sets bucket_size to the corpus size),
`onmt_batches` counts its batches per epoch exactly, and `onmt_batch_tokens` finds the batch_size
that makes it take as many updates per epoch as ours: the same data per update on average.
"""

from __future__ import annotations

import random
import types
from typing import NamedTuple

import numpy as np


class PeerRows(NamedTuple):
    src_lens: np.ndarray  # (N,) source pieces, without EOS
    tgt_lens: np.ndarray  # (N,) target pieces, without BOS and EOS
    sources: list[str]  # (N,) source lines: OpenNMT-py drops a repeated source within a batch
    batches: int  # our batches per epoch, the count to match


def onmt_batches(src_lens, tgt_lens, sources: list[str], batch_size: int) -> int:
    """OpenNMT-py's batches over one bucket holding these examples (batch_type tokens, multiple 1)."""
    tgt_ids = np.asarray(tgt_lens) + 2  # BOS + pieces + EOS
    width = np.maximum(np.asarray(src_lens), tgt_ids).tolist()
    order = np.lexsort((tgt_ids, np.asarray(src_lens)))  # stable: equal keys keep corpus order
    count, rows, widest, seen = 0, 0, 0, set()
    for i in order.tolist():
        if sources[i] in seen:
            continue
        seen.add(sources[i])
        rows, widest = rows + 1, max(widest, width[i])
        if rows * widest < batch_size:
            continue
        if rows * widest == batch_size:
            count, rows, widest, seen = count + 1, 0, 0, set()
        elif rows > 1:  # the last row went over: it opens the next batch (with an empty `seen`)
            count, rows, widest, seen = count + 1, 1, width[i], set()
        # one row alone over batch_size: OpenNMT-py warns and keeps filling that batch
    return count + (rows > 0)


def onmt_batch_tokens(rows: PeerRows) -> int:
    """The smallest OpenNMT-py batch_size whose epoch takes at most as many batches as ours."""
    lo, hi = 1, int(max(rows.src_lens.max(), rows.tgt_lens.max() + 2)) * len(rows.sources)
    while lo < hi:
        mid = (lo + hi) // 2
        if onmt_batches(rows.src_lens, rows.tgt_lens, rows.sources, mid) <= rows.batches:
            hi = mid
        else:
            lo = mid + 1
    return lo


def check_hand_worked() -> None:
    """Counts worked out by hand, and the batch size search against a linear scan."""
    # widths max(src, tgt + 2): 3 3 3 6 6; sorted by (src, tgt + 2): d a a b c
    src, tgt, text = np.array([2, 2, 2, 6, 1]), np.array([1, 1, 1, 1, 4]), ["a", "a", "b", "c", "d"]
    # 12: [d a] is exactly 2 x 6; [a b] then c makes 3 x 6 > 12 and opens the last batch alone
    assert onmt_batches(src, tgt, text, 12) == 3
    # 13: [d a] (the second a is dropped: its source is in the open batch), b goes over: [b c]
    assert onmt_batches(src, tgt, text, 13) == 2
    assert onmt_batches(src, tgt, ["a", "e", "b", "c", "d"], 13) == 3  # no repeat, nothing dropped
    # a row alone over the limit stays open until the next row
    assert onmt_batches(np.array([20, 21]), np.array([1, 1]), ["x", "y"], 10) == 2
    assert onmt_batches(np.array([20]), np.array([1]), ["x"], 10) == 1
    rng = np.random.default_rng(3)
    src, tgt = rng.integers(1, 30, 400), rng.integers(1, 30, 400)
    text = [f"s{i}" for i in rng.integers(0, 300, 400)]
    for ours in (9, 25, 60):
        scan = next(b for b in range(1, 20_000) if onmt_batches(src, tgt, text, b) <= ours)
        assert onmt_batch_tokens(PeerRows(src, tgt, text, ours)) == scan
    print("hand-worked buckets and the batch size search: as expected")


def check_against_opennmt(trials: int = 30) -> None:
    """`onmt_batches` against OpenNMT-py's own `batch_iter` on random buckets (in the peer's venv)."""
    try:
        from onmt.constants import CorpusTask
        from onmt.inputters.dynamic_iterator import DynamicDatasetIter
        from onmt.inputters.text_utils import text_sort_key
    except ImportError:
        print("OpenNMT-py is not importable here: run with $ONMT_VENV/bin/python to check against its batch_iter")
        return
    rng = random.Random(0)
    for trial in range(trials):
        n = rng.randint(50, 3000)
        src = [rng.randint(1, 40) for _ in range(n)]
        tgt = [rng.randint(1, 40) for _ in range(n)]
        text = [f"s{rng.randint(0, n // 3)}" for _ in range(n)]  # repeated sources on purpose
        bucket = [({"src": {"src": text[i], "src_ids": [0] * src[i]}, "tgt": {"tgt_ids": [0] * (tgt[i] + 2)}}, i)
                  for i in range(n)]
        bucket.sort(key=lambda x: text_sort_key(x[0]))  # as DynamicDatasetIter.__iter__
        size = rng.choice([50, 200, 777, 1500, 4000])
        theirs = sum(1 for _ in DynamicDatasetIter.batch_iter(types.SimpleNamespace(task=CorpusTask.TRAIN),
                                                               bucket, size, "tokens", 1))
        ours = onmt_batches(np.array(src), np.array(tgt), text, size)
        assert theirs == ours, f"trial {trial}: OpenNMT-py {theirs} batches, onmt_batches {ours}"
    print(f"{trials} random buckets: the same batch counts as OpenNMT-py's batch_iter")


if __name__ == "__main__":
    check_hand_worked()
    check_against_opennmt()
