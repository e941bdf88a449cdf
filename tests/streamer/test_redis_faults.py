"""Redis dies (SIGKILL, as an out-of-memory kill would) while a viewer watches and sends feedback.

The real server, its embedded Redis and a real aiortc viewer: the video goes on, /healthz says why it is
degraded, new viewers get 503 with Retry-After, Redis comes back by itself, and every feedback event the
viewer sent is in its profile exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

import httpx
import pytest
from aiortc.mediastreams import MediaStreamError

from benchmarks.server_process import ServerProcess
from streamer.whep_client import WhepClient, use_loopback_only
from tests.support.waiting import until

pytestmark = pytest.mark.slow  # starts a server and kills its Redis

RESTART_DELAY = "3"  # seconds Redis stays away, so the outage is long enough to look at
SEND_EVERY = 0.05  # seconds between feedback events


class _Frames:
    """Counts the frames a track delivers until it ends."""

    def __init__(self) -> None:
        self.count = 0
        self.ended: BaseException | None = None

    async def pull(self, track: Any) -> None:
        try:
            while True:
                await track.recv()
                self.count += 1
        except MediaStreamError as error:
            self.ended = error

    async def more_than(self, count: int, timeout: float = 30) -> None:
        def arrived() -> bool:
            assert self.ended is None, "the viewer's video ended"
            return self.count > count

        await until(arrived, timeout, failure="no new frames arrived", every=0.05)


async def _health_once(http: httpx.AsyncClient, status: int, timeout: float = 60) -> httpx.Response:
    """The first /healthz response with `status`, polled every 0.1 s."""
    responses: list[httpx.Response] = []

    async def answered() -> bool:
        responses.append(await http.get("/healthz"))
        return responses[-1].status_code == status

    never = lambda: f"/healthz never answered {status}: {responses[-1].text}"  # noqa: E731
    await until(answered, timeout, failure=never, every=0.1)
    return responses[-1]


async def test_sigkill_of_redis_mid_stream_loses_no_event_and_counts_none_twice() -> None:
    use_loopback_only()
    with ServerProcess("--redis-restart-delay", RESTART_DELAY) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            viewer = (await http.post("/api/viewers")).json()
            client = WhepClient(server.url, token=viewer["token"])
            frames = _Frames()
            sent = 0
            sending = True

            async def send_feedback() -> None:
                nonlocal sent
                while sending:
                    client.send({"type": "feedback", "kind": "like", "segment_id": 0})
                    sent += 1
                    await asyncio.sleep(SEND_EVERY)

            try:
                assert (await client.connect()).status_code == 201
                await client.wait_channel_open()
                await client.next_message("segment")
                puller = asyncio.create_task(frames.pull(await client.track()))
                sender = asyncio.create_task(send_feedback())
                await frames.more_than(24)

                # 1. Redis dies
                pid = int((server.data_dir / "redis" / "redis.pid").read_text())
                os.kill(pid, signal.SIGKILL)
                degraded = await _health_once(http, 503)
                assert degraded.json()["status"] == "degraded" and "Redis" in degraded.json()["reason"]
                assert "retry-after" in degraded.headers

                # 2. while it is away: the stream goes on, a steer is kept, new viewers are told to come back
                client.send({"type": "steer", "text": "a forest in the snow"})
                at_kill = frames.count
                refused = await http.post("/api/viewers")
                assert refused.status_code == 503 and "retry-after" in refused.headers, refused.text
                assert "error" in refused.json()
                await frames.more_than(at_kill + 12)

                # 3. it comes back by itself, and the stream is still going
                healthy = (await _health_once(http, 200)).json()
                assert healthy["redis"]["restarts"] == 1
                await frames.more_than(frames.count + 12)
                sending = False
                await sender
                assert sent > 0

                # 4. every event is in the profile, once
                headers = {"Authorization": f"Bearer {viewer['token']}"}
                profile: dict[str, Any] = {}

                async def all_counted() -> bool:
                    nonlocal profile
                    profile = (await http.get(f"/api/viewers/{viewer['viewer_id']}/profile", headers=headers)).json()
                    # a replay stores a viewer's spooled feedback first, then their steers (reading a steer
                    # embeds its words): the likes can all show before the steer does
                    return int(profile["profile"].get("n_like", 0)) >= sent and bool(profile["steers"])

                with contextlib.suppress(TimeoutError):
                    await until(all_counted, 60, every=0.2)
                counted = int(profile["profile"].get("n_like", 0))
                assert counted == sent, f"sent {sent} likes, the profile counts {counted}"
                assert int(profile["profile"]["n_applied"]) == sent
                assert len(profile["events"]) == sent
                assert profile["steers"] == ["a forest in the snow"], "the steer sent while Redis was away is stored"
                assert profile["wishes"]["want"].get("subject") == "forest", profile["wishes"]
                # the spool empties itself after its events land (they may show in the profile first)
                health: dict[str, Any] = {}

                async def spool_replayed() -> bool:
                    nonlocal health
                    health = (await http.get("/healthz")).json()
                    return health["spool"]["pending"] == 0 and health["spool"]["replayed"] > 0

                await until(spool_replayed, 30, failure=lambda: f"the spool never emptied: {health}", every=0.2)
                errors = [m for m in list(client.messages._queue) if m.get("type") == "error"]  # noqa: SLF001
                assert not errors, errors
                assert frames.ended is None
                puller.cancel()
            finally:
                sending = False
                if client.location:
                    await http.delete(client.location)
                await client.close()
