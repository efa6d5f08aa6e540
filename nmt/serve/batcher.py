"""Request batching: concurrent requests are gathered for a few milliseconds into one decoding batch.

A batch holds whole requests with equal decode settings, up to `max_sentences` sentences (one larger
request goes alone). The oldest queued request waits at most `wait_s` after its arrival for others to
join, less if the batch fills first. Decoding runs on one worker thread, so the event loop keeps
answering (/health included) while a batch decodes, and one batch at a time has the CPU. Requests
that arrive meanwhile queue for the next batch. With batching off, each request is decoded alone,
in arrival order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Hashable

log = logging.getLogger("nmt.serve")

Decode = Callable[[list[str], Hashable], list]  # (lines, settings) -> one result per line; runs on the worker


@dataclass
class Job:
    lines: list[str]
    settings: Hashable  # requests share a batch only when their settings are equal
    future: asyncio.Future
    arrived: float  # event-loop clock


@dataclass
class Stats:
    queued: int = 0  # requests waiting for a batch
    decoding: bool = False
    batches: int = 0  # decoding batches run so far
    requests: int = 0  # requests answered
    sentences: int = 0  # sentences decoded


class ShuttingDown(Exception):
    """A request that arrived after shutdown began."""


class Batcher:
    def __init__(self, decode: Decode, wait_s: float, max_sentences: int, batching: bool = True):
        self._decode, self.wait_s, self.max_sentences, self.batching = decode, wait_s, max_sentences, batching
        self._jobs: collections.deque[Job] = collections.deque()
        self._queued_sentences = 0
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nmt-decode")
        self._task: asyncio.Task | None = None
        self._closing = False
        self.stats = Stats()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="nmt-batcher")

    async def close(self) -> None:
        """Decode every queued request, then stop the worker thread."""
        self._closing = True
        self._arrived.set()
        self._full.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def translate(self, lines: list[str], settings: Hashable) -> list:
        """The decoded results for `lines`, in order, once the batch holding them has run."""
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        loop = asyncio.get_running_loop()
        job = Job(lines, settings, loop.create_future(), loop.time())
        self._jobs.append(job)
        self._queued_sentences += len(lines)
        self.stats.queued = len(self._jobs)
        self._arrived.set()
        if self._queued_sentences >= self.max_sentences:
            self._full.set()
        return await job.future

    async def _run(self) -> None:
        while True:
            while not self._jobs:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            if self.batching and not self._closing:
                await self._wait_for_company(self._jobs[0])
            batch = self._take()
            if batch:
                await self._decode_batch(batch)

    async def _wait_for_company(self, first: Job) -> None:
        delay = first.arrived + self.wait_s - asyncio.get_running_loop().time()
        self._full.clear()
        if delay > 0 and self._queued_sentences < self.max_sentences:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._full.wait(), delay)

    def _take(self) -> list[Job]:
        """The oldest live request and the later ones that fit beside it; the rest stay queued in order."""
        batch: list[Job] = []
        rest: collections.deque[Job] = collections.deque()
        size = 0
        for job in self._jobs:
            if job.future.done():  # its client went away
                continue
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
        self.stats.decoding = True
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
            self.stats.decoding = False
        self.stats.batches += 1
        self.stats.sentences += len(lines)
        start = 0
        for job in batch:
            if not job.future.done():
                job.future.set_result(results[start:start + len(job.lines)])
            start += len(job.lines)
            self.stats.requests += 1
