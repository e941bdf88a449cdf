"""Fixtures for personalization tests: a real Redis, as one server and as a three-master Redis Cluster.

Every test that takes ``redis_client`` runs twice: against one server ($REDIS_URL, else an embedded one)
and against a Redis Cluster of three masters on loopback ports, started once for the session.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from personalization.local_cluster import LocalCluster
from personalization.redis_server import EmbeddedRedis
from personalization.store import connect


class _ClusterThread:
    """A LocalCluster run by an event loop of its own thread, so it outlives each test's loop."""

    def __init__(self, directory: Path) -> None:
        self.cluster = LocalCluster(directory)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="redis-cluster", daemon=True)
        self.thread.start()

    def call(self, coroutine):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    def close(self) -> None:
        try:
            self.call(self.cluster.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis+cluster://`` URL of three masters on loopback, up for the whole session."""
    runner = _ClusterThread(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield runner.call(runner.cluster.start())
    finally:
        runner.close()


@pytest.fixture(params=["server", "cluster"])
async def redis_client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[aioredis.Redis]:
    """A ``decode_responses`` client on an empty database; closed (and its server stopped) afterwards.

    With ``$REDIS_URL`` set the one-server runs use that server, and FLUSHDB empties its database:
    point it at a throwaway instance.
    """
    server: EmbeddedRedis | None = None
    if request.param == "cluster":
        url = request.getfixturevalue("redis_cluster_url")
    else:
        url = os.environ.get("REDIS_URL") or ""
        if not url:
            server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
            url = await server.start()
    client = connect(url)
    try:
        await client.flushdb()
        yield client
    finally:
        await client.aclose()
        if server is not None:
            await server.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty data directory."""
    path = tmp_path / "data"
    path.mkdir()
    return path
