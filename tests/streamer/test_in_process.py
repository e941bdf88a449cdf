"""The whole server in this process: its Starlette app on a tiny random model, with an aiortc viewer.

The app runs its real lifespan (embedded Redis, engine, precision, capacity, steer reader) on the test's
event loop; HTTP goes through `httpx.ASGITransport` and media over loopback UDP between the two aiortc
peers. This is the unit tier's end-to-end check: the same journey as `test_whep.py`, without a server
process or the shipped model.
"""

from __future__ import annotations

import gc
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import torch
from starlette.applications import Starlette

from streamer.config import ServerConfig
from streamer.server import create_app
from streamer.whep_client import WhepClient
from tests.support.tiny_model import FRAME_SIZE, write_tiny_pipeline

BASE = "http://pixelcast.test"


@pytest.fixture
async def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Starlette]:
    monkeypatch.delenv("REDIS_URL", raising=False)  # the embedded Redis, whatever the environment says
    model = write_tiny_pipeline(tmp_path / "model")
    config = ServerConfig(model_path=model, data_dir=tmp_path / "data", max_sessions=1, max_batch=1)
    application = create_app(config)
    threads = torch.get_num_threads()
    try:
        async with application.router.lifespan_context(application):
            yield application
    finally:  # what serving sets for the whole process, set back for the tests after this one
        torch.set_num_threads(threads)
        gc.unfreeze()


async def test_a_viewer_watches_steers_gives_feedback_and_leaves(app: Starlette) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        assert (await http.get("/healthz")).json()["status"] == "ok"
        viewer = (await http.post("/api/viewers")).json()
        client = WhepClient(BASE, token=viewer["token"], transport=transport)
        try:
            assert (await client.connect()).status_code == 201
            frames = await client.frames(3)
            assert all(frame.shape == (FRAME_SIZE, FRAME_SIZE, 3) for frame in frames), "decoded video arrives"
            await client.wait_channel_open()
            first = await client.next_message("segment")

            client.send({"type": "steer", "text": "a desert at noon"})
            steered = await client.next_message("segment", where=lambda m: "a desert at noon" in m["prompt"])
            assert steered["segment_id"] > first["segment_id"]
            assert steered["scene"]["subject"] == "desert", "the steer's wish decides the next scene"
            client.send({"type": "feedback", "kind": "like", "segment_id": steered["segment_id"]})
            headers = {"Authorization": f"Bearer {viewer['token']}"}
            over_http = {"type": "feedback", "kind": "dwell", "segment_id": steered["segment_id"], "seconds": 2.0}
            answer = await http.post(f"/api/viewers/{viewer['viewer_id']}/events", json=over_http, headers=headers)
            assert answer.status_code == 202 and answer.json()["accepted"] == "feedback", answer.text

            profile_url = f"/api/viewers/{viewer['viewer_id']}/profile"
            for _ in range(100):  # the like travels over the data channel: wait for it, frame by frame
                exported = (await http.get(profile_url, headers=headers)).json()
                if len(exported["events"]) >= 2:
                    break
                await client.frames(1)
            assert sorted(e["kind"] for e in exported["events"]) == ["dwell", "like"]
            assert exported["wishes"]["want"]["subject"] == "desert"

            metrics = (await http.get("/metrics")).text
            sent = re.search(r"^pixelcast_frames_sent_total ([0-9.e+]+)$", metrics, re.MULTILINE)
            assert sent and float(sent.group(1)) >= 3
            assert client.location is not None
            assert (await http.delete(client.location)).status_code == 200
            assert (await http.delete(client.location)).status_code == 404, "the session is gone"
        finally:
            await client.close()
