"""Redis faults: the supervised embedded Redis, and the event spool that keeps feedback while Redis is away."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from personalization.context import Context
from personalization.experimenting import Experiments
from personalization.messages import Feedback
from personalization.personalizer import Personalizer, is_spooled
from personalization.redis_server import EmbeddedRedis
from personalization.spool import EventSpool, SpooledEvent, SpoolFull
from personalization.store import UNAVAILABLE, connect
from personalization.viewers import ViewerRegistry
from personalization.wishes import SimilarityNamer, SteerReader
from tests.personalization.test_wishes import DESCRIPTIONS, fake_embed
from tests.personalization.test_wishes import VOCABULARY as STEER_VOCABULARY
from tests.support.waiting import until

VOCABULARY = {"subject": ("ocean", "forest"), "palette": ("warm", "cool")}
SCENE = {"subject": "ocean", "palette": "warm"}


@contextlib.asynccontextmanager
async def _personalizer(
    url: str, vocabulary: Mapping[str, Sequence[str]] = VOCABULARY, **options: Any
) -> AsyncIterator[tuple[Redis, Personalizer]]:
    """A client of the Redis at `url` and a Personalizer over it, both closed afterwards."""
    client = connect(url)
    personalizer = Personalizer(client, vocabulary, **options)
    try:
        yield client, personalizer
    finally:
        await personalizer.events.aclose()
        await client.aclose()


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
        await until(lambda: server.down_reason is not None, 30, failure="the supervisor never saw Redis die")
        assert "exited" in (server.down_reason or "")
        await until(lambda: server.restarts == 1 and server.down_reason is None, 30, failure="no restart")
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
    try:
        async with _personalizer(url) as (client, personalizer):
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
        await server.stop()


async def test_replay_skips_events_that_landed_before_their_reply_was_lost(data_dir: Path) -> None:
    async with EmbeddedRedis(data_dir / "redis") as url:
        async with _personalizer(url) as (client, personalizer):
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


async def test_spool_is_bounded(data_dir: Path) -> None:
    async with EmbeddedRedis(data_dir / "redis") as url:
        async with _personalizer(url) as (client, personalizer):
            spool = await EventSpool.open(data_dir, personalizer.events, max_events=2)
            for i in range(2):
                await spool.add(SpooledEvent.of("someone", Feedback("like", i), None, None, f"e{i}"))
            with pytest.raises(SpoolFull):
                await spool.add(SpooledEvent.of("someone", Feedback("like", 3), None, None, "e3"))
            assert spool.pending == 2
            assert (data_dir / "events.spool").read_text().count("\n") == 2


async def test_replayed_feedback_and_steers_count_once_in_their_experiment(data_dir: Path) -> None:
    async with EmbeddedRedis(data_dir / "redis") as url:
        async with _personalizer(url) as (client, personalizer):
            experiments = Experiments(client)
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
            personalizer.attach_spool(spool)
            kinds = ["like", "like", "skip", "dwell"]
            events = [
                SpooledEvent.of(viewer_id, Feedback(kind, i, 4.0 if kind == "dwell" else None), SCENE, None,
                                f"e{i:04d}", "spooled")
                for i, kind in enumerate(kinds)
            ]
            events += [SpooledEvent.steer(viewer_id, t, f"s{i}", 1_000 + i, "spooled") for i, t in enumerate("ab")]
            for event in events:
                await spool.add(event)
            assert await spool.replay() == 6
            row = (await experiments.metrics.rows("spooled"))[viewer_id]
            assert (row["l"], row["s"], row["t"]) == (2, 1, 2)
            # the same events spooled again (a replay cut short after counting) count nothing twice
            for event in events:
                await spool.add(event)
            assert await spool.replay() == 0 and spool.duplicates == 6
            again = (await experiments.metrics.rows("spooled"))[viewer_id]
            assert again == row


def _steer_reader() -> SteerReader:
    embeddings = {a: {v: fake_embed(d) for v, d in values.items()} for a, values in DESCRIPTIONS.items()}
    return SteerReader(SimilarityNamer(STEER_VOCABULARY, embeddings, fake_embed))


@pytest.mark.slow  # kills and restarts a Redis server
async def test_steers_while_redis_is_away_are_spooled_then_stored_in_the_order_sent(data_dir: Path) -> None:
    server = EmbeddedRedis(data_dir / "redis")
    url = await server.start()
    try:
        async with _personalizer(url, STEER_VOCABULARY, steer_reader=_steer_reader()) as (client, personalizer):
            viewer_id = await ViewerRegistry(client).create()
            spool = await EventSpool.open(data_dir, personalizer.events)
            personalizer.attach_spool(spool)
            wishes = await personalizer.steer(viewer_id, "more forest")
            assert wishes is not None and wishes.want["subject"] == "forest"
            assert server.pid is not None
            os.kill(server.pid, signal.SIGKILL)
            await asyncio.sleep(0.2)
            assert await personalizer.steer(viewer_id, "rain") is None
            assert await personalizer.steer(viewer_id, "more ocean") is None
            assert spool.pending == 2

            await server.stop()
            await server.start()
            # Redis is back, but the spool still holds older steers: this one waits its turn behind them
            assert await personalizer.steer(viewer_id, "at night") is None
            assert spool.pending == 3
            assert await spool.replay() == 3 and spool.pending == 0
            registry = ViewerRegistry(client)
            assert await registry.recent_steers(viewer_id) == ["at night", "more ocean", "rain", "more forest"]
            profile = await personalizer.profile(viewer_id)
            assert dict(profile.wishes.want) == {"subject": "ocean", "weather": "rain", "palette": "night"}
            # and with the spool empty again, a steer is stored at once
            wishes = await personalizer.steer(viewer_id, "snow")
            assert wishes is not None and wishes.want["weather"] == "snow"
    finally:
        await server.stop()


async def test_replay_skips_steers_that_landed_before_their_reply_was_lost(data_dir: Path) -> None:
    async with EmbeddedRedis(data_dir / "redis") as url:
        async with _personalizer(url, STEER_VOCABULARY, steer_reader=_steer_reader()) as (client, personalizer):
            viewer_id = await ViewerRegistry(client).create()
            spool = await EventSpool.open(data_dir, personalizer.events)
            personalizer.attach_spool(spool)
            texts = ["more forest", "rain", "at night"]
            steers = [SpooledEvent.steer(viewer_id, text, f"s{i}", 1_000 + i) for i, text in enumerate(texts)]
            for steer in steers:
                await spool.add(steer)
            # the first two reached Redis, but their caller saw the connection drop (or a replay was cut short)
            for steer in steers[:2]:
                assert await personalizer.store_steer(viewer_id, steer.text or "", steer.ms)
            assert await spool.replay() == 1
            assert spool.duplicates == 2
            assert await ViewerRegistry(client).recent_steers(viewer_id) == texts[::-1]
            profile = await personalizer.profile(viewer_id)
            assert dict(profile.wishes.want) == {"subject": "forest", "weather": "rain", "palette": "night"}
