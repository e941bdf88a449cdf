"""Redis key layout for personalization.

Every key of one viewer carries the hash tag ``{v:<id>}`` so that all of them live in one slot of a
Redis Cluster and one Lua script may touch them together.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TypeGuard

from personalization.errors import UnknownViewer
from personalization.lua import LuaValue

#: Viewer ids are URL-safe base64 text; braces would break the hash tag, so they are never allowed.
VIEWER_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

#: How many recent steer texts are kept per viewer.
STEERS_MAX = 20

#: Approximate cap on the length of a viewer's event stream (``XADD MAXLEN ~``).
EVENTS_MAXLEN = 10_000


def is_valid_viewer_id(viewer_id: object) -> TypeGuard[str]:
    """Whether ``viewer_id`` is a well-formed viewer id (says nothing about whether it exists)."""
    return isinstance(viewer_id, str) and VIEWER_ID_RE.fullmatch(viewer_id) is not None


def _tag(viewer_id: str) -> str:
    if not is_valid_viewer_id(viewer_id):
        raise UnknownViewer(viewer_id)
    return f"pc:{{v:{viewer_id}}}"


def profile_key(viewer_id: str) -> str:
    """HASH: schema_version, created_at, anonymous, last_event_id, counters, last_steer, last_steer_ms, ..."""
    return f"{_tag(viewer_id)}:profile"


def events_key(viewer_id: str) -> str:
    """STREAM: one entry per feedback event (kind, segment_id, seconds, ts)."""
    return f"{_tag(viewer_id)}:events"


def steers_key(viewer_id: str) -> str:
    """LIST: the most recent steer texts, newest first, capped at ``STEERS_MAX``."""
    return f"{_tag(viewer_id)}:steers"


def affinity_key(viewer_id: str) -> str:
    """HASH: evidence behind the attribute posteriors, ``[<context>/]<attr>=<value>:a|b`` -> float.

    Only evidence is stored (sums of reward increments); the prior is added when reading, so
    changing the prior needs no migration. See ``personalization.profiles``.
    """
    return f"{_tag(viewer_id)}:affinity"


def wishes_key(viewer_id: str) -> str:
    """HASH: the viewer's current wishes from steer text, ``want:<attr>``, ``avoid:<attr>``, ``text``."""
    return f"{_tag(viewer_id)}:wishes"


@lru_cache(maxsize=4096)  # every append names them; the viewers streaming now stay cached
def viewer_keys(viewer_id: str) -> tuple[str, ...]:
    """Every key that belongs to a viewer, profile first.

    Erasure and the TTL of anonymous viewers go through this list, so a key type added later must be
    added here too (it is never discovered with KEYS or SCAN). The profile scripts take this list as
    their KEYS and rely on its order: add new key types at the end.
    """
    return (
        profile_key(viewer_id),
        events_key(viewer_id),
        steers_key(viewer_id),
        affinity_key(viewer_id),
        wishes_key(viewer_id),
    )


#: Length of ``viewer_keys``: scripts serving several viewers take that many KEYS per viewer.
KEYS_PER_VIEWER = len(viewer_keys("_"))


#: STREAM shared by all viewers (not hash-tagged): one small pointer ``{"viewer": <id>}`` per viewer per
#: append round trip, read by the consumer group of ``personalization.consumer``. A pointer says "this viewer
#: has new events"; the consumer applies every event of that viewer after its last applied id.
#: Pointers are deleted once processed, and pointers to erased viewers are skipped (and deleted),
#: so erasure never has to search this stream.
POINTERS_KEY = "pc:events"

#: Approximate cap on the pointer stream, for when no consumer runs for a long time.
POINTERS_MAXLEN = 100_000


#: Profile field holding the TTL (seconds) of an anonymous viewer; absent for registered viewers.
TTL_FIELD = "ttl_seconds"

#: Profile field with the unix time the feedback script last restarted the viewer's expiry.
TTL_REFRESHED_FIELD = "ttl_refreshed_at"
#: Feedback restarts an anonymous viewer's expiry at most once per this fraction of the TTL (1% of a
#: week is 1.7 hours), besides whenever it creates a key: per event it would be most of the script's work.
TTL_REFRESH_FRACTION = 0.01

LUA_CONSTANTS: dict[str, LuaValue] = {
    "TTL_FIELD": TTL_FIELD,
    "TTL_REFRESHED_FIELD": TTL_REFRESHED_FIELD,
    "TTL_REFRESH_FRACTION": TTL_REFRESH_FRACTION,
    "KEYS_PER_VIEWER": KEYS_PER_VIEWER,
}
"""What the Lua scripts (`personalization.lua`) read of this module."""
