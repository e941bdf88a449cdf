"""A Redis Cluster on loopback, built from the bundled ``redis-server`` and ``redis-cli --cluster create``.

For the cluster tests and ``pixelcast cluster-demo``: real server processes on TCP ports of 127.0.0.1,
each with its own directory (append-only file, ``nodes.conf``, log), so a node can be killed and
started again on the same port and data, the way an operator's node restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from personalization.errors import EmbeddedRedisError
from personalization.redis_server import redis_server_executable

#: How long a node may be unreachable before its replica is promoted (ms): short, so failover tests are quick.
NODE_TIMEOUT_MS = 2000
READY_SECONDS = 60.0
SENTINEL_SERVICE = "pixelcast"
SENTINEL_DOWN_MS = 1000  # how long the master may not answer before the sentinel fails it over

T = TypeVar("T")


def redis_cli_executable() -> str:
    """``redis-cli`` beside the bundled ``redis-server``, else the one on PATH."""
    bundled = Path(redis_server_executable()).with_name("redis-cli")
    if bundled.exists():
        return str(bundled)
    found = shutil.which("redis-cli")
    if found is None:
        raise EmbeddedRedisError("redis-cli is needed to build a Redis Cluster and was not found")
    return found


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports of 127.0.0.1 free now, whose port + 10000 (the cluster bus) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


@dataclass
class ClusterNode:
    """One ``redis-server`` of the cluster: its port, directory and process."""

    port: int
    directory: Path
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether its process is alive."""
        return self.process is not None and self.process.returncode is None

    def config(self, *extra: str, persist: bool = True) -> str:
        """Its redis.conf on loopback, append-only unless ``persist`` is off, with the ``extra`` lines."""
        lines = [f"port {self.port}", "bind 127.0.0.1", "daemonize no", f'dir "{self.directory}"']
        lines.append('logfile "redis.log"')
        if persist:
            lines += ["appendonly yes", "appendfsync everysec"]
        return "\n".join([*lines, *extra]) + "\n"

    def cluster_config(self) -> str:
        """Its redis.conf as a cluster node."""
        return self.config(
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {NODE_TIMEOUT_MS}",
            # the other masters keep serving their slots while one is down
            "cluster-require-full-coverage no",
            "save 60 1000",
        )



async def launch(node: ClusterNode, config: str, *, sentinel: bool = False) -> None:
    """Write ``config`` into the node's directory and start ``redis-server`` on it (``--sentinel`` for a sentinel)."""
    node.directory.mkdir(parents=True, exist_ok=True)
    path = node.directory / ("sentinel.conf" if sentinel else "redis.conf")
    path.write_text(config, encoding="utf-8")
    node.process = await asyncio.create_subprocess_exec(
        redis_server_executable(),
        str(path),
        *(["--sentinel"] if sentinel else []),
        cwd=node.directory,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )


def _log(node: ClusterNode) -> str:
    path = node.directory / "redis.log"
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-10:])


async def wait_answers(node: ClusterNode) -> None:
    """Wait until the node answers PING (EmbeddedRedisError if it exits or stays silent)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_SECONDS
    while True:
        if not node.running:
            raise EmbeddedRedisError(f"redis node {node.address} exited while starting: {_log(node)}")
        client = aioredis.Redis(host="127.0.0.1", port=node.port, socket_connect_timeout=1)
        try:
            if await client.ping():
                return
        except (RedisError, OSError):
            if loop.time() > deadline:
                raise EmbeddedRedisError(f"redis node {node.address} did not answer: {_log(node)}") from None
            await asyncio.sleep(0.05)
        finally:
            await client.aclose()


async def kill_node(node: ClusterNode) -> None:
    """End ``node``'s process at once (SIGKILL), as a crash would."""
    if node.process is not None and node.process.returncode is None:
        node.process.send_signal(signal.SIGKILL)
        await node.process.wait()


async def stop_nodes(nodes: list[ClusterNode]) -> None:
    """End every node (SIGTERM, then SIGKILL after 5 s)."""
    for node in nodes:
        if node.process is not None and node.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                node.process.terminate()
    for node in nodes:
        if node.process is None:
            continue
        try:
            await asyncio.wait_for(node.process.wait(), 5)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                node.process.kill()
            await node.process.wait()


class LocalCluster:
    """``masters`` primaries with ``replicas`` replicas each, on loopback ports, data under ``directory``.

    ``await start()`` returns the ``redis+cluster://`` URL Pixelcast takes (``--redis-url``);
    ``kill`` and ``restart`` take a node down and bring it back; ``stop`` ends every process.
    """

    def __init__(self, directory: Path, *, masters: int = 3, replicas: int = 0) -> None:
        if masters < 3:
            raise ValueError(f"a Redis Cluster needs at least 3 masters, got {masters}")
        self.directory = Path(directory)
        self.masters = masters
        self.replicas = replicas
        ports = free_ports(masters * (1 + replicas))
        self.nodes = [ClusterNode(port, self.directory / str(port)) for port in ports]

    @property
    def url(self) -> str:
        """The URL for ``--redis-url``: every node as a start-up node, so any one down is no matter."""
        first, *others = self.nodes
        extra = "".join(f"&node={node.address}" for node in others)
        return f"redis+cluster://{first.address}/?{extra[1:]}" if extra else f"redis+cluster://{first.address}"

    async def start(self) -> str:
        """Start every node, join them with ``redis-cli --cluster create`` and wait for ``cluster_state:ok``."""
        try:
            for node in self.nodes:
                await self._launch(node)
            for node in self.nodes:
                await wait_answers(node)
            await self._create()
            await self.wait_ok()
        except BaseException:
            await self.stop()
            raise
        return self.url

    async def _launch(self, node: ClusterNode) -> None:
        await launch(node, node.cluster_config())

    async def _create(self) -> None:
        process = await asyncio.create_subprocess_exec(
            redis_cli_executable(),
            "--cluster",
            "create",
            *(node.address for node in self.nodes),
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise EmbeddedRedisError(f"redis-cli --cluster create failed:\n{output.decode(errors='replace')[-2000:]}")

    async def wait_ok(self, timeout: float = READY_SECONDS) -> None:
        """Wait until every running node reports ``cluster_state:ok`` and all 16384 slots are served."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            states = [await self._cluster_info(node) for node in self.nodes if node.running]
            if states and all(
                info.get("cluster_state") == "ok" and info.get("cluster_slots_ok") == "16384" for info in states
            ):
                return
            if loop.time() > deadline:
                raise EmbeddedRedisError(f"the cluster did not become ok within {timeout:g} s: {states}")
            await asyncio.sleep(0.2)

    @staticmethod
    async def _cluster_info(node: ClusterNode) -> dict[str, str]:
        client = aioredis.Redis(host="127.0.0.1", port=node.port, socket_connect_timeout=1, decode_responses=True)
        try:
            text = await _command(client, "CLUSTER INFO")
        except (RedisError, OSError):
            return {}
        finally:
            await client.aclose()
        if isinstance(text, dict):
            return {str(k): str(v) for k, v in text.items()}
        return dict(line.split(":", 1) for line in str(text).splitlines() if ":" in line)

    async def master_of(self, key: str) -> ClusterNode:
        """The node serving ``key``'s slot now, as a running node's ``CLUSTER SLOTS`` says."""
        for node in self.nodes:
            if not node.running:
                continue
            client = aioredis.Redis(host="127.0.0.1", port=node.port, decode_responses=True)
            try:
                slot = int(await _command(client, "CLUSTER KEYSLOT", key))
                ranges = await _command(client, "CLUSTER SLOTS")
            except (RedisError, OSError):
                continue
            finally:
                await client.aclose()
            for first, last, primary, *_ in ranges:
                if int(first) <= slot <= int(last):
                    return next(n for n in self.nodes if n.port == int(primary[1]))
        raise EmbeddedRedisError(f"no running node knows which master serves {key!r}")

    async def kill(self, node: ClusterNode) -> None:
        """End ``node``'s process at once (SIGKILL), as a crash would."""
        await kill_node(node)

    async def restart(self, node: ClusterNode) -> None:
        """Start ``node`` again on its port, from its own data and ``nodes.conf``."""
        await self._launch(node)
        await wait_answers(node)

    async def stop(self) -> None:
        """End every node (SIGTERM, then SIGKILL after 5 s)."""
        await stop_nodes(self.nodes)




class BackgroundCluster:
    """A ``LocalCluster`` for synchronous code (a test session, the demo): its own event loop on a thread.

    ``with BackgroundCluster(directory) as url:`` starts it and stops it; ``call`` runs one of the
    cluster's coroutines (``kill``, ``restart``, ``master_of``) on that loop.
    """

    def __init__(self, directory: Path, *, masters: int = 3, replicas: int = 0) -> None:
        self.cluster = LocalCluster(directory, masters=masters, replicas=replicas)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="redis-cluster", daemon=True)

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 2 * READY_SECONDS) -> T:
        """Run ``coroutine`` on the cluster's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def __enter__(self) -> str:
        self._thread.start()
        try:
            return self.call(self.cluster.start())
        except BaseException:
            self._end_loop()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self.cluster.stop())
        finally:
            self._end_loop()

    def _end_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class LocalSentinel:
    """A master, one replica and one Redis Sentinel watching them (quorum 1), on loopback ports.

    ``await start()`` returns the ``redis+sentinel://`` URL of service ``SENTINEL_SERVICE``; killing the
    master makes the sentinel promote the replica after ``SENTINEL_DOWN_MS``.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        master, replica, sentinel = free_ports(3)
        self.master = ClusterNode(master, self.directory / str(master))
        self.replica = ClusterNode(replica, self.directory / str(replica))
        self.sentinel = ClusterNode(sentinel, self.directory / str(sentinel))

    @property
    def url(self) -> str:
        """``redis+sentinel://<sentinel>/<service>``."""
        return f"redis+sentinel://{self.sentinel.address}/{SENTINEL_SERVICE}"

    async def start(self) -> str:
        """Start master and replica, then the sentinel; wait until the sentinel knows the replica."""
        try:
            await self._start(self.master, self.master.config())
            await self._start(self.replica, self.replica.config(f"replicaof 127.0.0.1 {self.master.port}"))
            await self._start(
                self.sentinel,
                self.sentinel.config(
                    f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {self.master.port} 1",
                    f"sentinel down-after-milliseconds {SENTINEL_SERVICE} {SENTINEL_DOWN_MS}",
                    f"sentinel failover-timeout {SENTINEL_SERVICE} 5000",
                    persist=False,
                ),
                sentinel=True,
            )
            await self._wait_replica_known()
        except BaseException:
            await self.stop()
            raise
        return self.url

    async def _start(self, node: ClusterNode, conf: str, *, sentinel: bool = False) -> None:
        await launch(node, conf, sentinel=sentinel)
        await wait_answers(node)

    async def _wait_replica_known(self) -> None:
        client = aioredis.Redis(host="127.0.0.1", port=self.sentinel.port, decode_responses=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_SECONDS
        try:
            while not await _command(client, "SENTINEL", "REPLICAS", SENTINEL_SERVICE):
                if loop.time() > deadline:
                    raise EmbeddedRedisError("the sentinel never saw the replica")
                await asyncio.sleep(0.2)
        finally:
            await client.aclose()

    async def master_port(self) -> int:
        """The port of the master the sentinel names now."""
        client = aioredis.Redis(host="127.0.0.1", port=self.sentinel.port, decode_responses=True)
        try:
            _, port = await _command(client, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE)
        finally:
            await client.aclose()
        return int(port)

    async def kill_master(self) -> None:
        """SIGKILL the master, as a crash would."""
        await kill_node(self.master)

    async def stop(self) -> None:
        """End all three processes."""
        await stop_nodes([self.sentinel, self.replica, self.master])


async def _command(client: aioredis.Redis, *args: str) -> Any:
    """``client.execute_command(*args)``, which redis-py leaves untyped."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]
