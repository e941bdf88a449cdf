"""A/B tests on simulated viewers, through the real assignment, policy, feedback and metric paths.

Each simulated viewer (``simulator.SimulatedViewer``: hidden preferences, skip/like/dwell behaviour) is
created in Redis, starts a session through ``Experiments.start_session`` (the GrowthBook SDK with
sticky buckets in Redis, the exposure script), watches ``segments`` segments whose scenes the assigned
policy chooses from the viewer's profile, and its feedback goes through ``Personalizer.record_feedback``
(the profile scripts) and ``Experiments.record_feedback`` (the metric script). A viewer comes back for
a second session within 24 h with a probability that grows with how much it enjoyed the first. The
report is ``Experiments.results``: the same code the API and the dashboard use.

Three checks come with it:

- A/B (``--ab``): the experiment of the JSON file, e.g. Thompson sampling against static.
- A/A (``--aa RUNS``): RUNS experiments whose two arms run the same policy, each on fresh viewers and a
  fresh seed, analysed fixed-horizon at the end and sequentially after every 10% of the traffic; the
  share of runs with a significant result is the false-positive rate, reported with its binomial
  interval. To keep 200 runs affordable, A/A viewers learn in memory (``ProfileState``, the profile
  scripts' twin) while assignment and metrics still go through Redis.
- SRM (``--srm-drop FRACTION``): the exposures of the last arm are dropped with that probability, as a
  broken logger would; the results must raise the sample-ratio-mismatch warning.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from scipy.stats import binomtest

from personalization.experimenting import Experiments
from personalization.experiments import Experiment, ExperimentError, parse_definition
from personalization.messages import Feedback
from personalization.personalizer import Personalizer
from personalization.policies import get_policy
from personalization.profiles import ProfileState
from personalization.simulator import SimulatedViewer, ViewerModel
from personalization.statistics import analyze
from personalization.store import default_data_dir, open_store
from personalization.viewers import ViewerRegistry
from personalization.wishes import Wishes

Vocabulary = Mapping[str, Sequence[str]]
SEGMENT_SECONDS = 1.0
CONCURRENCY = 32
RETURN_BASE, RETURN_GAIN = 0.15, 0.6  # chance of a second session: base + gain * share of segments fully watched
PEEKS = 10  # sequential analysis looks after every 10% of the traffic


class _Run:
    """One simulated experiment over a Redis client."""

    def __init__(
        self,
        redis: aioredis.Redis,
        experiment: Experiment,
        vocabulary: Vocabulary,
        *,
        seed: int,
        segments: int,
        in_memory: bool = False,
        srm_drop: float = 0.0,
        model: ViewerModel | None = None,
    ) -> None:
        self.experiments = Experiments(redis)
        self.personalizer = Personalizer(redis, vocabulary, seed=seed)
        self.viewers = ViewerRegistry(redis)
        self.experiment = experiment
        self.vocabulary = vocabulary
        self.seed = seed
        self.segments = segments
        self.in_memory = in_memory
        self.srm_drop = srm_drop
        self.model = model or ViewerModel()
        self._policies = {v.policy: get_policy(v.policy, vocabulary) for v in experiment.variations}

    async def viewer(self, index: int, t0: float) -> None:
        """Simulate one viewer: one or two sessions, feedback on every segment."""
        rng = np.random.default_rng([self.seed, index])
        person = SimulatedViewer(self.vocabulary, self.model, rng)
        viewer_id = await self.viewers.create()
        context = person.context(0)
        assignment = await self.experiments.assign(viewer_id, context, [self.experiment])
        if assignment is None:
            return
        dropped = assignment.variation == self.experiment.variations[-1].id and rng.random() < self.srm_drop
        if not dropped:  # a broken exposure logger loses some of one arm's exposures
            await self.experiments.expose_session(assignment, viewer_id, f"{index}-1", ts=t0)
        state = ProfileState()
        policy = self._policies[assignment.policy]
        watched_fully = 0
        sessions = 1
        session = 0
        clock = t0
        event = 0
        while session < sessions:
            for segment in range(self.segments):
                if self.in_memory:
                    scene = policy.choose(state, Wishes(), context, rng)
                else:
                    scene = await self.personalizer.next_scene(viewer_id, context=context, policy=assignment.policy)
                reactions = person.react(person.scene_utility(scene, context), rng)
                for kind, seconds in reactions:
                    feedback = Feedback(kind, segment_id=segment, seconds=seconds)
                    event += 1
                    if self.in_memory:
                        state.apply(kind, seconds, scene, context.bucket)
                        event_id = f"{int(clock * 1000)}-{event}"
                    else:
                        event_id = await self.personalizer.record_feedback(viewer_id, feedback, scene, context=context)
                    if not dropped:
                        await self.experiments.record_feedback(assignment, viewer_id, feedback, event_id, ts=clock)
                    if kind == "dwell" and seconds is not None and seconds >= SEGMENT_SECONDS:
                        watched_fully += 1
                clock += SEGMENT_SECONDS
            session += 1
            if session == 1 and rng.random() < RETURN_BASE + RETURN_GAIN * watched_fully / self.segments:
                sessions = 2
                clock = t0 + float(rng.uniform(1, 20)) * 3600  # back within a day
                context = person.context(person.model.session_segments)  # maybe another time of day
                again = await self.experiments.assign(viewer_id, context, [self.experiment])  # sticky: same variation
                assert again is not None and again.variation == assignment.variation
                if not dropped:
                    await self.experiments.expose_session(again, viewer_id, f"{index}-2", ts=clock)

    async def run(self, viewers: int, *, peek: bool = False) -> list[dict[str, Any]]:
        """Simulate ``viewers`` viewers (``CONCURRENCY`` at a time); with ``peek`` return results at each 10%."""
        peeks: list[dict[str, Any]] = []
        t0 = 1_700_000_000.0
        marks = {round(viewers * (i + 1) / PEEKS) for i in range(PEEKS)} if peek else set()
        done = 0
        while done < viewers:
            upto = min(viewers, done + CONCURRENCY, *[m for m in marks if m > done] or [viewers])
            await asyncio.gather(*(self.viewer(i, t0 + i) for i in range(done, upto)))
            done = upto
            if done in marks:
                stats = await self.experiments.metrics.stats(self.experiment)
                peeks.append(analyze(replace(self.experiment, sequential=True), stats))
        return peeks


def _key_free(definition: dict[str, Any], taken: set[str]) -> dict[str, Any]:
    key, n = definition["key"], 2
    while definition["key"] in taken:
        definition = {**definition, "key": f"{key}-{n}"}
        n += 1
    return definition


async def run_ab(
    redis: aioredis.Redis,
    definition: dict[str, Any],
    vocabulary: Vocabulary,
    *,
    viewers: int,
    segments: int,
    seed: int,
    srm_drop: float = 0.0,
    in_memory: bool = False,
) -> dict[str, Any]:
    """Create the experiment (a free key) and simulate it; return its results."""
    experiments = Experiments(redis)
    taken = {e.key for e in await experiments.list()}
    experiment = await experiments.create(_key_free(dict(definition), taken))
    run = _Run(redis, experiment, vocabulary, seed=seed, segments=segments, srm_drop=srm_drop, in_memory=in_memory)
    try:
        await run.run(viewers)
    finally:
        await run.personalizer.events.aclose()
    await experiments.take_snapshot(experiment)
    return await experiments.results(experiment.key)


def _significant(results: Mapping[str, Any], metric: str, alpha: float) -> bool:
    rows = results["metrics"][metric]["variations"][1:]
    return any(r.get("p_value") is not None and r["p_value"] < alpha for r in rows)


def _rate(hits: int, runs: int) -> dict[str, Any]:
    interval = binomtest(hits, runs).proportion_ci(confidence_level=0.95, method="exact") if runs else None
    return {
        "false_positives": hits,
        "runs": runs,
        "rate": hits / runs if runs else None,
        "ci95": [interval.low, interval.high] if interval else None,
    }


async def run_aa(
    redis: aioredis.Redis,
    definition: dict[str, Any],
    vocabulary: Vocabulary,
    *,
    runs: int,
    viewers: int,
    segments: int,
    seed: int,
) -> dict[str, Any]:
    """``runs`` A/A experiments (both arms = the first arm's policy); false-positive rates at alpha."""
    base = parse_definition(definition)
    arm = base.variations[0]
    metrics = [m.name for m in base.metrics]
    fixed = {m: 0 for m in metrics}
    sequential = {m: 0 for m in metrics}
    for r in range(runs):
        aa = {
            **definition,
            "key": f"aa-{seed}-{r}",
            "seed": f"aa-{seed}-{r}",
            "mode": "frequentist",
            "sequential": False,
            "variations": [
                {"id": "a1", "policy": arm.policy, "weight": 0.5},
                {"id": "a2", "policy": arm.policy, "weight": 0.5},
            ],
        }
        experiment = await Experiments(redis).create(aa)
        run = _Run(redis, experiment, vocabulary, seed=seed * 100_003 + r, segments=segments, in_memory=True)
        peeks = await run.run(viewers, peek=True)
        final = analyze(experiment, await run.experiments.metrics.stats(experiment))
        for metric in metrics:
            fixed[metric] += _significant(final, metric, experiment.alpha)
            sequential[metric] += any(_significant(p, metric, experiment.alpha) for p in peeks)
    return {
        "runs": runs,
        "viewers_per_run": viewers,
        "segments": segments,
        "policy": arm.policy,
        "alpha": base.alpha,
        "fixed_horizon": {m: _rate(fixed[m], runs) for m in metrics},
        "sequential_peeking_every_10pct": {m: _rate(sequential[m], runs) for m in metrics},
    }


def plot(results: Mapping[str, Any], path: Path) -> None:
    """Per-metric lift intervals and cumulative lift over exposures, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["metrics"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    y = 0
    labels = []
    for name in names:
        for row in results["metrics"][name]["variations"][1:]:
            lift, ci = row.get("lift"), row.get("ci") or [None, None]
            if lift is not None and None not in ci:
                left.errorbar(lift * 100, y, xerr=[[(lift - ci[0]) * 100], [(ci[1] - lift) * 100]], fmt="o", capsize=4)
            labels.append(f"{name} ({row['variation']})")
            y += 1
    left.axvline(0, color="grey", linewidth=1)
    left.set_yticks(range(len(labels)), labels, fontsize=8)
    left.set(xlabel=f"lift against {results['control']} (%)", title="Lift with its interval")
    primary = names[0]
    for variation in [v["id"] for v in results["variations"][1:]]:
        xs, lifts = [], []
        for snap in results.get("snapshots", []):
            entry = snap["metrics"].get(primary, {}).get(variation)
            if entry and entry.get("lift") is not None:
                xs.append(snap["exposures"])
                lifts.append(entry["lift"] * 100)
        right.plot(xs, lifts, marker="o", label=variation)
    right.axhline(0, color="grey", linewidth=1)
    right.set(xlabel="exposures", ylabel="lift (%)", title=f"Cumulative lift: {primary}")
    right.legend(fontsize=8)
    fig.suptitle(f"{results['experiment']}: {results['exposures']} viewers, SRM p = {results['srm']['p_value']:.3g}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``pixelcast simulate --ab``."""
    parser.add_argument("--ab", type=Path, help="experiment definition (JSON) to run on simulated viewers")
    parser.add_argument("--aa", type=int, default=0, help="also run this many A/A experiments (false positives)")
    parser.add_argument("--aa-viewers", type=int, default=200, help="viewers per A/A experiment (default 200)")
    parser.add_argument("--srm-drop", type=float, default=0.0, help="drop this share of the last arm's exposures")
    parser.add_argument(
        "--memory-profiles",
        action="store_true",
        help="viewers learn in memory (assignment and metrics still in Redis): for runs of many thousand viewers",
    )
    parser.add_argument("--redis-url", help="Redis of the A/B run (default: $REDIS_URL, else the data dir's)")
    parser.add_argument("--data-dir", type=Path, help="data dir of the embedded Redis (default: the server's)")


async def _main(args: argparse.Namespace, vocabulary: Vocabulary) -> dict[str, Any]:
    import os

    definition = json.loads(args.ab.read_text())
    segments = args.segments if args.segments != 50 else 20  # `simulate`'s default suits policies, not A/B
    report: dict[str, Any] = {"simulation": "ab", "viewers": args.viewers, "segments": segments, "seed": args.seed}
    store = await open_store(args.redis_url or os.environ.get("REDIS_URL"), args.data_dir or default_data_dir())
    try:
        report["results"] = await run_ab(
            store.redis, definition, vocabulary, viewers=args.viewers, segments=segments, seed=args.seed,
            srm_drop=args.srm_drop, in_memory=args.memory_profiles,
        )
    finally:
        await store.close()
    if args.aa:
        with tempfile.TemporaryDirectory(prefix="pixelcast-aa-") as scratch:  # A/A runs never reach real data
            store = await open_store(None, Path(scratch))
            try:
                report["aa"] = await run_aa(
                    store.redis, definition, vocabulary, runs=args.aa, viewers=args.aa_viewers,
                    segments=min(segments, 10), seed=args.seed,
                )
            finally:
                await store.close()
    return report


def main(args: argparse.Namespace, vocabulary: Vocabulary) -> int:
    """Entry point of ``pixelcast simulate --ab`` (the caller passes the world's vocabulary)."""
    try:
        report = asyncio.run(_main(args, vocabulary))
    except (ExperimentError, json.JSONDecodeError, OSError) as error:
        print(f"pixelcast simulate: {error}")
        return 2
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    results = report["results"]
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}")
    print(f"{results['experiment']}: {results['exposures']} exposures, SRM p = {results['srm']['p_value']:.3g}"
          + ("  WARNING: sample ratio mismatch" if results["srm"]["warning"] else ""))
    for name, metric in results["metrics"].items():
        for row in metric["variations"][1:]:
            shown = f"p = {row['p_value']:.3g}" if row.get("p_value") is not None else (
                f"chance to win {row.get('chance_to_win', 0):.3f}")
            lift = row.get("lift")
            lift_text = f"{lift * 100:+.1f}%" if lift is not None else "n/a"
            print(f"  {name:26s} {row['variation']:12s} lift {lift_text:>8s}  {shown}  {row.get('verdict')}")
    for mode in ("fixed_horizon", "sequential_peeking_every_10pct"):
        if "aa" in report:
            for name, rate in report["aa"][mode].items():
                low, high = rate["ci95"]
                print(f"A/A {mode:32s} {name:26s} {rate['rate']:.3f} [{low:.3f}, {high:.3f}] of {rate['runs']}")
    return 0
