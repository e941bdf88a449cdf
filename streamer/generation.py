"""The per-viewer generation loop: segments, steering, encoding and a bounded lead over playback."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .batching import FrameBatcher
from .conditioning import ConditioningBlend
from .encoding import VIDEO_CLOCK_RATE, VideoEncoder
from .faults import FaultInjector
from .metrics import Metrics
from .planning import SegmentPlan, SegmentPlanner
from .playout import EncodedFrame, PlayoutBuffer, PlayoutClock

logger = logging.getLogger(__name__)

REWIND_KEEP_FRAMES = 1
"""Unsent frames a steer or skip leaves to play: those due before a replacement could be."""


@dataclass(frozen=True)
class _MadeFrame:
    """What the stream looked like after one generated frame, so a steer can resume from it."""

    pts: int
    latent: Any
    noise: Any
    conditioning: Any
    anchor: Any
    anchor_frames: int


@dataclass(frozen=True)
class _InFlight:
    """A frame whose latent is made and whose pixels are still decoding."""

    made: _MadeFrame
    pixels: asyncio.Future[Any]
    keyframe: bool
    segment_id: int


class _DeliverySlot:
    """The one frame on its way to playout, as a task returning how long it waited for buffer room."""

    def __init__(self) -> None:
        self.task: asyncio.Task[float] | None = None

    async def finish(self) -> float:
        """Wait until the frame on its way is handed over (or obsolete); seconds it waited for room."""
        task, self.task = self.task, None
        return await task if task is not None else 0.0

    def abandon(self) -> None:
        """The stream stops: cancel the frame on its way, or take its failure so that it is not logged as lost."""
        task, self.task = self.task, None
        if task is None:
            return
        if task.done():
            if not task.cancelled():
                task.exception()
        else:
            task.cancel()


@dataclass(frozen=True)
class StreamSettings:
    """Timing of one stream."""

    fps: int = 24
    segment_seconds: float = 1.0
    buffer_seconds: float = 0.5
    # a new prompt blends in over this long (at least two frames), whatever the frame rate: short enough
    # that a steer shows within the half-second target, long enough that it does not cut
    transition_seconds: float = 0.15
    # this stream's own denoising steps per frame (an experiment's variation may set them); None follows the
    # engine's, which the adaptive controller lowers under load
    steps: int | None = None

    @property
    def buffer_frames(self) -> int:
        """How many encoded frames generation may run ahead of playback."""
        return max(1, round(self.fps * self.buffer_seconds))


SegmentListener = Callable[[int, SegmentPlan], None]


class GenerationLoop:
    """Generates, encodes and buffers one viewer's frames until cancelled.

    Frame slots are numbered on the playout clock; when generation falls so far behind that a
    slot's due time has passed, that slot is skipped rather than generated late, so the stream
    stays on time and nothing queues up.

    A steer or skip does not wait behind the buffered lead: frames made before it that have not
    been sent yet are thrown away, and generation resumes from the last frame the viewer got (its
    slot, latent and conditioning), with a keyframe, so the change shows one generation later.
    """

    def __init__(
        self,
        batcher: FrameBatcher,
        encoder: VideoEncoder,
        buffer: PlayoutBuffer,
        clock: PlayoutClock,
        settings: StreamSettings,
        metrics: Metrics,
        *,
        planner: SegmentPlanner,
        seed: int,
        on_segment: SegmentListener | None = None,
        faults: FaultInjector | None = None,
    ) -> None:
        self._batcher = batcher
        self._engine = batcher.engine
        self._encoder = encoder
        self.settings = settings
        self._metrics = metrics
        self._on_segment = on_segment
        self._faults = faults or FaultInjector()
        self._state = self._engine.new_stream(seed)
        self._state.steps = settings.steps
        self.buffer = buffer
        self.clock = clock
        self._planner = planner
        self.plan: SegmentPlan | None = None
        self.segment_id = -1
        self.frames_generated = 0
        self.frames_dropped = 0
        self.frames_replaced = 0
        self._obsolete_pts: int | None = None  # a made frame a steer overtook before it was queued
        self._made: deque[_MadeFrame] = deque(maxlen=buffer.capacity + 3)
        self._asked = 0  # steers and skips so far
        self._answered = 0  # of those, the ones the stream has re-planned for
        self._keyframe_requested = False
        self.fps = settings.fps  # the adaptive controller may lower it (and raise it back)
        self._cycle_seconds: deque[float] = deque(maxlen=2 * settings.fps)
        self._sent_at: deque[float] = deque(maxlen=4 * settings.fps)

    def steer(self, text: str) -> None:
        """Re-plan with the viewer's words from the next generated frame on, starting a new segment."""
        self._planner.steer(text)
        self._asked += 1

    def skip(self) -> None:
        """Show another scene from the next generated frame on, starting a new segment."""
        self._planner.skip()
        self._asked += 1

    @property
    def _replan_now(self) -> bool:
        """Whether a steer or skip is waiting for the stream to re-plan."""
        return self._asked != self._answered

    def request_keyframe(self) -> None:
        """Make the next encoded frame a keyframe (the receiver lost a picture)."""
        self._keyframe_requested = True

    def set_target_bitrate(self, bitrate: int) -> None:
        """Follow the receiver's bandwidth estimate (applied at the next keyframe)."""
        self._encoder.target_bitrate = bitrate

    def frame_sent(self, frame: EncodedFrame, late_seconds: float) -> None:
        """Called by the track for each frame it sends."""
        self._sent_at.append(time.monotonic())
        self._metrics.frames_sent.inc()

    @property
    def settled(self) -> bool:
        """Whether a full window of frames was measured (the first ones include start-up work)."""
        return self.frames_generated >= 2 * self.settings.fps

    @property
    def lead(self) -> float:
        """How full the buffer of frames made ahead of playback is, from 0 (empty) to 1 (full)."""
        return self.buffer.depth / self.buffer.capacity

    @property
    def realtime_factor(self) -> float:
        """Seconds of video this stream can produce per second of wall time (>= 1 keeps up)."""
        if not self._cycle_seconds:
            return 0.0
        mean_cycle = sum(self._cycle_seconds) / len(self._cycle_seconds)
        return (1.0 / self.fps) / mean_cycle if mean_cycle > 0 else 0.0

    def stats(self) -> dict[str, Any]:
        """The numbers a viewer sees in the overlay (the data channel's `stats` message)."""
        now = time.monotonic()
        recent = [t for t in self._sent_at if now - t <= 1.0]
        return {
            "type": "stats",
            "fps": float(len(recent)),
            "target_fps": self.fps,
            "max_fps": self.settings.fps,  # the stream's ceiling: target_fps moves below it under load
            "realtime_factor": round(self.realtime_factor, 3),
            "buffer_seconds": round(self.buffer.depth / self.fps, 3),
            # the stream's own steps where it has them (an experiment's variation), else the engine's
            "steps": int(self._engine.steps if self._state.steps is None else self._state.steps),
            "width": int(self._engine.width),
            "height": int(self._engine.height),
            "frames_generated": self.frames_generated,
            "frames_dropped": self.frames_dropped,
            "frames_replaced": self.frames_replaced,
            "segment_id": self.segment_id,
        }

    async def run(self) -> None:
        """Generate until cancelled.

        As soon as a frame's latent exists the next frame is queued (it needs only that latent), while
        the frame decodes, encodes and goes to playout on the side; one frame at a time does so, in order.
        """
        slot = _DeliverySlot()
        try:
            await self._generate(slot)
        finally:
            slot.abandon()

    async def _generate(self, slot: _DeliverySlot) -> None:
        settings = self.settings
        blend: ConditioningBlend | None = None
        current = None
        pts = 0  # 90 kHz ticks of the next frame slot; advances by one frame interval per slot
        segment_start = 0
        segment_ticks = round(settings.segment_seconds * VIDEO_CLOCK_RATE)
        keyframe_due = True
        while True:
            # 1. segments follow the playout clock, not the frames that happened to be made;
            #    a steer or skip starts a new segment at once; new prompts blend in over a few frames
            if blend is None or self._replan_now or pts - segment_start >= segment_ticks:
                # the new plan and its prompt are ready before the buffered frames are thrown away, so
                # the viewer watches those meanwhile instead of waiting
                asked = self._asked
                plan = await self._planner.plan()
                self._faults.check("plan", plan.prompt)
                target = None
                if self.plan is None or plan.prompt != self.plan.prompt:
                    target = await self._batcher.run_on_engine(self._engine.encode_prompt, plan.prompt)
                if asked != self._answered:
                    await slot.finish()  # the frame on its way either lands or is marked obsolete
                    pts, current = self._rewind(pts, current)
                    self._answered = asked  # a steer that came meanwhile re-plans once more
                if target is not None:
                    frames = max(2, round(settings.transition_seconds * self.fps))
                    if blend is None:
                        blend = ConditioningBlend(target, frames)
                    else:
                        blend.retarget(target, current, frames)
                self.plan = plan
                segment_start, keyframe_due = pts, True
                self._begin_segment()

            # 2. skip slots whose time has already passed: late frames are dropped, not queued
            interval = VIDEO_CLOCK_RATE // self.fps
            if self.clock.lateness(pts) > 1.0 / self.fps:
                pts += interval
                self.frames_dropped += 1
                self._metrics.frames_dropped.inc()
                continue

            # 3. make this frame's latent (batched with other viewers); the frame before it finishes
            #    meanwhile, and this one follows it out once it is through
            started = time.perf_counter()
            assert blend is not None, "the first pass through step 1 always plans"
            current = blend.next()
            if self.plan is not None and self._faults.fires("engine", self.plan.prompt):
                # a conditioning of the wrong width makes the real engine raise, inside a shared batch
                current = current[..., :7]
            pixels = await self._batcher.denoise(self._state, current)
            denoised = time.perf_counter()
            state = self._state
            made = _MadeFrame(pts, state.latent, state.noise, current, state.anchor, state.anchor_frames)
            buffer_wait = await slot.finish()
            # what a cycle costs when playout does not hold it back (the buffer wait ran beside the denoise)
            self._cycle_seconds.append(max(denoised - started, time.perf_counter() - started - buffer_wait))
            slot.task = asyncio.create_task(self._deliver(_InFlight(made, pixels, keyframe_due, self.segment_id)))
            keyframe_due = False
            pts += interval

    async def _deliver(self, frame: _InFlight) -> float:
        """Encode a made frame once its pixels are decoded and hand it to playout.

        Waits while the buffer is full (the bounded lead), unless a steer or skip makes the frame
        obsolete meanwhile; returns the seconds it waited for room.
        """
        rgb = await frame.pixels
        keyframe = frame.keyframe or self._keyframe_requested
        self._keyframe_requested = False
        pts = frame.made.pts
        if self.plan is not None:
            self._faults.check("encoder", self.plan.prompt)
        encode_started = time.perf_counter()
        packets = await asyncio.to_thread(self._encoder.encode, rgb, pts, keyframe)
        encoded = time.perf_counter()
        self._metrics.encode_seconds.observe(encoded - encode_started)
        self.frames_generated += 1
        self._made.append(frame.made)
        for packet in packets:
            queued = await self.buffer.put(
                EncodedFrame(pts, packet, keyframe, frame.segment_id), unless=lambda: self._replan_now
            )
            if not queued:  # the earliest such frame is where the stream resumes
                self._obsolete_pts = pts if self._obsolete_pts is None else min(pts, self._obsolete_pts)
                break
        return time.perf_counter() - encoded

    def _rewind(self, pts: int, current: Any) -> tuple[int, Any]:
        """Drop the unsent lead; return the slot and conditioning to go on from."""
        # the frame due next still plays: a replacement could not be made, encoded and sent before its time
        # (with a few viewers sharing the engine it came a frame late, a stall), so the steer shows one frame on
        unsent = {frame.pts for frame in self.buffer.drain(keep=REWIND_KEEP_FRAMES)}
        if self._obsolete_pts is not None:
            unsent.add(self._obsolete_pts)
            self._obsolete_pts = None
        if not unsent:
            return pts, current
        first = min(unsent)
        self.frames_replaced += len(unsent)
        self._metrics.frames_replaced.inc(len(unsent))
        shown = [made for made in self._made if made.pts < first]
        self._made.clear()
        if shown:
            self._state.latent, self._state.noise = shown[-1].latent, shown[-1].noise
            self._state.anchor, self._state.anchor_frames = shown[-1].anchor, shown[-1].anchor_frames
            self._made.append(shown[-1])
            current = shown[-1].conditioning
        # the codec referenced the dropped frames: start a fresh coded stream (keyframe) at `first`
        self._encoder.restart()
        return first, current

    def _begin_segment(self) -> None:
        self.segment_id += 1
        if self._on_segment is not None and self.plan is not None:
            self._on_segment(self.segment_id, self.plan)
