"""Assignment of viewers to variations through the official GrowthBook SDK, with sticky buckets in Redis.

The SDK decides everything about who gets what (hash version 2 of ``seed`` + viewer id, bucket ranges
from the weights and coverage, the targeting condition); Pixelcast only supplies the viewer's attributes
and stores the SDK's sticky-bucket documents, one Redis HASH per viewer under the viewer's hash tag
(``pc:{v:<id>}:assignments``, field ``<experiment>__<bucket version>`` -> variation id). A stored
assignment wins over hashing, so a viewer keeps its variation across sessions, servers and weight
changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from growthbook import GrowthBookClient
from growthbook.common_types import (
    AbstractAsyncStickyBucketService,
    Options,
    UserContext,
)
from growthbook.common_types import (
    Experiment as GBExperiment,
)

from personalization.context import Context
from personalization.experiments import Experiment
from personalization.keys import TTL_FIELD, _tag, is_valid_viewer_id, profile_key
from personalization.lua import source

HASH_ATTRIBUTE = "id"


def assignments_key(viewer_id: str) -> str:
    """HASH: the viewer's sticky buckets, ``<experiment>__<bucket version>`` -> variation id."""
    return f"{_tag(viewer_id)}:assignments"


class RedisStickyBucketService(AbstractAsyncStickyBucketService):
    """GrowthBook's async sticky-bucket service on Redis, keyed by the viewer id (the hash attribute)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._save = redis.register_script(source("save_assignments.lua", {"TTL_FIELD": TTL_FIELD}))

    async def get_assignments(self, attributeName: str, attributeValue: str) -> dict[str, Any] | None:
        """The stored document for a viewer id, or None (other attributes are not sticky here)."""
        if attributeName != HASH_ATTRIBUTE or not is_valid_viewer_id(attributeValue):
            return None
        assignments = await self.redis.hgetall(assignments_key(attributeValue))
        if not assignments:
            return None
        return {"attributeName": attributeName, "attributeValue": attributeValue, "assignments": assignments}

    async def save_assignments(self, doc: dict[str, Any]) -> None:
        """Add the document's assignments to the viewer's hash (existing fields are kept)."""
        viewer_id = doc.get("attributeValue")
        if doc.get("attributeName") != HASH_ATTRIBUTE or not is_valid_viewer_id(viewer_id):
            return
        args = [item for pair in doc.get("assignments", {}).items() for item in pair]
        if args:
            await self._save(keys=[assignments_key(viewer_id), profile_key(viewer_id)], args=args)

    async def get_all_assignments(self, attributes: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Only the hash attribute carries sticky buckets: one read, not one per attribute."""
        value = attributes.get(HASH_ATTRIBUTE)
        doc = await self.get_assignments(HASH_ATTRIBUTE, value) if value is not None else None
        return {self.get_key(HASH_ATTRIBUTE, value): doc} if doc and value is not None else {}


@dataclass(frozen=True)
class Assignment:
    """What a session runs: the experiment and variation it is in, the variation's policy and settings."""

    experiment: str
    variation: str
    policy: str
    settings: dict[str, int]
    sticky: bool  # from a stored bucket rather than fresh hashing
    bucket: float | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "experiment": self.experiment,
            "variation": self.variation,
            "policy": self.policy,
            "settings": dict(self.settings),
        }


def to_growthbook(experiment: Experiment) -> GBExperiment[str]:
    """The SDK's ``Experiment`` for a definition: variations are their ids, meta keys name them too."""
    return GBExperiment(
        key=experiment.key,
        variations=[v.id for v in experiment.variations],
        weights=experiment.weights,
        coverage=experiment.coverage,
        condition=experiment.condition,
        seed=experiment.hash_seed,
        hashAttribute=HASH_ATTRIBUTE,
        hashVersion=experiment.hash_version,
        meta=[{"key": v.id, "name": v.id} for v in experiment.variations],
    )


def viewer_attributes(viewer_id: str, context: Context, *, new: bool) -> dict[str, Any]:
    """The attributes targeting conditions see: id, device class, new vs returning, time of day."""
    return {
        "id": viewer_id,
        "device": context.device,
        "new": new,
        "returning": not new,
        "time_of_day": context.time_of_day,
    }


class Assigner:
    """Runs experiments for viewers through one ``GrowthBookClient`` (no network: experiments come inline)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.sticky = RedisStickyBucketService(redis)
        self.client = GrowthBookClient(
            Options(api_host=None, client_key=None, sticky_bucket_service=self.sticky, refresh_strategy=None)
        )
        self._ready = False

    async def _ensure_ready(self) -> None:
        if not self._ready:
            await self.client.set_payload({"features": {}})  # an empty payload: the client evaluates offline
            self._ready = True

    async def assign(self, experiments: Sequence[Experiment], attributes: dict[str, Any]) -> Assignment | None:
        """The first running experiment (in order) that takes this viewer, and its variation; None if none does.

        Sticky documents are written before this returns, so the next session anywhere sees them.
        """
        await self._ensure_ready()
        found: Assignment | None = None
        for experiment in experiments:
            if experiment.status != "running":
                continue
            result = await self.client.run(to_growthbook(experiment), UserContext(attributes=dict(attributes)))
            if result.inExperiment:
                variation = experiment.variations[result.variationId]
                found = Assignment(
                    experiment=experiment.key,
                    variation=variation.id,
                    policy=variation.policy,
                    settings=dict(variation.settings),
                    sticky=bool(result.stickyBucketUsed),
                    bucket=result.bucket,
                )
                break
        await self.client.flush_sticky_bucket_saves()
        return found
