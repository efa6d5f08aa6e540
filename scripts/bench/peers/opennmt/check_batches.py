"""scripts/peer_batches.py against OpenNMT-py's own `batch_iter`, on random buckets (run with the peer's venv).

    ~/.cache/nmt-peers/opennmt-3.5.1/bin/python scripts/peers/opennmt/check_batches.py
"""

import random
import sys
import types
from pathlib import Path

import numpy as np
from onmt.constants import CorpusTask
from onmt.inputters.dynamic_iterator import DynamicDatasetIter
from onmt.inputters.text_utils import text_sort_key

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from peer_batches import onmt_batches  # noqa: E402 (scripts/)


def main(trials: int = 30) -> None:
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
        assert theirs == ours, f"trial {trial}: OpenNMT-py {theirs} batches, peer_batches.py {ours}"
    print(f"{trials} random buckets: the same batch counts as OpenNMT-py's batch_iter")


if __name__ == "__main__":
    main()
