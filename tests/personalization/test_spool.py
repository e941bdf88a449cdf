"""Redis faults: the supervised embedded Redis, and the event spool that keeps feedback while Redis is away."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from personalization.context import Context
from personalization.experimenting import Experiments
from personalization.messages import Feedback
from personalization.personalizer import Personalizer, is_spooled
from personalization.redis_server import EmbeddedRedis
from personalization.spool import EventSpool, SpooledEvent, SpoolFull
from personalization.store import UNAVAILABLE, connect
from personalization.viewers import ViewerRegistry

VOCABULARY = {"subject": ("ocean", "forest"), "palette": ("warm", "cool")}
SCENE = {"subject": "ocean", "palette": "warm"}


async def _wait_for(condition, seconds: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.slow  # kills and restarts a Redis server
async def test_supervisor_restarts_a_killed_redis_on_its_data(data_dir: Path) -> None:
    server = EmbeddedRedis(data_dir / "redis", restart_delay=0.2)
    url = await server.start()
    server.supervise()
    client = connect(url)
    try:
        viewer_id = await ViewerRegistry(client).create()
        first = server.pid
        assert first is not None and int((data_dir / "redis" / "redis.pid").read_text()) == first
        # appendfsync everysec: Redis may hold a write back while the last fsync runs; once its AOF buffer is
        # empty the write is in the file, which a killed process cannot lose
        while int((await client.info("persistence"))["aof_buffer_length"]):
            await asyncio.sleep(0.01)
        os.kill(first, signal.SIGKILL)  # as the OOM killer would
        await _wait_for(lambda: server.down_reason is not None)
        assert "exited" in (server.down_reason or "")
        await _wait_for(lambda: server.restarts == 1 and server.down_reason is None)
        assert server.pid not in (None, first)
        assert await ViewerRegistry(client).exists(viewer_id), "the restarted server keeps the data"
    finally:
        await client.aclose()
        await server.stop()
    assert server.pid is None


@pytest.mark.slow  # kills and restarts a Redis server
async def test_feedback_while_redis_is_away_is_spooled_then_applied_once(data_dir: Path) -> None:
    server = EmbeddedRedis(data_dir / "redis")
    url = await server.start()
    client = connect(url)
    personalizer = Personalizer(client, VOCABULARY)
    try:
        viewer_id = await ViewerRegistry(client).create()
        personalizer.spool = await EventSpool.open(data_dir, personalizer.events)
        assert not is_spooled(await personalizer.record_feedback(viewer_id, Feedback("like", 1), SCENE))
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        await asyncio.sleep(0.2)
        ids = [await personalizer.record_feedback(viewer_id, Feedback("like", i), SCENE) for i in range(5)]
        assert all(is_spooled(i) for i in ids)
        assert personalizer.spool.pending == 5
        with pytest.raises(UNAVAILABLE):
            await personalizer.spool.replay()
        assert personalizer.spool.pending == 5, "a failed replay keeps everything"

        await server.stop()
        await server.start()
        # a new process over the same data dir finds the spool on disk
        spool = await EventSpool.open(data_dir, personalizer.events)
        assert spool.pending == 5
        assert await spool.replay() == 5
        assert spool.pending == 0 and await spool.replay() == 0
        profile = (await ViewerRegistry(client).export(viewer_id))["profile"]
        assert profile["n_like"] == "6" and profile["n_applied"] == "6"
    finally:
        await personalizer.events.aclose()
        await client.aclose()
        await server.stop()


async def test_replay_skips_events_that_landed_before_their_reply_was_lost(data_dir: Path) -> None:
    async with EmbeddedRedis(data_dir / "redis") as url:
        client = connect(url)
        personalizer = Personalizer(client, VOCABULARY)
        try:
            viewer_id = await ViewerRegistry(client).create()
            spool = await EventSpool.open(data_dir, personalizer.events)
            events = [SpooledEvent.of(viewer_id, Feedback("skip", i), SCENE, None, f"e{i:04d}") for i in range(6)]
            for event in events:
                await spool.add(event)
            # three of them reached Redis, but their caller saw the connection drop (or a replay was cut short)
            landed = events[:3]
            await personalizer.events.append_many(
                viewer_id, [e.feedback() for e in landed], apply=True, eids=[e.eid for e in landed]
            )
            assert await spool.replay() == 3
            assert spool.duplicates == 3
            profile = (await ViewerRegistry(client).export(viewer_id))["profile"]
            assert profile["n_skip"] == "6" and profile["n_applied"] == "6"
        finally:
            await personalizer.events.aclose()
            await client.aclose()


async def test_spool_is_bounded(data_dir: Path) -> None:
    async with EmbeddedRedis(data_dir / "redis") as url:
        client = connect(url)
        personalizer = Personalizer(client, VOCABULARY)
        spool = await EventSpool.open(data_dir, personalizer.events, max_events=2)
        try:
            for i in range(2):
                await spool.add(SpooledEvent.of("someone", Feedback("like", i), None, None, f"e{i}"))
            with pytest.raises(SpoolFull):
                await spool.add(SpooledEvent.of("someone", Feedback("like", 3), None, None, "e3"))
            assert spool.pending == 2
            assert (data_dir / "events.spool").read_text().count("\n") == 2
        finally:
            await personalizer.events.aclose()
            await client.aclose()


async def test_replayed_events_count_once_in_their_experiment(data_dir: Path) -> None:
    async with EmbeddedRedis(data_dir / "redis") as url:
        client = connect(url)
        personalizer = Personalizer(client, VOCABULARY)
        experiments = Experiments(client)
        try:
            await experiments.create(
                {
                    "key": "spooled",
                    "variations": [
                        {"id": "a", "policy": "static", "weight": 0.5},
                        {"id": "b", "policy": "random", "weight": 0.5},
                    ],
                }
            )
            viewer_id = await ViewerRegistry(client).create()
            assert await experiments.start_session(viewer_id, Context(), "s1") is not None
            spool = await EventSpool.open(data_dir, personalizer.events)
            spool.experiments = experiments
            kinds = ["like", "like", "skip", "dwell"]
            events = [
                SpooledEvent.of(viewer_id, Feedback(kind, i, 4.0 if kind == "dwell" else None), SCENE, None,
                                f"e{i:04d}", "spooled")
                for i, kind in enumerate(kinds)
            ]
            for event in events:
                await spool.add(event)
            assert await spool.replay() == 4
            row = (await experiments.metrics.rows("spooled"))[viewer_id]
            assert (row["l"], row["s"]) == (2, 1)
            # the same events spooled again (a replay cut short after counting) count nothing twice
            for event in events:
                await spool.add(event)
            assert await spool.replay() == 0 and spool.duplicates == 4
            again = (await experiments.metrics.rows("spooled"))[viewer_id]
            assert again == row
        finally:
            await personalizer.events.aclose()
            await client.aclose()
