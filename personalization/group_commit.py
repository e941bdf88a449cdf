"""Group commit: everything submitted while one round trip is in flight goes out together in the next.

Many viewers' feedback arrives at once; one Redis round trip per event would spend most of the time in
per-call overhead on both ends. A ``GroupCommit`` keeps one flusher task per event loop that takes
every waiting item (up to ``max_batch``) and hands them to ``flush`` as one list; a lone item still goes
out at once, so batching adds no waiting of its own, only under load does a batch grow. Up to
``max_in_flight`` flushes run at once, and what waits is spread over the free ones, so the client
prepares one batch while Redis executes another instead of the two taking turns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

Flush = Callable[[Sequence[Item]], Awaitable[Sequence["Result | BaseException"]]]


@dataclass
class _Waiting(Generic[Item, Result]):
    item: Item
    future: asyncio.Future[Result] = field(repr=False)


class GroupCommit(Generic[Item, Result]):
    """Batches concurrent ``submit`` calls into calls of ``flush``.

    Args:
        flush: takes a batch of items, returns one result or exception per item, in order. If it
            raises, every item of the batch gets that exception.
        max_batch: most items per flush (bounds one round trip's size and the latency of its items).
        max_in_flight: most flushes under way at once. An item is in one flush only, and a caller
            that waits for its result before submitting again keeps its own order.
    """

    def __init__(self, flush: Flush[Item, Result], max_batch: int = 256, max_in_flight: int = 2) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError(f"max_batch and max_in_flight must be at least 1, got {max_batch}, {max_in_flight}")
        self._flush = flush
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._in_flight: set[asyncio.Task[None]] = set()
        self._waiting: list[_Waiting[Item, Result]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, item: Item) -> Result:
        """Queue ``item`` for the next flush and wait for its result (or exception).

        Cancelling the caller does not withdraw an item that a flush already took.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._start(loop)
        future: asyncio.Future[Result] = loop.create_future()
        self._waiting.append(_Waiting(item, future))
        assert self._wake is not None
        self._wake.set()
        return await future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # A client used from a new event loop (tests, a restarted server) gets a new flusher there.
        self._loop = loop
        self._wake = asyncio.Event()
        self._waiting = [w for w in self._waiting if not w.future.done() and w.future.get_loop() is loop]
        self._task = loop.create_task(self._run(self._wake), name="pixelcast-group-commit")

    async def _run(self, wake: asyncio.Event) -> None:
        try:
            while True:
                await wake.wait()
                wake.clear()
                while self._waiting:
                    if len(self._in_flight) >= self._max_in_flight:
                        await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
                        continue
                    # Spread what waits over the free flushes: Redis runs one batch while this
                    # process packs the next, instead of one big batch leaving either side idle.
                    free = self._max_in_flight - len(self._in_flight)
                    size = min(self._max_batch, -(-len(self._waiting) // free))
                    batch = self._waiting[:size]
                    del self._waiting[:size]
                    task = asyncio.get_running_loop().create_task(self._flush_batch(batch))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
        finally:
            for task in list(self._in_flight):
                task.cancel()

    async def _flush_batch(self, batch: list[_Waiting[Item, Result]]) -> None:
        try:
            results = await self._flush([w.item for w in batch])
        except asyncio.CancelledError:
            for waiting in batch:
                waiting.future.cancel()
            raise
        except Exception as error:  # the batch's callers get the error; the flusher goes on
            results = [error] * len(batch)
        for waiting, result in zip(batch, results):
            if waiting.future.done():
                continue
            if isinstance(result, BaseException):
                waiting.future.set_exception(result)
            else:
                waiting.future.set_result(result)

    async def aclose(self) -> None:
        """Stop the flusher; items not yet taken fail with ``asyncio.CancelledError``."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for waiting in self._waiting:
            waiting.future.cancel()
        self._waiting.clear()
