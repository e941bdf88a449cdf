"""``Experiments``: what the server (and the A/B simulation) asks about experiments, over one Redis client.

    assignment = await experiments.start_session(viewer_id, context, session_id)   # None: no experiment
    await experiments.record_feedback(assignment, viewer_id, feedback, event_id)   # after the profile has it
    await experiments.record_steer(assignment, viewer_id, steer_id)
    results = await experiments.results(key)

Assignment goes through the GrowthBook SDK (``assignment``), statistics through ``statistics``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from personalization.assignment import Assigner, Assignment, assignments_key, viewer_attributes
from personalization.context import Context
from personalization.experiments import Experiment, ExperimentStore, parse_definition
from personalization.keys import is_valid_viewer_id, profile_key
from personalization.messages import Feedback
from personalization.statistics import SNAPSHOT_DAYS, MetricStore, analyze, snapshot


class Experiments:
    """Definitions, assignment, exposures, metrics and results of A/B tests."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.store = ExperimentStore(redis)
        self.assigner = Assigner(redis)
        self.metrics = MetricStore(redis)

    # -- definitions ---------------------------------------------------------------------------

    async def create(self, definition: Any) -> Experiment:
        """Validate and store a definition; ``ExperimentError`` names the bad field."""
        return await self.store.create(parse_definition(definition))

    async def list(self) -> list[Experiment]:
        """Every experiment, oldest first."""
        return await self.store.all()

    async def get(self, key: str) -> Experiment:
        """One experiment; raises ``UnknownExperiment``."""
        return await self.store.get(key)

    async def stop(self, key: str) -> Experiment:
        """Stop assigning viewers to ``key`` (its data stay readable)."""
        return await self.store.stop(key)

    # -- sessions and events -------------------------------------------------------------------

    async def viewer_history(self, viewer_id: str) -> tuple[float, bool]:
        """``(watch seconds so far, whether the viewer is new)``: the CUPED covariate and a targeting attribute."""
        seconds = float(await self.redis.hget(profile_key(viewer_id), "dwell_seconds") or 0.0)
        return seconds, seconds == 0.0

    async def assign(
        self, viewer_id: str, context: Context, among: Sequence[Experiment] | None = None
    ) -> Assignment | None:
        """The variation this viewer's sessions run now (sticky), without recording anything else.

        ``among`` limits the choice to some experiments (the simulation's own); default: every running one.
        """
        _, new = await self.viewer_history(viewer_id)
        running = [e for e in among if e.status == "running"] if among is not None else await self.store.running()
        if not running:
            return None
        return await self.assigner.assign(running, viewer_attributes(viewer_id, context, new=new))

    async def start_session(
        self, viewer_id: str, context: Context, session_id: str | None = None, *, ts: float | None = None
    ) -> Assignment | None:
        """Assign the viewer and count the session: the exposure (once per viewer and experiment) or a return."""
        assignment = await self.assign(viewer_id, context)
        if assignment is not None:
            await self.expose_session(assignment, viewer_id, session_id or secrets.token_urlsafe(12), ts=ts)
        return assignment

    async def expose_session(
        self, assignment: Assignment, viewer_id: str, session_id: str, *, ts: float | None = None
    ) -> None:
        """Count a session that started streaming: the exposure, with the viewer's watch time so far as covariate."""
        covariate, _ = await self.viewer_history(viewer_id)
        await self.expose(assignment, viewer_id, session_id, covariate, ts=ts)

    async def expose(
        self, assignment: Assignment, viewer_id: str, session_id: str, covariate: float, *, ts: float | None = None
    ) -> None:
        """Record the session's exposure, or count it as another session of an exposed viewer."""
        key = assignment.experiment
        applied, total = await self.metrics.record(
            key, viewer_id, "expose", f"session:{session_id}", variation=assignment.variation, value=covariate, ts=ts
        )
        if applied == 0:
            await self.metrics.record(key, viewer_id, "session", f"session:{session_id}", ts=ts)
            return
        experiment = await self.store.get(key)
        if total % experiment.snapshot_every == 0:
            await self.take_snapshot(experiment)

    async def record_feedback(
        self,
        assignment: Assignment | None,
        viewer_id: str,
        feedback: Feedback,
        event_id: str,
        *,
        ts: float | None = None,
    ) -> None:
        """Count a feedback event (its event-stream id makes a retry harmless) in the viewer's experiment."""
        if assignment is None:
            return
        await self.count_feedback(assignment.experiment, viewer_id, feedback, event_id, ts=ts)

    async def count_feedback(
        self, experiment: str, viewer_id: str, feedback: Feedback, event_id: str, *, ts: float | None = None
    ) -> None:
        """Count a feedback event in the metrics of the experiment `experiment` (by key); `event_id` makes
        a retry harmless."""
        value = float(feedback.seconds or 0.0) if feedback.kind == "dwell" else 0.0
        await self.metrics.record(experiment, viewer_id, feedback.kind, event_id, value=value, ts=ts)

    async def record_steer(
        self, assignment: Assignment | None, viewer_id: str, steer_id: str | None = None, *, ts: float | None = None
    ) -> None:
        """Count a steer (``steer_id`` makes a retry harmless; a fresh one is made when None)."""
        if assignment is None:
            return
        await self.count_steer(assignment.experiment, viewer_id, steer_id or secrets.token_urlsafe(12), ts=ts)

    async def count_steer(self, experiment: str, viewer_id: str, steer_id: str, *, ts: float | None = None) -> None:
        """Count a steer in the metrics of the experiment `experiment` (by key); `steer_id` makes a retry
        harmless."""
        await self.metrics.record(experiment, viewer_id, "steer", f"steer:{viewer_id}:{steer_id}", ts=ts)

    # -- results ---------------------------------------------------------------------------------

    async def results(self, key: str) -> dict[str, Any]:
        """The experiment's results (gbstats on its sufficient statistics) with its snapshots."""
        experiment = await self.store.get(key)
        stats = await self.metrics.stats(experiment)
        # gbstats is plain numpy/scipy work of a few milliseconds: off the event loop all the same
        results = await asyncio.to_thread(analyze, experiment, stats)
        snapshots = await self.metrics.snapshots(key)
        now = time.time()
        if results["exposures"] and experiment.status == "running":
            if not snapshots or now - float(snapshots[-1]["ts"]) >= SNAPSHOT_DAYS:
                entry = snapshot(results, now)
                await self.metrics.add_snapshot(key, entry)
                snapshots.append(entry)
        results["definition"] = experiment.to_json()
        results["snapshots"] = snapshots
        return results

    async def take_snapshot(self, experiment: Experiment) -> None:
        """Keep the current cumulative lifts for the lift-over-time chart."""
        stats = await self.metrics.stats(experiment)
        results = await asyncio.to_thread(analyze, experiment, stats)
        await self.metrics.add_snapshot(experiment.key, snapshot(results, time.time()))

    async def forget_viewer(self, viewer_id: str) -> None:
        """Erase the viewer's sticky assignments (its contribution to the aggregates stays, anonymous)."""
        if is_valid_viewer_id(viewer_id):
            await self.redis.delete(assignments_key(viewer_id))
