"""Adaptive control: every stream keeps real time by trading quality for speed, and back.

Order of cost cuts: denoising steps first (shared by the whole batch), then each stream's frame rate
down to a floor. With headroom for a while, frame rate comes back first, then steps. A stream counts as behind
when it makes frames slower than it plays them and its buffered lead is under half: a stream whose
lead is full is keeping up, whatever its last cycles cost (they include waiting to share a batch).
New viewers are admitted only while no stream is behind and the engine can cover every stream at the
floor: its capacity at the larger batch (measured at start-up, `models.tuning.capacity.CapacityModel`), discounted
by how far live throughput falls short of what the same measurement expects today (encoding, WebRTC
and other processes on the machine, thermal limits).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from models.interface import FrameEngine
from models.tuning.capacity import CapacityModel

from .generation import GenerationLoop
from .metrics import Metrics

logger = logging.getLogger(__name__)

BEHIND = 1.05  # below this real-time factor a stream is about to stall
SAFE_LEAD = 0.5  # with at least this fraction of its buffer filled, a stream is not behind
HEADROOM = 1.6  # above this for a while there is room to restore quality
CALM_CHECKS = 3  # checks in a row with headroom before restoring
FPS_STEP = 4  # frames per second per adjustment
# Capacity must beat the floor by this much: encoding, WebRTC and anything else on the machine share
# the CPU with the engine, so the engine's own measured capacity overstates what streams get.
ADMISSION_MARGIN = 1.25


@dataclass(frozen=True)
class Decision:
    """One adjustment, for logs, `stats` messages and /metrics."""

    action: str  # "steps_down", "fps_down", "fps_up", "steps_up"
    value: int
    realtime_factor: float
    at: float


def _ceiling(stream: Any, default: int) -> int:
    """A stream's own frame-rate ceiling (an experiment variation may set one), else ``default``."""
    settings = getattr(stream, "settings", None)
    return min(default, int(settings.fps)) if settings is not None else default


class AdaptiveController:
    """Watches the slowest stream once a second and adjusts steps and frame rates."""

    def __init__(
        self,
        engine: FrameEngine,
        streams: Callable[[], Sequence[GenerationLoop]],
        metrics: Metrics,
        *,
        max_steps: int,
        target_fps: int,
        min_fps: int,
        throughput: Callable[[], float | None],
        mean_batch: Callable[[], float | None] = lambda: None,
        capacity: CapacityModel | None = None,
    ) -> None:
        self._engine = engine
        self._streams = streams
        self._metrics = metrics
        self._max_steps = max_steps
        self._target_fps = target_fps
        self.min_fps = min_fps
        self._throughput = throughput
        self._mean_batch = mean_batch
        self.capacity = capacity
        self._calm = 0
        self.last: Decision | None = None
        metrics.engine_steps.set(engine.steps)

    def can_admit(self) -> bool:
        """Whether one more viewer can be served at the frame-rate floor without stalling anyone."""
        streams = self._streams()
        throughput = self._throughput()
        if any(_behind(s) for s in streams if s.settled):
            logger.info("admission: refused, a stream is using up its lead")
            return False
        if not streams or throughput is None:
            return True
        viewers = len(streams) + 1
        needed = viewers * self.min_fps * ADMISSION_MARGIN
        if self.capacity is None:
            # Only today's throughput at today's batch is known: frames are cheaper in bigger
            # batches, so this errs on the side of turning a viewer away.
            return throughput >= needed
        batch = self._mean_batch() or float(len(streams))
        expected_now = self.capacity.fps(max(1, round(batch)), self._engine.steps)
        slowdown = max(1.0, expected_now / throughput)
        capacity = self.capacity.fps(viewers, 1)
        can = capacity / slowdown >= needed
        if not can:
            logger.info(
                "admission: refused, %.0f frames/s at batch %d, slowed %.2fx (%.0f now at batch %.1f), below %.0f",
                capacity,
                viewers,
                slowdown,
                throughput,
                batch,
                needed,
            )
        return can

    def joining_fps(self) -> int:
        """The frame rate a new stream starts at: that of the streams running now (the target with none).

        Streams at one rate share batches; a newcomer at the full rate beside streams cut to the floor
        would also take more than its share.
        """
        return min((s.fps for s in self._streams()), default=self._target_fps)

    def check(self) -> Decision | None:
        """One control step: returns the adjustment made, if any."""
        streams = [s for s in self._streams() if s.realtime_factor > 0 and s.settled]
        if not streams:
            return None
        slowest = min(s.realtime_factor for s in streams)
        decision: Decision | None = None
        if any(_behind(s) for s in streams):
            self._calm = 0
            if self._engine.steps > 1:
                self._engine.steps -= 1
                decision = Decision("steps_down", self._engine.steps, slowest, time.monotonic())
            elif any(s.fps > self.min_fps for s in streams):
                fps = max(self.min_fps, min(s.fps for s in streams) - FPS_STEP)
                for stream in streams:  # one rate for all (up to a stream's own ceiling), so frames share batches
                    stream.fps = min(fps, _ceiling(stream, fps))
                decision = Decision("fps_down", fps, slowest, time.monotonic())
        elif slowest > HEADROOM:
            self._calm += 1
            if self._calm >= CALM_CHECKS:
                self._calm = 0
                if any(s.fps < _ceiling(s, self._target_fps) for s in streams):
                    fps = min(self._target_fps, min(s.fps for s in streams) + FPS_STEP)
                    for stream in streams:
                        stream.fps = min(fps, _ceiling(stream, fps))
                    decision = Decision("fps_up", fps, slowest, time.monotonic())
                elif self._engine.steps < self._max_steps:
                    self._engine.steps += 1
                    decision = Decision("steps_up", self._engine.steps, slowest, time.monotonic())
        else:
            self._calm = 0
        if decision is not None:
            self.last = decision
            self._metrics.adaptations.labels(decision.action).inc()
            self._metrics.engine_steps.set(self._engine.steps)
            logger.info("adaptive: %s to %d (slowest real-time factor %.2f)", decision.action, decision.value, slowest)
        return decision

    async def run(self, interval: float = 1.0) -> None:
        """Check every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.check()


def _behind(stream: GenerationLoop) -> bool:
    """Whether a stream makes frames slower than it plays them and is using up its lead."""
    return stream.realtime_factor < BEHIND and stream.lead < SAFE_LEAD
