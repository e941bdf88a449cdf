"""Personalization through the real server: what a viewer does changes what they are shown next."""

from __future__ import annotations

import httpx

from streamer.whep_client import WhepClient

OCEAN_SKIPS = 5
DRAWS_AFTER = 8


async def test_a_viewer_who_keeps_skipping_ocean_stops_getting_it(server_url: str) -> None:
    async with httpx.AsyncClient(base_url=server_url) as http:
        viewer = (await http.post("/api/viewers")).json()
    client = WhepClient(server_url, token=viewer["token"])
    try:
        assert (await client.connect()).status_code == 201
        await client.wait_channel_open()
        await client.next_message("segment")

        # 1. ask for the ocean, then skip it every time it comes
        client.send({"type": "steer", "text": "the ocean"})
        skipped = 0
        while skipped < OCEAN_SKIPS:
            segment = await client.next_message("segment", where=lambda m: m["scene"]["subject"] == "ocean")
            client.send({"type": "feedback", "kind": "skip", "segment_id": segment["segment_id"]})
            skipped += 1

        # 2. let the policy choose freely again; every skip forces a fresh draw
        client.send({"type": "steer", "text": "surprise me"})
        await client.next_message("segment", where=lambda m: not m["prompt"].startswith(("the ocean", "surprise")))
        subjects = []
        while len(subjects) < DRAWS_AFTER:
            segment = await client.next_message("segment")
            subjects.append(segment["scene"]["subject"])
            client.send({"type": "feedback", "kind": "skip", "segment_id": segment["segment_id"]})
        assert "ocean" not in subjects, f"ocean came back after {OCEAN_SKIPS} skips: {subjects}"
        assert len(set(subjects)) > 1, "the policy should still explore the other subjects"

        headers = {"Authorization": f"Bearer {viewer['token']}"}
        async with httpx.AsyncClient(base_url=server_url) as http:
            exported = (await http.get(f"/api/viewers/{viewer['viewer_id']}/profile", headers=headers)).json()
            skips = [
                e
                for e in exported["events"]
                if e["kind"] == "skip" and (e.get("scene") or {}).get("subject") == "ocean"
            ]
            assert len(skips) >= OCEAN_SKIPS, "each skip is stored with the scene it was about"
            await http.delete(client.location)
    finally:
        await client.close()
