"""EventLog against a real Redis: exact counters under concurrency, unknown viewers, script reload."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from personalization.consumer import EventConsumer
from personalization.errors import UnknownViewer
from personalization.events import EventLog
from personalization.keys import POINTERS_KEY, affinity_key, events_key, profile_key, viewer_keys
from personalization.messages import Feedback
from personalization.profiles import APPLY_LIMIT
from personalization.viewers import ViewerRegistry

WRITERS = 20
EVENTS_PER_WRITER = 200


async def test_append_returns_stream_id_and_counts(redis_client: aioredis.Redis) -> None:
    viewer_id = await ViewerRegistry(redis_client).create()
    log = EventLog(redis_client)
    first = await log.append(viewer_id, Feedback("like", segment_id=4))
    second = await log.append(viewer_id, Feedback("dwell", segment_id=4, seconds=2.5))
    assert first < second or len(first) < len(second)
    assert await log.count(viewer_id) == 2
    entries = await redis_client.xrange(events_key(viewer_id))
    assert entries
    _, fields = entries[0]
    assert fields is not None
    assert fields["kind"] == "like" and fields["segment_id"] == "4" and fields["seconds"] == ""
    assert float(fields["ts"]) > 0
    profile = await redis_client.hgetall(profile_key(viewer_id))
    assert (profile["n_like"], profile["n_skip"], profile["n_dwell"]) == ("1", "0", "1")
    assert float(profile["dwell_seconds"]) == 2.5
    assert profile["last_event_id"] == "0-0"  # owned by the (later) idempotent apply script


async def test_concurrent_writers_count_exactly(redis_client: aioredis.Redis) -> None:
    viewer_id = await ViewerRegistry(redis_client).create()
    log = EventLog(redis_client)
    kinds = [
        Feedback("like", 1),
        Feedback("skip", 2),
        Feedback("dwell", 3, 0.5),
        Feedback("dwell", 4, 1.25),
    ]

    async def writer(w: int) -> list[str]:
        return [await log.append(viewer_id, kinds[(w + i) % len(kinds)]) for i in range(EVENTS_PER_WRITER)]

    ids = [i for batch in await asyncio.gather(*(writer(w) for w in range(WRITERS))) for i in batch]
    total = WRITERS * EVENTS_PER_WRITER
    assert len(set(ids)) == total
    assert await log.count(viewer_id) == total
    profile = await redis_client.hgetall(profile_key(viewer_id))
    per_kind = total // len(kinds)
    assert int(profile["n_like"]) == per_kind
    assert int(profile["n_skip"]) == per_kind
    assert int(profile["n_dwell"]) == 2 * per_kind
    assert float(profile["dwell_seconds"]) == per_kind * (0.5 + 1.25)  # exact in binary floating point


async def test_append_to_unknown_viewer_writes_nothing(redis_client: aioredis.Redis) -> None:
    log = EventLog(redis_client)
    with pytest.raises(UnknownViewer):
        await log.append("nobody", Feedback("like"))
    assert await redis_client.exists(events_key("nobody"), profile_key("nobody")) == 0
    with pytest.raises(UnknownViewer):
        await log.append("{bad}", Feedback("like"))


async def test_append_rejects_malformed_feedback(redis_client: aioredis.Redis) -> None:
    viewer_id = await ViewerRegistry(redis_client).create()
    with pytest.raises(ValueError, match="seconds"):
        await EventLog(redis_client).append(viewer_id, Feedback("dwell"))
    for scene in ({"Subject": "ocean"}, {"subject": 3}, {"subject": ""}, {f"a{i}": "b" for i in range(17)}):
        with pytest.raises(ValueError, match="scene"):
            await EventLog(redis_client).append(viewer_id, Feedback("like"), scene)
    assert await EventLog(redis_client).count(viewer_id) == 0


async def test_append_survives_script_flush(redis_client: aioredis.Redis) -> None:
    viewer_id = await ViewerRegistry(redis_client).create()
    log = EventLog(redis_client)
    await log.append(viewer_id, Feedback("skip"))
    await redis_client.script_flush()  # e.g. a Redis restart or failover: EVALSHA gets NOSCRIPT
    await log.append(viewer_id, Feedback("skip"))
    assert await redis_client.hget(profile_key(viewer_id), "n_skip") == "2"


async def test_append_refreshes_anonymous_ttl(redis_client: aioredis.Redis) -> None:
    registry = ViewerRegistry(redis_client, anonymous_ttl=1000)
    viewer_id = await registry.create(anonymous=True)
    await redis_client.expire(profile_key(viewer_id), 10)
    await EventLog(redis_client).append(viewer_id, Feedback("like"))
    assert 990 < await redis_client.ttl(profile_key(viewer_id)) <= 1000
    assert 990 < await redis_client.ttl(events_key(viewer_id)) <= 1000


async def test_every_key_feedback_creates_for_an_anonymous_viewer_expires(redis_client: aioredis.Redis) -> None:
    # the expiry restarts at most once per 1% of the TTL, but a key made in between must not live forever
    viewer_id = await ViewerRegistry(redis_client, anonymous_ttl=1000).create(anonymous=True)
    log = EventLog(redis_client)
    await log.append(viewer_id, Feedback("like"))  # the stream is new
    await log.append(viewer_id, Feedback("like"), {"subject": "ocean"}, apply=True)  # and now the affinity hash
    for key in viewer_keys(viewer_id):
        if await redis_client.exists(key):
            assert 990 < await redis_client.ttl(key) <= 1000, key
    assert await redis_client.exists(affinity_key(viewer_id))


async def test_unknown_viewer_in_a_shared_round_trip_fails_alone(redis_client: aioredis.Redis) -> None:
    """Appends of many viewers share one script call; an unknown one among them fails only its own caller."""
    registry, log = ViewerRegistry(redis_client), EventLog(redis_client)
    known = [await registry.create() for _ in range(5)]
    targets = [*known[:2], "nobody", *known[2:]]
    results = await asyncio.gather(
        *(log.append(v, Feedback("like"), {"subject": "ocean"}, apply=True) for v in targets), return_exceptions=True
    )
    assert isinstance(results[2], UnknownViewer)
    assert all(isinstance(r, str) for i, r in enumerate(results) if i != 2)
    for viewer_id in known:
        profile = await redis_client.hgetall(profile_key(viewer_id))
        assert (profile["n_like"], profile["n_applied"]) == ("1", "1")
    assert await redis_client.exists(events_key("nobody"), profile_key("nobody")) == 0


async def test_backlog_beyond_the_apply_limit_is_left_to_the_consumer(redis_client: aioredis.Redis) -> None:
    """Events appended without apply pile up; a live apply takes APPLY_LIMIT of them, the consumer the rest."""
    viewer_id = await ViewerRegistry(redis_client).create()
    log = EventLog(redis_client)
    backlog = [(Feedback("skip"), {"subject": "city"}, None)] * (APPLY_LIMIT + 50)
    await log.append_many(viewer_id, backlog)
    await redis_client.delete(POINTERS_KEY)  # as if the consumer had read those pointers and then died
    await log.append(viewer_id, Feedback("like"), {"subject": "ocean"}, apply=True)
    assert await redis_client.hget(profile_key(viewer_id), "n_applied") == str(APPLY_LIMIT)
    assert await redis_client.xlen(POINTERS_KEY) == 1  # the live append said that events are left
    assert await EventConsumer(redis_client, name="test").drain() == 51
    assert await redis_client.hget(profile_key(viewer_id), "n_applied") == str(APPLY_LIMIT + 51)
