"""The two-stage runner the server and the speed measurements share, on a tiny random engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import StreamingEngine
from models.runner import TwoStageRunner
from models.tuning.speed import measure_fps

PROMPTS = ("a calm ocean at noon", "a neon city at night")


def test_steps_make_the_frames_generate_makes_each_decoding_beside_the_next(tiny_engine: StreamingEngine) -> None:
    conditionings = [tiny_engine.encode_prompt(p) for p in PROMPTS]
    reference = [tiny_engine.new_stream(seed) for seed in (1, 2)]
    expected = [tiny_engine.generate(list(zip(reference, conditionings))) for _ in range(4)]
    streams = [tiny_engine.new_stream(seed) for seed in (1, 2)]
    with TwoStageRunner(tiny_engine) as runner:
        steps = [runner.step(list(zip(streams, conditionings))) for _ in range(4)]
        decoded = [step.decoded.result() for step in steps]
    for want, got in zip(expected, decoded):
        assert not got.errors and sorted(got.frames) == [0, 1]
        for i, frame in enumerate(want):
            assert np.abs(frame.astype(int) - got.frames[i].astype(int)).max() <= 2


def test_a_bad_request_fails_alone_and_the_runner_goes_on(tiny_engine: StreamingEngine) -> None:
    good = tiny_engine.encode_prompt(PROMPTS[0])
    bad = good[..., :7]  # the wrong width: the UNet raises for the whole batch
    with TwoStageRunner(tiny_engine) as runner:
        step = runner.step([(tiny_engine.new_stream(1), good), (tiny_engine.new_stream(2), bad)])
        denoised = step.denoised.result()
        assert denoised.made == [0] and set(denoised.errors) == {1}
        assert isinstance(denoised.errors[1], RuntimeError)
        assert sorted(step.decoded.result().frames) == [0], "the good stream's frame is decoded"
        after = runner.step([(tiny_engine.new_stream(3), good)])
        assert runner.drain().frames[0].shape == (tiny_engine.height, tiny_engine.width, 3)
        assert after.decoded.done()


def test_speed_is_measured_through_the_runner_and_leaves_the_steps_alone(tiny_engine: StreamingEngine) -> None:
    tiny_engine.steps = 1
    pipelined = measure_fps(tiny_engine, batch=2, steps=2, calls=2, pipelined=True)
    in_turn = measure_fps(tiny_engine, batch=2, steps=2, calls=2)
    assert pipelined > 0 and in_turn > 0
    assert tiny_engine.steps == 1


def test_closing_ends_every_step_and_no_waiter_can_cancel_one(tiny_engine: StreamingEngine) -> None:
    conditioning = tiny_engine.encode_prompt(PROMPTS[0])
    runner = TwoStageRunner(tiny_engine)
    steps = [runner.step([(tiny_engine.new_stream(seed), conditioning)]) for seed in range(6)]
    assert not steps[-1].denoised.cancel(), "a cancelled waiter must not leave the runner's step unsettled"
    runner.close()
    for step in steps:  # each ended: with its frames, or with the runner's closing
        assert step.denoised.done() and step.decoded.done()
    with pytest.raises(RuntimeError, match="closed"):
        runner.step([(tiny_engine.new_stream(9), conditioning)])


def test_a_failed_advance_leaves_the_streams_as_they_were(tiny_engine: StreamingEngine) -> None:
    good = tiny_engine.encode_prompt(PROMPTS[0])
    state = tiny_engine.new_stream(4)
    tiny_engine.advance([(state, good)])
    before = (state.generator.get_state(), state.latent, state.noise)
    with pytest.raises(RuntimeError):
        tiny_engine.advance([(state, good), (tiny_engine.new_stream(5), good[..., :7])])
    assert torch.equal(state.generator.get_state(), before[0]), "the noise source did not move on"
    assert state.latent is before[1] and state.noise is before[2]
