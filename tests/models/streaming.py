"""Checks that every kind of model folder must pass when streamed by the engine."""

from __future__ import annotations

import numpy as np

from models import StreamingEngine


def rollout(engine: StreamingEngine, seed: int, prompt: str, frames: int) -> list[np.ndarray]:
    """`frames` consecutive frames of one stream with a fixed prompt."""
    state = engine.new_stream(seed)
    cond = engine.encode_prompt(prompt)
    return [engine.generate([(state, cond)])[0] for _ in range(frames)]


def assert_batch_equals_streams_alone(engine: StreamingEngine, first: str, second: str, frames: int = 3) -> None:
    """Two streams with different prompts in one batch get the frames each would get alone."""
    alone = [
        rollout(engine, seed=1, prompt=first, frames=frames),
        rollout(engine, seed=2, prompt=second, frames=frames),
    ]
    a, b = engine.new_stream(1), engine.new_stream(2)
    conditions = engine.encode_prompt(first), engine.encode_prompt(second)
    batched: list[list[np.ndarray]] = [[], []]
    for _ in range(frames):
        fa, fb = engine.generate([(a, conditions[0]), (b, conditions[1])])
        batched[0].append(fa)
        batched[1].append(fb)
    for stream_alone, stream_batched in zip(alone, batched):
        for x, y in zip(stream_alone, stream_batched):
            assert np.abs(x.astype(int) - y.astype(int)).max() <= 2
