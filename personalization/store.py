"""The Redis connection Pixelcast uses: a given URL, or an embedded server in the data directory."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import redis.asyncio as aioredis

from personalization.redis_server import EmbeddedRedis

DATA_DIR_ENV = "PIXELCAST_DATA_DIR"


def default_data_dir() -> Path:
    """``$PIXELCAST_DATA_DIR``, else ``$XDG_DATA_HOME/pixelcast``, else ``~/.local/share/pixelcast``."""
    explicit = os.environ.get(DATA_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg:
        return Path(xdg).expanduser() / "pixelcast"
    return Path.home() / ".local" / "share" / "pixelcast"


class Store:
    """An open Redis client (``decode_responses=True``) plus the embedded server behind it, if any."""

    def __init__(self, redis: aioredis.Redis, url: str, server: EmbeddedRedis | None = None) -> None:
        self.redis = redis
        self.url = url
        self.server = server

    @property
    def embedded(self) -> bool:
        """Whether this store started its own embedded Redis server."""
        return self.server is not None

    async def close(self) -> None:
        """Close the client, then stop the embedded server (with a final save) if this store started one."""
        try:
            await self.redis.aclose()
        finally:
            if self.server is not None:
                await self.server.stop()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def open_store(redis_url: str | None, data_dir: Path) -> Store:
    """Connect to ``redis_url``, or with None start an embedded server in ``data_dir / "redis"``.

    The connection is checked with PING before returning, so a wrong URL fails here and not at the
    first request.
    """
    server: EmbeddedRedis | None = None
    if redis_url is None:
        server = EmbeddedRedis(Path(data_dir) / "redis")
        redis_url = await server.start()
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(client, redis_url, server)
    try:
        await client.ping()
    except BaseException:
        await store.close()
        raise
    return store
