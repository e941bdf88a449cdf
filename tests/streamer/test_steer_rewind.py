"""A steer replaces the buffered lead at once: no gap in the timeline, a keyframe, a stream that still decodes."""

from __future__ import annotations

import asyncio

import av
import pytest

from models import StreamingEngine
from models.engine import default_model_path
from streamer.batching import FrameBatcher
from streamer.encoding import VIDEO_CLOCK_RATE, VideoEncoder
from streamer.generation import GenerationLoop, StreamSettings
from streamer.metrics import Metrics
from streamer.planning import SegmentPlan
from streamer.playout import EncodedFrame, PlayoutBuffer, PlayoutClock
from tests.support.waiting import until

FPS = 24
INTERVAL = VIDEO_CLOCK_RATE // FPS


class _WordsPlanner:
    """The planner's interface without personalization: the prompt is the last thing the viewer said."""

    def __init__(self, prompt: str) -> None:
        self.prompt = prompt

    def steer(self, text: str) -> None:
        self.prompt = text

    def skip(self) -> None:
        pass

    async def plan(self) -> SegmentPlan:
        return SegmentPlan(prompt=self.prompt)


@pytest.fixture(scope="module")
def engine() -> StreamingEngine:
    return StreamingEngine.from_pretrained(default_model_path(), steps=1)


async def test_steer_replaces_unsent_frames_and_the_stream_stays_continuous(engine: StreamingEngine) -> None:
    metrics = Metrics()
    batcher = FrameBatcher(engine, metrics)
    batcher.start()
    settings = StreamSettings(fps=FPS, segment_seconds=60.0, buffer_seconds=0.5)
    buffer = PlayoutBuffer(settings.buffer_frames)
    planner = _WordsPlanner("a calm ocean at noon")
    loop = GenerationLoop(
        batcher,
        VideoEncoder("h264", engine.width, engine.height, FPS),
        buffer,
        PlayoutClock(),  # not started: no slot is ever late, so nothing is skipped
        settings,
        metrics,
        planner=planner,  # type: ignore[arg-type]
        seed=7,
    )
    task = asyncio.create_task(loop.run())
    try:
        await until(lambda: buffer.depth == buffer.capacity)
        sent: list[EncodedFrame] = [await buffer.get() for _ in range(3)]  # what the viewer already got
        await until(lambda: buffer.depth == buffer.capacity)

        loop.steer("a volcano at night")
        await until(lambda: loop.frames_replaced > 0 and buffer.depth > 1)
        kept, after = await buffer.get(), await buffer.get()
        # the full buffer but the frame due next, and the frame that was waiting for room when the steer came
        assert loop.frames_replaced == buffer.capacity, "every unsent pre-steer frame but the next is replaced"
        assert kept.pts == sent[-1].pts + INTERVAL and kept.segment_id == sent[-1].segment_id
        assert after.pts == kept.pts + INTERVAL, "the timeline goes on from the last frame kept, no gap"
        assert after.keyframe and after.segment_id == sent[-1].segment_id + 1
        assert loop.plan is not None and loop.plan.prompt == "a volcano at night"
        await until(lambda: buffer.depth >= 3)
        sent += [kept, after] + [await buffer.get() for _ in range(3)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await batcher.stop()

    pts = [frame.pts for frame in sent]
    assert pts == [pts[0] + i * INTERVAL for i in range(len(pts))]
    decoder = av.CodecContext.create("h264", "r")
    decoded = [picture for frame in sent for picture in decoder.decode(frame.packet)]
    assert len(decoded) == len(sent), "what the viewer receives decodes without a missing reference"


def test_a_new_prompt_blends_in_over_the_frames_asked_for() -> None:
    """At a lower frame rate the blend takes fewer frames, so a steer takes the same time to show."""
    import torch

    from streamer.conditioning import ConditioningBlend

    a, b = torch.ones(4, 8), -torch.ones(4, 8)
    blend = ConditioningBlend(a, 6)
    blend.retarget(b, a, 3)
    steps = [blend.next() for _ in range(3)]
    assert not torch.equal(steps[0], b) and torch.equal(steps[-1], b)
    assert not blend.blending
