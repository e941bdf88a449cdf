"""Redis Sentinel by configuration: `redis+sentinel://` follows the master through a failover."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from personalization.keys import events_key, profile_key
from personalization.local_cluster import LocalSentinel
from personalization.messages import Feedback
from personalization.personalizer import Personalizer
from personalization.spool import EventSpool
from personalization.store import connect
from personalization.viewers import ViewerRegistry

pytestmark = pytest.mark.slow  # starts Redis with a sentinel

VOCABULARY = {"subject": ("ocean", "forest"), "palette": ("warm", "cool")}
SCENE = {"subject": "ocean", "palette": "warm"}
ROUNDS = 30


async def test_feedback_goes_on_through_a_sentinel_failover(tmp_path: Path) -> None:
    group = LocalSentinel(tmp_path / "sentinel")
    url = await group.start()
    client = connect(url)
    try:
        personalizer = Personalizer(client, VOCABULARY, wait_replicas=1)
        personalizer.spool = await EventSpool.open(tmp_path, personalizer.events)
        replayer = asyncio.create_task(personalizer.spool.run(interval=0.2))
        viewers = [await ViewerRegistry(client).create() for _ in range(4)]
        first_master = await group.master_port()
        for round_ in range(ROUNDS):
            if round_ == 5:
                await group.kill_master()
            await asyncio.gather(*(personalizer.record_feedback(v, Feedback("like", round_), SCENE) for v in viewers))
            await asyncio.sleep(0.1)
        deadline = asyncio.get_running_loop().time() + 60
        while personalizer.spool.pending or await group.master_port() == first_master:
            assert asyncio.get_running_loop().time() < deadline, "no failover, or the spool never emptied"
            await asyncio.sleep(0.2)
        replayer.cancel()
        assert await group.master_port() == group.replica.port, "the sentinel promoted the replica"
        for viewer_id in viewers:
            entries = await client.xrange(events_key(viewer_id))
            assert sorted(int(f["segment_id"]) for _, f in entries) == list(range(ROUNDS)), "each event once"
            assert int(await client.hget(profile_key(viewer_id), "n_like")) == ROUNDS
    finally:
        await client.aclose()
        await group.stop()
