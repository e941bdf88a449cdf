"""How fast an engine makes frames, measured on throwaway streams as the server runs it."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from models.interface import FrameEngine
from models.runner import Request, TwoStageRunner


def throwaway_requests(engine: FrameEngine, batch: int, first_seed: int = 0) -> list[Request]:
    """`batch` fresh streams with blank conditioning, for warm-up and timing."""
    blank = engine.blank_conditioning()
    return [(engine.new_stream(first_seed + i), blank) for i in range(batch)]


@contextmanager
def steps_set(engine: FrameEngine, steps: int) -> Iterator[None]:
    """The engine at `steps` denoising steps per frame inside the block, as it was after it."""
    saved, engine.steps = engine.steps, steps
    try:
        yield
    finally:
        engine.steps = saved


def warm_up(engine: FrameEngine, batch_sizes: Sequence[int] = (1, 4)) -> None:
    """Run a few throwaway batches so the first real frame does not pay for lazy initialization."""
    for size in batch_sizes:
        requests = throwaway_requests(engine, size)
        for _ in range(2):
            engine.decode(engine.advance(requests))


def measure_fps(engine: FrameEngine, batch: int, steps: int, calls: int = 2, *, pipelined: bool = False) -> float:
    """Frames per second at `batch` streams and `steps` steps, on throwaway streams.

    One untimed batch first (allocations for a new batch size), then `calls` timed ones. `pipelined`
    times the engine as the server runs it, through a `TwoStageRunner` (each batch decodes while the
    next denoises); otherwise each batch denoises and decodes in turn.
    """
    requests = throwaway_requests(engine, batch)
    with steps_set(engine, steps):
        engine.decode(engine.advance(requests))
        if pipelined:
            with TwoStageRunner(engine) as runner:
                started = time.perf_counter()
                for _ in range(calls):
                    _raise_first(runner.step(requests).denoised.result().errors)
                _raise_first(runner.drain().errors)
                elapsed = time.perf_counter() - started
        else:
            started = time.perf_counter()
            for _ in range(calls):
                engine.decode(engine.advance(requests))
            elapsed = time.perf_counter() - started
    return batch * calls / elapsed


def _raise_first(errors: dict[int, Exception]) -> None:
    """A timing of failed frames means nothing: the first failure, if any."""
    if errors:
        raise next(iter(errors.values()))
