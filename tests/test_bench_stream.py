"""The stream benchmark's steer latency: measured where the picture changes for good, not at a flicker."""

from __future__ import annotations

import numpy as np

from benchmarks.stream import ViewerProbe, steer_visible_seconds

FPS = 24


def _probe(colour_at) -> ViewerProbe:  # noqa: ANN001 - seconds -> mean RGB
    probe = ViewerProbe("http://127.0.0.1:1", "a desert at noon")
    probe.times = [i / FPS for i in range(8 * FPS)]
    probe.means = [np.array(colour_at(t), dtype=float) for t in probe.times]
    return probe


def test_steer_latency_is_where_the_new_look_holds() -> None:
    steered_at = 2.0
    flicker, change = 2 * FPS + 1, 2 * FPS + 7  # frame indices: a flicker just after the steer, then the change

    def colour(t: float) -> tuple[float, float, float]:
        frame = round(t * FPS)
        if frame == flicker:
            return (20.0, 20.0, 20.0)  # one dark frame right after the steer
        return (200.0, 180.0, 120.0) if frame < change else (20.0, 20.0, 60.0)

    probe = _probe(colour)
    # the frame it names is the first of the lasting new look, not the flicker
    assert steer_visible_seconds(probe, steered_at) == probe.times[change] - steered_at


def test_no_visible_change_gives_no_latency() -> None:
    assert steer_visible_seconds(_probe(lambda t: (100.0, 100.0, 100.0)), 2.0) is None


def test_swings_off_the_line_to_the_new_look_do_not_count() -> None:
    steered_at, change = 2.0, 2 * FPS + 7

    def colour(t: float) -> tuple[float, float, float]:
        frame = round(t * FPS)
        swing = 60.0 if (frame // 6) % 2 else -60.0  # the old scene pulses strongly in green only
        if frame < change:
            return (200.0, 120.0 + swing, 120.0)
        return (100.0, 120.0, 120.0)  # the new look is darker in red

    probe = _probe(colour)
    assert steer_visible_seconds(probe, steered_at) == probe.times[change] - steered_at


def test_a_stream_that_already_looked_steered_gives_no_latency() -> None:
    def colour(t: float) -> tuple[float, float, float]:
        frame = round(t * FPS)
        if 2 * FPS - 12 <= frame < 2 * FPS - 4:  # before the steer, eight frames already near the new look
            return (30.0, 30.0, 30.0)
        return (200.0, 200.0, 200.0) if t < 2.3 else (20.0, 20.0, 20.0)

    assert steer_visible_seconds(_probe(colour), 2.0) is None


def test_the_planners_next_scene_after_the_steered_one_does_not_move_the_target() -> None:
    steered_at, change = 2.0, 2 * FPS + 7

    def colour(t: float) -> tuple[float, float, float]:
        frame = round(t * FPS)
        if frame < change:
            return (200.0, 180.0, 120.0)
        # the steered look, then 4 s later the planner's next scene, far back towards the old look
        return (20.0, 20.0, 60.0) if t < steered_at + 4.0 else (220.0, 200.0, 140.0)

    probe = _probe(colour)
    assert steer_visible_seconds(probe, steered_at) == probe.times[change] - steered_at


def test_a_picture_is_steady_only_after_a_second_without_change(monkeypatch) -> None:  # noqa: ANN001
    probe = _probe(lambda t: (100.0, 100.0, 100.0) if t < 3.0 else (160.0, 100.0, 100.0))
    clock = {"now": 2.5}
    monkeypatch.setattr("benchmarks.stream.time.perf_counter", lambda: clock["now"])
    assert probe.steady()
    clock["now"] = 3.5  # the last second holds the scene change at 3 s
    assert not probe.steady()
    clock["now"] = 4.2
    assert probe.steady()
