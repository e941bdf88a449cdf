"""Feedback events: one Redis Stream per viewer, with running counters in the profile.

Each event records which scene it was about (``scene``: compact JSON attr -> value, written by the
streamer from the segment's ``SceneSpec``) and the viewing context bucket (``context``), so that
``profiles.LUA_APPLY`` can turn it into posterior evidence. Every append also adds a pointer
``{"viewer": <id>}`` to the global stream ``keys.POINTERS_KEY`` for ``consumer.EventConsumer``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence

import redis.asyncio as aioredis

from personalization.context import Context
from personalization.errors import UnknownViewer
from personalization.keys import (
    EVENTS_MAXLEN,
    LUA_REFRESH_TTL,
    POINTERS_KEY,
    POINTERS_MAXLEN,
    events_key,
    profile_key,
    viewer_keys,
)
from personalization.messages import FEEDBACK_KINDS, Feedback
from personalization.profiles import ProfileStore, scene_field
from personalization.scripts import ScriptCall, run_scripts

_NAME_RE = re.compile(r"[a-z0-9_]{1,32}")
_MAX_SCENE_ATTRIBUTES = 16

# KEYS[1] profile hash, KEYS[2] events stream, KEYS[3..] every key of the viewer (for the TTL)
# ARGV[1] ts (unix seconds), ARGV[2] approximate MAXLEN of the stream, then 5 values per event:
# kind ("like" | "skip" | "dwell"), segment_id or "", seconds or "", scene (compact JSON attr -> value)
# or "", context bucket or ""
# Returns the new stream entry ids (one per event, in order), or false (nil) when the viewer has no
# profile. XADD and the counters run in one script, so the counters always equal what the stream received.
LUA_APPEND = (
    LUA_REFRESH_TTL
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local ids = {}
for i = 3, #ARGV, 5 do
  local kind, seconds = ARGV[i], ARGV[i + 2]
  ids[#ids + 1] = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
    'kind', kind, 'segment_id', ARGV[i + 1], 'seconds', seconds, 'ts', ARGV[1],
    'scene', ARGV[i + 3], 'context', ARGV[i + 4])
  redis.call('HINCRBY', KEYS[1], 'n_' .. kind, 1)
  if kind == 'dwell' then redis.call('HINCRBYFLOAT', KEYS[1], 'dwell_seconds', seconds) end
end
refresh_ttl()
return ids
"""
)


def _check_scene(scene: Mapping[str, str]) -> None:
    if len(scene) > _MAX_SCENE_ATTRIBUTES:
        raise ValueError(f"a scene has at most {_MAX_SCENE_ATTRIBUTES} attributes, got {len(scene)}")
    for attr, value in scene.items():
        if not (isinstance(attr, str) and isinstance(value, str) and _NAME_RE.fullmatch(attr) and _NAME_RE.fullmatch(value)):
            raise ValueError(f"bad scene attribute {attr!r}={value!r} (lowercase letters, digits and _ only)")


class EventLog:
    """Append feedback to a viewer's event stream and keep per-kind counters in the profile."""

    def __init__(self, redis: aioredis.Redis, profiles: ProfileStore | None = None) -> None:
        self.redis = redis
        self.profiles = profiles or ProfileStore(redis)
        self._append = redis.register_script(LUA_APPEND)  # EVALSHA, loading the script on NOSCRIPT

    async def append(
        self,
        viewer_id: str,
        feedback: Feedback,
        scene: Mapping[str, str] | None = None,
        *,
        context: Context | None = None,
        apply: bool = False,
    ) -> str:
        """Record one feedback event in one round trip; return its stream id.

        ``scene`` is the segment's scene (attr -> value) the feedback is about; ``context`` the viewing
        context. With ``apply=True`` the same round trip also applies the viewer's pending events
        (this one included) to the profile, so the next segment already reflects it; otherwise the
        consumer applies it (``consumer.EventConsumer``). Either way a pointer goes to ``pc:events``.

        Raises ``UnknownViewer`` if the viewer has no profile, ``ValueError`` for a malformed event
        (``parse_control_message`` never produces one).
        """
        return (await self.append_many(viewer_id, [(feedback, scene, context)], apply=apply))[0]

    async def append_many(
        self,
        viewer_id: str,
        events: Sequence[tuple[Feedback, Mapping[str, str] | None, Context | None]],
        *,
        apply: bool = False,
    ) -> list[str]:
        """Append several events ``(feedback, scene, context)`` of one viewer in one round trip.

        Same as ``append`` for each, in order; with ``apply=True`` one apply call at the end applies them all.
        """
        if not events:
            return []
        keys = [profile_key(viewer_id), events_key(viewer_id), *viewer_keys(viewer_id)]
        args: list[str | int] = [f"{time.time():.3f}", EVENTS_MAXLEN]
        for feedback, scene, context in events:
            args += self._args(feedback, scene, context)
        calls = [ScriptCall(self._append, keys, args)]
        if apply:
            calls.append(self.profiles.apply_call(viewer_id))

        def pointer(pipe: aioredis.client.Pipeline) -> None:  # one per call: the consumer catches up the viewer
            pipe.xadd(POINTERS_KEY, {"viewer": viewer_id}, maxlen=POINTERS_MAXLEN, approximate=True)

        results = await run_scripts(self.redis, calls, then=pointer)
        if results[0] is None:
            raise UnknownViewer(viewer_id)
        return [str(event_id) for event_id in results[0]]

    @staticmethod
    def _args(feedback: Feedback, scene: Mapping[str, str] | None, context: Context | None) -> list[str | int]:
        """The five ARGV values of ``LUA_APPEND`` for one event (validated)."""
        if scene is not None:
            _check_scene(scene)
        if feedback.kind not in FEEDBACK_KINDS:
            raise ValueError(f"unknown feedback kind {feedback.kind!r}")
        if feedback.kind == "dwell" and feedback.seconds is None:
            raise ValueError("dwell feedback needs seconds")
        args: list[str | int] = [
            feedback.kind,
            "" if feedback.segment_id is None else str(int(feedback.segment_id)),
            "" if feedback.seconds is None else repr(float(feedback.seconds)),
            scene_field(scene) if scene else "",
            context.bucket if context is not None else "",
        ]
        return args

    async def count(self, viewer_id: str) -> int:
        """Number of events in the viewer's stream (capped near ``EVENTS_MAXLEN``)."""
        return int(await self.redis.xlen(events_key(viewer_id)))
