"""The stream benchmark's steer latency: measured where the picture changes for good, not at a flicker."""

from __future__ import annotations

import numpy as np

from benchmarks.stream import ViewerProbe, steer_visible_seconds

FPS = 24


def _probe(colour_at) -> ViewerProbe:  # noqa: ANN001 - seconds -> mean RGB
    probe = ViewerProbe("http://127.0.0.1:1", "a desert at noon")
    probe.times = [i / FPS for i in range(5 * FPS)]
    probe.means = [np.array(colour_at(t), dtype=float) for t in probe.times]
    return probe


def test_steer_latency_is_where_the_new_look_holds() -> None:
    steered_at = 2.0

    def colour(t: float) -> tuple[float, float, float]:
        if abs(t - (steered_at + 1 / FPS)) < 1e-9:
            return (20.0, 20.0, 20.0)  # one dark frame right after the steer: a flicker
        return (200.0, 180.0, 120.0) if t < steered_at + 0.3 else (20.0, 20.0, 60.0)

    latency = steer_visible_seconds(_probe(colour), steered_at)
    assert latency is not None and abs(latency - 0.3) <= 1 / FPS


def test_no_visible_change_gives_no_latency() -> None:
    assert steer_visible_seconds(_probe(lambda t: (100.0, 100.0, 100.0)), 2.0) is None
