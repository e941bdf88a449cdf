"""Scale-out through standard parts: two workers behind nginx on a three-master Redis Cluster, real WebRTC viewers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from benchmarks.deployment import find_program, loopback_deployment
from benchmarks.server_process import ServerProcess
from streamer.whep_client import WhepClient
from tests.support.waiting import until
from tests.test_browser import CHROMIUM, DESKTOP, chromium, open_viewer

pytestmark = pytest.mark.skipif(
    find_program("nginx") is None, reason="nginx not installed; `make test` installs it with apt-get"
)


@pytest.fixture(scope="module")
def deployment(artifacts_dir) -> Iterator[tuple[str, list[ServerProcess]]]:  # type: ignore[no-untyped-def]
    """nginx in front of workers w1 and w2, each taking one viewer at most."""
    with loopback_deployment(2, worker_args=["--max-sessions", "1"], log_dir=artifacts_dir) as (url, workers, _):
        yield url, workers


def _worker_of(location: str | None) -> str:
    assert location is not None and location.startswith("/w/"), f"session resource without a worker: {location}"
    return location.split("/")[2]


async def _sessions_on(worker: ServerProcess) -> int:
    async with httpx.AsyncClient(base_url=worker.url) as http:
        return int((await http.get("/healthz")).json()["sessions"])


async def test_viewers_through_nginx_land_on_both_workers_and_their_profile_follows_them(
    deployment: tuple[str, list[ServerProcess]],
) -> None:
    url, workers = deployment
    async with httpx.AsyncClient(base_url=url) as http:
        first_viewer = (await http.post("/api/viewers")).json()
        second_viewer = (await http.post("/api/viewers")).json()
    first, second = WhepClient(url, token=first_viewer["token"]), WhepClient(url, token=second_viewer["token"])
    third: WhepClient | None = None
    try:
        assert (await first.connect()).status_code == 201
        full = workers[int(_worker_of(first.location)[1:]) - 1]

        # straight to the full worker: it redirects to the one with room (from the heartbeats in Redis)
        direct = WhepClient(full.url)
        try:
            response = await direct.connect()
            assert [r.status_code for r in response.history] == [307] and response.status_code == 201
            assert _worker_of(direct.location) != _worker_of(first.location)
            assert (await httpx.AsyncClient().delete(str(response.url.join(direct.location)))).status_code == 200
        finally:
            await direct.close()

        assert (await second.connect()).status_code == 201, "the second viewer found the worker with room"
        assert {_worker_of(first.location), _worker_of(second.location)} == {"w1", "w2"}
        crowd = WhepClient(url)
        try:
            refused = await crowd.connect()
            assert refused.status_code == 503 and "at capacity" in refused.text, "both full: a clear 503"
            assert refused.headers["retry-after"]
        finally:
            await crowd.close()

        for client, text in ((first, "the ocean at night"), (second, "a forest in autumn")):
            await client.wait_channel_open()
            segment = await client.next_message("segment")
            client.send({"type": "feedback", "kind": "like", "segment_id": segment["segment_id"]})
            client.send({"type": "steer", "text": text})
            await client.next_message("segment", where=lambda m, t=text: t in m["prompt"])
            assert len(await client.frames(3)) == 3

        async with httpx.AsyncClient(base_url=url) as http:
            for client in (first, second):
                assert (await http.delete(client.location)).status_code == 200, "DELETE reached its worker"
                assert (await http.delete(client.location)).status_code == 404, "and the session is gone there"
        assert [await _sessions_on(w) for w in workers] == [0, 0]

        # the first viewer comes back on the other worker: its token verifies there, its profile is there
        other = {"w1": "w2", "w2": "w1"}[_worker_of(first.location)]
        third = WhepClient(f"{url}/w/{other}", token=first_viewer["token"])
        assert (await third.connect()).status_code == 201
        assert _worker_of(third.location) == other
        await third.wait_channel_open()
        hello = await third.next_message("segment")
        assert "the ocean at night" in hello["prompt"], "the steer from the other worker carries over"
        headers = {"Authorization": f"Bearer {first_viewer['token']}"}
        async with httpx.AsyncClient(base_url=url) as http:
            exported = (await http.get(f"/api/viewers/{first_viewer['viewer_id']}/profile", headers=headers)).json()
            assert "the ocean at night" in exported["steers"]
            assert [e["kind"] for e in exported["events"]].count("like") == 1
            assert (await http.delete(third.location)).status_code == 200
    finally:
        for client in (first, second, third):
            if client is not None:
                await client.close()


async def test_a_session_path_of_an_unknown_worker_is_a_clear_404(deployment: tuple[str, list[ServerProcess]]) -> None:
    url, workers = deployment
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.delete("/w/w9/whep/sessions/nothing")
        assert response.status_code == 404
        assert "no such Pixelcast worker" in response.text
    async with httpx.AsyncClient(base_url=workers[0].url) as http:
        response = await http.delete("/w/w2/whep/sessions/nothing")
        assert response.status_code == 404
        assert "no worker 'w2' here" in response.text


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed; `make test` installs it")
async def test_the_viewer_page_plays_through_nginx_and_its_session_ends_on_its_worker(
    deployment: tuple[str, list[ServerProcess]],
) -> None:
    url, workers = deployment
    async with chromium() as browser:
        viewer = await open_viewer(browser, url, DESKTOP)
        await viewer.wait_playing()
        await viewer.assert_frames_advance("page through nginx")
        session = await viewer.page.evaluate("() => window.pixelcast.sessionUrl")
        assert session.startswith(f"{url}/w/"), f"the page's session resource names no worker: {session}"
        worker = workers[int(session.split("/w/")[1].split("/")[0][1:]) - 1]
        assert await _sessions_on(worker) == 1
        viewer.assert_no_errors()
        await viewer.page.close()  # pagehide: the page DELETEs its session through nginx

    async def drained() -> bool:
        return await _sessions_on(worker) == 0

    await until(drained, 10, failure="the page's DELETE never reached its worker", every=0.2)
