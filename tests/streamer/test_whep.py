"""WHEP end to end: a real aiortc viewer against `pixelcast serve` with the shipped model and real Redis."""

from __future__ import annotations

import re

import httpx
import numpy as np
import pytest
from aiortc.sdp import SessionDescription

from streamer.whep_client import WhepClient


async def _new_viewer(server_url: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=server_url) as http:
        response = await http.post("/api/viewers")
    assert response.status_code == 201, response.text
    return response.json()


async def _metric(server_url: str, name: str) -> float:
    async with httpx.AsyncClient(base_url=server_url) as http:
        text = (await http.get("/metrics")).text
    match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


async def test_whep_session_streams_changing_video_and_delete_frees_it(server_url: str) -> None:
    viewer = await _new_viewer(server_url)
    client = WhepClient(server_url, token=viewer["token"])
    try:
        response = await client.connect()
        assert response.status_code == 201, response.text
        assert response.headers["content-type"].startswith("application/sdp")
        assert re.fullmatch(r"/whep/sessions/[A-Za-z0-9_-]+", response.headers["location"])
        answer = SessionDescription.parse(response.text)
        video = [m for m in answer.media if m.kind == "video"]
        assert video and video[0].direction == "sendonly", "the answer must send video to a recvonly viewer"
        assert video[0].rtp.codecs[0].mimeType.lower() == "video/h264", "H.264 is preferred when offered"
        assert any(c.type == "host" for c in video[0].ice_candidates) or "a=candidate" in response.text

        frames = await client.frames(30)
        assert all(f.shape == (128, 128, 3) for f in frames)
        changes = [float(np.abs(a.astype(int) - b.astype(int)).mean()) for a, b in zip(frames, frames[1:])]
        assert max(changes) > 1.0, "the decoded video is frozen: consecutive frames do not change"
        assert float(np.std(frames[-1])) > 2.0, "the decoded frame is a flat colour"
        assert await _metric(server_url, "pixelcast_sessions") >= 1

        async with httpx.AsyncClient(base_url=server_url) as http:
            deleted = await http.delete(client.location)
            assert deleted.status_code == 200
            again = await http.delete(client.location)
            assert again.status_code == 404, "a deleted session must be gone"
        assert await _metric(server_url, "pixelcast_sessions") == 0
        assert await _metric(server_url, "pixelcast_frames_sent_total") >= 30
    finally:
        await client.close()


async def test_vp8_is_used_when_the_offer_has_no_h264(server_url: str) -> None:
    client = WhepClient(server_url, codecs=("video/VP8",))
    try:
        response = await client.connect()
        assert response.status_code == 201, response.text
        video = [m for m in SessionDescription.parse(response.text).media if m.kind == "video"][0]
        assert video.rtp.codecs[0].mimeType.lower() == "video/vp8"
        frames = await client.frames(10)
        assert frames[-1].shape == (128, 128, 3)
        async with httpx.AsyncClient(base_url=server_url) as http:
            assert (await http.delete(client.location)).status_code == 200
    finally:
        await client.close()


async def test_steer_and_feedback_over_the_data_channel(server_url: str) -> None:
    viewer = await _new_viewer(server_url)
    client = WhepClient(server_url, token=viewer["token"])
    try:
        assert (await client.connect()).status_code == 201
        await client.wait_channel_open()
        first = await client.next_message("segment")
        assert first["prompt"], "each segment announces its prompt"
        stats = await client.next_message("stats")
        for key in ("fps", "max_fps", "realtime_factor", "buffer_seconds", "steps", "width", "height"):
            assert key in stats, f"stats message lacks {key}"
        await client.frames(5)

        client.send({"type": "steer", "text": "mountains in the snow at night"})
        steered = await client.next_message("segment", where=lambda m: "mountains in the snow at night" in m["prompt"])
        assert steered["segment_id"] > first["segment_id"]
        wanted = {"subject": "mountains", "palette": "night", "weather": "snow"}
        assert {k: steered["scene"][k] for k in wanted} == wanted, "the steer's wishes decide the very next scene"
        frames_after = await client.frames(10)
        assert frames_after[-1].shape == (128, 128, 3), "video keeps flowing after a steer"

        client.send({"type": "feedback", "kind": "like", "segment_id": steered["segment_id"]})
        client.send({"type": "feedback", "kind": "dwell", "segment_id": steered["segment_id"], "seconds": 1.5})
        client.send('{"type": "feedback", "kind": "love"}')
        error = await client.next_message("error")
        assert "kind" in error["message"], "a bad message gets an error that names the problem"

        headers = {"Authorization": f"Bearer {viewer['token']}"}
        async with httpx.AsyncClient(base_url=server_url) as http:
            for _ in range(50):
                exported = (await http.get(f"/api/viewers/{viewer['viewer_id']}/profile", headers=headers)).json()
                if len(exported["events"]) >= 2:
                    break
                await client.frames(1)
            kinds = sorted(e["kind"] for e in exported["events"])
            assert kinds == ["dwell", "like"], f"feedback did not land in Redis: {exported}"
            assert "mountains in the snow at night" in exported["steers"]
            await http.delete(client.location)
    finally:
        await client.close()


async def test_json_offer_endpoint(server_url: str) -> None:
    client = WhepClient(server_url)
    try:
        client._track = __import__("asyncio").get_running_loop().create_future()
        client.pc.addTransceiver("video", direction="recvonly")
        client.pc.on("track", lambda t: client._track.done() or client._track.set_result(t))
        await client.pc.setLocalDescription(await client.pc.createOffer())
        async with httpx.AsyncClient(base_url=server_url, timeout=60) as http:
            response = await http.post("/offer", json={"sdp": client.pc.localDescription.sdp, "type": "offer"})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["type"] == "answer" and body["sdp"].startswith("v=0")
            from aiortc import RTCSessionDescription

            await client.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="answer"))
            assert len(await client.frames(5)) == 5
            assert (await http.delete(body["location"])).status_code == 200
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("headers", "body", "status", "says"),
    [
        ({"Content-Type": "text/plain"}, "v=0\r\n", 415, "application/sdp"),
        ({"Content-Type": "application/sdp"}, "hello", 400, "SDP"),
        ({"Content-Type": "application/sdp"}, "", 400, "empty"),
        (
            {"Content-Type": "application/sdp"},
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n",
            400,
            "video",
        ),
        ({"Content-Type": "application/sdp", "Authorization": "Bearer forged.token"}, "v=0\r\n", 401, "token"),
        ({"Content-Type": "application/sdp"}, "v=0\r\n" + "a=x\r\n" * 40000, 413, "too large"),
    ],
)
async def test_whep_rejects_bad_requests_clearly(
    server_url: str, headers: dict[str, str], body: str, status: int, says: str
) -> None:
    async with httpx.AsyncClient(base_url=server_url) as http:
        response = await http.post("/whep", content=body, headers=headers)
        assert response.status_code == status, response.text
        assert says.lower() in response.text.lower(), f"the error should say what is wrong: {response.text!r}"
        assert (await http.get("/healthz")).status_code == 200


async def test_other_bad_requests(server_url: str) -> None:
    async with httpx.AsyncClient(base_url=server_url) as http:
        assert (await http.delete("/whep/sessions/does-not-exist")).status_code == 404
        bad_json = await http.post("/offer", content="{not json", headers={"Content-Type": "application/json"})
        assert bad_json.status_code == 400 and "JSON" in bad_json.json()["error"]
        wrong_shape = await http.post("/offer", json={"sdp": 3})
        assert wrong_shape.status_code == 400
        preflight = await http.options("/whep")
        assert preflight.status_code == 204
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "Authorization" in preflight.headers["access-control-allow-headers"]
        assert (await http.patch("/whep/sessions/x")).status_code == 405
        viewer = await _new_viewer(server_url)
        other = await _new_viewer(server_url)
        profile = f"/api/viewers/{viewer['viewer_id']}/profile"
        assert (await http.get(profile)).status_code == 401
        assert (await http.get(profile, headers={"Authorization": f"Bearer {other['token']}"})).status_code == 403
        assert (await http.get(profile, headers={"Authorization": "Bearer nonsense"})).status_code == 401
        again = await http.post("/api/viewers", headers={"Authorization": f"Bearer {viewer['token']}"})
        assert again.status_code == 200 and again.json()["viewer_id"] == viewer["viewer_id"]
        events = f"/api/viewers/{viewer['viewer_id']}/events"
        auth = {"Authorization": f"Bearer {viewer['token']}"}
        assert (await http.post(events, json={"type": "feedback", "kind": "skip"}, headers=auth)).status_code == 202
        assert (await http.post(events, json={"type": "nope"}, headers=auth)).status_code == 400
        assert (await http.post(events, content=b"x" * 100_000, headers=auth)).status_code == 413
        metrics = (await http.get("/metrics")).text
        for name in (
            "pixelcast_sessions",
            "pixelcast_frames_generated_total",
            "pixelcast_encode_seconds",
            "pixelcast_generation_seconds",
            "pixelcast_realtime_factor_min",
        ):
            assert name in metrics
