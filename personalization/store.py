"""The Redis connection Pixelcast uses: a given URL, or an embedded server in the data directory."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, parse_url
from redis.exceptions import DataError

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


class _HiredisPacking:
    """Connection mixin: pack commands with hiredis' C packer.

    redis-py's asyncio connections pack every command in Python, re-joining the whole buffer for each
    argument; a group-committed script call carries hundreds of arguments, and packing it cost more
    client CPU than everything else about an event. (Replies are already parsed by hiredis when it is
    installed.)
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):  # a command name with a subcommand, e.g. "CLIENT SETNAME"
            args = (*args[0].encode().split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as error:
            raise DataError(str(error)) from error


@cache
def _packing(base: type[AbstractConnection]) -> type[AbstractConnection]:
    return type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})


def connect(url: str, **options: Any) -> aioredis.Redis:
    """An asyncio client for ``url`` (``redis://``, ``rediss://``, ``unix://``) with ``decode_responses=True``.

    ``options`` go to the connection pool (``max_connections``, timeouts, ...).
    """
    settings = {**options, **parse_url(url)}
    base = settings.pop("connection_class", aioredis.Connection)
    pool = aioredis.ConnectionPool(connection_class=_packing(base), decode_responses=True, **settings)
    return aioredis.Redis(connection_pool=pool)


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
    client = connect(redis_url)
    store = Store(client, redis_url, server)
    try:
        await client.ping()
    except BaseException:
        await store.close()
        raise
    return store
