"""scripts/peer_batches.py: OpenNMT-py's batch count on hand-worked buckets, the batch size search
against a linear scan, and the comparison table's ratios."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from peer_batches import LABELS, PeerRows, onmt_batch_tokens, onmt_batches, table  # noqa: E402


def test_batches_fill_exactly_carry_the_row_over_and_drop_repeated_sources():
    # widths max(src, tgt + 2): 3 3 3 6 6; sorted by (src, tgt + 2): d a a b c
    src, tgt, text = np.array([2, 2, 2, 6, 1]), np.array([1, 1, 1, 1, 4]), ["a", "a", "b", "c", "d"]
    # 12: [d a] is exactly 2 x 6; [a b] then c makes 3 x 6 > 12 and opens the last batch alone
    assert onmt_batches(src, tgt, text, 12) == 3
    # 13: [d a] (the second a is dropped: its source is in the open batch), b goes over: [b c]
    assert onmt_batches(src, tgt, text, 13) == 2
    assert onmt_batches(src, tgt, ["a", "e", "b", "c", "d"], 13) == 3  # no repeat, nothing dropped


def test_a_row_alone_over_the_limit_stays_open_until_the_next_row():
    assert onmt_batches(np.array([20, 21]), np.array([1, 1]), ["x", "y"], 10) == 2
    assert onmt_batches(np.array([20]), np.array([1]), ["x"], 10) == 1


def test_batch_tokens_is_the_smallest_size_reaching_our_count():
    rng = np.random.default_rng(3)
    src, tgt = rng.integers(1, 30, 400), rng.integers(1, 30, 400)
    text = [f"s{i}" for i in rng.integers(0, 300, 400)]
    for ours in (9, 25, 60):
        found = onmt_batch_tokens(PeerRows(src, tgt, text, ours))
        scan = next(b for b in range(1, 20_000) if onmt_batches(src, tgt, text, b) <= ours)
        assert found == scan


def test_table_gives_ratios_and_bleu_differences():
    nmt = dict.fromkeys(LABELS, 1.0) | {"tgt_tokens_per_s": 2877, "bleu_beam5": 30.03}
    peer = dict.fromkeys(LABELS, 2.0) | {"tgt_tokens_per_s": 1081, "bleu_beam5": 28.0}
    lines = table({"nmt": nmt, "opennmt": peer}, {"nmt": "nmt", "opennmt": "OpenNMT-py 3.5.1"}).splitlines()
    assert lines[0] == "| figure | nmt | OpenNMT-py 3.5.1 | nmt / OpenNMT-py |"
    assert lines[2 + list(LABELS).index("tgt_tokens_per_s")].endswith("| 2877 | 1081 | 2.66x |")
    assert lines[2 + list(LABELS).index("bleu_beam5")].endswith("| 30.03 | 28.0 | +2.03 |")
    assert lines[2 + list(LABELS).index("updates")].endswith("| 1.0 | 2.0 | 0.50x |")
