"""Policies on in-memory profiles, the simulator, and the Personalizer facade against a real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis

from personalization.context import Context, device_class
from personalization.messages import Feedback
from personalization.personalizer import Personalizer
from personalization.policies import POLICIES, get_policy, policy_for_viewer
from personalization.profiles import ProfileState
from personalization.simulator import ViewerModel, plot, run_simulation
from personalization.wishes import Wishes

VOCABULARY = {
    "subject": ("ocean", "forest", "city", "mountains", "desert", "night_sky", "waterfall", "volcano"),
    "palette": ("dawn", "noon", "sunset", "dusk", "night", "neon"),
    "weather": ("clear", "rain", "snow", "fog"),
    "pace": ("calm", "lively"),
    "camera": ("static", "pan_left", "pan_right", "zoom_in"),
}


def test_thompson_learns_to_avoid_a_skipped_value() -> None:
    """A viewer who skips every ocean scene and watches everything else stops getting ocean."""
    policy, state, rng = get_policy("thompson", VOCABULARY), ProfileState(), np.random.default_rng(0)
    oceans = []
    for _ in range(60):
        scene = policy.choose(state, Wishes(), None, rng)
        oceans.append(scene["subject"] == "ocean")
        if scene["subject"] == "ocean":
            state.apply("dwell", 0.2, scene)
            state.apply("skip", None, scene)
        else:
            state.apply("dwell", 1.0, scene)
    late = [policy.choose(state, Wishes(), None, rng)["subject"] for _ in range(200)]
    assert late.count("ocean") <= 4  # from 1 in 8 to about 1 in 100
    assert sum(oceans[-20:]) <= 1


@pytest.mark.parametrize("name", list(POLICIES))
def test_every_policy_obeys_wishes(name: str) -> None:
    policy, rng = get_policy(name, VOCABULARY), np.random.default_rng(1)
    wishes = Wishes({"weather": "snow", "subject": "mountains"}, {"palette": frozenset({"noon", "dawn"})})
    state = ProfileState()
    state.apply("like", None, {"subject": "ocean", "weather": "rain", "palette": "noon"})
    for _ in range(30):
        scene = policy.choose(state, wishes, Context("night", "tv"), rng)
        assert set(scene) == set(VOCABULARY)
        assert scene["weather"] == "snow" and scene["subject"] == "mountains"
        assert scene["palette"] not in {"noon", "dawn"}


def test_contextual_falls_back_to_global() -> None:
    policy = get_policy("contextual", VOCABULARY, min_weight=4.0)
    evening, morning = Context("evening", "mobile"), Context("morning", "mobile")
    state, rng = ProfileState(), np.random.default_rng(2)
    for _ in range(10):  # in the evening the viewer loves neon; globally, night
        state.apply("like", None, {"palette": "neon"}, evening.bucket)
        state.apply("skip", None, {"palette": "night"}, evening.bucket)
    for _ in range(30):  # at other times (no context known) night is liked and neon skipped
        state.apply("like", None, {"palette": "night"})
        state.apply("skip", None, {"palette": "neon"})
    assert policy.bucket("palette", state, evening) == evening.bucket
    assert policy.bucket("palette", state, morning) == ""  # no morning evidence: global posteriors
    picks_evening = [policy.choose(state, Wishes(), evening, rng)["palette"] for _ in range(50)]
    picks_morning = [policy.choose(state, Wishes(), morning, rng)["palette"] for _ in range(50)]
    assert max(set(picks_evening), key=picks_evening.count) == "neon"
    assert max(set(picks_morning), key=picks_morning.count) == "night"
    assert picks_morning.count("neon") < picks_evening.count("neon") / 4


def test_registry() -> None:
    assert set(POLICIES) == {"static", "random", "epsilon_greedy", "thompson", "contextual"}
    assert policy_for_viewer(VOCABULARY).name == "thompson"
    assert policy_for_viewer(VOCABULARY, assigned="random").name == "random"
    assert policy_for_viewer(VOCABULARY, assigned="nonsense", default="static").name == "static"
    with pytest.raises(ValueError, match="unknown policy"):
        get_policy("nope", VOCABULARY)
    assert device_class("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile") == "mobile"
    assert device_class(None) == "unknown"


def test_simulator_thompson_beats_random(tmp_path: Path) -> None:
    report = run_simulation(["random", "static", "thompson"], VOCABULARY, viewers=30, segments=20, seed=3)
    results = report["policies"]
    thompson = results["thompson"]["fraction_of_oracle_at_segment_20"]
    assert thompson > results["random"]["fraction_of_oracle_at_segment_20"] + 0.1
    assert thompson > results["static"]["fraction_of_oracle_at_segment_20"] + 0.1
    assert results["thompson"]["mean_reward"] > results["random"]["mean_reward"]
    assert len(results["thompson"]["per_segment"]["regret"]) == 20
    json.dumps(report)  # JSON-ready
    plot(report, tmp_path / "sim.png")
    assert (tmp_path / "sim.png").stat().st_size > 1000
    easy = run_simulation(["thompson"], VOCABULARY, viewers=5, segments=5, seed=3, model=ViewerModel(lapse=0.0))
    assert easy["segments"] == 5


class _FixedParser:  # a SteerReader that always reads the same wishes
    def update(self, current: Wishes, text: str) -> Wishes:
        return current.merged(Wishes({"weather": "snow", "subject": "mountains", "palette": "night"}, text=text))


async def test_personalizer_round_trip(redis_client: aioredis.Redis) -> None:
    personalizer = Personalizer(redis_client, VOCABULARY, steer_reader=_FixedParser(), seed=0)  # type: ignore[arg-type]
    viewer_id = await personalizer.viewers.create()
    context = Context("night", "desktop")
    scene = await personalizer.next_scene(viewer_id, context=context)
    assert set(scene) == set(VOCABULARY)
    await personalizer.record_feedback(viewer_id, Feedback("skip", 1), scene, context=context)
    profile = await personalizer.profile(viewer_id)  # applied at once, no consumer needed
    alpha, beta = profile.state.posterior("subject", (scene["subject"],))
    assert (alpha[0], beta[0]) == (1.0, 2.0)
    wishes = await personalizer.steer(viewer_id, "snowy mountains at night")
    assert wishes.want["subject"] == "mountains"
    scene = await personalizer.next_scene(viewer_id, context=context)
    assert (scene["subject"], scene["weather"], scene["palette"]) == ("mountains", "snow", "night")
    assert (await personalizer.viewers.recent_steers(viewer_id)) == ["snowy mountains at night"]
    await personalizer.clear_wishes(viewer_id)
    assert (await personalizer.profile(viewer_id)).wishes.empty
