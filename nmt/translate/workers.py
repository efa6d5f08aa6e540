"""Batches decoded on several threads at once, each with its share of torch's CPU threads.

Why threads of one torch thread each: a decoding step is a few small products and many small
operators, and a product of 64-320 rows does not keep two cores busy; two batches side by side, one
per core, do. Measured on the demo model (docs/benchmarks.md, "Workers"), 2 workers x 1 thread
decode about 1.4x the sentences/s of 1 x 2 threads on a 2-core CPU. Threads, not processes: torch
releases the GIL inside its operators, the model is shared instead of loaded N times, and the
results come back in order without pickling. A GPU wants one stream of large batches: one worker.

`decode.workers` 0 picks: on a CPU one worker per torch thread (`torch.get_num_threads()`, what
one batch would have had), never more than there are batches, the threads shared out among them.
Each batch is decoded as it would be alone; which worker takes it does not change its result
beyond the thread count its products run on.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import torch


@dataclass(frozen=True)
class Shares:
    workers: int  # batches decoded at once
    torch_threads: int  # torch's CPU threads for each


def shares(workers: int, batches: int, device: torch.device, cpu_threads: int | None = None) -> Shares:
    """How `batches` batches are decoded: `workers` threads (0: auto, the module docstring) sharing
    `cpu_threads` (default: torch's) torch threads."""
    total = cpu_threads or torch.get_num_threads()
    if workers == 0:
        workers = 1 if device.type != "cpu" else total
    workers = max(1, min(workers, batches))
    return Shares(workers, max(1, total // workers))


def thread_pool(workers: int, torch_threads: int, name: str) -> ThreadPoolExecutor:
    """`workers` threads, each running torch with `torch_threads` CPU threads (a thread's own setting)."""
    return ThreadPoolExecutor(workers, thread_name_prefix=name, initializer=torch.set_num_threads,
                              initargs=(torch_threads,))


@contextlib.contextmanager
def batch_map(share: Shares) -> Iterator[Callable]:
    """A `map(fn, items)` that yields fn's results in the items' order: in this thread for one worker,
    else on a pool of `share.workers` threads, each taking the next item once it is free."""
    if share.workers == 1:
        yield map
        return
    pool = thread_pool(share.workers, share.torch_threads, "nmt-decode")
    try:
        yield pool.map
    finally:
        pool.shutdown(cancel_futures=True)
