"""Limits against abuse: request rates per address (429 + Retry-After), sessions per address, data channel
message rate per viewer, and the deadline for peers that never complete ICE. Real server, real peers."""

from __future__ import annotations

import asyncio

import httpx
from aiortc import RTCPeerConnection

from benchmarks.server_process import ServerProcess
from streamer.limits import RateLimiter
from streamer.whep_client import WhepClient, use_loopback_only

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
    with ServerProcess(*flags) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            # 1. POST /api/viewers: a burst, then 429 with Retry-After
            statuses = [(await http.post("/api/viewers")).status_code for _ in range(3)]
            assert statuses == [201, 201, 201]
            refused = await http.post("/api/viewers")
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
            assert "at most 3 a minute" in refused.json()["error"]

            # 2. a peer that never completes ICE: its session is freed by the deadline
            silent = RTCPeerConnection()
            silent.addTransceiver("video", direction="recvonly")
            await silent.setLocalDescription(await silent.createOffer())
            answer = await http.post(
                "/whep", content=silent.localDescription.sdp, headers={"Content-Type": "application/sdp"}
            )
            assert answer.status_code == 201
            await silent.close()  # it never applies the answer
            deadline = asyncio.get_running_loop().time() + ICE_TIMEOUT + 15
            while await _sessions(http) != 0:
                assert asyncio.get_running_loop().time() < deadline, "the session of a silent peer was never freed"
                await asyncio.sleep(0.5)

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
                for _ in range(50):
                    client.send({"type": "steer", "text": "slower"})
                error = await client.next_message("error")
                assert "too many messages" in error["message"]
                await client.frames(5)

                # 5. offers: six a minute in all; the seventh is refused before anything else
                statuses = []
                for _ in range(4):
                    offer = await http.post("/whep", content="v=0", headers={"Content-Type": "text/plain"})
                    statuses.append(offer.status_code)
                assert statuses[-1] == 429, statuses
            finally:
                if client.location:
                    await http.delete(client.location)
                await client.close()
                await second.close()
