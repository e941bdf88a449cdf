"""The embedded Redis server: lifecycle, unix-socket-only listening, persistence across restarts."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from personalization import redis_server
from personalization.errors import EmbeddedRedisError
from personalization.profiles import SCHEMA_VERSION
from personalization.redis_server import EmbeddedRedis
from personalization.store import connect, default_data_dir, open_store
from personalization.viewers import ViewerRegistry


async def test_start_ping_stop(data_dir: Path) -> None:
    server = EmbeddedRedis(data_dir / "redis")
    url = await server.start()
    assert url.startswith("unix://") and url.endswith("redis.sock")
    assert await server.start() == url  # already running: same URL
    client = connect(url)
    try:
        assert await client.ping()
        config = await client.config_get("port")
        assert config["port"] == "0"  # no TCP listener
        assert (await client.config_get("appendonly"))["appendonly"] == "yes"
    finally:
        await client.aclose()
    pid = server.pid
    assert pid is not None
    await server.stop()
    assert server.pid is None
    await server.stop()  # idempotent
    assert not Path(server.socket_path or "").exists()
    assert (data_dir / "redis" / "appendonly.aof").exists()
    assert (data_dir / "redis" / "dump.rdb").exists()  # final save on shutdown


async def test_profile_survives_restart(data_dir: Path) -> None:
    async with EmbeddedRedis(data_dir / "redis") as url:
        client = connect(url)
        viewer_id = await ViewerRegistry(client).create()
        await ViewerRegistry(client).record_steer(viewer_id, "more ocean")
        await client.aclose()

    async with EmbeddedRedis(data_dir / "redis") as url:
        client = connect(url)
        exported = await ViewerRegistry(client).export(viewer_id)
        await client.aclose()
    assert exported["profile"]["schema_version"] == str(SCHEMA_VERSION)
    assert exported["steers"] == ["more ocean"]


async def test_store_embedded_and_by_url(data_dir: Path) -> None:
    store = await open_store(None, data_dir)
    try:
        assert store.embedded and store.url.startswith("unix://")
        assert await store.redis.set("k", "v")
        assert await store.redis.get("k") == "v"  # decode_responses
        other = await open_store(store.url, data_dir / "unused")
        assert not other.embedded and await other.redis.get("k") == "v"
        await other.close()
    finally:
        await store.close()
    assert not (data_dir / "unused").exists()
    assert (data_dir / "redis" / "appendonly.aof").exists()


async def test_long_data_dir_uses_short_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    server = EmbeddedRedis(deep)
    url = await server.start()
    try:
        assert server.socket_path is not None and len(str(server.socket_path)) < 100
        client = aioredis.Redis.from_url(url)
        assert await client.ping()
        await client.aclose()
    finally:
        await server.stop()
    assert not server.socket_path.parent.exists()  # the temporary socket directory is removed
    assert (deep / "appendonly.aof").exists()  # the data stays in the data directory


async def test_second_server_on_same_dir_is_refused(data_dir: Path) -> None:
    async with EmbeddedRedis(data_dir):
        with pytest.raises(EmbeddedRedisError, match="already serving"):
            await EmbeddedRedis(data_dir).start()


async def test_failed_start_reports_log_tail(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = data_dir / "fake-redis-server"
    script.write_text("#!/bin/sh\necho 'FATAL: something is wrong with the config' >&2\nexit 3\n")
    script.chmod(0o755)
    monkeypatch.setattr(redis_server, "redis_server_executable", lambda: str(script))
    server = EmbeddedRedis(data_dir / "redis", start_timeout=5)
    with pytest.raises(EmbeddedRedisError, match=r"(?s)status 3.*something is wrong"):
        await server.start()
    assert server.pid is None


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PIXELCAST_DATA_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "explicit"
    monkeypatch.delenv("PIXELCAST_DATA_DIR")
    assert default_data_dir() == tmp_path / "xdg" / "pixelcast"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "pixelcast"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux only")
def test_redis_stops_when_pixelcast_is_killed_hard(data_dir: Path) -> None:
    # A process that starts the embedded Redis, says its pid, and waits; then it gets SIGKILL, which
    # leaves it no chance to stop Redis itself.
    code = "\n".join(
        [
            "import asyncio, sys, time",
            "from pathlib import Path",
            "from personalization.redis_server import EmbeddedRedis",
            "async def main():",
            f"    server = EmbeddedRedis(Path({str(data_dir)!r}))",
            "    await server.start()",
            "    print(server.pid, flush=True)",
            "    await asyncio.sleep(120)",
            "asyncio.run(main())",
        ]
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        redis_pid = int(owner.stdout.readline())
        assert _alive(redis_pid)
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 30
    while _alive(redis_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(redis_pid), "the embedded Redis outlived the process that started it"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; it only waits to be reaped
