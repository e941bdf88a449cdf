"""Profiles: Beta posteriors per attribute value, applied from feedback events by one idempotent script.

Profile schema, version 3 (``SCHEMA_VERSION``), all keys hash-tagged per viewer:

- ``pc:{v:<id>}:profile`` HASH: ``schema_version``, ``created_at``, ``anonymous``, ``ttl_seconds``
  (anonymous only), counters written at append time (``n_like``, ``n_skip``, ``n_dwell``,
  ``dwell_seconds``), and the apply state: ``last_event_id`` (stream id of the newest applied
  event, ``"0-0"`` before any), ``n_applied`` (events applied, each exactly once) and
  ``last_appended_id``.
- ``pc:{v:<id>}:affinity`` HASH: evidence of the posteriors, one field per cell holding ``"<a> <b>"`` in
  whole millionths (``rewards.EVIDENCE_SCALE``: integer sums stay exact, and cost little to format).
  For every attribute value of the scene of an applied event, the cell ``<bucket>/<attr>=<value>``
  (the event has a context bucket) or ``<attr>=<value>`` (it has none) grows by
  ``rewards.evidence_units``. Each event is stored once; the context-free (global) posterior
  is the sum of the plain cell and every bucket's cell, folded when reading
  (``ProfileState.from_fields``). The posterior is ``Beta(prior_alpha + a, prior_beta + b)``.
- ``pc:{v:<id>}:wishes`` HASH: current wishes (``wishes.Wishes.to_fields``).

Version 2 kept ``a`` and ``b`` in fields of their own (``<cell>:a``, ``<cell>:b``) and stored every event
twice (plain cells held totals). The scripts upgrade such a profile in place the first time they
apply to it (``upgrade`` in ``LUA_EVIDENCE``); until then ``from_fields`` reads it as it was.
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
from personalization.rewards import EVIDENCE_SCALE, LUA_INCREMENTS, evidence_units
from personalization.scripts import ScriptCall
from personalization.wishes import Wishes

SCHEMA_VERSION = 3
"""Version of the profile layout written by ``viewers.ViewerRegistry.create`` (see the module docstring)."""

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


# Lua helpers shared by ``LUA_APPLY`` and ``events.LUA_APPEND``:
# - ``fmt(x)``: a number as the shortest of %.15g / %.17g that reads back exactly;
# - ``new_evidence()``: collects the increments of events (``:add(kind, seconds, scene, context)``, in
#   millionths as rewards.evidence_units counts them, via LUA_INCREMENTS) and writes them to the affinity hash
#   with one HMGET and one HSET (``:write(key)``); integer sums are exact in any order. Inside Redis
#   every call, argument and table costs, so calls are few and each event touches one cell per
#   attribute value (its bucket's, or the plain one);
# - ``pending(stream, last, upto, limit, evidence)``: the entries of ``stream`` with ids in (last, upto],
#   at most ``limit``, added to ``evidence``; XRANGE compares ids as ms-seq pairs, so order is stream order;
# - ``upgrade(profile, affinity, version)``: brings a version 1 or 2 profile to ``SCHEMA_VERSION``
#   (version 2 plain cells held totals; the bucket cells are taken out of them once).
LUA_EVIDENCE = (
    LUA_INCREMENTS
    + f"""
local SCHEMA_VERSION, SCALE = {SCHEMA_VERSION}, {EVIDENCE_SCALE}
"""
    + """
local function fmt(x)
  local s = string.format('%.15g', x)
  if tonumber(s) ~= x then s = string.format('%.17g', x) end
  return s
end
local Evidence = {}
Evidence.__index = Evidence
local function new_evidence() return setmetatable({names = {}, index = {}, a = {}, b = {}}, Evidence) end
function Evidence:add(kind, seconds, scene, ctx)
  if not scene or scene == '' then return end
  local da, db = units(kind, seconds)
  local prefix = ''
  if ctx and ctx ~= '' then prefix = ctx .. '/' end
  local names, index, a, b = self.names, self.index, self.a, self.b
  for attr, value in pairs(cjson.decode(scene)) do
    local name = prefix .. attr .. '=' .. value
    local i = index[name]
    if i == nil then
      i = #names + 1
      names[i], index[name], a[i], b[i] = name, i, 0, 0
    end
    a[i], b[i] = a[i] + da, b[i] + db
  end
end
function Evidence:write(key)
  local names = self.names
  if #names == 0 then return end
  local stored = redis.call('HMGET', key, unpack(names))
  local fields = {}
  for i = 1, #names do
    local a, b = self.a[i], self.b[i]
    local pair = stored[i]
    if pair then
      local space = string.find(pair, ' ', 1, true)
      a, b = a + tonumber(string.sub(pair, 1, space - 1)), b + tonumber(string.sub(pair, space + 1))
    end
    fields[2 * i - 1] = names[i]
    fields[2 * i] = string.format('%d %d', a, b)
  end
  redis.call('HSET', key, unpack(fields))
end
local function pending(stream, last, upto, limit, evidence)
  local entries = redis.call('XRANGE', stream, '(' .. last, upto, 'COUNT', limit)
  for _, entry in ipairs(entries) do
    local f = {}
    local raw = entry[2]
    for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
    evidence:add(f['kind'], f['seconds'], f['scene'], f['context'])
  end
  return entries
end
local function upgrade(profile, affinity, version)
  if (tonumber(version) or SCHEMA_VERSION) >= SCHEMA_VERSION then return end
  local flat = redis.call('HGETALL', affinity)
  local stored, cells, order = {}, {}, {}
  for i = 1, #flat, 2 do stored[flat[i]] = tonumber(flat[i + 1]) end
  for i = 1, #flat, 2 do
    local cell, which = string.match(flat[i], '^(.*):([ab])$')
    if cell then
      if not cells[cell] then
        order[#order + 1] = cell
        cells[cell] = {stored[cell .. ':a'] or 0, stored[cell .. ':b'] or 0}
      end
    end
  end
  for i = 1, #order do  -- version 2 plain cells held totals: take each bucket's share out
    local cell = order[i]
    local slash = string.find(cell, '/', 1, true)
    if slash then
      local plain = string.sub(cell, slash + 1)
      if not cells[plain] then
        cells[plain] = {0, 0}
        order[#order + 1] = plain
      end
      local total = cells[plain]
      total[1], total[2] = total[1] - cells[cell][1], total[2] - cells[cell][2]
    end
  end
  if #flat > 0 then redis.call('DEL', affinity) end
  local fields = {}
  for _, cell in ipairs(order) do
    fields[#fields + 1] = cell
    local a, b = cells[cell][1], cells[cell][2]
    fields[#fields + 1] = string.format('%d %d', math.floor(a * SCALE + 0.5), math.floor(b * SCALE + 0.5))
  end
  if #fields > 0 then redis.call('HSET', affinity, unpack(fields)) end
  redis.call('HSET', profile, 'schema_version', SCHEMA_VERSION)
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
local entries = pending(KEYS[2], p[2] or '0-0', ARGV[1], tonumber(ARGV[2]), evidence)
if #entries == 0 then return 0 end
upgrade(KEYS[1], KEYS[4], p[1])
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
            units = evidence_units(kind, seconds)
            da, db = units[0] / EVIDENCE_SCALE, units[1] / EVIDENCE_SCALE
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
        """Read the affinity HASH (and the profile HASH's apply state) as Redis returns them.

        A bucket's cell also counts towards the global posterior; a version 2 profile that no script
        has upgraded yet is read in its own layout.
        """
        state = cls(prior=prior)
        version_2 = profile is not None and int(profile.get("schema_version") or SCHEMA_VERSION) < SCHEMA_VERSION
        for name, raw in affinity.items():
            if version_2:
                name, _, which = name.rpartition(":")
                if which not in ("a", "b"):
                    continue
                amounts = (float(raw), 0.0) if which == "a" else (0.0, float(raw))
            else:
                a, _, b = raw.partition(" ")
                amounts = (float(a) / EVIDENCE_SCALE, float(b or 0.0) / EVIDENCE_SCALE)
            bucket, _, attr_value = name.rpartition("/")
            attr, _, value = attr_value.partition("=")
            if not attr or not value:
                continue
            for where in (bucket,) if bucket == GLOBAL or version_2 else (bucket, GLOBAL):
                cell = state.evidence.setdefault((where, attr, value), [0.0, 0.0])
                cell[0] += amounts[0]
                cell[1] += amounts[1]
                state._weights[(where, attr)] = state._weights.get((where, attr), 0.0) + sum(amounts)
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
