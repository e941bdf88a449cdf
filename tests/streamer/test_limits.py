"""Limits against abuse: request rates per address (429 + Retry-After), sessions per address, data channel
message rate per viewer, sizes of bodies, SDP offers, control messages and steers, and the deadline for
peers that never complete ICE. Real server, real peers."""

from __future__ import annotations

import httpx
import pytest
from aiortc import RTCPeerConnection

from benchmarks.server_process import ServerProcess
from streamer.limits import RateLimiter
from streamer.whep_client import WhepClient, use_loopback_only
from tests.support.waiting import until

pytestmark = pytest.mark.slow  # starts a server

ICE_TIMEOUT = 5  # seconds; the default is 15


def test_rate_limiter_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=3, clock=lambda: now[0])
    assert [limiter.check("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.check("a") == 1.0  # one second until the next token
    assert limiter.check("b") == 0.0  # keys are independent
    now[0] = 1.0
    assert limiter.check("a") == 0.0 and limiter.check("a") > 0


async def _sessions(http: httpx.AsyncClient) -> int:
    return int((await http.get("/healthz")).json()["sessions"])


async def test_limits_on_a_running_server() -> None:
    use_loopback_only()
    flags = ["--viewers-per-minute", "3", "--offers-per-minute", "6", "--sessions-per-address", "1"]
    flags += ["--messages-per-second", "5", "--ice-timeout", str(ICE_TIMEOUT)]
    flags += ["--max-body-bytes", "300", "--max-sdp-bytes", "12000", "--max-message-bytes", "120"]
    flags += ["--max-steer-chars", "20"]
    with ServerProcess(*flags) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            # 1. POST /api/viewers: a burst, then 429 with Retry-After
            viewers = [await http.post("/api/viewers") for _ in range(3)]
            assert [v.status_code for v in viewers] == [201, 201, 201]
            refused = await http.post("/api/viewers")
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
            assert "at most 3 a minute" in refused.json()["error"]

            # sizes over HTTP: a JSON body past --max-body-bytes is 413, a steer past --max-steer-chars 400
            viewer = viewers[0].json()
            events = f"/api/viewers/{viewer['viewer_id']}/events"
            auth = {"Authorization": f"Bearer {viewer['token']}"}
            padded = {"type": "feedback", "kind": "like", "note": "x" * 300}
            too_big = await http.post(events, json=padded, headers=auth)
            assert too_big.status_code == 413 and "at most 300 bytes" in too_big.json()["error"]
            long_steer = await http.post(events, json={"type": "steer", "text": "more ocean " * 3}, headers=auth)
            assert long_steer.status_code == 400 and "at most 20" in long_steer.json()["error"]
            short_steer = await http.post(events, json={"type": "steer", "text": "more ocean"}, headers=auth)
            assert short_steer.status_code == 202, short_steer.text

            # 2. a peer that never completes ICE: its session is freed by the deadline
            silent = RTCPeerConnection()
            silent.addTransceiver("video", direction="recvonly")
            await silent.setLocalDescription(await silent.createOffer())
            answer = await http.post(
                "/whep", content=silent.localDescription.sdp, headers={"Content-Type": "application/sdp"}
            )
            assert answer.status_code == 201
            await silent.close()  # it never applies the answer

            async def freed() -> bool:
                return await _sessions(http) == 0

            await until(freed, ICE_TIMEOUT + 15, failure="the session of a silent peer was never freed", every=0.5)

            # 3. one live session per address: a second one gets 429
            client = WhepClient(server.url)
            second = WhepClient(server.url)
            try:
                assert (await client.connect()).status_code == 201
                response = await second.connect()
                assert response.status_code == 429 and "retry-after" in response.headers, response.text

                # 4. a flood of data channel messages is cut to the rate, with one error; the stream goes on
                await client.wait_channel_open()
                await client.frames(5)
                client.send({"type": "feedback", "kind": "like", "note": "x" * 120})
                assert "at most 120" in (await client.next_message("error"))["message"]
                client.send({"type": "steer", "text": "more ocean " * 3})
                assert "at most 20" in (await client.next_message("error"))["message"]
                await client.frames(5)
                for _ in range(50):
                    client.send({"type": "steer", "text": "slower"})
                error = await client.next_message("error")
                assert "too many messages" in error["message"]
                await client.frames(5)

                # 5. an SDP offer past --max-sdp-bytes is 413; offers: six a minute in all, the seventh is
                #    refused before anything else
                oversized = "v=0\r\n" + "a=x-pad\r\n" * 1500
                large = await http.post("/whep", content=oversized, headers={"Content-Type": "application/sdp"})
                assert large.status_code == 413 and "at most 12000 bytes" in large.text, large.text
                statuses = []
                for _ in range(3):
                    offer = await http.post("/whep", content="v=0", headers={"Content-Type": "text/plain"})
                    statuses.append(offer.status_code)
                assert statuses[-1] == 429, statuses
            finally:
                if client.location:
                    await http.delete(client.location)
                await client.close()
                await second.close()
