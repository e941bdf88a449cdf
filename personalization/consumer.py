"""The event consumer: a Redis Stream consumer group that applies feedback events to profiles.

It reads the pointers of ``keys.POINTERS_KEY`` (one ``{"viewer": <id>}`` per viewer per append round trip) with
``XREADGROUP``, applies each named viewer's pending events with ``lua/apply.lua`` (pipelined,
one call per distinct viewer of a batch), then ``XACK``s and ``XDEL``s the pointers. Pointers left
pending by a consumer that died are taken over with ``XAUTOCLAIM`` after ``claim_idle_ms``.

Because the apply is idempotent, it does not matter that the live session already applied most of
these events, that a pointer is delivered twice, or that several consumers run: nothing is counted
twice. Pointers to erased (or never created) viewers are acknowledged and deleted without effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from personalization.keys import POINTERS_KEY, is_valid_viewer_id
from personalization.profiles import APPLY_LIMIT, ProfileStore
from personalization.scripts import run_scripts

log = logging.getLogger(__name__)

GROUP = "pc-apply"


def default_consumer_name() -> str:
    """``<host>-<pid>``: unique per process, stable while it runs."""
    return f"{socket.gethostname()}-{os.getpid()}"


class EventConsumer:
    """Apply events named by ``pc:events`` pointers; ``await start()`` / ``await stop()``, or ``async with``."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        group: str = GROUP,
        name: str | None = None,
        batch: int = 256,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        profiles: ProfileStore | None = None,
    ) -> None:
        self.redis = redis
        self.group = group
        self.name = name or default_consumer_name()
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.profiles = profiles or ProfileStore(redis)
        self.applied = 0  # events applied by this consumer (not counting ones applied before)
        self.pointers = 0  # pointers processed
        self._task: asyncio.Task[None] | None = None
        self._claim_cursor = "0-0"

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) if missing; reading starts at the stream's start."""
        try:
            await self.redis.xgroup_create(POINTERS_KEY, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _process(self, entries: list[Any]) -> int:
        """Apply the viewers named by ``entries`` (``[(id, fields), ...]``), then ack and delete them."""
        if not entries:
            return 0
        ids = [entry_id for entry_id, _ in entries]
        viewers = list(
            dict.fromkeys(
                fields.get("viewer", "")
                for _, fields in entries
                if fields and is_valid_viewer_id(fields.get("viewer", ""))
            )
        )
        applied = 0
        if viewers:
            calls = [self.profiles.apply_call(v) for v in viewers]
            results = await run_scripts(self.redis, calls)
            for viewer_id, result in zip(viewers, results):
                n = int(result)
                if n == APPLY_LIMIT:  # a long backlog: finish it outside the pipeline
                    n += await self.profiles.apply(viewer_id)
                applied += max(n, 0)  # -1: erased viewer, skipped
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xack(POINTERS_KEY, self.group, *ids)
            pipe.xdel(POINTERS_KEY, *ids)
            await pipe.execute()
        self.applied += applied
        self.pointers += len(ids)
        return applied

    async def claim_stale(self) -> int:
        """Take over pointers pending longer than ``claim_idle_ms`` at other consumers and process them."""
        total = 0
        while True:
            cursor, entries, *_ = await self.redis.xautoclaim(
                POINTERS_KEY, self.group, self.name, self.claim_idle_ms, start_id=self._claim_cursor, count=self.batch
            )
            self._claim_cursor = cursor
            total += await self._process([e for e in entries if e and e[0] is not None])
            if cursor == "0-0" or not entries:
                return total

    async def run_once(self, block_ms: int | None = None) -> int:
        """Read and process one batch of new pointers (waiting up to ``block_ms``); return events applied."""
        reply: Any = await self.redis.xreadgroup(
            self.group, self.name, {POINTERS_KEY: ">"}, count=self.batch, block=block_ms
        )
        entries = reply[0][1] if reply else []
        return await self._process(entries)

    async def drain(self) -> int:
        """Process every pointer waiting now, stale pending ones included; return events applied (for tests)."""
        await self.ensure_group()
        total = await self.claim_stale()
        while True:
            before = self.pointers
            total += await self.run_once(block_ms=None)
            if self.pointers == before:
                return total

    async def _run(self) -> None:
        await self.ensure_group()
        rounds = 0
        while True:
            try:
                if rounds % 30 == 0:
                    await self.claim_stale()
                rounds += 1
                await self.run_once(self.block_ms)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:  # Redis restarting or unreachable: keep trying
                log.warning("event consumer %s: %s; retrying in 1 s", self.name, exc)
                await asyncio.sleep(1.0)
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):  # a Redis that lost its data
                    with contextlib.suppress(RedisError, OSError):
                        await self.ensure_group()

    async def start(self) -> None:
        """Create the group and start consuming in a background task (idempotent)."""
        if self._task is None or self._task.done():
            await self.ensure_group()
            self._task = asyncio.create_task(self._run(), name=f"event-consumer-{self.name}")

    async def stop(self) -> None:
        """Stop consuming; pointers read but not yet acknowledged stay pending for ``XAUTOCLAIM``."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        """Whether the background task is running."""
        return self._task is not None and not self._task.done()

    async def __aenter__(self) -> EventConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
