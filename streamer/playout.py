"""The playout side of a stream: one monotonic clock and a bounded buffer of encoded frames."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av

from .encoding import VIDEO_CLOCK_RATE

# Waiting for space polls instead of parking on Queue.put, so that closing the buffer stops the
# generator even where a library on its path swallowed the task's cancellation (seen with redis-py).
PUT_POLL_SECONDS = 0.005  # 5 ms, well under a frame interval


class PlayoutClosed(Exception):
    """The stream ended; no more frames are taken."""


@dataclass(frozen=True)
class EncodedFrame:
    """One encoded video frame, stamped with its playout time on the stream's clock."""

    pts: int  # 90 kHz ticks since the stream's first frame
    packet: av.Packet[Any]
    keyframe: bool
    segment_id: int


class PlayoutClock:
    """Maps a frame's pts to the wall-clock moment it should be sent.

    The clock starts when the first frame goes out, so the time to first frame is only generation
    time, and everything after that is paced against that one origin (no drift from sleeps).
    """

    def __init__(self) -> None:
        self._origin: float | None = None

    @property
    def started(self) -> bool:
        """Whether the first frame has gone out."""
        return self._origin is not None

    def start(self, pts: int) -> None:
        """Anchor the clock so that `pts` is due now."""
        self._origin = time.monotonic() - pts / VIDEO_CLOCK_RATE

    def due(self, pts: int) -> float:
        """Monotonic time at which the frame at `pts` should be sent."""
        if self._origin is None:
            raise RuntimeError("the playout clock has not started")
        return self._origin + pts / VIDEO_CLOCK_RATE

    def lateness(self, pts: int) -> float:
        """Seconds by which the frame at `pts` is already late (negative when early, 0 before start)."""
        if self._origin is None:
            return 0.0
        return time.monotonic() - self.due(pts)


class PlayoutBuffer:
    """Bounded FIFO between the generation loop and the WebRTC track.

    When it is full the generator waits: generation runs ahead of playback by at most the buffer's
    depth and never queues without bound.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._queue: asyncio.Queue[EncodedFrame] = asyncio.Queue(maxsize=capacity)
        self._closed = False

    @property
    def capacity(self) -> int:
        """The most frames it holds."""
        return self._queue.maxsize

    def close(self) -> None:
        """Refuse further frames: a generator waiting for space stops with `PlayoutClosed`."""
        self._closed = True

    @property
    def depth(self) -> int:
        """Frames waiting to be sent."""
        return self._queue.qsize()

    async def put(self, frame: EncodedFrame, *, unless: Callable[[], bool] | None = None) -> bool:
        """Add a frame, waiting while the buffer is full; give up (False) once `unless()` is true."""
        while True:
            if self._closed:
                raise PlayoutClosed("the playout buffer was closed")
            try:
                self._queue.put_nowait(frame)
                return True
            except asyncio.QueueFull:
                if unless is not None and unless():
                    return False
                await asyncio.sleep(PUT_POLL_SECONDS)

    def drain(self, keep: int = 0) -> list[EncodedFrame]:
        """Take every frame still waiting but the first `keep`, oldest first (a steer replaces what was
        made before it)."""
        frames = []
        while not self._queue.empty():
            frames.append(self._queue.get_nowait())
        for frame in frames[:keep]:
            self._queue.put_nowait(frame)
        return frames[keep:]

    async def get(self) -> EncodedFrame:
        """Take the next frame, waiting while the buffer is empty."""
        return await self._queue.get()
