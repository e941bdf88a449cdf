"""Worker heartbeats: which Pixelcast workers are alive and how many viewers each could still take.

Each worker writes ``pc:{workers}:<id>`` (its address and free slots, as JSON) with a TTL every few
seconds, and keeps its id in the sorted set ``pc:{workers}`` scored by when that heartbeat expires. A
worker that dies stops writing: its key expires and readers skip it, so no one sends viewers to it. All
of it shares one hash tag, so a Redis Cluster keeps it in one slot and one script writes it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from typing import cast

import redis.asyncio as aioredis

from personalization.lua import source

#: Worker ids appear in URL paths (``/w/<id>/whep``) and in nginx's map: keep them plain.
WORKER_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
DIRECTORY_KEY = "pc:{workers}"
HEARTBEAT_TTL_SECONDS = 10.0


def worker_key(worker_id: str) -> str:
    """STRING (JSON ``WorkerStatus``) with a TTL: one worker's last heartbeat."""
    return f"{DIRECTORY_KEY}:{worker_id}"


def check_worker_id(worker_id: str) -> str:
    """``worker_id`` if it is usable in paths and nginx maps; ValueError otherwise."""
    if not WORKER_ID_RE.fullmatch(worker_id):
        raise ValueError(f"bad worker id {worker_id!r}: 1-32 of a-z, 0-9 and '-', starting with a letter or digit")
    return worker_id


@dataclass(frozen=True)
class WorkerStatus:
    """What one heartbeat says: the worker, where it listens, how many viewers it serves and could add."""

    worker_id: str
    url: str
    sessions: int
    free_slots: int
    at: float  # unix time of the heartbeat


class WorkerDirectory:
    """Write this worker's heartbeat; read every live worker's."""

    def __init__(self, redis: aioredis.Redis, *, ttl: float = HEARTBEAT_TTL_SECONDS) -> None:
        self.redis = redis
        self.ttl = ttl
        self._beat = redis.register_script(source("heartbeat.lua", {}))

    async def heartbeat(self, status: WorkerStatus) -> None:
        """Publish ``status`` for ``ttl`` seconds (one script: the key with its TTL and the directory entry)."""
        check_worker_id(status.worker_id)
        await self._beat(
            keys=[DIRECTORY_KEY, worker_key(status.worker_id)],
            args=[status.worker_id, json.dumps(asdict(status)), int(self.ttl * 1000), f"{status.at + self.ttl:.3f}"],
        )

    async def leave(self, worker_id: str) -> None:
        """Drop a worker at once (a clean shutdown), instead of waiting for its heartbeat to expire."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(worker_key(worker_id))
            pipe.zrem(DIRECTORY_KEY, worker_id)
            await pipe.execute()

    async def live(self, now: float | None = None) -> list[WorkerStatus]:
        """Every worker whose heartbeat has not expired, most free slots first."""
        now = time.time() if now is None else now
        ids = cast(list[str], await self.redis.zrangebyscore(DIRECTORY_KEY, now, "+inf"))
        if not ids:
            return []
        raws = await self.redis.mget([worker_key(worker_id) for worker_id in ids])
        workers = [WorkerStatus(**json.loads(raw)) for raw in raws if raw]
        return sorted(workers, key=lambda w: (-w.free_slots, w.worker_id))
