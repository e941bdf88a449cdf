"""Stopping the server: SIGTERM tells viewers and stops Redis cleanly; SIGKILL leaves no redis-server behind."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest

from benchmarks.server_process import ServerProcess
from streamer.whep_client import WhepClient, use_loopback_only

pytestmark = pytest.mark.slow  # starts and signals server processes


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:  # a zombie is as good as gone
        return stat.read().split(") ")[-1][0] != "Z"


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


async def test_sigterm_says_goodbye_then_stops_redis_cleanly() -> None:
    use_loopback_only()
    with ServerProcess() as server:
        redis_pid = int((server.data_dir / "redis" / "redis.pid").read_text())
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            token = (await http.post("/api/viewers")).json()["token"]
        client = WhepClient(server.url, token=token)
        try:
            assert (await client.connect()).status_code == 201
            await client.wait_channel_open()
            await client.next_message("segment")
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            farewell = await client.next_message("error", timeout=30)
            assert "shutting down" in farewell["message"]
        finally:
            await client.close()
        # uvicorn shuts down in order, then exits by the signal it got
        assert await asyncio.to_thread(server.process.wait, 60) in (0, -signal.SIGTERM)
        assert server.log_lines("Application shutdown complete"), "the lifespan did not finish"
        assert _gone_within(redis_pid, 10)
        assert "ready to exit" in (server.data_dir / "redis" / "redis.log").read_text()


def test_sigkill_of_the_server_leaves_no_redis_server() -> None:
    with ServerProcess() as server:
        redis_pid = int((server.data_dir / "redis" / "redis.pid").read_text())
        assert server.process is not None
        server.process.kill()
        server.process.wait()
        assert _gone_within(redis_pid, 10), "the embedded redis-server outlived a SIGKILLed server"
