"""One engine for all viewers: frame requests from every stream are stacked into one batch."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from models.interface import Frame, FrameEngine
from models.runner import Decoded, TwoStageRunner

from .metrics import Metrics

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Request:
    state: Any
    conditioning: Any
    denoised: asyncio.Future[None] = field(repr=False)  # the stream's latent is made
    pixels: asyncio.Future[Frame] = field(repr=False)  # and decoded


# A batch that would start with fewer streams than have been asking lately waits this long for the
# rest: without it two streams fall into turns (each one's request lands while the other's batch
# runs) and never share a batch. About the encode time of one frame, well under a frame interval.
GATHER_SECONDS = 0.005
ACTIVE_SECONDS = 0.5  # a stream that asked for a frame this recently counts as active


class FrameBatcher:
    """Collects the next-frame requests of all streams and runs them as one batched engine call.

    The engine runs on a `TwoStageRunner`, so the event loop never blocks on the model and both stages
    keep a core busy: while one batch decodes to pixels, the next one denoises. While a batch computes,
    new requests pile up and form the next batch (bounded by `max_batch`); at most one batch waits in
    each stage. A model failure fails only the streams whose frames fail on their own as well.
    """

    def __init__(self, engine: FrameEngine, metrics: Metrics, max_batch: int = 8) -> None:
        self.engine = engine
        self._metrics = metrics
        self._max_batch = max_batch
        self._pending: list[_Request] = []
        self._wake = asyncio.Event()
        self._runner = TwoStageRunner(engine)
        self._task: asyncio.Task[None] | None = None
        self._delivering: asyncio.Task[None] | None = None
        self._in_flight: list[list[_Request]] = []  # batches in the runner, until delivered
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
            self._task.add_done_callback(_log_failure)

    async def stop(self) -> None:
        """Stop batching, cancel every request not yet answered, and release the worker threads."""
        waiting = [*self._pending, *(r for batch in self._in_flight for r in batch)]
        for task in (self._task, self._delivering):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._task = self._delivering = None
        for request in [*waiting, *self._pending]:
            request.denoised.cancel()
            request.pixels.cancel()
        self._pending.clear()
        self._in_flight.clear()
        await asyncio.to_thread(self._runner.close)

    async def run_on_engine(self, function: Callable[..., T], *args: Any) -> T:
        """Run other engine work (prompt encoding, warm-up) on the engine's thread, between batches."""
        return await asyncio.wrap_future(self._runner.call(function, *args))

    async def denoise(self, state: Any, conditioning: Any) -> asyncio.Future[Frame]:
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

    async def generate(self, state: Any, conditioning: Any) -> Frame:
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
            step = self._runner.step([(r.state, r.conditioning) for r in batch])
            self._in_flight.append(batch)
            try:
                denoised = await asyncio.wrap_future(step.denoised)
            except Exception as error:  # the runner itself failed, not one request: the batch hears of it
                logger.exception("engine batch of %d failed", len(batch))
                self._in_flight.remove(batch)
                for request in batch:
                    _fail(request, error)
                continue
            for i, request in enumerate(batch):
                if i in denoised.errors:
                    _fail(request, denoised.errors[i])
                elif not request.denoised.done():
                    request.denoised.set_result(None)
            if self._delivering is not None:
                await self._delivering  # one batch decodes while the next denoises, never more
            self._delivering = loop.create_task(
                self._deliver(batch, asyncio.wrap_future(step.decoded), denoised.seconds)
            )

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

    async def _deliver(self, batch: list[_Request], decoding: asyncio.Future[Decoded], denoise_seconds: float) -> None:
        """Hand each stream its decoded frame, or what failed it."""
        try:
            decoded = await decoding
        except Exception as error:
            logger.exception("decoding a batch of %d failed", len(batch))
            for request in batch:
                _fail(request, error)
            return
        finally:
            self._in_flight.remove(batch)
        for i, failure in decoded.errors.items():
            _fail(batch[i], failure)
        if decoded.frames:
            self._recent.append((len(decoded.frames), max(denoise_seconds, decoded.seconds)))
            self._metrics.observe_batch(len(decoded.frames), denoise_seconds + decoded.seconds)
        for i, frame in decoded.frames.items():
            if not batch[i].pixels.done():
                batch[i].pixels.set_result(frame)


def _log_failure(task: asyncio.Task[None]) -> None:
    """Say so when batching stops for any reason but being stopped: every stream would wait."""
    if not task.cancelled() and task.exception() is not None:
        logger.error("frame batching stopped", exc_info=task.exception())


def _fail(request: _Request, error: Exception) -> None:
    """Hand a model failure to the stream waiting on the request."""
    # the stream hears of it once: on the future it is waiting on
    waiting = request.pixels if request.denoised.done() else request.denoised
    if not waiting.done():
        waiting.set_exception(error)
