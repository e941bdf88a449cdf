"""Damaged offers: every answer is a 201 or a clear 4xx, never a 500 or a stuck session."""

from __future__ import annotations

import httpx
from aiortc import RTCPeerConnection


async def _real_offer() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.createDataChannel("control")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def test_offers_missing_any_one_line_get_a_clear_answer(server_url: str) -> None:
    lines = (await _real_offer()).strip().split("\r\n")
    async with httpx.AsyncClient(base_url=server_url, timeout=60) as http:
        for index in range(1, len(lines)):
            damaged = "\r\n".join(lines[:index] + lines[index + 1 :]) + "\r\n"
            response = await http.post("/whep", content=damaged, headers={"Content-Type": "application/sdp"})
            assert response.status_code in (201, 400), f"without {lines[index]!r}: {response.status_code}"
            if response.status_code == 400:
                assert response.text.strip(), "a 400 must say what is wrong"
            else:
                assert (await http.delete(response.headers["location"])).status_code == 200
        health = (await http.get("/healthz")).json()
        assert health["sessions"] == 0, "a damaged offer left a session behind"
