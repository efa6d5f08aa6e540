"""Request batching: requests that queue while a batch decodes share the next decoding batch.

A batch holds whole requests with equal decode settings, up to `max_sentences` sentences (one larger
request goes alone). An idle worker takes a lone request at once. When a batch ends with requests
waiting, the server is under load: the next batch gathers for up to `wait_s` more, until as many
requests have arrived as the batch answered, or it is full. Why: clients that send their next request
once answered would otherwise miss the next batch, and the load would split into two halves that
take turns, each batch half as large (docs/serving.md). Decoding runs on one worker thread (nmt-serve
hands parts of the batch on to threads of their own: parts.py), so the event loop keeps answering
(/health included) while a batch decodes, and one batch at a time has the CPU. With batching off,
each request is decoded alone, in arrival order.

The queue is bounded (`max_queue` sentences: more is QueueFull), and a request whose caller stops
waiting (its deadline passed, its client went away) leaves the queue at once, undecoded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Hashable, Protocol

log = logging.getLogger("nmt.serve")

# (sentences, settings) -> one result per sentence; runs on the worker. A sentence is whatever the
# caller queues (nmt-serve: text and prefix); the batcher only counts and concatenates them.
Decode = Callable[[list, Hashable], list]


@dataclass(eq=False)  # a job is itself: `in` and `remove` compare identity, not sentences
class Job:
    lines: list
    settings: Hashable  # requests share a batch only when their settings are equal
    future: asyncio.Future


@dataclass
class Stats:
    queued: int = 0  # requests waiting for a batch
    decoding: bool = False
    batches: int = 0  # decoding batches run so far
    requests: int = 0  # requests answered
    sentences: int = 0  # sentences decoded
    dropped: int = 0  # requests that left the queue undecoded (deadline, disconnect)


class Observer(Protocol):
    def batch(self, sentences: int, seconds: float) -> None: ...

    def dropped_request(self, reason: str) -> None: ...


class QueueFull(Exception):
    """The queue holds `max_queue` sentences already."""


class ShuttingDown(Exception):
    """A request that arrived after shutdown began."""


class Batcher:
    def __init__(self, decode: Decode, wait_s: float, max_sentences: int, batching: bool = True,
                 max_queue: int | None = None, observer: Observer | None = None):
        self._decode, self.wait_s, self.max_sentences, self.batching = decode, wait_s, max_sentences, batching
        self.max_queue, self._observer = max_queue, observer
        self._jobs: collections.deque[Job] = collections.deque()
        self._queued_sentences = 0
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()  # the batch being gathered is complete
        self._arrivals = 0  # requests queued so far
        self._gathered_at = 0  # _arrivals at which the batch being gathered is complete
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nmt-decode")
        self._task: asyncio.Task | None = None
        self._closing = False
        self._current: list[Job] = []  # the batch decoding now
        self.abandoned = False  # the drain ran out with a batch still decoding: close() does not wait for it
        self.stats = Stats()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="nmt-batcher")

    def drain_soon(self, seconds: float) -> None:
        """`drain` from any thread, or from a signal handler (which must not touch the loop's state)."""
        self._loop.call_soon_threadsafe(self.drain, seconds)

    def drain(self, seconds: float) -> None:
        """Shutdown began: refuse new requests (ShuttingDown); those still unanswered after `seconds` get
        ShuttingDown too, and the batch then decoding is abandoned."""
        self._closing = True
        self._arrived.set()
        self._full.set()
        asyncio.get_running_loop().call_later(seconds, self._refuse_pending)

    def _refuse_pending(self) -> None:
        pending = [job for job in [*self._current, *self._jobs] if not job.future.done()]
        for job in pending:
            job.future.set_exception(ShuttingDown("the server shut down before answering (--drain-timeout)"))
        self._jobs.clear()
        self._queued_sentences = 0
        self.abandoned = self.stats.decoding

    async def close(self) -> None:
        """Decode every queued request, then stop the worker thread (unless the drain abandoned its batch)."""
        self._closing = True
        self._arrived.set()
        self._full.set()
        if self._task is not None:
            if self.abandoned:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=not self.abandoned, cancel_futures=True)

    @property
    def alive(self) -> bool:
        """The batching task runs (it ends only at shutdown or on a bug)."""
        return self._task is not None and not self._task.done()

    @property
    def queued_sentences(self) -> int:
        return self._queued_sentences

    @property
    def closing(self) -> bool:
        return self._closing

    async def translate(self, lines: list, settings: Hashable, timeout: float | None = None) -> list:
        """The decoded results for `lines`, in order, once the batch holding them has run; TimeoutError
        after `timeout` seconds. A request cancelled or timed out before its batch leaves the queue."""
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        if self.max_queue is not None and self._jobs and self._queued_sentences + len(lines) > self.max_queue:
            raise QueueFull(f"the queue holds {self._queued_sentences} sentences; this server queues at most "
                            f"{self.max_queue}")
        loop = asyncio.get_running_loop()
        job = Job(lines, settings, loop.create_future())
        self._jobs.append(job)
        self._queued_sentences += len(lines)
        self._arrivals += 1
        self.stats.queued = len(self._jobs)
        self._arrived.set()
        if self._gathered():
            self._full.set()
        try:
            return await asyncio.wait_for(job.future, timeout)
        except (asyncio.CancelledError, asyncio.TimeoutError) as err:
            self._forget(job, "timeout" if isinstance(err, asyncio.TimeoutError) else "cancelled")
            raise

    def _forget(self, job: Job, reason: str) -> None:
        """Take a job its caller no longer waits for out of the queue (if it is still there)."""
        if job in self._jobs:
            self._jobs.remove(job)
            self._queued_sentences -= len(job.lines)
            self.stats.queued = len(self._jobs)
            self.stats.dropped += 1
            if self._observer is not None:
                self._observer.dropped_request(reason)

    async def _run(self) -> None:
        while True:
            while not self._jobs:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            batch = self._take()
            if batch:
                await self._decode_batch(batch)
                if self._jobs and self.batching and self.wait_s > 0 and not self._closing:
                    await self._gather(len(batch))

    async def _gather(self, answered: int) -> None:
        """Wait up to `wait_s` for `answered` more requests, or for a full batch."""
        self._gathered_at = self._arrivals + answered
        self._full.clear()
        if not self._gathered():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.wait_s)

    def _gathered(self) -> bool:
        """The batch being gathered is complete: full, or the requests it waits for have come."""
        return self._queued_sentences >= self.max_sentences or self._arrivals >= self._gathered_at

    def _take(self) -> list[Job]:
        """The oldest live request and the later ones that fit beside it; the rest stay queued in order."""
        batch: list[Job] = []
        rest: collections.deque[Job] = collections.deque()
        size = 0
        for job in self._jobs:
            fits = not batch or (self.batching and job.settings == batch[0].settings
                                 and size + len(job.lines) <= self.max_sentences)
            if fits:
                batch.append(job)
                size += len(job.lines)
            else:
                rest.append(job)
        self._jobs = rest
        self._queued_sentences = sum(len(job.lines) for job in rest)
        self.stats.queued = len(rest)
        return batch

    async def _decode_batch(self, batch: list[Job]) -> None:
        lines = [line for job in batch for line in job.lines]
        loop = asyncio.get_running_loop()
        self.stats.decoding, self._current = True, batch
        start = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self._decode, lines, batch[0].settings)
        except Exception as err:
            if len(batch) > 1:  # decode each request alone, so that one bad request fails only itself
                for job in batch:
                    await self._decode_batch([job])
                return
            log.exception("decoding failed for a request of %d sentences", len(lines))
            if not batch[0].future.done():
                batch[0].future.set_exception(err)
            return
        finally:
            self.stats.decoding, self._current = False, []
        self.stats.batches += 1
        self.stats.sentences += len(lines)
        if self._observer is not None:
            self._observer.batch(len(lines), time.perf_counter() - start)
        start = 0
        for job in batch:
            if not job.future.done():
                job.future.set_result(results[start:start + len(job.lines)])
            start += len(job.lines)
            self.stats.requests += 1
