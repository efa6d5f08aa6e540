#!/usr/bin/env python
"""What shape buckets (nmt/train/buckets.py) cost: padded over real target tokens, and the graphs they need.

    scripts/bench/bucket_padding.py RECIPE.yaml [more.yaml] [--set k=v] [--epochs N] [--json OUT.json]

Over the training batches of the recipe's first N epochs (default: all its epochs), exactly as one
process batches them: the bucket rows x bucket T summed over real (non-PAD) target tokens, the
same ratio for the batches' own padding, and the distinct buckets, i.e. the graphs to capture.
Runs on a CPU in seconds; the data comes from the cache (prepared now if missing).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Iterable

from nmt.config import load_config
from nmt.data import batching
from nmt.data.prepare import prepare
from nmt.train.buckets import Buckets, Shape


def epoch_shapes(sampler: batching.TokenBatchSampler, epoch: int):
    """(shape, real target tokens) of the epoch's batches, from the stored lengths (no collation):
    S counts the EOS, T the BOS/EOS position, as `batching.collate` pads them."""
    for rows in batching.token_batches(sampler.src_lens, sampler.tgt_lens, sampler.max_tokens, sampler.seed, epoch):
        src, tgt = sampler.src_lens[rows], sampler.tgt_lens[rows] + 1
        yield Shape(len(rows), int(src.max()), int(tgt.max())), int(tgt.sum())


def padding_ratio(shapes: Iterable[tuple[Shape, int]], buckets: Buckets) -> dict:
    """Over (shape, real target tokens) pairs, e.g. an epoch's batches: padded target tokens
    (bucket rows x bucket T) over real (non-PAD) ones, the same over the batches' own padding, and
    the number of distinct buckets (graphs to capture)."""
    real = own = padded = 0
    seen = set()
    for shape, tokens in shapes:
        bucket = buckets.of(shape)
        seen.add(bucket)
        real, own, padded = real + tokens, own + shape.rows * shape.tgt, padded + bucket.rows * bucket.tgt
    return {"padded_over_real": round(padded / max(real, 1), 3), "unbucketed_over_real": round(own / max(real, 1), 3),
            "buckets": len(seen), "batches_tokens": real}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="+")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--epochs", type=int, default=0, help="epochs to batch (0: the recipe's train.epochs)")
    parser.add_argument("--json")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    ready = prepare(cfg, None)
    sampler = batching.TokenBatchSampler(ready.train, cfg.train.max_tokens, cfg.train.seed, rows=ready.train_rows)
    epochs = args.epochs or cfg.train.epochs
    shapes = [pair for epoch in range(epochs) for pair in epoch_shapes(sampler, epoch)]
    report = {"config": args.config, "overrides": args.overrides, "epochs": epochs, "batches": len(shapes),
              "max_tokens": cfg.train.max_tokens, "buckets_ladders": repr(Buckets()),
              **padding_ratio(shapes, Buckets())}
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
