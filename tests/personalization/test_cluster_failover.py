"""A Redis Cluster master dies while viewers send feedback: its replica takes over, and no event is lost or doubled."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from personalization.keys import events_key, profile_key
from personalization.local_cluster import LocalCluster
from personalization.messages import Feedback
from personalization.personalizer import Personalizer, is_spooled
from personalization.spool import EventSpool
from personalization.store import UNAVAILABLE, Store, connect
from personalization.viewers import ViewerRegistry
from tests.support.waiting import until

pytestmark = pytest.mark.slow  # starts Redis Clusters

VOCABULARY = {"subject": ("ocean", "forest"), "palette": ("warm", "cool")}
SCENE = {"subject": "ocean", "palette": "warm"}
VIEWERS = 12
ROUNDS = 40
KILL_AFTER_ROUND = 10


async def _create_viewers(registry: ViewerRegistry, count: int) -> list[str]:
    viewers = []
    while len(viewers) < count:
        try:
            viewers.append(await registry.create(anonymous=True))
        except UNAVAILABLE:
            await asyncio.sleep(0.1)
    return viewers


async def test_events_are_neither_lost_nor_doubled_when_a_master_fails_over(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "cluster", masters=3, replicas=1)
    url = await cluster.start()
    client = connect(url)
    try:
        personalizer = Personalizer(client, VOCABULARY, wait_replicas=1)
        spool = await EventSpool.open(tmp_path, personalizer.events)
        personalizer.spool = spool
        replayer = asyncio.create_task(spool.run(interval=0.2))
        viewers = await _create_viewers(ViewerRegistry(client), VIEWERS)
        victim = await cluster.master_of(profile_key(viewers[0]))
        on_victim = [v for v in viewers if await cluster.master_of(profile_key(v)) is victim]
        spooled = 0
        for round_ in range(ROUNDS):
            if round_ == KILL_AFTER_ROUND:
                await cluster.kill(victim)
            ids = await asyncio.gather(
                *(personalizer.record_feedback(v, Feedback("like", round_), SCENE) for v in viewers)
            )
            spooled += sum(is_spooled(event_id) for event_id in ids)
            await asyncio.sleep(0.05)
        assert spooled >= len(on_victim), "the dead master's viewers had their feedback spooled"

        await until(lambda: not spool.pending, 60, failure=lambda: f"{spool.pending} events still spooled", every=0.2)
        replayer.cancel()

        assert (await cluster.master_of(profile_key(viewers[0]))) is not victim, "the replica took over"
        for viewer_id in viewers:
            entries = await client.xrange(events_key(viewer_id))
            segments = Counter(int(fields["segment_id"]) for _, fields in entries)
            assert segments == Counter(range(ROUNDS)), f"viewer {viewer_id}: every round once, got {segments}"
            assert len({fields["eid"] for _, fields in entries}) == ROUNDS
            profile = await client.hgetall(profile_key(viewer_id))
            assert int(profile["n_like"]) == ROUNDS, "the counters agree with the stream"
            assert int(profile["n_applied"]) == ROUNDS, "every event reached the posteriors once"
    finally:
        await client.aclose()
        await cluster.stop()


async def test_without_replicas_a_dead_master_degrades_then_its_viewers_catch_up(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "cluster", masters=3, replicas=0)
    url = await cluster.start()
    client = connect(url)
    store = Store(client, url)
    try:
        personalizer = Personalizer(client, VOCABULARY)
        personalizer.spool = await EventSpool.open(tmp_path, personalizer.events)
        viewers = await _create_viewers(ViewerRegistry(client), VIEWERS)
        assert await store.health() is None
        victim = await cluster.master_of(profile_key(viewers[0]))
        await cluster.kill(victim)

        ids = [await personalizer.record_feedback(v, Feedback("like", 1), SCENE) for v in viewers]
        on_victim = {v for v in viewers if (await cluster.master_of(profile_key(v))) is victim}
        spooled = {v for v, event_id in zip(viewers, ids) if is_spooled(event_id)}
        assert on_victim <= spooled, "feedback of the dead master's viewers waits in the spool"
        assert await store.health() is not None, "a master down: the worker reports degraded"

        await cluster.restart(victim)
        await cluster.wait_ok()
        deadline = asyncio.get_running_loop().time() + 30
        while await store.health() is not None:
            assert asyncio.get_running_loop().time() < deadline, "still degraded after the master came back"
            await asyncio.sleep(0.2)
        assert await personalizer.spool.replay() == len(spooled)
        for viewer_id in viewers:
            assert int(await client.hget(profile_key(viewer_id), "n_like") or 0) == 1
    finally:
        await client.aclose()
        await cluster.stop()
