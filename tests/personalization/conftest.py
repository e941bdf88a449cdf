"""Fixtures for personalization tests: a real Redis, as one server and as a three-master Redis Cluster.

Every test that takes ``redis_client`` runs twice: against one server ($REDIS_URL, else an embedded one)
and against a Redis Cluster of three masters on loopback ports, started once for the session.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from personalization.local_cluster import BackgroundCluster
from personalization.redis_server import EmbeddedRedis
from personalization.store import connect


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis+cluster://`` URL of three masters on loopback, up for the whole session."""
    with BackgroundCluster(tmp_path_factory.mktemp("redis-cluster")) as url:
        yield url


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
