"""The Redis connection Pixelcast uses: a given URL, or an embedded server in the data directory."""

from __future__ import annotations

import asyncio
import os
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, DataError, ReadOnlyError, RedisClusterException, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from personalization.errors import NotReplicated
from personalization.redis_server import RESTART_DELAY, EmbeddedRedis

DATA_DIR_ENV = "PIXELCAST_DATA_DIR"
#: What a call raises when Redis is away (dead, restarting, still loading, unreachable): callers catch
#: this tuple to fall back (a snapshot, the spool, a 503) instead of failing the stream or the request.
#: On a Redis Cluster a master that died leaves its slots down (CLUSTERDOWN, TRYAGAIN, no node for the
#: slot) until its replica takes over: the same fallback applies.
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    RedisClusterException,
    ReadOnlyError,  # a failover under way: this connection still reaches the old master, now a replica
    NotReplicated,
)
UNAVAILABLE: tuple[type[Exception], ...] = (*REDIS_UNAVAILABLE, OSError)
CONNECT_TIMEOUT = 2.0  # seconds; a Redis that is away fails fast instead of holding a request
COMMAND_TIMEOUT = 10.0  # seconds; above the consumer's 1 s blocking read
HEALTH_TIMEOUT = 1.0


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


#: URL schemes of a Redis Cluster: ``redis+cluster://host:port/?node=host:port&node=...`` (TLS: ``rediss+cluster``).
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://``) rather than one server."""
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def connect_cluster(url: str, **options: Any) -> RedisCluster:
    """A Redis Cluster client for ``redis+cluster://[user:password@]host:port/?node=host:port...``.

    The host of the URL and every ``node`` are start-up nodes: the client learns the rest of the cluster
    from whichever answers first, so one of them being down does not stop a worker from starting.
    """
    nodes = [ClusterNode(host, port) for host, port in _addresses(url)]
    # As for one server: no retries inside redis-py (a script retried after a lost reply could run twice);
    # a failed call marks the slot map stale, and the next call learns the new masters.
    return RedisCluster(
        startup_nodes=nodes,
        decode_responses=True,
        ssl=urlsplit(url).scheme == "rediss+cluster",
        **_credentials(url),
        **{"retry": Retry(NoBackoff(), 0), **_timeouts(options)},
    )


def _timeouts(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` over the default connect and command timeouts."""
    return {"socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": COMMAND_TIMEOUT, **options}


class _Credentials(TypedDict):
    username: str | None
    password: str | None


def _credentials(url: str) -> _Credentials:
    """The username and password in ``url``'s user info (None where absent)."""
    parts = urlsplit(url)
    return {
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
    }


#: URL scheme of Redis Sentinel: ``redis+sentinel://host:port/<service>?node=host:port`` (sentinels, not servers).
SENTINEL_SCHEME = "redis+sentinel"


def _addresses(url: str) -> list[tuple[str, int]]:
    """The host:port of ``url`` and of each ``node=`` in its query."""
    parts = urlsplit(url)
    out = []
    for address in [parts.netloc.rsplit("@", 1)[-1], *parse_qs(parts.query).get("node", [])]:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"bad node address {address!r} in {url!r} (host:port)")
        out.append((host, int(port)))
    return out


def connect_sentinel(url: str, **options: Any) -> aioredis.Redis:
    """A client of the master that Redis Sentinel names for ``redis+sentinel://host:port/<service>?node=...``.

    The host of the URL and every ``node`` are sentinels; the client asks them for the service's master
    on each new connection, so after a failover it reconnects to the promoted replica.
    """
    service = urlsplit(url).path.strip("/")
    if not service:
        raise ValueError(f"{url!r} names no service: redis+sentinel://host:port/<service>")
    # redis-py types Sentinel's constructor in some releases and not in others; as Any it checks under both
    sentinel_class: Any = Sentinel
    sentinel = sentinel_class(
        _addresses(url), sentinel_kwargs={"socket_connect_timeout": CONNECT_TIMEOUT}, **_timeouts(options)
    )
    return sentinel.master_for(service, decode_responses=True, **_credentials(url))  # type: ignore[no-any-return]


def connect(url: str, **options: Any) -> aioredis.Redis:
    """An asyncio client for ``url`` with ``decode_responses=True``.

    ``redis://``, ``rediss://`` and ``unix://`` name one server; ``redis+cluster://`` a Redis Cluster
    (``connect_cluster``), whose client offers the same commands for keys of one hash slot;
    ``redis+sentinel://`` the master that Redis Sentinel names (``connect_sentinel``).
    ``options`` go to the connection pool (``max_connections``, timeouts, ...).
    """
    if is_cluster_url(url):
        return connect_cluster(url, **options)  # type: ignore[return-value]
    if urlsplit(url).scheme == SENTINEL_SCHEME:
        return connect_sentinel(url, **options)
    # No retries inside redis-py (its default for connection pools): a script retried after a lost reply
    # could run twice. Callers decide what a failed call means (the spool makes appends safe to retry).
    settings = {**_timeouts(options), **parse_url(url)}
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

    async def health(self) -> str | None:
        """None while Redis answers PING, else why it does not (a sentence for /healthz)."""
        if self.server is not None and self.server.down_reason is not None:
            return self.server.down_reason
        try:
            if isinstance(self.redis, RedisCluster):  # every master: one down leaves its viewers without Redis
                await asyncio.wait_for(self.redis.ping(target_nodes=RedisCluster.PRIMARIES), HEALTH_TIMEOUT)
            else:
                await asyncio.wait_for(self.redis.ping(), HEALTH_TIMEOUT)
        except asyncio.TimeoutError:
            return f"Redis did not answer PING within {HEALTH_TIMEOUT:g} s"
        except UNAVAILABLE as error:
            return f"Redis is unreachable: {error}"
        return None

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


async def open_store(
    redis_url: str | None, data_dir: Path, *, supervise: bool = False, restart_delay: float = RESTART_DELAY
) -> Store:
    """Connect to ``redis_url``, or with None start an embedded server in ``data_dir / "redis"``.

    With ``supervise`` the embedded server is restarted whenever it dies (first after ``restart_delay``
    seconds, then with a doubling backoff). The connection is checked with PING before returning, so a
    wrong URL fails here and not at the first request.
    """
    server: EmbeddedRedis | None = None
    if redis_url is None:
        server = EmbeddedRedis(Path(data_dir) / "redis", restart_delay=restart_delay)
        redis_url = await server.start()
        if supervise:
            server.supervise()
    client = connect(redis_url)
    store = Store(client, redis_url, server)
    try:
        await client.ping()
    except BaseException:
        await store.close()
        raise
    return store
