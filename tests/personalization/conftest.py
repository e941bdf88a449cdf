"""Fixtures for personalization tests: a real Redis, from $REDIS_URL or an embedded server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from personalization.redis_server import EmbeddedRedis
from personalization.store import connect


@pytest.fixture
async def redis_client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[aioredis.Redis]:
    """A ``decode_responses`` client on an empty database; closed (and its server stopped) afterwards.

    With ``$REDIS_URL`` set the tests run against that server, and FLUSHDB empties its database:
    point it at a throwaway instance.
    """
    url = os.environ.get("REDIS_URL")
    server: EmbeddedRedis | None = None
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
