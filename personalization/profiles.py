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

Pixelcast has never released another layout: a profile of an older version is read as one without
evidence (with a logged warning), and the next script that applies events to it resets its evidence and
writes the current version (``reset_outdated`` in ``lua/evidence.lua``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis

from personalization import keys, rewards
from personalization.errors import UnknownViewer
from personalization.keys import affinity_key, profile_key, viewer_keys, wishes_key
from personalization.lua import LuaValue, source
from personalization.rewards import EVIDENCE_SCALE, evidence_units
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


LUA_CONSTANTS: dict[str, LuaValue] = {
    **keys.LUA_CONSTANTS,
    **rewards.LUA_CONSTANTS,
    "SCHEMA_VERSION": SCHEMA_VERSION,
    "CELL_ROOM": 2**CELL_SHIFT,
    "CELL_MOVE_AT": CELL_MOVE_AT,
    "CELL_MOVE_B_AT": CELL_MOVE_B_AT,
    "OVERFLOW_A": OVERFLOW_SUFFIXES[0],
    "OVERFLOW_B": OVERFLOW_SUFFIXES[1],
}
"""What the profile scripts (``lua/apply.lua``, ``lua/append.lua`` and the files they use) read."""

logger = logging.getLogger(__name__)


def _read_cell(name: str, raw: str) -> tuple[str, tuple[float, float]]:
    """One affinity field as ``(cell, (a, b))``."""
    for which, suffix in enumerate(OVERFLOW_SUFFIXES):
        if name.endswith(suffix):
            amount = int(raw) / EVIDENCE_SCALE
            return name[: -len(suffix)], ((amount, 0.0) if which == 0 else (0.0, amount))
    packed = int(raw)
    return name, ((packed >> CELL_SHIFT) / EVIDENCE_SCALE, (packed & (2**CELL_SHIFT - 1)) / EVIDENCE_SCALE)


@dataclass
class ProfileState:
    """A viewer's posteriors in memory: evidence per ``(bucket, attr, value)``, bucket ``""`` = global.

    ``apply`` is the in-memory twin of ``lua/apply.lua`` (the simulator learns with it); ``from_fields``
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

    def posterior(
        self, attr: str, values: Sequence[str], bucket: str = GLOBAL
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
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

        A bucket's cell also counts towards the global posterior; a profile of an older version has no
        evidence (the next apply resets it).
        """
        state = cls(prior=prior)
        version = int(profile.get("schema_version") or SCHEMA_VERSION) if profile else SCHEMA_VERSION
        if version < SCHEMA_VERSION:
            logger.warning("a profile of layout version %d is read without evidence (reset on its next apply)", version)
            affinity = {}
        for name, raw in affinity.items():
            name, amounts = _read_cell(name, raw)
            bucket, _, attr_value = name.rpartition("/")
            attr, _, value = attr_value.partition("=")
            if not attr or not value:
                continue
            for where in (bucket,) if bucket == GLOBAL else (bucket, GLOBAL):
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
    """Read profiles, apply events to them (``lua/apply.lua``) and keep wishes, in Redis."""

    def __init__(self, redis: aioredis.Redis, *, prior: tuple[float, float] = PRIOR) -> None:
        self.redis = redis
        self.prior = prior
        self.lua_apply = redis.register_script(source("apply.lua", LUA_CONSTANTS))
        self.lua_set_wishes = redis.register_script(source("set_wishes.lua", LUA_CONSTANTS))

    def apply_call(self, viewer_id: str, upto: str = "+", limit: int = APPLY_LIMIT) -> ScriptCall:
        """The ``lua/apply.lua`` call for a viewer, for use in ``scripts.run_scripts`` pipelines."""
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
        return Wishes.from_fields(cast(dict[str, str], await self.redis.hgetall(wishes_key(viewer_id))))

    async def set_wishes(self, viewer_id: str, wishes: Wishes) -> None:
        """Replace the viewer's wishes. Raises ``UnknownViewer``."""
        args = [item for pair in wishes.to_fields().items() for item in pair]
        keys = [profile_key(viewer_id), wishes_key(viewer_id), *viewer_keys(viewer_id)]
        if not await self.lua_set_wishes(keys=keys, args=args):
            raise UnknownViewer(viewer_id)
