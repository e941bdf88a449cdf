"""Adaptive control: every stream keeps real time by trading quality for speed, and back.

Order of cost cuts: denoising steps first (shared by the whole batch), then each stream's frame rate
down to a floor. With headroom for a while, frame rate comes back first, then steps. New viewers are
admitted only while the engine can cover every stream at the floor: its capacity at the larger batch
(measured at start-up, `capacity.CapacityModel`), discounted by how far live throughput falls short of
what the same measurement expects today (another process on the machine, thermal limits), and only
while the streams' own real-time factors, which also see encoding and WebRTC, leave room for one more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .capacity import CapacityModel
from .generation import GenerationLoop
from .metrics import Metrics

logger = logging.getLogger(__name__)

BEHIND = 1.05  # below this real-time factor a stream is about to stall
HEADROOM = 1.6  # above this for a while there is room to restore quality
CALM_CHECKS = 3  # checks in a row with headroom before restoring
FPS_STEP = 4  # frames per second per adjustment
# Capacity must beat the floor by this much: encoding, WebRTC and anything else on the machine share
# the CPU with the engine. At 1.1 a fourth viewer was let in on the 2-core machine and then ran at 10.9 fps.
ADMISSION_MARGIN = 1.25


@dataclass(frozen=True)
class Decision:
    """One adjustment, for logs, `stats` messages and /metrics."""

    action: str  # "steps_down", "fps_down", "fps_up", "steps_up"
    value: int
    realtime_factor: float
    at: float


class AdaptiveController:
    """Watches the slowest stream once a second and adjusts steps and frame rates."""

    def __init__(
        self,
        engine: Any,
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
        if self.capacity.fps(viewers, 1) / slowdown < needed:
            return False
        # The engine is not all of a frame: encoding and WebRTC share the CPU. The streams' own
        # real-time factors see everything; at the floor's frame rate, each stream's share of the
        # work shrinks to n / (n + 1) with one more viewer, and must still keep up.
        settled = [s for s in streams if s.settled and s.realtime_factor > 0]
        if not settled:
            return True
        at_floor = min(s.realtime_factor * s.fps / self.min_fps for s in settled)
        return at_floor * len(streams) / viewers >= BEHIND

    def check(self) -> Decision | None:
        """One control step: returns the adjustment made, if any."""
        streams = [s for s in self._streams() if s.realtime_factor > 0 and s.settled]
        if not streams:
            return None
        slowest = min(s.realtime_factor for s in streams)
        decision: Decision | None = None
        if slowest < BEHIND:
            self._calm = 0
            if self._engine.steps > 1:
                self._engine.steps -= 1
                decision = Decision("steps_down", self._engine.steps, slowest, time.monotonic())
            elif any(s.fps > self.min_fps for s in streams):
                for stream in streams:
                    stream.fps = max(self.min_fps, stream.fps - FPS_STEP)
                decision = Decision("fps_down", min(s.fps for s in streams), slowest, time.monotonic())
        elif slowest > HEADROOM:
            self._calm += 1
            if self._calm >= CALM_CHECKS:
                self._calm = 0
                if any(s.fps < self._target_fps for s in streams):
                    for stream in streams:
                        stream.fps = min(self._target_fps, stream.fps + FPS_STEP)
                    decision = Decision("fps_up", min(s.fps for s in streams), slowest, time.monotonic())
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
