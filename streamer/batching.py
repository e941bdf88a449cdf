"""One engine for all viewers: frame requests from every stream are stacked into one batch."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models.interface import FrameEngine

from .metrics import Metrics


@dataclass
class _Request:
    state: Any
    conditioning: Any
    denoised: asyncio.Future[None] = field(repr=False)  # the stream's latent is made
    pixels: asyncio.Future[np.ndarray] = field(repr=False)  # and decoded


# A batch that would start with fewer streams than have been asking lately waits this long for the
# rest: without it two streams fall into turns (each one's request lands while the other's batch
# runs) and never share a batch. About the encode time of one frame, well under a frame interval.
GATHER_SECONDS = 0.005
ACTIVE_SECONDS = 0.5  # a stream that asked for a frame this recently counts as active


class FrameBatcher:
    """Collects the next-frame requests of all streams and runs them as one batched engine call.

    The engine works in two stages on two worker threads, so the event loop never blocks on the
    model and both stages keep a core busy: while one batch decodes to pixels, the next one
    denoises (`engine.advance`, then `engine.decode`). While a batch computes, new requests pile up
    and form the next batch (bounded by `max_batch`); at most one batch waits in each stage.
    """

    def __init__(self, engine: FrameEngine, metrics: Metrics, max_batch: int = 8) -> None:
        self.engine = engine
        self._metrics = metrics
        self._max_batch = max_batch
        self._pending: list[_Request] = []
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixelcast-engine")
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixelcast-decoder")
        self._task: asyncio.Task[None] | None = None
        self._decoding: asyncio.Task[None] | None = None
        # (frames, seconds of the slower stage) of recent batches: with both stages busy, a batch
        # costs the time of its slower stage
        self._recent: deque[tuple[int, float]] = deque(maxlen=48)
        self._asked_at: dict[int, float] = {}  # id of a stream's state -> when it last asked

    def throughput(self) -> float | None:
        """Frames per second the two engine stages keep up over recent batches (None before any batch)."""
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
        """Stop batching, fail pending requests, and release the worker threads."""
        for task in (self._task, self._decoding):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._task = self._decoding = None
        for request in self._pending:
            request.denoised.cancel()
            request.pixels.cancel()
        self._pending.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._decoder.shutdown(wait=True, cancel_futures=True)

    async def run_on_engine(self, function: Any, *args: Any) -> Any:
        """Run other engine work (prompt encoding, warm-up) on the engine's thread, between batches."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def denoise(self, state: Any, conditioning: Any) -> asyncio.Future[np.ndarray]:
        """Queue the next frame of the stream `state` under `conditioning`; return once its latent is made.

        What comes back is the future of the frame's pixels (HxWx3 uint8), which decode while the stream
        may already queue its next frame: the next latent needs only this one.
        """
        if self._task is None:
            raise RuntimeError("FrameBatcher.start() was not called")
        loop = asyncio.get_running_loop()
        request = _Request(state, conditioning, loop.create_future(), loop.create_future())
        self._pending.append(request)
        self._asked_at[id(state)] = loop.time()
        self._wake.set()
        await request.denoised
        return request.pixels

    async def generate(self, state: Any, conditioning: Any) -> np.ndarray:
        """The next frame of the stream `state` under `conditioning`, as an HxWx3 uint8 array."""
        return await (await self.denoise(state, conditioning))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._gather(loop)
            batch = [r for r in self._pending[: self._max_batch] if not r.denoised.cancelled()]
            del self._pending[: self._max_batch]
            if self._pending:
                self._wake.set()
            if not batch:
                continue
            try:
                latents, denoise_seconds = await loop.run_in_executor(
                    self._executor, _timed, self.engine.advance, [(r.state, r.conditioning) for r in batch]
                )
            except Exception as error:  # a model failure must reach the streams, not kill batching
                if len(batch) == 1:
                    _fail(batch, error)
                    continue
                # one stream's bad request must not fail the streams it happened to share a batch with
                batch, latents, denoise_seconds = await self._advance_one_by_one(loop, batch)
                if not batch:
                    continue
            for request in batch:
                if not request.denoised.done():
                    request.denoised.set_result(None)
            if self._decoding is not None:
                await self._decoding  # one batch decodes while the next denoises, never more
            self._decoding = loop.create_task(self._decode(batch, latents, denoise_seconds))

    async def _advance_one_by_one(
        self, loop: asyncio.AbstractEventLoop, batch: list[_Request]
    ) -> tuple[list[_Request], Any, float]:
        """Advance each request alone after its batch failed: only the requests that fail again fail.

        Returns the requests that made a latent, their latents as one batch, and the seconds spent.
        """
        made: list[_Request] = []
        parts: list[Any] = []
        seconds = 0.0
        for request in batch:
            try:
                latent, spent = await loop.run_in_executor(
                    self._executor, _timed, self.engine.advance, [(request.state, request.conditioning)]
                )
            except Exception as error:
                _fail([request], error)
                continue
            made.append(request)
            parts.append(latent)
            seconds += spent
        return made, (torch.cat(parts) if parts else None), seconds

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait up to `GATHER_SECONDS` until every recently active stream has a request pending."""
        now = loop.time()
        for key in [k for k, t in self._asked_at.items() if now - t > ACTIVE_SECONDS]:
            del self._asked_at[key]
        wanted = min(self._max_batch, len(self._asked_at))
        deadline = now + GATHER_SECONDS
        while len(self._pending) < wanted and (remaining := deadline - loop.time()) > 0:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                break
        self._wake.clear()

    async def _decode(self, batch: list[_Request], latents: Any, denoise_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            frames, decode_seconds = await loop.run_in_executor(self._decoder, _timed, self.engine.decode, latents)
        except Exception as error:
            if len(batch) == 1:
                _fail(batch, error)
                return
            # as in denoising: decode each frame alone, so that only the frames that fail again fail
            decoded: list[tuple[_Request, np.ndarray]] = []
            decode_seconds = 0.0
            for i, request in enumerate(batch):
                try:
                    frame, spent = await loop.run_in_executor(
                        self._decoder, _timed, self.engine.decode, latents[i : i + 1]
                    )
                except Exception as alone_error:
                    _fail([request], alone_error)
                    continue
                decoded.append((request, frame[0]))
                decode_seconds += spent
            batch, frames = [r for r, _ in decoded], [f for _, f in decoded]
            if not batch:
                return
        self._recent.append((len(batch), max(denoise_seconds, decode_seconds)))
        self._metrics.observe_batch(len(batch), denoise_seconds + decode_seconds)
        for request, frame in zip(batch, frames):
            if not request.pixels.done():
                request.pixels.set_result(frame)


def _timed(function: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """`function(*args)` and the seconds it took, timed on the worker thread: the time a batch spent
    queued behind other engine work (a prompt to encode) is not the engine's speed."""
    started = time.perf_counter()
    return function(*args), time.perf_counter() - started


def _fail(batch: list[_Request], error: Exception) -> None:
    """Hand a model failure to every stream waiting on the batch."""
    for request in batch:
        # the stream hears of it once: on the future it is waiting on
        waiting = request.pixels if request.denoised.done() else request.denoised
        if not waiting.done():
            waiting.set_exception(error)
