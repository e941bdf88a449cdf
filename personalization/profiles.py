"""Profiles: Beta posteriors per attribute value, applied from feedback events by one idempotent script.

Profile schema, version 2 (``viewers.SCHEMA_VERSION``), all keys hash-tagged per viewer:

- ``pc:{v:<id>}:profile`` HASH: ``schema_version``, ``created_at``, ``anonymous``, ``ttl_seconds``
  (anonymous only), counters written at append time (``n_like``, ``n_skip``, ``n_dwell``,
  ``dwell_seconds``), and the apply state: ``last_event_id`` (stream id of the newest applied
  event, ``"0-0"`` before any) and ``n_applied`` (events applied, each exactly once).
- ``pc:{v:<id>}:affinity`` HASH: evidence of the posteriors. For every attribute value of the scene
  of an applied event, ``<attr>=<value>:a`` and ``:b`` grow by ``rewards.feedback_increments``;
  with a context bucket, ``<bucket>/<attr>=<value>:a|b`` grow too. The posterior is
  ``Beta(prior_alpha + a, prior_beta + b)``.
- ``pc:{v:<id>}:wishes`` HASH: current wishes (``wishes.Wishes.to_fields``).

Version 1 profiles (no affinity or wishes keys) read as empty evidence and no wishes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis.asyncio as aioredis

from personalization.errors import UnknownViewer
from personalization.keys import LUA_REFRESH_TTL, affinity_key, events_key, profile_key, viewer_keys, wishes_key
from personalization.rewards import LUA_INCREMENTS, feedback_increments
from personalization.scripts import ScriptCall
from personalization.wishes import Wishes

PRIOR: tuple[float, float] = (1.0, 1.0)
"""Beta prior of every attribute value: uniform."""

APPLY_LIMIT = 1000
"""Most events one apply call handles (bounds the time the script holds Redis); callers loop."""

GLOBAL = ""
"""The bucket name of the context-free posteriors."""


def parse_stream_id(stream_id: str) -> tuple[int, int]:
    """``"1700000000000-3"`` -> ``(1700000000000, 3)``: compare ids as (ms, seq), never as strings."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


# Lua helpers shared by ``LUA_APPLY`` and ``events.LUA_APPEND`` (KEYS[2] the events stream):
# - ``fmt(x)``: a number as the shortest of %.15g / %.17g that reads back exactly;
# - ``new_evidence()``: collects the increments of events (``:add(kind, seconds, scene, context)``, the
#   arithmetic of rewards.feedback_increments via LUA_INCREMENTS) and writes them to the affinity hash
#   with one HMGET and one HSET (``:write(key)``), adding each event's increment in event order, as
#   ``ProfileState.apply`` does; inside Redis every call costs microseconds, so calls are few;
# - ``pending(last, upto, limit, evidence)``: the stream entries with ids in (last, upto], at most
#   ``limit``, added to ``evidence``; XRANGE compares ids as ms-seq pairs, so order is stream order.
LUA_EVIDENCE = (
    LUA_INCREMENTS
    + """
local function fmt(x)
  local s = string.format('%.15g', x)
  if tonumber(s) ~= x then s = string.format('%.17g', x) end
  return s
end
local Evidence = {}
Evidence.__index = Evidence
local function new_evidence() return setmetatable({names = {}, index = {}, deltas = {}}, Evidence) end
function Evidence:bump(name, d)
  local i = self.index[name]
  if i == nil then
    i = #self.names + 1
    self.names[i], self.index[name], self.deltas[i] = name, i, {}
  end
  local list = self.deltas[i]
  list[#list + 1] = d
end
function Evidence:add(kind, seconds, scene, ctx)
  if not scene or scene == '' then return end
  local da, db = increments(kind, seconds)
  for attr, value in pairs(cjson.decode(scene)) do
    local cells = {attr .. '=' .. value}
    if ctx and ctx ~= '' then cells[2] = ctx .. '/' .. cells[1] end
    for _, cell in ipairs(cells) do
      if da ~= 0 then self:bump(cell .. ':a', da) end
      if db ~= 0 then self:bump(cell .. ':b', db) end
    end
  end
end
function Evidence:write(key)
  if #self.names == 0 then return end
  local stored = redis.call('HMGET', key, unpack(self.names))
  local fields = {}
  for i, name in ipairs(self.names) do
    local value = tonumber(stored[i]) or 0
    for _, d in ipairs(self.deltas[i]) do value = value + d end
    fields[#fields + 1] = name
    fields[#fields + 1] = fmt(value)
  end
  redis.call('HSET', key, unpack(fields))
end
local function pending(last, upto, limit, evidence)
  local entries = redis.call('XRANGE', KEYS[2], '(' .. last, upto, 'COUNT', limit)
  for _, entry in ipairs(entries) do
    local f = {}
    local raw = entry[2]
    for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
    evidence:add(f['kind'], f['seconds'], f['scene'], f['context'])
  end
  return entries
end
"""
)

# KEYS: keys.viewer_keys (every key of the viewer, for the TTL): [1] profile hash, [2] events stream, [4] affinity hash
# ARGV[1] newest event id to apply ("+" for all), ARGV[2] most events to apply in this call
# Returns the number of events applied (0 when all of them were applied before), or -1 when the
# viewer has no profile.
# Idempotent: only events with ids in (last_event_id, ARGV[1]] are applied, in stream order, and
# last_event_id moves to the newest applied one in the same atomic script, so a retry, a replay, or
# the consumer seeing an event the live session already applied changes nothing.
LUA_APPLY = (
    LUA_REFRESH_TTL
    + LUA_EVIDENCE
    + """
local p = redis.call('HMGET', KEYS[1], 'schema_version', 'last_event_id', 'n_applied', 'ttl_seconds')
if not p[1] then return -1 end
local evidence = new_evidence()
local entries = pending(p[2] or '0-0', ARGV[1], tonumber(ARGV[2]), evidence)
if #entries == 0 then return 0 end
evidence:write(KEYS[4])
redis.call('HSET', KEYS[1], 'last_event_id', entries[#entries][1], 'n_applied', (tonumber(p[3]) or 0) + #entries)
refresh_ttl(p[4] or '0')
return #entries
"""
)

# KEYS[1] profile hash, KEYS[2] wishes hash, KEYS[3..] every key of the viewer (TTL)
# ARGV field, value, field, value, ... of the new wishes (none: no wishes)
# Returns 1, or 0 when the viewer has no profile (nothing is written).
LUA_SET_WISHES = (
    LUA_REFRESH_TTL
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[2])
if #ARGV > 0 then redis.call('HSET', KEYS[2], unpack(ARGV)) end
refresh_ttl()
return 1
"""
)


@dataclass
class ProfileState:
    """A viewer's posteriors in memory: evidence per ``(bucket, attr, value)``, bucket ``""`` = global.

    ``apply`` is the in-memory twin of ``LUA_APPLY`` (the simulator learns with it); ``from_fields``
    reads what the script wrote.
    """

    evidence: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    prior: tuple[float, float] = PRIOR
    last_event_id: str = "0-0"
    n_applied: int = 0
    _weights: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)

    def apply(
        self,
        kind: str,
        seconds: float | None,
        scene: Mapping[str, str] | None,
        bucket: str | None = None,
        event_id: str | None = None,
    ) -> bool:
        """Apply one event; with an ``event_id`` at or below ``last_event_id`` skip it and return False."""
        if event_id is not None:
            if parse_stream_id(event_id) <= parse_stream_id(self.last_event_id):
                return False
            self.last_event_id = event_id
        self.n_applied += 1
        if scene:
            da, db = feedback_increments(kind, seconds)
            for b in (GLOBAL, bucket) if bucket else (GLOBAL,):
                for attr, value in scene.items():
                    cell = self.evidence.setdefault((b, attr, value), [0.0, 0.0])
                    cell[0] += da
                    cell[1] += db
                    self._weights[(b, attr)] = self._weights.get((b, attr), 0.0) + da + db
        return True

    def posterior(self, attr: str, values: Sequence[str], bucket: str = GLOBAL) -> tuple[np.ndarray, np.ndarray]:
        """Beta parameters ``(alpha, beta)`` of ``values`` of ``attr`` in ``bucket``, prior included."""
        alpha = np.full(len(values), self.prior[0])
        beta = np.full(len(values), self.prior[1])
        for i, value in enumerate(values):
            cell = self.evidence.get((bucket, attr, value))
            if cell is not None:
                alpha[i] += cell[0]
                beta[i] += cell[1]
        return alpha, beta

    def weight(self, attr: str, bucket: str = GLOBAL) -> float:
        """Total evidence (sum of increments) on ``attr`` in ``bucket``: how much it has been observed."""
        return self._weights.get((bucket, attr), 0.0)

    @classmethod
    def from_fields(
        cls, affinity: Mapping[str, str], profile: Mapping[str, str] | None = None, prior: tuple[float, float] = PRIOR
    ) -> ProfileState:
        """Read the affinity HASH (and the profile HASH's apply state) as Redis returns them."""
        state = cls(prior=prior)
        for name, raw in affinity.items():
            cell_name, _, which = name.rpartition(":")
            bucket, _, attr_value = cell_name.rpartition("/")
            attr, _, value = attr_value.partition("=")
            if which not in ("a", "b") or not attr or not value:
                continue
            cell = state.evidence.setdefault((bucket, attr, value), [0.0, 0.0])
            amount = float(raw)
            cell[0 if which == "a" else 1] += amount
            state._weights[(bucket, attr)] = state._weights.get((bucket, attr), 0.0) + amount
        if profile:
            state.last_event_id = profile.get("last_event_id", "0-0")
            state.n_applied = int(profile.get("n_applied", 0))
        return state

    def to_json(self) -> dict[str, Any]:
        """Posteriors for export: ``{"prior", "global": {attr: {value: {alpha, beta}}}, "contexts": {...}}``."""
        out: dict[str, Any] = {"prior": {"alpha": self.prior[0], "beta": self.prior[1]}, "global": {}, "contexts": {}}
        for (bucket, attr, value), (a, b) in sorted(self.evidence.items()):
            table = out["global"] if bucket == GLOBAL else out["contexts"].setdefault(bucket, {})
            table.setdefault(attr, {})[value] = {"alpha": self.prior[0] + a, "beta": self.prior[1] + b}
        return out


@dataclass(frozen=True)
class Profile:
    """What a policy needs about a viewer: posteriors and current wishes."""

    state: ProfileState
    wishes: Wishes


def scene_field(scene: Mapping[str, str]) -> str:
    """The ``scene`` field of an event: compact JSON with sorted keys."""
    return json.dumps(dict(scene), separators=(",", ":"), sort_keys=True)


class ProfileStore:
    """Read profiles, apply events to them (``LUA_APPLY``) and keep wishes, in Redis."""

    def __init__(self, redis: aioredis.Redis, *, prior: tuple[float, float] = PRIOR) -> None:
        self.redis = redis
        self.prior = prior
        self.lua_apply = redis.register_script(LUA_APPLY)
        self.lua_set_wishes = redis.register_script(LUA_SET_WISHES)

    def apply_call(self, viewer_id: str, upto: str = "+", limit: int = APPLY_LIMIT) -> ScriptCall:
        """The ``LUA_APPLY`` call for a viewer, for use in ``scripts.run_scripts`` pipelines."""
        keys = viewer_keys(viewer_id)
        return ScriptCall(self.lua_apply, keys, (upto, limit))

    async def apply(self, viewer_id: str, upto: str = "+") -> int:
        """Apply the viewer's events up to ``upto`` not applied yet; return how many. Raises ``UnknownViewer``."""
        total = 0
        while True:
            call = self.apply_call(viewer_id, upto)
            applied = int(await call.script(keys=list(call.keys), args=list(call.args)))
            if applied < 0:
                raise UnknownViewer(viewer_id)
            total += applied
            if applied < APPLY_LIMIT:
                return total

    async def load(self, viewer_id: str) -> Profile:
        """Posteriors and wishes of a viewer, in one round trip. Raises ``UnknownViewer``."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(profile_key(viewer_id))
            pipe.hgetall(affinity_key(viewer_id))
            pipe.hgetall(wishes_key(viewer_id))
            profile, affinity, wishes = await pipe.execute()
        if not profile:
            raise UnknownViewer(viewer_id)
        return Profile(ProfileState.from_fields(affinity, profile, self.prior), Wishes.from_fields(wishes))

    async def wishes(self, viewer_id: str) -> Wishes:
        """The viewer's current wishes (none for an unknown viewer)."""
        return Wishes.from_fields(await self.redis.hgetall(wishes_key(viewer_id)))

    async def set_wishes(self, viewer_id: str, wishes: Wishes) -> None:
        """Replace the viewer's wishes. Raises ``UnknownViewer``."""
        args = [item for pair in wishes.to_fields().items() for item in pair]
        keys = [profile_key(viewer_id), wishes_key(viewer_id), *viewer_keys(viewer_id)]
        if not await self.lua_set_wishes(keys=keys, args=args):
            raise UnknownViewer(viewer_id)
