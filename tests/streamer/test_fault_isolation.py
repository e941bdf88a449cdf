"""One viewer's stream fails (in its plan, in the shared engine batch, in its encoder); another keeps watching.

The real server with fault injection switched on ($PIXELCAST_FAULT_MARKER), two real aiortc viewers. The
failing viewer gets an `error` message and its session ends; the other viewer's frames keep coming with no
stall, counted on the frames themselves: a stall is a gap of over two frame slots between the RTP
timestamps of consecutive received frames (the server skips the slots it could not make in time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiortc.mediastreams import MediaStreamError

from benchmarks.server_process import ServerProcess
from streamer.encoding import VIDEO_CLOCK_RATE
from streamer.faults import FAULT_MARKER_ENV
from streamer.whep_client import WhepClient, use_loopback_only
from tests.support.waiting import until

pytestmark = pytest.mark.slow  # starts a server

MARKER = "zz-test-fault"
FPS = 12
INTERVAL = VIDEO_CLOCK_RATE // FPS
FRAMES_AFTER = 2 * FPS  # the healthy viewer's frames watched after each failure


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    use_loopback_only()
    with pytest.MonkeyPatch.context() as env:
        env.setenv(FAULT_MARKER_ENV, MARKER)
        with ServerProcess("--fps", str(FPS)) as running:
            yield running.url


class _Timestamps:
    """The RTP timestamps of every frame a track delivers, until it ends."""

    def __init__(self) -> None:
        self.pts: list[int] = []

    async def pull(self, track: Any) -> None:
        try:
            while True:
                self.pts.append((await track.recv()).pts)
        except MediaStreamError:
            pass

    async def at_least(self, count: int, timeout: float = 60) -> None:
        await until(
            lambda: len(self.pts) >= count, timeout, failure=lambda: f"only {len(self.pts)} of {count} frames came",
            every=0.05,
        )  # fmt: skip

    def stalls(self, since: int) -> list[int]:
        """Gaps (in frame slots) over two slots between consecutive frames from index `since` on."""
        slots = [(b - a) / INTERVAL for a, b in zip(self.pts[since:], self.pts[since + 1 :])]
        return [round(s) for s in slots if s > 2]


async def _fail_one_viewer(url: str, stage: str) -> dict[str, Any]:
    """Connect a viewer, make its stream fail at `stage`; its error message, once its session is gone."""
    client = WhepClient(url)
    try:
        assert (await client.connect()).status_code == 201
        await client.wait_channel_open()
        await client.frames(2)
        client.send({"type": "steer", "text": f"a calm ocean {MARKER}:{stage}"})
        error = await client.next_message("error")
        async with httpx.AsyncClient(base_url=url) as http:
            # the session closes itself right after the message, leaving the healthy viewer's alone; read the
            # count rather than sending DELETE, which would end the session itself
            for _ in range(200):
                if (await http.get("/healthz")).json()["sessions"] == 1:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"the {stage} fault did not end the failing viewer's session")
            assert (await http.delete(client.location)).status_code == 404
        return error
    finally:
        await client.close()


async def test_one_viewers_fault_ends_its_stream_and_no_other(server: str) -> None:
    healthy = WhepClient(server)
    timestamps = _Timestamps()
    try:
        assert (await healthy.connect()).status_code == 201
        await healthy.wait_channel_open()
        healthy.send({"type": "steer", "text": "snowy mountains at dawn"})
        puller = asyncio.create_task(timestamps.pull(await healthy.track()))
        await timestamps.at_least(FPS)
        watched_from = len(timestamps.pts)
        for stage in ("plan", "engine", "encoder"):
            error = await _fail_one_viewer(server, stage)
            assert "generation failed" in error["message"], error
            await timestamps.at_least(len(timestamps.pts) + FRAMES_AFTER)
        assert not puller.done(), "the healthy viewer's video ended"
        assert timestamps.stalls(watched_from) == [], "the healthy viewer stalled while another one failed"
        assert len(timestamps.pts) - watched_from >= 3 * FRAMES_AFTER
        async with httpx.AsyncClient(base_url=server) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.delete(healthy.location)).status_code == 200
        puller.cancel()
    finally:
        await healthy.close()
