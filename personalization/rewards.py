"""The reward mapping: how one feedback event moves the posteriors of the scene it was about.

This module is the single place where feedback turns into numbers. Each attribute value has an
independent Beta posterior over "this value makes a segment engaging"; one event about a scene
adds the same evidence to every attribute value of that scene:

=========  =====================================  ==================
kind       success fraction ``s`` (0..1)          weight ``w``
=========  =====================================  ==================
like       1 (strong positive)                    ``LIKE_WEIGHT`` = 2
skip       0 (negative)                           ``SKIP_WEIGHT`` = 1
dwell      ``min(seconds / DWELL_FULL_SECONDS, 1)``  ``DWELL_WEIGHT`` = 1
=========  =====================================  ==================

and the update is ``alpha += w * s``, ``beta += w * (1 - s)``. The scalar *reward* of an event (used by
the simulator's reports and regret) is its alpha increment ``w * s``: a fully watched segment is
worth 1, a like 2 more, a skip nothing.

The Lua apply script (``personalization/lua/apply.lua``) runs the same arithmetic inside Redis;
its constants are filled in from the ones below (``LUA_CONSTANTS``), and a test checks that Redis and
``feedback_increments`` agree.
"""

from __future__ import annotations

import math

LIKE_WEIGHT = 2.0
SKIP_WEIGHT = 1.0
DWELL_WEIGHT = 1.0
DWELL_FULL_SECONDS = 1.0
"""Seconds of dwell that count as a fully watched segment: keep equal to the streamer's segment length."""


def feedback_increments(kind: str, seconds: float | None = None) -> tuple[float, float]:
    """``(d_alpha, d_beta)`` that one event adds to each attribute value of its scene.

    Unknown kinds add nothing (an older or newer event schema must never break the apply).
    """
    if kind == "like":
        return LIKE_WEIGHT, 0.0
    if kind == "skip":
        return 0.0, SKIP_WEIGHT
    if kind == "dwell":
        fraction = min(max(float(seconds or 0.0), 0.0) / DWELL_FULL_SECONDS, 1.0)
        return DWELL_WEIGHT * fraction, DWELL_WEIGHT * (1.0 - fraction)
    return 0.0, 0.0


EVIDENCE_SCALE = 1_000
"""Profiles store evidence as whole thousandths: sums of integers stay exact, and a cell's two sums fit one
64-bit integer that Redis adds to with ``HINCRBY`` (``profiles.CELL_SHIFT``)."""


def evidence_units(kind: str, seconds: float | None = None) -> tuple[int, int]:
    """``feedback_increments`` in thousandths (``EVIDENCE_SCALE``), rounded half up; the two add up to the
    event's rounded weight. ``lua/increments.lua``'s ``units`` does the same arithmetic in Redis."""
    da, db = feedback_increments(kind, seconds)
    a = math.floor(da * EVIDENCE_SCALE + 0.5)
    return a, math.floor((da + db) * EVIDENCE_SCALE + 0.5) - a


def feedback_reward(kind: str, seconds: float | None = None) -> float:
    """The scalar reward of one event: its alpha increment (0 for a skip, up to 1 for dwell, 2 for a like)."""
    return feedback_increments(kind, seconds)[0]


LUA_CONSTANTS = {
    "LIKE_WEIGHT": LIKE_WEIGHT,
    "SKIP_WEIGHT": SKIP_WEIGHT,
    "DWELL_WEIGHT": DWELL_WEIGHT,
    "DWELL_FULL_SECONDS": DWELL_FULL_SECONDS,
    "EVIDENCE_SCALE": EVIDENCE_SCALE,
}
"""What the Lua twins of ``feedback_increments`` and ``evidence_units`` (``lua/increments.lua``) read."""
