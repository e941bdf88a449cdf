"""Experiments against a real Redis, the real GrowthBook SDK and real gbstats."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gbstats.frequentist.tests import FrequentistConfig, TwoSidedTTest
from gbstats.models.statistics import RatioStatistic, RegressionAdjustedStatistic, SampleMeanStatistic
from gbstats.utils import check_srm
from growthbook.core import gbhash, getBucketRanges

from personalization.assignment import Assigner, viewer_attributes
from personalization.context import Context
from personalization.experimenting import Experiments
from personalization.experiments import ExperimentError, UnknownExperiment, parse_definition
from personalization.messages import Feedback
from personalization.redis_server import EmbeddedRedis
from personalization.statistics import COMPONENTS, VariationStats, analyze, holm
from personalization.store import connect
from personalization.viewers import ViewerRegistry


def definition(**overrides: Any) -> dict[str, Any]:
    """A valid two-arm definition."""
    data: dict[str, Any] = {
        "key": "thompson-vs-eg",
        "variations": [
            {"id": "control", "policy": "epsilon_greedy", "weight": 0.5, "settings": {"steps": 2}},
            {"id": "thompson", "policy": "thompson", "weight": 0.5},
        ],
        "metrics": [{"name": "likes_per_minute", "goal": "increase"}, "watch_seconds", "skips_per_minute"],
    }
    data.update(overrides)
    return data


# --- definitions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {
                "variations": [
                    {"id": "a", "policy": "static", "weight": 0.5},
                    {"id": "b", "policy": "random", "weight": 0.4},
                ]
            },
            "variations.weight",
        ),
        ({"variations": [{"id": "a", "policy": "static", "weight": 0.5}, {"id": "b", "policy": "nope", "weight": 0.5}]},
         "variations[1].policy"),
        ({"condition": {"device": {"$bogus": 1}}}, "condition.device.$bogus"),
        ({"condition": {"country": "FR"}}, "condition.country"),
        ({"condition": "device == mobile"}, "condition"),
        ({"metrics": ["revenue"]}, "metrics[0].name"),
        ({"mode": "magic"}, "mode"),
        ({"coverage": 0}, "coverage"),
        ({"key": "has space"}, "key"),
    ],
)
def test_bad_definitions_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ExperimentError) as caught:
        parse_definition(definition(**change))
    assert caught.value.field == field


async def test_definitions_survive_a_restart_and_duplicates_are_refused(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    client = connect(await server.start())
    experiments = Experiments(client)
    await experiments.create(definition())
    with pytest.raises(ExperimentError) as caught:
        await experiments.create(definition())
    assert caught.value.field == "key"
    viewer = await ViewerRegistry(client).create()
    first = await experiments.start_session(viewer, Context(), "s1")
    assert first is not None
    await experiments.record_feedback(first, viewer, Feedback("like"), "1-1")
    await client.aclose()
    await server.stop()

    server = EmbeddedRedis(tmp_path / "redis")  # same data directory: a restart
    client = connect(await server.start())
    try:
        experiments = Experiments(client)
        assert [e.key for e in await experiments.list()] == ["thompson-vs-eg"]
        again = await experiments.assign(viewer, Context())
        assert again is not None and again.variation == first.variation and again.sticky
        results = await experiments.results("thompson-vs-eg")
        assert results["exposures"] == 1
        rows = await experiments.metrics.rows("thompson-vs-eg")
        assert rows[viewer]["l"] == 1
    finally:
        await client.aclose()
        await server.stop()


# --- assignment: GrowthBook's published cases through Pixelcast ------------------------------------
# Numbers copied from GrowthBook's SDK test suite (github.com/growthbook/growthbook,
# packages/sdk-js/test/cases.json, MIT licence): "hash", "getBucketRange" and "feature" cases.

HASH_CASES = [  # (value, expected, hash version, seed)
    ("a", 0.22, 1, ""),
    ("b", 0.077, 1, ""),
    ("ab", 0.946, 1, ""),
    ("def", 0.652, 1, ""),
    ("8952klfjas09ujkasdf", 0.549, 1, ""),
    ("123", 0.011, 1, ""),
    ("a", 0.0505, 2, "seed"),
]

BUCKET_RANGE_CASES = [  # (variations, coverage, weights, expected ranges)
    (2, 1, None, [[0, 0.5], [0.5, 1]]),
    (2, 0.5, None, [[0, 0.25], [0.5, 0.75]]),
    (4, 1, None, [[0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1]]),
    (2, 1, [0.4, 0.6], [[0, 0.4], [0.4, 1]]),
    (3, 1, [0.2, 0.3, 0.5], [[0, 0.2], [0.2, 0.5], [0.5, 1]]),
    (3, 0.2, [0.2, 0.3, 0.5], [[0, 0.04], [0.2, 0.26], [0.5, 0.6]]),
]


@pytest.mark.parametrize(("value", "expected", "version", "seed"), HASH_CASES)
def test_growthbook_hash_cases(value: str, expected: float, version: int, seed: str) -> None:
    assert gbhash(seed, value, version) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("count", "coverage", "weights", "expected"), BUCKET_RANGE_CASES)
def test_growthbook_bucket_range_cases(count: int, coverage: float, weights: Any, expected: list[list[float]]) -> None:
    ranges = getBucketRanges(count, coverage, weights)
    assert [list(r) for r in ranges] == [pytest.approx(e) for e in expected]


@pytest.mark.parametrize(
    ("experiment", "viewer", "variation", "bucket"),
    [
        # "empty experiment rule - a/b/c": key "feature", three equal arms, hash version 1
        ({"key": "feature", "hash_version": 1, "arms": 3}, "123", "v2", 0.863),
        ({"key": "feature", "hash_version": 1, "arms": 3}, "456", "v0", 0.178),
        ({"key": "feature", "hash_version": 1, "arms": 3}, "fds", "v1", 0.514),
        # "creates experiments properly": seed "feature", hash version 2, 10/90 at 99% coverage
        ({"key": "hello", "seed": "feature", "hash_version": 2, "weights": [0.1, 0.9], "coverage": 0.99}, "123", "v1",
         0.5231),
        # "hash" case ("a", seed "seed", version 2) -> 0.0505: the first of two equal arms
        ({"key": "k", "seed": "seed", "hash_version": 2, "arms": 2}, "a", "v0", 0.0505),
    ],
)
async def test_published_cases_through_pixelcast_assignment(
    redis_client: Any, experiment: dict[str, Any], viewer: str, variation: str, bucket: float
) -> None:
    experiment = dict(experiment)  # the parameter is shared by the one-server and the cluster run
    weights = experiment.pop("weights", None) or [1 / experiment["arms"]] * experiment["arms"]
    experiment.pop("arms", None)
    variations = [{"id": f"v{i}", "policy": "static", "weight": w} for i, w in enumerate(weights)]
    if len(weights) == 3:  # thirds do not sum to 1 exactly in binary; GrowthBook's equal weights are these
        variations[-1]["weight"] = 1 - weights[0] - weights[1]
    defined = parse_definition({**experiment, "variations": variations})
    assigned = await Assigner(redis_client).assign([defined], viewer_attributes(viewer, Context(), new=True))
    assert assigned is not None and assigned.variation == variation
    assert assigned.bucket == pytest.approx(bucket, abs=1e-4)


async def test_sticky_across_servers_and_weight_changes_and_stop(redis_client: Any) -> None:
    registry = ViewerRegistry(redis_client)
    viewers = [await registry.create() for _ in range(40)]
    first, second = Experiments(redis_client), Experiments(redis_client)  # two servers, one Redis
    await first.create(definition())
    before = {v: await first.start_session(v, Context(), f"s-{v}") for v in viewers}
    assert {a.variation for a in before.values() if a} == {"control", "thompson"}
    # weights change to 10/90: nobody already assigned moves (sticky buckets), on any server
    moved = parse_definition(definition(variations=[
        {"id": "control", "policy": "epsilon_greedy", "weight": 0.1},
        {"id": "thompson", "policy": "thompson", "weight": 0.9},
    ]))
    for viewer in viewers:
        again = await second.assigner.assign([moved], viewer_attributes(viewer, Context(), new=False))
        assert again is not None and again.variation == before[viewer].variation and again.sticky
    results = await second.results("thompson-vs-eg")
    assert results["exposures"] == 40, "one exposure per viewer and experiment, whatever the sessions"
    await second.stop("thompson-vs-eg")
    assert await first.start_session(viewers[0], Context(), "later") is None, "a stopped experiment assigns nobody"
    assert (await first.results("thompson-vs-eg"))["exposures"] == 40, "its data stay readable"
    with pytest.raises(UnknownExperiment):
        await first.results("nope")


async def test_targeting_condition_on_viewer_attributes(redis_client: Any) -> None:
    experiments = Experiments(redis_client)
    await experiments.create(definition(condition={"device": "mobile", "new": True}))
    registry = ViewerRegistry(redis_client)
    viewer = await registry.create()
    assert await experiments.start_session(viewer, Context(device="desktop")) is None
    assert await experiments.start_session(viewer, Context(device="mobile")) is not None


# --- statistics -----------------------------------------------------------------------------------


async def test_concurrent_writers_give_exact_sufficient_statistics(redis_client: Any) -> None:
    experiments = Experiments(redis_client)
    await experiments.create(definition(key="exact"))
    registry = ViewerRegistry(redis_client)
    viewers = [await registry.create() for _ in range(64)]
    rng = np.random.default_rng(0)
    plans = {v: [(kind, float(rng.integers(0, 40)) / 4) for kind in rng.choice(["dwell", "like", "skip"], 30)]
             for v in viewers}

    async def writer(viewer: str) -> None:
        assignment = await experiments.start_session(viewer, Context(), f"s-{viewer}")
        for i, (kind, seconds) in enumerate(plans[viewer]):
            feedback = Feedback(kind, seconds=seconds if kind == "dwell" else None)
            await experiments.record_feedback(assignment, viewer, feedback, f"1000-{i + 1}")
            if i % 10 == 0:  # a retried event changes nothing
                await experiments.record_feedback(assignment, viewer, feedback, f"1000-{i + 1}")
        await experiments.record_steer(assignment, viewer, "steer-1")
        await experiments.record_steer(assignment, viewer, "steer-1")

    await asyncio.gather(*(writer(v) for v in viewers))  # 64 writers at once
    experiment = await experiments.get("exact")
    stored = await experiments.metrics.stats(experiment)
    rows = await experiments.metrics.rows("exact")
    for variation in experiment.variations:
        mine = [r for r in rows.values() if r["variation"] == variation.id]
        expected = VariationStats.from_rows(mine)
        assert stored[variation.id] == expected
    for viewer in viewers:
        plan = plans[viewer]
        row = rows[viewer]
        assert row["w"] == sum(s for k, s in plan if k == "dwell")
        assert row["l"] == sum(1 for k, _ in plan if k == "like")
        assert row["k"] == sum(1 for k, _ in plan if k == "skip")
        assert row["t"] == 1 and row["s"] == 1


def _raw_rows(rng: np.random.Generator, n: int, like_rate: float) -> list[dict[str, float]]:
    rows = []
    for _ in range(n):
        c = float(rng.integers(0, 200)) if rng.random() < 0.5 else 0.0
        w = float(rng.integers(1, 400)) / 4 + 0.3 * c
        rows.append({"c": c, "s": float(rng.integers(1, 4)), "w": w, "k": float(rng.poisson(w / 30)),
                     "l": float(rng.poisson(like_rate * w / 60)), "t": float(rng.poisson(0.3)),
                     "r": float(rng.random() < 0.4)})
    return rows


def test_results_equal_a_direct_gbstats_call_on_the_raw_data() -> None:
    rng = np.random.default_rng(1)
    raw = {"control": _raw_rows(rng, 300, 0.5), "thompson": _raw_rows(rng, 320, 0.8)}
    experiment = parse_definition(definition())
    results = analyze(experiment, {k: VariationStats.from_rows(v) for k, v in raw.items()})

    def arr(name: str, comp: str) -> np.ndarray:
        return np.array([r[comp] for r in raw[name]])

    def ratio(name: str, num: str) -> RatioStatistic:
        m, d = arr(name, num), arr(name, "w") / 60
        return RatioStatistic(
            n=len(m),
            m_statistic=SampleMeanStatistic(n=len(m), sum=m.sum(), sum_squares=(m**2).sum()),
            d_statistic=SampleMeanStatistic(n=len(d), sum=d.sum(), sum_squares=(d**2).sum()),
            m_d_sum_of_products=(m * d).sum(),
        )

    direct = TwoSidedTTest(ratio("control", "l"), ratio("thompson", "l"), FrequentistConfig()).compute_result()
    ours = results["metrics"]["likes_per_minute"]["variations"][1]
    assert ours["lift"] == pytest.approx(direct.expected, rel=1e-9)
    assert ours["ci"] == pytest.approx(direct.ci, rel=1e-9)
    assert ours["p_value"] == pytest.approx(direct.p_value, rel=1e-9)
    assert ours["verdict"] == ("better" if direct.p_value < 0.05 and direct.expected > 0 else "inconclusive")

    def adjusted(name: str) -> RegressionAdjustedStatistic:
        w, c = arr(name, "w"), arr(name, "c")
        return RegressionAdjustedStatistic(
            n=len(w), post_statistic=SampleMeanStatistic(n=len(w), sum=w.sum(), sum_squares=(w**2).sum()),
            pre_statistic=SampleMeanStatistic(n=len(c), sum=c.sum(), sum_squares=(c**2).sum()),
            post_pre_sum_of_products=(w * c).sum(), theta=0)

    cuped = TwoSidedTTest(adjusted("control"), adjusted("thompson"), FrequentistConfig()).compute_result()
    ours_cuped = results["metrics"]["watch_seconds"]["variations"][1]["cuped"]
    assert ours_cuped["p_value"] == pytest.approx(cuped.p_value, rel=1e-9)
    assert ours_cuped["ci"] == pytest.approx(cuped.ci, rel=1e-9)
    assert results["srm"]["p_value"] == pytest.approx(check_srm([300, 320], [0.5, 0.5]))
    assert results["srm"]["warning"] is False


def test_holm_and_srm_warning() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([None, 0.2]) == [None, 0.2]
    rng = np.random.default_rng(2)
    experiment = parse_definition(definition(variations=[
        {"id": "a", "policy": "static", "weight": 0.25},
        {"id": "b", "policy": "thompson", "weight": 0.25},
        {"id": "c", "policy": "random", "weight": 0.25},
        {"id": "d", "policy": "contextual", "weight": 0.25},
    ]))
    sizes = {"a": 400, "b": 400, "c": 400, "d": 300}  # d lost a quarter of its exposures
    results = analyze(experiment, {k: VariationStats.from_rows(_raw_rows(rng, n, 0.5)) for k, n in sizes.items()})
    assert results["srm"]["warning"] is True and "sample ratio mismatch" in results["srm"]["message"]
    assert results["multiple_comparisons"] == "holm"
    rows = results["metrics"]["likes_per_minute"]["variations"][1:]
    assert [r["p_value_adjusted"] for r in rows] == pytest.approx(holm([r["p_value"] for r in rows]))


def test_bayesian_mode_reports_chance_to_win_and_risk() -> None:
    rng = np.random.default_rng(3)
    experiment = parse_definition(definition(mode="bayesian"))
    results = analyze(experiment, {"control": VariationStats.from_rows(_raw_rows(rng, 400, 0.4)),
                                   "thompson": VariationStats.from_rows(_raw_rows(rng, 400, 1.2))})
    row = results["metrics"]["likes_per_minute"]["variations"][1]
    assert row["chance_to_win"] > 0.95 and len(row["risk"]) == 2 and row["verdict"] == "better"
    assert "p_value" not in row


def test_components_cover_every_metric() -> None:
    assert set(COMPONENTS) == {"c", "s", "w", "k", "l", "t", "r"}
