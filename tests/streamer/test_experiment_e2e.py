"""An A/B test through the real server: the admin API defines it, a real aiortc viewer streams under it.

The viewer's `segment` messages name the experiment, the variation and the variation's policy; the
variation's settings (steps, frame-rate ceiling) reach the stream; a second session of the same viewer
is not a second exposure.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from benchmarks.server_process import ServerProcess
from streamer.whep_client import WhepClient, use_loopback_only

pytestmark = pytest.mark.slow  # starts a server

ADMIN_TOKEN = "admin-token-for-the-experiment-e2e-test-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SETTINGS = {"steps": 2, "fps": 12}  # the server runs 1 step at 24 fps: both differ
DEFINITION = {
    "key": "e2e-steps",
    "coverage": 1.0,
    "variations": [
        {"id": "control", "policy": "static", "weight": 0.5, "settings": SETTINGS},
        {"id": "treatment", "policy": "thompson", "weight": 0.5, "settings": SETTINGS},
    ],
    "metrics": [{"name": "likes_per_minute", "goal": "increase"}],
}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    use_loopback_only()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PIXELCAST_ADMIN_TOKEN", ADMIN_TOKEN)
        with ServerProcess() as running:
            yield running.url


async def _watch(url: str, token: str) -> tuple[dict, dict]:
    """One session of the viewer: its first segment message and a stats message, then DELETE."""
    client = WhepClient(url, token=token)
    try:
        assert (await client.connect()).status_code == 201
        await client.wait_channel_open()
        segment = await client.next_message("segment")
        await client.frames(3)
        stats = await client.next_message("stats", where=lambda m: m["frames_generated"] > 0)
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.delete(client.location)).status_code == 200
        return segment, stats
    finally:
        await client.close()


async def test_segments_name_the_experiment_and_a_viewer_is_exposed_once(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as http:
        assert (await http.post("/api/experiments", json=DEFINITION, headers=ADMIN)).status_code == 201
        viewer = (await http.post("/api/viewers")).json()

    first, stats = await _watch(server, viewer["token"])
    policies = {v["id"]: v["policy"] for v in DEFINITION["variations"]}
    assert first["experiment"] == DEFINITION["key"]
    assert first["variation"] in policies
    assert first["variant"] == policies[first["variation"]]
    assert stats["steps"] == SETTINGS["steps"], "the variation's steps are the stream's"
    assert stats["max_fps"] == SETTINGS["fps"], "the variation's frame rate is the stream's ceiling"

    again, _ = await _watch(server, viewer["token"])
    assert (again["experiment"], again["variation"], again["variant"]) == (
        first["experiment"], first["variation"], first["variant"]
    ), "assignment is sticky across sessions"

    async with httpx.AsyncClient(base_url=server) as http:
        results = (await http.get(f"/api/experiments/{DEFINITION['key']}/results", headers=ADMIN)).json()
    counts = {v["id"]: v["n"] for v in results["variations"]}
    assert results["exposures"] == 1
    assert counts == {vid: int(vid == first["variation"]) for vid in policies}
