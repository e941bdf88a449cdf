"""The batcher: streams that pipeline their frames share batches and each gets its own prompt's frames."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from models import StreamingEngine
from streamer.batching import FrameBatcher
from streamer.metrics import Metrics
from tests.models.streaming import rollout

OCEAN, CITY = "a calm ocean at noon", "a neon city at night"
FRAMES = 12


@pytest.fixture
def engine(tiny_engine: StreamingEngine) -> StreamingEngine:
    return tiny_engine


async def _pipelined_stream(
    batcher: FrameBatcher,
    engine: StreamingEngine,
    seed: int,
    prompt: str,
    start: asyncio.Event | None = None,
    first_latent: asyncio.Event | None = None,
) -> list[np.ndarray]:
    """A stream as `GenerationLoop` drives one: the next frame is queued once the last latent exists.

    It waits for `start` before its first frame, and sets `first_latent` once its first latent is made.
    """
    state, conditioning = engine.new_stream(seed), engine.encode_prompt(prompt)
    if start is not None:
        await start.wait()
    frames: list[np.ndarray] = []
    pending: asyncio.Future[np.ndarray] | None = None
    for _ in range(FRAMES):
        pixels = await batcher.denoise(state, conditioning)
        if first_latent is not None:
            first_latent.set()
        if pending is not None:
            frames.append(await pending)
        pending = pixels
    assert pending is not None
    frames.append(await pending)
    return frames


async def test_each_stream_gets_its_own_prompts_frames_in_order(engine: StreamingEngine) -> None:
    alone = [rollout(engine, seed=1, prompt=OCEAN, frames=FRAMES), rollout(engine, seed=2, prompt=CITY, frames=FRAMES)]
    batcher = FrameBatcher(engine, Metrics())
    batcher.start()
    try:
        batched = await asyncio.gather(
            _pipelined_stream(batcher, engine, 1, OCEAN), _pipelined_stream(batcher, engine, 2, CITY)
        )
    finally:
        await batcher.stop()
    for stream_alone, stream_batched in zip(alone, batched):
        assert len(stream_batched) == FRAMES
        for x, y in zip(stream_alone, stream_batched):
            assert np.abs(x.astype(int) - y.astype(int)).max() <= 2


async def test_streams_that_start_out_of_step_come_to_share_batches(engine: StreamingEngine) -> None:
    # The second stream asks while the first one's batch runs. Without gathering, each would then
    # wait for the other's batch and the two would take turns for good, one frame per batch.
    batcher = FrameBatcher(engine, Metrics())
    batcher.start()
    try:
        # the second stream starts once the first one's first batch is through: out of step by a batch
        later = asyncio.Event()
        first = asyncio.create_task(_pipelined_stream(batcher, engine, 1, OCEAN, first_latent=later))
        second = asyncio.create_task(_pipelined_stream(batcher, engine, 2, CITY, start=later))
        await asyncio.gather(first, second)
        mean_batch = batcher.mean_batch()
    finally:
        await batcher.stop()
    assert mean_batch is not None and mean_batch > 1.5, f"mean batch {mean_batch}: the streams took turns"


async def _failing_stream(batcher: FrameBatcher, engine: StreamingEngine, seed: int) -> None:
    """A stream whose conditioning is of the wrong width: the engine raises for it, in the shared batch."""
    state, conditioning = engine.new_stream(seed), engine.encode_prompt(CITY)[..., :7]
    await batcher.generate(state, conditioning)


async def test_one_streams_engine_failure_fails_only_that_stream(engine: StreamingEngine) -> None:
    alone = rollout(engine, seed=1, prompt=OCEAN, frames=FRAMES)
    batcher = FrameBatcher(engine, Metrics())
    batcher.start()
    try:
        good, bad = await asyncio.gather(
            _pipelined_stream(batcher, engine, 1, OCEAN), _failing_stream(batcher, engine, 2), return_exceptions=True
        )
        later = await batcher.generate(engine.new_stream(3), engine.encode_prompt(CITY))
    finally:
        await batcher.stop()
    assert isinstance(bad, RuntimeError), f"the bad stream should fail, got {bad!r}"
    assert isinstance(good, list) and len(good) == FRAMES, f"the good stream failed with it: {good!r}"
    for x, y in zip(alone, good):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 2
    assert later.shape == good[0].shape, "the batcher goes on after a failure"
