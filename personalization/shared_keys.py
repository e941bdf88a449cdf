"""Token signing keys kept in Redis, so every worker of a deployment signs and verifies the same tokens.

One server with its embedded Redis keeps its keys in its data dir (``tokens.load_or_create_keys``).
Workers that share a Redis (or Redis Cluster) keep them under ``TOKEN_KEYS_KEY`` instead: the first
worker to start stores a key set (its data dir's keys, if it has any, so that tokens issued before stay
valid), and a rotation is a compare-and-set, so two workers rotating at once agree on one new key.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import redis.asyncio as aioredis

from personalization.errors import PixelcastError
from personalization.lua import source
from personalization.tokens import KEYS_FILE, ROTATE_SECONDS, VERIFY_SECONDS, KeySet, first_keys

#: STRING: the key set as JSON (``KeySet.to_json``). Not hash-tagged: it is read alone.
TOKEN_KEYS_KEY = "pc:token-keys"


def _seed(data_dir: Path, verify_seconds: float, now: float) -> KeySet:
    """The keys a first worker stores: its data dir's key file, else its secret, else a new key."""
    path = Path(data_dir) / KEYS_FILE
    if path.exists():
        return KeySet.from_json(json.loads(path.read_text(encoding="ascii")), verify_seconds=verify_seconds)
    return first_keys(data_dir, verify_seconds=verify_seconds, now=now)


def _parse(raw: str, verify_seconds: float) -> KeySet:
    try:
        return KeySet.from_json(json.loads(raw), verify_seconds=verify_seconds)
    except (ValueError, KeyError, TypeError) as error:
        raise PixelcastError(f"the token keys in Redis ({TOKEN_KEYS_KEY}) are corrupt: {error}") from error


async def load_or_create_shared_keys(
    redis: aioredis.Redis,
    data_dir: Path,
    *,
    rotate_seconds: float = ROTATE_SECONDS,
    verify_seconds: float = VERIFY_SECONDS,
    now: float | None = None,
) -> KeySet:
    """The deployment's key set from Redis, stored first if missing and rotated when its key is due."""
    now = time.time() if now is None else now
    swap = redis.register_script(source("compare_and_set.lua", {}))
    raw = await redis.get(TOKEN_KEYS_KEY)
    if raw is None:
        seed = await asyncio.to_thread(_seed, data_dir, verify_seconds, now)
        await swap(keys=[TOKEN_KEYS_KEY], args=["", json.dumps(seed.to_json())])
        raw = await redis.get(TOKEN_KEYS_KEY)  # this worker's seed, or the one another stored first
    keys = _parse(str(raw), verify_seconds)
    if now - keys.current.created >= rotate_seconds:
        await swap(keys=[TOKEN_KEYS_KEY], args=[str(raw), json.dumps(keys.rotate(now).to_json())])
        keys = _parse(str(await redis.get(TOKEN_KEYS_KEY)), verify_seconds)
    return keys
