"""A/B runs on simulated viewers through the real assignment, policy, feedback and metric paths."""

from __future__ import annotations

from typing import Any

import pytest

from personalization.ab_simulation import run_aa, run_ab

pytestmark = pytest.mark.slow  # simulates thousands of viewers

# the world's vocabulary, as models.world.spec defines it (personalization never imports models)
VOCABULARY = {
    "subject": ("ocean", "forest", "city", "mountains", "desert", "night_sky", "waterfall", "volcano"),
    "palette": ("dawn", "noon", "sunset", "dusk", "night", "neon"),
    "weather": ("clear", "rain", "snow", "fog"),
    "pace": ("calm", "lively"),
    "camera": ("static", "pan_left", "pan_right", "zoom_in"),
}
AB = {
    "key": "thompson-vs-static",
    "variations": [
        {"id": "static", "policy": "static", "weight": 0.5},
        {"id": "thompson", "policy": "thompson", "weight": 0.5},
    ],
    "metrics": [{"name": "likes_per_minute", "goal": "increase"}, {"name": "skips_per_minute", "goal": "decrease"}],
}


async def test_thompson_beats_static_on_likes_per_minute(redis_client: Any) -> None:
    results = await run_ab(redis_client, AB, VOCABULARY, viewers=300, segments=20, seed=0)
    likes = results["metrics"]["likes_per_minute"]["variations"][1]
    assert likes["variation"] == "thompson" and likes["lift"] > 0 and likes["p_value"] < 0.05
    assert results["metrics"]["skips_per_minute"]["variations"][1]["verdict"] == "better"
    assert results["exposures"] == 300 and not results["srm"]["warning"]
    assert results["snapshots"], "cumulative lift is kept"


async def test_dropping_one_arms_exposures_raises_the_srm_warning(redis_client: Any) -> None:
    # viewer ids are random, so the arms' sizes are too (sd ~ 90 of 8,000): dropping a fifth of one arm's
    # exposures (~800) sets the check off in every run, a tenth (~400) missed p < 0.001 about one run in ten
    results = await run_ab(
        redis_client, AB, VOCABULARY, viewers=8000, segments=2, seed=1, srm_drop=0.2, in_memory=True
    )
    assert results["srm"]["warning"] is True and results["srm"]["p_value"] < 0.001


async def test_aa_runs_report_rates_with_binomial_intervals(redis_client: Any) -> None:
    report = await run_aa(redis_client, AB, VOCABULARY, runs=4, viewers=60, segments=4, seed=3)
    for mode in ("fixed_horizon", "sequential_peeking_every_10pct"):
        rate = report[mode]["likes_per_minute"]
        assert rate["runs"] == 4 and 0 <= rate["ci95"][0] <= rate["rate"] <= rate["ci95"][1] <= 1
