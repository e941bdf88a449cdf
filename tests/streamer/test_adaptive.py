"""Adaptive control and admission: streams stay real-time, and a viewer too many is refused, not everyone."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from benchmarks.server_process import ServerProcess
from models.tuning.capacity import CapacityModel
from streamer.adaptive import AdaptiveController
from streamer.metrics import Metrics
from streamer.whep_client import WhepClient

pytestmark = pytest.mark.slow  # starts servers


@dataclass
class _Engine:
    steps: int


@dataclass
class _Stream:
    realtime_factor: float
    fps: int = 24
    settled: bool = True
    lead: float = 0.0  # buffer fill


def _controller(engine: _Engine, streams: list[_Stream], throughput: float | None = None) -> AdaptiveController:
    return AdaptiveController(
        engine, lambda: streams, Metrics(), max_steps=2, target_fps=24, min_fps=12, throughput=lambda: throughput
    )


def test_falling_behind_cuts_steps_first_then_frame_rate_down_to_the_floor() -> None:
    engine, streams = _Engine(steps=2), [_Stream(0.8), _Stream(1.3)]
    controller = _controller(engine, streams)
    actions = [controller.check() for _ in range(5)]
    assert [a.action for a in actions if a] == ["steps_down", "fps_down", "fps_down", "fps_down"]
    assert engine.steps == 1 and all(s.fps == 12 for s in streams), "never below the floor"
    assert actions[-1] is None


def test_headroom_restores_frame_rate_then_steps() -> None:
    engine, streams = _Engine(steps=1), [_Stream(2.5, fps=16)]
    controller = _controller(engine, streams)
    decisions = [controller.check() for _ in range(9)]
    assert [d.action for d in decisions if d] == ["fps_up", "fps_up", "steps_up"]
    assert streams[0].fps == 24 and engine.steps == 2


def test_admission_needs_throughput_for_everyone_at_the_floor() -> None:
    streams = [_Stream(1.2), _Stream(1.2)]
    assert _controller(_Engine(1), streams, throughput=50.0).can_admit()  # 3 x 12 x 1.25 = 45 <= 50
    assert not _controller(_Engine(1), streams, throughput=30.0).can_admit()


def _calibrated_controller(streams: list[_Stream], live_fps: float) -> AdaptiveController:
    # one viewer streams at batch 1 with 2 steps (20 frames/s); batch 2 at 1 step would give 40
    capacity = CapacityModel({(1, 1): 30.0, (2, 1): 40.0, (4, 1): 60.0, (1, 2): 20.0, (2, 2): 28.0, (4, 2): 40.0})
    return AdaptiveController(
        _Engine(steps=2),
        lambda: streams,
        Metrics(),
        max_steps=2,
        target_fps=24,
        min_fps=12,
        throughput=lambda: live_fps,
        mean_batch=lambda: 1.0,
        capacity=capacity,
    )


def test_admission_judges_the_larger_batch_from_the_start_up_measurement() -> None:
    streams = [_Stream(1.1)]
    # live 20 frames/s is below 2 x 12 x 1.25 = 30, but at batch 2 and 1 step the engine makes 40
    assert _calibrated_controller(streams, live_fps=20.0).can_admit()
    # the machine is now half as fast as measured at start-up (something else is running): 40 / 2 < 30
    assert not _calibrated_controller(streams, live_fps=10.0).can_admit()


def test_a_stream_with_a_full_lead_is_not_behind_whatever_its_last_cycles_cost() -> None:
    # cycles include waiting to share a batch; a full buffer shows the stream keeps up anyway
    engine, streams = _Engine(steps=1), [_Stream(0.9, lead=1.0), _Stream(1.3, lead=0.6)]
    controller = _controller(engine, streams)
    assert [controller.check() for _ in range(3)] == [None, None, None]
    assert all(s.fps == 24 for s in streams)
    streams[0].lead = 0.25  # now it is eating into its lead
    decision = controller.check()
    assert decision is not None and decision.action == "fps_down" and streams[0].fps == 20


def test_a_newcomer_starts_at_the_frame_rate_the_others_run_at() -> None:
    streams: list[_Stream] = []
    controller = _controller(_Engine(steps=1), streams)
    assert controller.joining_fps() == 24
    streams += [_Stream(1.2, fps=16), _Stream(1.2, fps=12)]
    assert controller.joining_fps() == 12


def test_admission_waits_while_a_stream_is_behind() -> None:
    # the engine has room, but one stream is using up its lead: nobody new until it recovers
    streams = [_Stream(1.0, fps=12, lead=0.2), _Stream(1.5, fps=12, lead=1.0)]
    assert not _calibrated_controller(streams, live_fps=20.0).can_admit()
    streams[0].lead = 0.8
    assert _calibrated_controller(streams, live_fps=20.0).can_admit()


def test_capacity_interpolates_per_frame_cost_between_measured_batches() -> None:
    capacity = CapacityModel({(1, 1): 25.0, (4, 1): 50.0, (1, 2): 15.0})
    assert capacity.fps(1, 1) == 25.0 and capacity.fps(4, 1) == 50.0
    # per-frame cost 40 ms at batch 1 and 20 ms at batch 4: a third and two thirds of the way between
    assert capacity.fps(2, 1) == pytest.approx(1 / (0.04 - 0.02 / 3))
    assert capacity.fps(3, 1) == pytest.approx(1 / (0.04 - 2 * 0.02 / 3))
    assert capacity.fps(8, 1) == 50.0, "held flat beyond the largest measured batch"
    assert capacity.fps(1, 2) == 15.0 and capacity.fps(1, 3) == 15.0, "nearest measured step count"


async def test_a_viewer_beyond_capacity_gets_503_with_retry_after() -> None:
    with ServerProcess("--max-sessions", "1") as server:
        first, second = WhepClient(server.url), WhepClient(server.url)
        try:
            assert (await first.connect()).status_code == 201
            refused = await second.connect()
            assert refused.status_code == 503
            assert int(refused.headers["retry-after"]) > 0
            assert "capacity" in refused.text
            assert len(await first.frames(10)) == 10, "the admitted viewer keeps streaming"
            async with httpx.AsyncClient(base_url=server.url) as http:
                assert "pixelcast_admissions_refused_total 1.0" in (await http.get("/metrics")).text
                assert (await http.delete(first.location)).status_code == 200
            assert (await WhepClient(server.url).connect()).status_code == 201, "capacity is back once one leaves"
        finally:
            await first.close()
            await second.close()
