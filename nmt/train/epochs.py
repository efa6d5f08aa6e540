"""What each epoch trains on: the prepared training split, or with tokenizer.sampling on, that epoch's
own draw of its segmentation (nmt/data/subword_sampling.py), filtered and batched by its lengths.

An epoch's draw is a data-cache entry like the split (drawn by the main process while the others wait,
then memory-mapped by all), so memory stays flat, a resumed run maps the very ids of the epoch it
stopped in, and the runs of a recipe that share data, tokenizer and seed draw each epoch once.
"""

from __future__ import annotations

import logging

from accelerate import Accelerator

from nmt.config import Config
from nmt.data import batching
from nmt.data.prepare import Prepared, sampled_epoch
from nmt.errors import NmtError

log = logging.getLogger("nmt.train")


def epoch_starter(cfg: Config, ready: Prepared, loader, accelerator: Accelerator):
    """The function the loop calls at the start of each epoch (its 0-based number), with `loader`
    as `batching.make_loader` made it (before Accelerate's `prepare`, which keeps its sampler and dataset)."""
    sampler, segmented = loader.batch_sampler, loader.dataset
    if cfg.tokenizer.sampling.sides == "none":
        return sampler.use_epoch

    def begin(epoch: int) -> None:
        with accelerator.main_process_first():
            ds = sampled_epoch(cfg, ready.tokenizer, epoch, may_build=accelerator.is_main_process)
        rows, counts = batching.filter_pairs(ds, cfg.data.max_len, cfg.data.max_ratio)
        if len(rows) == 0:
            raise NmtError(f"tokenizer.sampling: epoch {epoch + 1}'s segmentation leaves no training pair "
                           "after filtering (see data.max_len and data.max_ratio)")
        segmented.use(ds)
        sampler.use_data(ds, rows)
        sampler.use_epoch(epoch)
        src, tgt = batching.lengths(ds)
        log.info("epoch %d: sampled segmentation (%s), %d source and %d target pieces; pairs: %s", epoch + 1,
                 cfg.tokenizer.sampling.sides, src.sum() - len(src), tgt.sum(),
                 ", ".join(f"{k} {v}" for k, v in counts.items()))

    return begin
