"""One engine for all viewers: frame requests from every stream are stacked into one batch."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .metrics import Metrics


@dataclass
class _Request:
    state: Any
    conditioning: Any
    future: asyncio.Future[np.ndarray] = field(repr=False)


class FrameBatcher:
    """Collects the next-frame requests of all streams and runs them as one batched engine call.

    The engine runs on a single worker thread, so the event loop never blocks on the model; while
    one batch computes, new requests pile up and form the next batch (bounded by `max_batch`).
    """

    def __init__(self, engine: Any, metrics: Metrics, max_batch: int = 8) -> None:
        self.engine = engine
        self._metrics = metrics
        self._max_batch = max_batch
        self._pending: list[_Request] = []
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixelcast-engine")
        self._task: asyncio.Task[None] | None = None
        self._recent: deque[tuple[int, float]] = deque(maxlen=48)  # (frames, seconds) of recent batches

    def throughput(self) -> float | None:
        """Frames per second of engine time over recent batches (None before any batch)."""
        frames = sum(n for n, _ in self._recent)
        seconds = sum(t for _, t in self._recent)
        return frames / seconds if seconds > 0 else None

    def mean_batch(self) -> float | None:
        """Average frames per batch over recent batches (None before any batch)."""
        return sum(n for n, _ in self._recent) / len(self._recent) if self._recent else None

    def start(self) -> None:
        """Start the batching task on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="pixelcast-batcher")

    async def stop(self) -> None:
        """Stop batching, fail pending requests, and release the worker thread."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for request in self._pending:
            if not request.future.done():
                request.future.cancel()
        self._pending.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def run_on_engine(self, function: Any, *args: Any) -> Any:
        """Run other engine work (prompt encoding, warm-up) on the engine's thread, between batches."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def generate(self, state: Any, conditioning: Any) -> np.ndarray:
        """The next frame of the stream `state` under `conditioning`, as an HxWx3 uint8 array."""
        if self._task is None:
            raise RuntimeError("FrameBatcher.start() was not called")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(state, conditioning, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch = [r for r in self._pending[: self._max_batch] if not r.future.cancelled()]
            del self._pending[: self._max_batch]
            if self._pending:
                self._wake.set()
            if not batch:
                continue
            started = time.perf_counter()
            try:
                frames = await loop.run_in_executor(
                    self._executor, self.engine.generate, [(r.state, r.conditioning) for r in batch]
                )
            except Exception as error:  # a model failure must reach the streams, not kill batching
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(error)
                continue
            elapsed = time.perf_counter() - started
            self._recent.append((len(batch), elapsed))
            self._metrics.observe_batch(len(batch), elapsed)
            for request, frame in zip(batch, frames):
                if not request.future.done():
                    request.future.set_result(frame)
