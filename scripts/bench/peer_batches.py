"""How many updates an epoch takes in OpenNMT-py 3.5.1, so that it can be given batches equal to ours.

Ours (nmt/data.py) fills a batch while rows x (longest target + EOS) <= train.max_tokens. OpenNMT-py
(onmt/inputters/dynamic_iterator.py, `batch_iter`) sorts a bucket of examples by (source length,
BOS + target + EOS length), then closes a batch once rows x longest of (source, BOS + target + EOS)
reaches `batch_size`, leaving out the row that went over; a source already in the open batch is
dropped. With one bucket per pass over the corpus (the harness sets bucket_size to the corpus size),
`onmt_batches` counts its batches per epoch exactly, and `onmt_batch_tokens` finds the batch_size
that makes it take as many updates per epoch as ours: the same data per update on average.
"""

from __future__ import annotations

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


LABELS = {"updates": "updates", "parameters": "parameters", "tgt_tokens_per_s": "training, target tokens/s",
          "train_wall_s": "training wall time, s (whole command)", "train_peak_gib": "peak training RSS, GiB",
          "greedy_sent_s": "greedy decoding, sentences/s", "beam5_sent_s": "beam 5 decoding, sentences/s",
          "bleu_greedy": "test BLEU, greedy", "bleu_beam5": "test BLEU, beam 5"}


def table(results: dict, names: dict) -> str:
    """Markdown: a row per figure, a column per toolkit (ours first), then ours against each peer:
    a ratio, or for BLEU the difference in points."""
    peers = [p for p in results if p != "nmt"]
    head = ["figure", *(names[t] for t in results), *(f"nmt / {names[p].split()[0]}" for p in peers)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in LABELS.items():
        ours = results["nmt"][key]
        cells = [label, *(str(results[t].get(key, "")) for t in results)]
        for p in peers:
            theirs = results[p].get(key)
            if not theirs:
                cells.append("")
            elif key.startswith("bleu"):
                cells.append(f"{ours - theirs:+.2f}")
            else:
                cells.append(f"{ours / theirs:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
