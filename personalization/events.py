"""Feedback events: one Redis Stream per viewer, with running counters in the profile."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from personalization.errors import UnknownViewer
from personalization.keys import EVENTS_MAXLEN, LUA_REFRESH_TTL, events_key, profile_key, viewer_keys
from personalization.messages import FEEDBACK_KINDS, Feedback

# KEYS[1] profile hash, KEYS[2] events stream, KEYS[3..] every key of the viewer (for the TTL)
# ARGV[1] kind ("like" | "skip" | "dwell"), ARGV[2] segment_id or "", ARGV[3] seconds or "",
# ARGV[4] ts (unix seconds), ARGV[5] approximate MAXLEN of the stream
# Returns the new stream entry id, or false (nil) when the viewer has no profile.
# XADD and the counters run in one script, so the counters always equal what the stream received.
LUA_APPEND = (
    LUA_REFRESH_TTL
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
  'kind', ARGV[1], 'segment_id', ARGV[2], 'seconds', ARGV[3], 'ts', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'n_' .. ARGV[1], 1)
if ARGV[1] == 'dwell' then redis.call('HINCRBYFLOAT', KEYS[1], 'dwell_seconds', ARGV[3]) end
refresh_ttl()
return id
"""
)


class EventLog:
    """Append feedback to a viewer's event stream and keep per-kind counters in the profile."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._append = redis.register_script(LUA_APPEND)  # EVALSHA, loading the script on NOSCRIPT

    async def append(self, viewer_id: str, feedback: Feedback) -> str:
        """Record one feedback event in one round trip; return its stream id.

        Raises ``UnknownViewer`` if the viewer has no profile, ``ValueError`` for a malformed event
        (``parse_control_message`` never produces one).
        """
        if feedback.kind not in FEEDBACK_KINDS:
            raise ValueError(f"unknown feedback kind {feedback.kind!r}")
        if feedback.kind == "dwell" and feedback.seconds is None:
            raise ValueError("dwell feedback needs seconds")
        args: list[str | int] = [
            feedback.kind,
            "" if feedback.segment_id is None else str(int(feedback.segment_id)),
            "" if feedback.seconds is None else repr(float(feedback.seconds)),
            f"{time.time():.3f}",
            EVENTS_MAXLEN,
        ]
        keys = [profile_key(viewer_id), events_key(viewer_id), *viewer_keys(viewer_id)]
        event_id = await self._append(keys=keys, args=args)
        if event_id is None:
            raise UnknownViewer(viewer_id)
        return str(event_id)

    async def count(self, viewer_id: str) -> int:
        """Number of events in the viewer's stream (capped near ``EVENTS_MAXLEN``)."""
        return int(await self.redis.xlen(events_key(viewer_id)))
