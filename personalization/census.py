"""A count of the viewers' keys in Redis, for leak checks (the churn benchmark): who has what, and what expires."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis

from personalization.keys import profile_key

VIEWER_KEYS_PATTERN = "pc:{v:*}:*"


@dataclass(frozen=True)
class KeyCensus:
    """Viewers and their keys; anonymous viewers' keys should all carry a TTL."""

    viewers: int = 0
    anonymous_viewers: int = 0
    anonymous_keys: int = 0
    anonymous_keys_without_ttl: int = 0
    orphan_keys: int = 0  # keys of a viewer id with no profile hash (an erasure or expiry that missed some)

    def to_json(self) -> dict[str, Any]:
        """As a JSON object."""
        return asdict(self)


def _viewer_of(key: str) -> str:
    return key.split("{v:", 1)[1].split("}", 1)[0]


async def key_census(redis: aioredis.Redis) -> KeyCensus:
    """Scan every viewer key (SCAN, not KEYS: a big store keeps answering others meanwhile)."""
    keys: dict[str, list[str]] = {}
    async for raw in redis.scan_iter(match=VIEWER_KEYS_PATTERN, count=1000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        keys.setdefault(_viewer_of(key), []).append(key)
    viewers = anonymous = anonymous_keys = without_ttl = orphans = 0
    for viewer_id, owned in keys.items():
        profile = profile_key(viewer_id)
        if profile not in owned:
            orphans += len(owned)
            continue
        viewers += 1
        flag = await redis.hget(profile, "anonymous")
        if flag not in (b"1", "1"):
            continue
        anonymous += 1
        anonymous_keys += len(owned)
        for key in owned:
            if await redis.ttl(key) == -1:
                without_ttl += 1
    return KeyCensus(viewers, anonymous, anonymous_keys, without_ttl, orphans)
