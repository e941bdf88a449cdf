"""Viewers: creation, steer history, export and erasure of everything stored about one viewer."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import redis.asyncio as aioredis

from personalization.errors import UnknownViewer
from personalization.keys import (
    LUA_CONSTANTS,
    STEERS_MAX,
    TTL_FIELD,
    affinity_key,
    events_key,
    is_valid_viewer_id,
    profile_key,
    steers_key,
    viewer_keys,
    wishes_key,
)
from personalization.lua import source
from personalization.profiles import SCHEMA_VERSION, ProfileState
from personalization.wishes import Wishes

ANONYMOUS_TTL = 7 * 24 * 3600  # seconds; an anonymous viewer's data lives this long after its last activity
_CREATE_ATTEMPTS = 5

def new_viewer_id() -> str:
    """A fresh random viewer id: 16 URL-safe characters (96 random bits)."""
    return secrets.token_urlsafe(12)


class ViewerRegistry:
    """Create, look up, export and erase viewers in Redis."""

    def __init__(self, redis: aioredis.Redis, *, anonymous_ttl: int = ANONYMOUS_TTL) -> None:
        if anonymous_ttl <= 0:
            raise ValueError(f"anonymous_ttl must be a positive number of seconds, got {anonymous_ttl!r}")
        self.redis = redis
        self.anonymous_ttl = int(anonymous_ttl)
        self._create = redis.register_script(source("create_viewer.lua", LUA_CONSTANTS))
        self._record_steer = redis.register_script(source("record_steer.lua", LUA_CONSTANTS))

    async def create(self, *, anonymous: bool = False) -> str:
        """Create a viewer with an empty profile and return its id.

        Anonymous viewers (a WHEP POST without a token) expire ``anonymous_ttl`` seconds after their
        last activity; registered viewers are kept until erased.
        """
        profile: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "created_at": f"{time.time():.3f}",
            "anonymous": int(anonymous),
            "last_event_id": "0-0",
            "n_applied": 0,
            "n_like": 0,
            "n_skip": 0,
            "n_dwell": 0,
            "dwell_seconds": 0,
        }
        if anonymous:
            profile[TTL_FIELD] = self.anonymous_ttl
        args = [item for pair in profile.items() for item in pair]
        for _ in range(_CREATE_ATTEMPTS):
            viewer_id = new_viewer_id()
            if await self._create(keys=viewer_keys(viewer_id), args=args):
                return viewer_id
        raise RuntimeError("could not find an unused viewer id")  # 96 random bits: never in practice

    async def exists(self, viewer_id: str) -> bool:
        """Whether a viewer with this id has a profile (False for malformed ids too)."""
        if not is_valid_viewer_id(viewer_id):
            return False
        return bool(await self.redis.exists(profile_key(viewer_id)))

    async def record_steer(self, viewer_id: str, text: str, sent_ms: int | None = None) -> None:
        """Remember a steer text: newest first in the steers list (capped) and as ``last_steer``, with the
        time it was sent (`sent_ms`, unix ms, default now) as ``last_steer_ms`` if that is the latest."""
        keys = [profile_key(viewer_id), steers_key(viewer_id), *viewer_keys(viewer_id)]
        sent = int(time.time() * 1000) if sent_ms is None else sent_ms
        if not await self._record_steer(keys=keys, args=[text, STEERS_MAX, sent]):
            raise UnknownViewer(viewer_id)

    async def last_steer_ms(self, viewer_id: str) -> int:
        """When the viewer's latest stored steer was sent (unix ms; 0 for none)."""
        return int(await self.redis.hget(profile_key(viewer_id), "last_steer_ms") or 0)

    async def recent_steers(self, viewer_id: str) -> list[str]:
        """The viewer's recent steer texts, newest first."""
        return [str(text) for text in await self.redis.lrange(steers_key(viewer_id), 0, -1)]

    async def export(self, viewer_id: str) -> dict[str, Any]:
        """Everything stored about a viewer, JSON-ready: profile, posteriors, wishes, steers and events.

        Profile values are returned as Redis stores them (strings). Raises ``UnknownViewer``.
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(profile_key(viewer_id))
            pipe.lrange(steers_key(viewer_id), 0, -1)
            pipe.xrange(events_key(viewer_id))
            pipe.hgetall(affinity_key(viewer_id))
            pipe.hgetall(wishes_key(viewer_id))
            profile, steers, entries, affinity, wishes = await pipe.execute()
        if not profile:
            raise UnknownViewer(viewer_id)
        return {
            "viewer_id": viewer_id,
            "profile": dict(profile),
            "posteriors": ProfileState.from_fields(affinity, profile).to_json(),
            "wishes": Wishes.from_fields(wishes).to_json(),
            "steers": list(steers),
            "events": [_event_dict(entry_id, fields) for entry_id, fields in entries],
        }

    async def erase(self, viewer_id: str) -> bool:
        """Delete every key of the viewer (by name); return whether there was anything to delete.

        Pointers to the viewer in the global ``pc:events`` stream are not searched for: they hold only
        the viewer id, the consumer skips them once the profile is gone and deletes every pointer it
        processes (see ``personalization.consumer``).
        """
        if not is_valid_viewer_id(viewer_id):
            return False
        return bool(await self.redis.delete(*viewer_keys(viewer_id)))


def _event_dict(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    segment_id = fields.get("segment_id", "")
    seconds = fields.get("seconds", "")
    ts = fields.get("ts", "")
    scene = fields.get("scene", "")
    return {
        "id": entry_id,
        "kind": fields.get("kind"),
        "segment_id": int(segment_id) if segment_id else None,
        "seconds": float(seconds) if seconds else None,
        "ts": float(ts) if ts else None,
        "scene": json.loads(scene) if scene else None,
        "context": fields.get("context") or None,
    }
