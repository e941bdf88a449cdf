"""Feedback events: one Redis Stream per viewer, with running counters in the profile.

Each event records which scene it was about (``scene``: compact JSON attr -> value, written by the
streamer from the segment's ``SceneSpec``) and the viewing context bucket (``context``), so that
``lua/evidence.lua`` can turn it into posterior evidence. Appends are group-committed
(``group_commit.GroupCommit``): the appends of every viewer that arrive while one round trip is in
flight share the next one, and one ``lua/append.lua`` call serves up to 64 viewers (one viewer per call on a
Redis Cluster, where a script stays in one hash slot): per-call and per-reply costs dominate small
events on both ends. A viewer whose events are left for ``consumer.EventConsumer`` gets a pointer
``{"viewer": <id>}`` on the global stream ``keys.POINTERS_KEY``; events applied live need none.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from personalization.context import Context
from personalization.errors import NotReplicated, UnknownViewer
from personalization.group_commit import GroupCommit
from personalization.keys import (
    EVENTS_MAXLEN,
    POINTERS_KEY,
    POINTERS_MAXLEN,
    events_key,
    viewer_keys,
)
from personalization.lua import source
from personalization.messages import FEEDBACK_KINDS, Feedback
from personalization.profiles import APPLY_LIMIT, LUA_CONSTANTS, ProfileStore, scene_field
from personalization.scripts import ScriptCall, run_scripts

_NAME_RE = re.compile(r"[a-z0-9_]{1,32}")
_SCENE_JSON_RE = re.compile(r'\{"[a-z0-9_]{1,32}":"[a-z0-9_]{1,32}"(?:,"[a-z0-9_]{1,32}":"[a-z0-9_]{1,32}")*\}')
_MAX_SCENE_ATTRIBUTES = 16
_ARGS_PER_EVENT = 6
_VIEWERS_PER_CALL = 64  # bounds how long one script holds Redis

def new_event_id() -> str:
    """A fresh ``eid``: 16 random hex digits, unique enough among one viewer's events."""
    return secrets.token_hex(8)


@dataclass(frozen=True)
class _Append:
    """One caller's events for one viewer, waiting for the next group commit."""

    viewer_id: str
    args: list[str | int]  # _ARGS_PER_EVENT values per event
    apply: bool

    @property
    def count(self) -> int:
        """Number of events."""
        return len(self.args) // _ARGS_PER_EVENT


def _scene_json(scene: Mapping[str, str]) -> str:
    """The validated ``scene`` field of an event (one regex over the JSON instead of two per attribute)."""
    try:
        text = scene_field(scene)
    except TypeError:  # keys that are not all strings cannot be sorted
        text = ""
    if len(scene) <= _MAX_SCENE_ATTRIBUTES and _SCENE_JSON_RE.fullmatch(text):
        return text
    if len(scene) > _MAX_SCENE_ATTRIBUTES:
        raise ValueError(f"a scene has at most {_MAX_SCENE_ATTRIBUTES} attributes, got {len(scene)}")
    for attr, value in scene.items():
        if not (
            isinstance(attr, str) and isinstance(value, str) and _NAME_RE.fullmatch(attr) and _NAME_RE.fullmatch(value)
        ):
            raise ValueError(f"bad scene attribute {attr!r}={value!r} (lowercase letters, digits and _ only)")
    raise ValueError(f"bad scene {scene!r}")


class EventLog:
    """Append feedback to a viewer's event stream and keep per-kind counters in the profile.

    Args:
        max_batch: most callers' appends that share one round trip.
        wait_replicas: with replicas behind the masters, how many must confirm an append (Redis ``WAIT``,
            in the same round trip) before it counts as stored; an append they do not confirm within
            ``wait_timeout_ms`` fails with ``NotReplicated``, so the caller spools it rather than lose it
            to a failover. 0: a master's reply is enough.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        profiles: ProfileStore | None = None,
        *,
        max_batch: int = 256,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 200,
    ) -> None:
        if wait_replicas < 0:
            raise ValueError(f"wait_replicas must be at least 0, got {wait_replicas}")
        self.redis = redis
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.profiles = profiles or ProfileStore(redis)
        # EVALSHA, loading the script on NOSCRIPT
        self._append = redis.register_script(source("append.lua", LUA_CONSTANTS))
        self._landed = redis.register_script(source("landed.lua", {}))
        self._commit: GroupCommit[_Append, list[str]] = GroupCommit(self._flush, max_batch=max_batch)

    async def append(
        self,
        viewer_id: str,
        feedback: Feedback,
        scene: Mapping[str, str] | None = None,
        *,
        context: Context | None = None,
        apply: bool = False,
    ) -> str:
        """Record one feedback event; return its stream id once Redis has it.

        ``scene`` is the segment's scene (attr -> value) the feedback is about; ``context`` the viewing
        context. With ``apply=True`` the same script also applies the viewer's pending events (this
        one included) to the profile, so the next segment already reflects it; otherwise the consumer
        applies it (``consumer.EventConsumer``). Either way a pointer goes to ``pc:events``.

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
        eids: Sequence[str] | None = None,
    ) -> list[str]:
        """Append several events ``(feedback, scene, context)`` of one viewer, in order, in one script call.

        Same as ``append`` for each; with ``apply=True`` they are all applied before this returns.
        ``eids`` are the events' own ids (``new_event_id``; made here when not given), kept in the stream
        so that ``landed`` can tell a retry whether an append whose reply was lost went through.
        """
        if not events:
            return []
        viewer_keys(viewer_id)  # validates the id before anything is queued
        if eids is None:
            eids = [new_event_id() for _ in events]
        if len(eids) != len(events):
            raise ValueError(f"{len(events)} events need as many eids, got {len(eids)}")
        args: list[str | int] = []
        for (feedback, scene, context), eid in zip(events, eids):
            args += self._args(feedback, scene, context, eid)
        return await self._commit.submit(_Append(viewer_id, args, apply))

    async def _flush(self, appends: Sequence[_Append]) -> list[list[str] | BaseException]:
        """One round trip for a batch: ``lua/append.lua`` for every viewer (its appends in order), then pointers.

        A viewer gets a pointer on ``pc:events`` when events of it are left for the consumer: at once
        for appends without ``apply``, after the script for the rare apply that hit ``APPLY_LIMIT``.
        """
        by_viewer: dict[str, list[_Append]] = {}
        for item in appends:
            by_viewer.setdefault(item.viewer_id, []).append(item)
        viewers = list(by_viewer)
        now = f"{time.time():.3f}"
        calls = []
        for group in self._script_groups(viewers):
            keys: list[str] = []
            args: list[str | int] = [now, EVENTS_MAXLEN, APPLY_LIMIT]
            for viewer_id in group:
                items = by_viewer[viewer_id]
                keys += viewer_keys(viewer_id)
                args += ["1" if any(item.apply for item in items) else "0", sum(item.count for item in items)]
                args += [value for item in items for value in item.args]
            calls.append(ScriptCall(self._append, keys, args))
        unapplied = [v for v in viewers if not all(item.apply for item in by_viewer[v])]
        master_of = self._masters_of(viewers)
        masters = list(dict.fromkeys(master_of.values()))

        def pointers(pipe: aioredis.client.Pipeline) -> None:
            for viewer_id in unapplied:
                pipe.xadd(POINTERS_KEY, {"viewer": viewer_id}, maxlen=POINTERS_MAXLEN, approximate=True)
            # WAIT covers the writes made before it on the same connection: a pipeline sends each
            # node's commands on one connection, in order, so it follows that node's scripts
            for node in masters:
                extra = {} if node is None else {"target_nodes": node}
                pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms, **extra)

        results = await run_scripts(self.redis, calls, then=pointers)
        confirmed = results[len(results) - len(masters) :] if masters else []
        lagging = {
            node: int(count) for node, count in zip(masters, confirmed) if int(count) < self.wait_replicas
        }
        replies = iter([value for result in results[: len(calls)] for value in result])
        ids_of: dict[int, list[str] | BaseException] = {}
        behind: list[str] = []
        for viewer_id, applied, left, joined in zip(viewers, replies, replies, replies):
            items = by_viewer[viewer_id]
            if int(applied) < 0:
                for item in items:
                    ids_of[id(item)] = UnknownViewer(viewer_id)
                continue
            node = master_of.get(viewer_id)
            if node in lagging:
                for item in items:
                    ids_of[id(item)] = NotReplicated(
                        f"{lagging[node]} of {self.wait_replicas} replicas confirmed the append in"
                        f" {self.wait_timeout_ms} ms"
                    )
                continue
            if int(left) and viewer_id not in unapplied:
                behind.append(viewer_id)
            ids = str(joined).split(" ")
            for item in items:
                ids_of[id(item)], ids = ids[: item.count], ids[item.count :]
        if behind:
            async with self.redis.pipeline(transaction=False) as pipe:
                for viewer_id in behind:
                    pipe.xadd(POINTERS_KEY, {"viewer": viewer_id}, maxlen=POINTERS_MAXLEN, approximate=True)
                await pipe.execute()
        return [ids_of[id(item)] for item in appends]

    def _masters_of(self, viewers: list[str]) -> dict[str, Any]:
        """Where each viewer's appends must be confirmed: nowhere without ``wait_replicas`` (empty); else the
        one server (None), or on a Redis Cluster the master that serves the viewer's slot."""
        if not self.wait_replicas:
            return {}
        if not isinstance(self.redis, aioredis.RedisCluster):
            return dict.fromkeys(viewers)
        return {viewer_id: self.redis.get_node_from_key(events_key(viewer_id)) for viewer_id in viewers}

    def _script_groups(self, viewers: list[str]) -> list[list[str]]:
        """Viewers whose appends may share one script call: all of them, except on a Redis Cluster.

        A script may only touch keys of one hash slot there, and each viewer has its own.
        """
        if isinstance(self.redis, aioredis.RedisCluster):
            return [[viewer_id] for viewer_id in viewers]
        return [viewers[i : i + _VIEWERS_PER_CALL] for i in range(0, len(viewers), _VIEWERS_PER_CALL)]

    async def landed(self, viewer_id: str, eids: Sequence[str], since_ms: int) -> set[str]:
        """The ``eids`` already in the viewer's stream among entries from ``since_ms`` (Redis time) on."""
        if not eids:
            return set()
        found = await self._landed(keys=[events_key(viewer_id)], args=[f"{max(0, since_ms)}-0", *eids])
        return {str(eid) for eid in found}

    @staticmethod
    def _args(
        feedback: Feedback, scene: Mapping[str, str] | None, context: Context | None, eid: str
    ) -> list[str | int]:
        """The six ARGV values of ``lua/append.lua`` for one event (validated)."""
        if feedback.kind not in FEEDBACK_KINDS:
            raise ValueError(f"unknown feedback kind {feedback.kind!r}")
        if feedback.kind == "dwell" and feedback.seconds is None:
            raise ValueError("dwell feedback needs seconds")
        args: list[str | int] = [
            feedback.kind,
            "" if feedback.segment_id is None else str(int(feedback.segment_id)),
            "" if feedback.seconds is None else repr(float(feedback.seconds)),
            _scene_json(scene) if scene else "",
            context.bucket if context is not None else "",
            eid,
        ]
        return args

    async def aclose(self) -> None:
        """Stop the group-commit flusher (appends still waiting fail); a later append starts a new one."""
        await self._commit.aclose()

    async def count(self, viewer_id: str) -> int:
        """Number of events in the viewer's stream (capped near ``EVENTS_MAXLEN``)."""
        return int(await self.redis.xlen(events_key(viewer_id)))
