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
    """Runs `step`s of an engine: denoise on one thread, decode on another, one batch in each stage.

    A step's decode starts once the previous step's decode is done, and the next step's denoise starts
    once that decode has started, so at most one batch waits in each stage. Other engine work (prompt
    encoding, warm-up) goes to the denoise thread with `call`, between steps.

    Args:
        engine: what makes the frames.
    """

    def __init__(self, engine: FrameEngine) -> None:
        self.engine = engine
        self._denoiser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixelcast-denoise")
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixelcast-decode")
        self._last: Future[Decoded] | None = None
        self._lock = threading.Lock()

    def step(self, requests: Sequence[Request]) -> Step:
        """Queue the next frame of each request's stream."""
        requests = list(requests)
        denoised: Future[Denoised] = Future()
        decoded: Future[Decoded] = Future()
        with self._lock:
            previous, self._last = self._last, decoded
        self._denoiser.submit(self._run, requests, previous, denoised, decoded)
        return Step(denoised, decoded)

    def call(self, function: Callable[..., T], *args: Any) -> Future[T]:
        """Run other engine work on the denoise thread, between steps."""
        return self._denoiser.submit(function, *args)

    def drain(self) -> Decoded:
        """Wait until the last queued step is decoded; what it decoded (nothing before any step)."""
        with self._lock:
            last = self._last
        return last.result() if last is not None else Decoded({})

    def close(self) -> None:
        """Cancel queued work, wait for the running work and end both threads."""
        self._denoiser.shutdown(wait=True, cancel_futures=True)
        self._decoder.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> TwoStageRunner:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _run(
        self,
        requests: list[Request],
        previous: Future[Decoded] | None,
        denoised: Future[Denoised],
        decoded: Future[Decoded],
    ) -> None:
        """On the denoise thread: make the latents, then hand them to the decoder once it is free."""
        try:
            made = self._denoise(requests)
        except BaseException as error:  # not a model failure (interpreter shutdown): nobody may wait forever
            denoised.set_exception(error)
            decoded.set_exception(error)
            raise
        denoised.set_result(made)
        if previous is not None:
            try:
                previous.result()  # one batch decodes while this one waits, never more
            except Exception:  # noqa: S110 - that batch's failure was handed to its own streams
                pass
        self._decoder.submit(self._decode_into, made, decoded)

    def _denoise(self, requests: list[Request]) -> Denoised:
        started = time.perf_counter()
        try:
            return Denoised(list(range(len(requests))), self.engine.advance(requests), {}, _since(started))
        except Exception as error:
            if len(requests) == 1:
                return Denoised([], None, {0: error}, _since(started))
        # one stream's bad request must not fail the streams it happened to share a batch with
        made: list[int] = []
        parts: list[torch.Tensor] = []
        errors: dict[int, Exception] = {}
        for i, request in enumerate(requests):
            try:
                parts.append(self.engine.advance([request]))
                made.append(i)
            except Exception as error:
                errors[i] = error
        return Denoised(made, torch.cat(parts) if parts else None, errors, _since(started))

    def _decode_into(self, denoised: Denoised, decoded: Future[Decoded]) -> None:
        try:
            decoded.set_result(self._decode(denoised))
        except BaseException as error:
            decoded.set_exception(error)
            raise

    def _decode(self, denoised: Denoised) -> Decoded:
        errors: dict[int, Exception] = {}
        started = time.perf_counter()
        if denoised.latents is None:
            return Decoded({}, errors, 0.0)
        try:
            frames = self.engine.decode(denoised.latents)
            return Decoded(dict(zip(denoised.made, frames, strict=True)), errors, _since(started))
        except Exception as error:
            if len(denoised.made) == 1:
                errors[denoised.made[0]] = error
                return Decoded({}, errors, _since(started))
        # as in denoising: each frame alone, so that only the frames that fail again fail
        alone: dict[int, np.ndarray] = {}
        for row, i in enumerate(denoised.made):
            try:
                alone[i] = self.engine.decode(denoised.latents[row : row + 1])[0]
            except Exception as error:
                errors[i] = error
        return Decoded(alone, errors, _since(started))


def _since(started: float) -> float:
    return time.perf_counter() - started
