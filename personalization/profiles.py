"""Profiles: Beta posteriors per attribute value, applied from feedback events by one idempotent script.

Profile schema, version 4 (``SCHEMA_VERSION``), all keys hash-tagged per viewer:

- ``pc:{v:<id>}:profile`` HASH: ``schema_version``, ``created_at``, ``anonymous``, ``ttl_seconds``
  (anonymous only), counters written at append time (``n_like``, ``n_skip``, ``n_dwell``,
  ``dwell_seconds``), and the apply state: ``last_event_id`` (stream id of the newest applied
  event, ``"0-0"`` before any), ``n_applied`` (events applied, each exactly once) and
  ``last_appended_id``.
- ``pc:{v:<id>}:affinity`` HASH: evidence of the posteriors. For every attribute value of the scene of
  an applied event, the cell ``<bucket>/<attr>=<value>`` (the event has a context bucket) or
  ``<attr>=<value>`` (it has none) grows by ``rewards.evidence_units`` (whole thousandths). A cell is
  one integer, ``a << CELL_SHIFT | b``, that the script adds to with ``HINCRBY``: one call per attribute
  value and nothing to read, parse or format. Before either part could outgrow its room (tens of
  thousands of events in one cell), the script moves the cell's sums into the overflow fields
  ``<cell>#a`` and ``<cell>#b`` (plain integers) and starts the cell again from 0. Each event is stored
  once; the context-free (global) posterior is the sum of the plain cell and every bucket's cell,
  folded when reading (``ProfileState.from_fields``). The posterior is
  ``Beta(prior_alpha + a, prior_beta + b)``.
- ``pc:{v:<id>}:wishes`` HASH: current wishes (``wishes.Wishes.to_fields``).

Older layouts are upgraded in place the first time a script applies to the profile (``upgrade`` in
``LUA_EVIDENCE``); until then ``from_fields`` reads them as they are. Version 3 held ``"<a> <b>"`` in
whole millionths per cell (rounded to thousandths on upgrade). Version 2 kept ``a`` and ``b`` in fields of
their own (``<cell>:a``, ``<cell>:b``) and stored every event twice (plain cells held totals). Version 1
profiles (no affinity or wishes keys) read as empty evidence and no wishes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis.asyncio as aioredis

from personalization.errors import UnknownViewer
from personalization.keys import LUA_REFRESH_TTL, affinity_key, profile_key, viewer_keys, wishes_key
from personalization.rewards import EVIDENCE_SCALE, LUA_INCREMENTS, evidence_units
from personalization.scripts import ScriptCall
from personalization.wishes import Wishes

SCHEMA_VERSION = 4
"""Version of the profile layout written by ``viewers.ViewerRegistry.create`` (see the module docstring)."""

CELL_SHIFT = 26
"""Bits of a cell's ``b`` part: a cell holds ``a << CELL_SHIFT | b``."""

CELL_MOVE_AT = 2**52
"""A cell is moved to its overflow fields once it reaches this (Lua numbers are exact below 2**53) ..."""

CELL_MOVE_B_AT = 2 ** (CELL_SHIFT - 1)
"""... or once its ``b`` part reaches this (one event adds at most ``EVIDENCE_SCALE`` to ``b``)."""

OVERFLOW_SUFFIXES = ("#a", "#b")
"""Suffixes of a cell's overflow fields (``a`` and ``b`` as plain integers)."""

VERSION_3_SCALE = 1_000_000
"""Version 3 cells held whole millionths."""

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
# - ``add_evidence(key, kind, seconds, scene, ctx)``: adds one event's increments (thousandths, as
#   rewards.evidence_units counts them, via LUA_INCREMENTS) to the cell of each attribute value of its
#   scene with HINCRBY, moving a cell that grew too big to its overflow fields (``move_cell``). Inside
#   Redis every call, argument and string costs: reading, parsing and formatting cells cost more than
#   the HINCRBYs that replace them;
# - ``pending(stream, last, upto, limit, key)``: the entries of ``stream`` with ids in (last, upto], at
#   most ``limit``, added to the affinity hash ``key``; XRANGE compares ids as ms-seq pairs, so order is
#   stream order;
# - ``upgrade(profile, affinity, version)``: brings a version 1, 2 or 3 profile to ``SCHEMA_VERSION``
#   (version 2 plain cells held totals; the bucket cells are taken out of them once) and tells whether
#   it rewrote the affinity hash. It must run before ``add_evidence`` touches an older profile.
LUA_EVIDENCE = (
    LUA_INCREMENTS
    + f"""
local SCHEMA_VERSION, VERSION_3_SCALE, SCALE = {SCHEMA_VERSION}, {VERSION_3_SCALE}, {EVIDENCE_SCALE}
local CELL_ROOM, MOVE_AT, MOVE_B_AT = {2**CELL_SHIFT}, {CELL_MOVE_AT}, {CELL_MOVE_B_AT}
local OVERFLOW_A, OVERFLOW_B = '{OVERFLOW_SUFFIXES[0]}', '{OVERFLOW_SUFFIXES[1]}'
"""
    + """
local function fmt(x)
  local s = string.format('%.15g', x)
  if tonumber(s) ~= x then s = string.format('%.17g', x) end
  return s
end
local function move_cell(key, name, packed)
  local b = packed % CELL_ROOM
  redis.call('HINCRBY', key, name .. OVERFLOW_A, string.format('%d', (packed - b) / CELL_ROOM))
  redis.call('HINCRBY', key, name .. OVERFLOW_B, string.format('%d', b))
  redis.call('HSET', key, name, 0)
end
local function add_evidence(key, kind, seconds, scene, ctx)
  if not scene or scene == '' then return end
  local da, db = units(kind, seconds)
  local increment = string.format('%d', da * CELL_ROOM + db)
  local prefix = ''
  if ctx and ctx ~= '' then prefix = ctx .. '/' end
  for attr, value in pairs(cjson.decode(scene)) do
    local name = prefix .. attr .. '=' .. value
    local packed = redis.call('HINCRBY', key, name, increment)
    if packed >= MOVE_AT or packed % CELL_ROOM >= MOVE_B_AT then move_cell(key, name, packed) end
  end
end
local function pending(stream, last, upto, limit, key)
  local entries = redis.call('XRANGE', stream, '(' .. last, upto, 'COUNT', limit)
  for _, entry in ipairs(entries) do
    local f = {}
    local raw = entry[2]
    for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
    add_evidence(key, f['kind'], f['seconds'], f['scene'], f['context'])
  end
  return entries
end
local function upgrade(profile, affinity, version)
  version = tonumber(version) or SCHEMA_VERSION
  if version >= SCHEMA_VERSION then return false end
  local flat = redis.call('HGETALL', affinity)
  local cells, order = {}, {}  -- cell -> {a, b} in SCALE units
  local function cell_of(name)
    if not cells[name] then
      cells[name] = {0, 0}
      order[#order + 1] = name
    end
    return cells[name]
  end
  for i = 1, #flat, 2 do
    if version == 3 then
      local value = flat[i + 1]
      local space = string.find(value, ' ', 1, true)
      local cell = cell_of(flat[i])
      cell[1] = tonumber(string.sub(value, 1, space - 1)) * SCALE / VERSION_3_SCALE
      cell[2] = tonumber(string.sub(value, space + 1)) * SCALE / VERSION_3_SCALE
    else
      local name, which = string.match(flat[i], '^(.*):([ab])$')
      if name then cell_of(name)[which == 'a' and 1 or 2] = tonumber(flat[i + 1]) * SCALE end
    end
  end
  if version == 2 then  -- version 2 plain cells held totals: take each bucket's share out
    for i = 1, #order do
      local name = order[i]
      local slash = string.find(name, '/', 1, true)
      if slash then
        local total = cell_of(string.sub(name, slash + 1))
        total[1], total[2] = total[1] - cells[name][1], total[2] - cells[name][2]
      end
    end
  end
  if #flat > 0 then redis.call('DEL', affinity) end
  local fields = {}
  for _, name in ipairs(order) do
    local a, b = math.floor(cells[name][1] + 0.5), math.floor(cells[name][2] + 0.5)
    local n = #fields
    if a * CELL_ROOM + b < MOVE_AT and b < MOVE_B_AT then
      fields[n + 1] = name
      fields[n + 2] = string.format('%d', a * CELL_ROOM + b)
    else
      fields[n + 1] = name .. OVERFLOW_A
      fields[n + 2] = string.format('%d', a)
      fields[n + 3] = name .. OVERFLOW_B
      fields[n + 4] = string.format('%d', b)
    end
  end
  if #fields > 0 then redis.call('HSET', affinity, unpack(fields)) end
  redis.call('HSET', profile, 'schema_version', SCHEMA_VERSION)
  return #flat > 0
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
local upgraded = upgrade(KEYS[1], KEYS[4], p[1])
local entries = pending(KEYS[2], p[2] or '0-0', ARGV[1], tonumber(ARGV[2]), KEYS[4])
if #entries > 0 then
  redis.call('HSET', KEYS[1], 'last_event_id', entries[#entries][1], 'n_applied', (tonumber(p[3]) or 0) + #entries)
end
if #entries > 0 or upgraded then refresh_ttl(p[4] or '0') end  -- keys it created or rewrote get the TTL
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


def _read_cell(name: str, raw: str, version: int) -> tuple[str, tuple[float, float]] | None:
    """One affinity field as ``(cell, (a, b))`` in the layout of ``version``; None for a field that is no cell."""
    if version == 2:
        name, _, which = name.rpartition(":")
        if which not in ("a", "b"):
            return None
        return name, ((float(raw), 0.0) if which == "a" else (0.0, float(raw)))
    if version == 3:
        a, _, b = raw.partition(" ")
        return name, (float(a) / VERSION_3_SCALE, float(b or 0.0) / VERSION_3_SCALE)
    for which, suffix in enumerate(OVERFLOW_SUFFIXES):
        if name.endswith(suffix):
            amount = int(raw) / EVIDENCE_SCALE
            return name[: -len(suffix)], ((amount, 0.0) if which == 0 else (0.0, amount))
    packed = int(raw)
    return name, ((packed >> CELL_SHIFT) / EVIDENCE_SCALE, (packed & (2**CELL_SHIFT - 1)) / EVIDENCE_SCALE)


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

        A bucket's cell also counts towards the global posterior; a profile of an older version that no
        script has upgraded yet is read in its own layout.
        """
        state = cls(prior=prior)
        version = int(profile.get("schema_version") or SCHEMA_VERSION) if profile else SCHEMA_VERSION
        for name, raw in affinity.items():
            cell = _read_cell(name, raw, version)
            if cell is None:
                continue
            name, amounts = cell
            bucket, _, attr_value = name.rpartition("/")
            attr, _, value = attr_value.partition("=")
            if not attr or not value:
                continue
            for where in (bucket,) if bucket == GLOBAL or version == 2 else (bucket, GLOBAL):
                evidence = state.evidence.setdefault((where, attr, value), [0.0, 0.0])
                evidence[0] += amounts[0]
                evidence[1] += amounts[1]
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
