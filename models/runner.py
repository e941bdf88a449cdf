"""`TwoStageRunner`: an engine on two threads, so that each batch decodes while the next one denoises.

Denoising (`engine.advance`) and decoding (`engine.decode`) each keep one thread busy; with both
stages running, a batch costs the time of its slower stage rather than their sum. The server's
`streamer.batching.FrameBatcher` and the speed measurements of `models.tuning` run the engine through
this one class, so what is measured is what serves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
import torch

from models.interface import FrameEngine

Request = tuple[Any, torch.Tensor]
"""A stream's state and the conditioning of its next frame."""

T = TypeVar("T")
Item = TypeVar("Item")
Out = TypeVar("Out")


@dataclass
class Denoised:
    """The latents one step made: a model failure costs only the requests that fail on their own too."""

    made: list[int]
    """Indexes (into the step's requests) of the requests that have a latent, in order."""
    latents: torch.Tensor | None
    """Their latents `[len(made), C, h, w]`; None when no request made one."""
    errors: dict[int, Exception] = field(default_factory=dict)
    """Index -> what failed the request."""
    seconds: float = 0.0
    """Time the engine spent denoising."""


@dataclass
class Decoded:
    """The frames one step decoded."""

    frames: dict[int, np.ndarray]
    """Index (into the step's requests) -> HxWx3 uint8 frame."""
    errors: dict[int, Exception] = field(default_factory=dict)
    """Index -> what failed the frame's decode (requests that failed to denoise are in neither)."""
    seconds: float = 0.0
    """Time the engine spent decoding."""


@dataclass
class Step:
    """One batch on its way through the two stages."""

    denoised: Future[Denoised]
    """Done once the latents are made: the streams' states have moved on, so their next step may start."""
    decoded: Future[Decoded]
    """Done once the frames are decoded."""


class TwoStageRunner:
    """Runs `step`s of an engine: denoise on one thread, decode on another.

    A step's latents go to the decoder as soon as they are made, so each batch decodes while the next
    one denoises; decodes run in the order of their steps. Callers bound how far they run ahead (the
    server's `FrameBatcher` keeps at most one batch in each stage). Other engine work (prompt encoding,
    warm-up) goes to the denoise thread with `call`, between steps. A step's futures cannot be
    cancelled: they always end, with the frames, or with the error that stopped them (`close` fails
    those still open).

    Args:
        engine: what makes the frames.
    """

    def __init__(self, engine: FrameEngine) -> None:
        self.engine = engine
        self._denoiser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixelcast-denoise")
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixelcast-decode")
        self._lock = threading.Lock()
        self._open: set[Future[Any]] = set()  # step futures not yet settled
        self._last: Future[Decoded] | None = None
        self._closed = False

    def step(self, requests: Sequence[Request]) -> Step:
        """Queue the next frame of each request's stream.

        Raises `RuntimeError` once the runner is closed.
        """
        step = Step(_uncancellable(), _uncancellable())
        with self._lock:
            if self._closed:
                raise RuntimeError("the engine runner is closed")
            self._open.update((step.denoised, step.decoded))
            self._last = step.decoded
            self._denoiser.submit(self._run, list(requests), step)
        return step

    def call(self, function: Callable[..., T], *args: Any) -> Future[T]:
        """Run other engine work on the denoise thread, between steps."""
        return self._denoiser.submit(function, *args)

    def drain(self) -> Decoded:
        """Wait until the last queued step is decoded; what it decoded (nothing before any step)."""
        with self._lock:
            last = self._last
        return last.result() if last is not None else Decoded({})

    def close(self) -> None:
        """Cancel queued work, wait for the running work, end both threads and fail the steps left open."""
        with self._lock:
            self._closed = True
        self._denoiser.shutdown(wait=True, cancel_futures=True)
        self._decoder.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            left, self._open = self._open, set()
        for future in left:
            future.set_exception(RuntimeError("the engine runner was closed"))

    def __enter__(self) -> TwoStageRunner:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _run(self, requests: list[Request], step: Step) -> None:
        """On the denoise thread: make the latents, then hand them to the decoder."""
        try:
            made = self._denoise(requests)
        except BaseException as error:  # not a model failure (those are per request): nobody may wait forever
            self._settle(step.denoised, error=error)
            self._settle(step.decoded, error=error)
            raise
        self._settle(step.denoised, made)
        self._decoder.submit(self._decode_into, made, step.decoded)

    def _decode_into(self, denoised: Denoised, decoded: Future[Decoded]) -> None:
        try:
            frames = self._decode(denoised)
        except BaseException as error:
            self._settle(decoded, error=error)
            raise
        self._settle(decoded, frames)

    def _settle(self, future: Future[Any], result: Any = None, *, error: BaseException | None = None) -> None:
        with self._lock:
            self._open.discard(future)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def _denoise(self, requests: list[Request]) -> Denoised:
        started = time.perf_counter()
        latents, errors = _each_alone_on_failure(self.engine.advance, requests)
        made = sorted(latents)
        stacked = torch.stack([latents[i] for i in made]) if made else None
        return Denoised(made, stacked, errors, _since(started))

    def _decode(self, denoised: Denoised) -> Decoded:
        if denoised.latents is None:
            return Decoded({})
        started = time.perf_counter()
        frames, errors = _each_alone_on_failure(
            lambda rows: self.engine.decode(torch.stack(rows)), list(denoised.latents)
        )
        return Decoded(
            {denoised.made[row]: frame for row, frame in frames.items()},
            {denoised.made[row]: error for row, error in errors.items()},
            _since(started),
        )


def _each_alone_on_failure(
    run: Callable[[list[Item]], Sequence[Out]], items: list[Item]
) -> tuple[dict[int, Out], dict[int, Exception]]:
    """`run` on all `items` at once; if that raises, on each item alone, so that one bad request fails only
    itself and not the requests it happened to share a batch with. Returns index -> result, index -> error.
    """
    try:
        return dict(enumerate(run(items))), {}
    except Exception as error:
        if len(items) == 1:
            return {}, {0: error}
    results: dict[int, Out] = {}
    errors: dict[int, Exception] = {}
    for i, item in enumerate(items):
        try:
            (results[i],) = run([item])
        except Exception as error:
            errors[i] = error
    return results, errors


def _uncancellable() -> Future[Any]:
    """A future already marked running, so that cancelling a waiter (an asyncio wrapper) leaves it be."""
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()
    return future


def _since(started: float) -> float:
    return time.perf_counter() - started
