"""ViewerRegistry against a real Redis: create, steers, export, erase, anonymous TTL."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from personalization.errors import UnknownViewer
from personalization.events import EventLog
from personalization.keys import STEERS_MAX, VIEWER_ID_RE, profile_key, viewer_keys
from personalization.messages import Feedback
from personalization.profiles import SCHEMA_VERSION, ProfileStore
from personalization.viewers import ANONYMOUS_TTL, ViewerRegistry
from personalization.wishes import Wishes


async def test_create_writes_profile(redis_client: aioredis.Redis) -> None:
    registry = ViewerRegistry(redis_client)
    viewer_id = await registry.create()
    assert VIEWER_ID_RE.fullmatch(viewer_id) and len(viewer_id) == 16
    assert await registry.exists(viewer_id)
    profile = await redis_client.hgetall(profile_key(viewer_id))
    assert profile["schema_version"] == str(SCHEMA_VERSION)
    assert profile["anonymous"] == "0"
    assert profile["last_event_id"] == "0-0"
    assert float(profile["created_at"]) > 0
    assert await redis_client.ttl(profile_key(viewer_id)) == -1  # registered viewers do not expire
    assert await registry.create() != viewer_id


async def test_exists_is_false_for_unknown_and_malformed_ids(redis_client: aioredis.Redis) -> None:
    registry = ViewerRegistry(redis_client)
    assert not await registry.exists("nobody")
    assert not await registry.exists("{v:x}")
    assert not await registry.exists("")


async def test_anonymous_viewers_expire(redis_client: aioredis.Redis) -> None:
    registry = ViewerRegistry(redis_client)
    viewer_id = await registry.create(anonymous=True)
    await registry.record_steer(viewer_id, "more ocean")
    await ProfileStore(redis_client).set_wishes(viewer_id, Wishes(want={"subject": "ocean"}))
    await EventLog(redis_client).append(viewer_id, Feedback("like"), {"subject": "ocean"}, apply=True)
    assert await redis_client.hget(profile_key(viewer_id), "anonymous") == "1"
    for key in viewer_keys(viewer_id):  # every key exists now: profile, events, steers, affinity, wishes
        assert ANONYMOUS_TTL - 10 < await redis_client.ttl(key) <= ANONYMOUS_TTL, key


async def test_record_steer_keeps_recent_ones(redis_client: aioredis.Redis) -> None:
    registry = ViewerRegistry(redis_client)
    viewer_id = await registry.create()
    for i in range(STEERS_MAX + 5):
        await registry.record_steer(viewer_id, f"steer {i}")
    steers = await registry.recent_steers(viewer_id)
    assert steers == [f"steer {i}" for i in reversed(range(5, STEERS_MAX + 5))]
    assert await redis_client.hget(profile_key(viewer_id), "last_steer") == f"steer {STEERS_MAX + 4}"


async def test_record_steer_for_unknown_viewer(redis_client: aioredis.Redis) -> None:
    with pytest.raises(UnknownViewer):
        await ViewerRegistry(redis_client).record_steer("nobody", "hello")
    assert await redis_client.dbsize() == 0


async def test_export(redis_client: aioredis.Redis) -> None:
    registry = ViewerRegistry(redis_client)
    viewer_id = await registry.create()
    await registry.record_steer(viewer_id, "at night")
    log = EventLog(redis_client)
    event_id = await log.append(viewer_id, Feedback("dwell", segment_id=7, seconds=1.5))
    await log.append(viewer_id, Feedback("skip"))
    exported = await registry.export(viewer_id)
    assert exported["viewer_id"] == viewer_id
    assert exported["profile"]["last_steer"] == "at night"
    assert exported["profile"]["n_dwell"] == "1"
    assert exported["steers"] == ["at night"]
    first, second = exported["events"]
    assert first["id"] == event_id
    assert (first["kind"], first["segment_id"], first["seconds"]) == ("dwell", 7, 1.5)
    assert (second["kind"], second["segment_id"], second["seconds"]) == ("skip", None, None)
    assert isinstance(first["ts"], float)


async def test_export_unknown_viewer(redis_client: aioredis.Redis) -> None:
    registry = ViewerRegistry(redis_client)
    with pytest.raises(UnknownViewer, match="nobody"):
        await registry.export("nobody")
    with pytest.raises(UnknownViewer):
        await registry.export("../etc")


async def test_erase_removes_only_that_viewer(redis_client: aioredis.Redis) -> None:
    registry = ViewerRegistry(redis_client)
    log = EventLog(redis_client)
    victim, bystander = await registry.create(), await registry.create(anonymous=True)
    for viewer_id in (victim, bystander):
        await registry.record_steer(viewer_id, "more ocean")
        await ProfileStore(redis_client).set_wishes(viewer_id, Wishes(avoid={"weather": frozenset({"rain"})}))
        await log.append(viewer_id, Feedback("like", 1), {"subject": "ocean"}, apply=True)
    await redis_client.set("unrelated", "1")
    before = {key async for key in redis_client.scan_iter()}
    assert set(viewer_keys(victim)) <= before

    assert await registry.erase(victim)
    after = {key async for key in redis_client.scan_iter()}  # on a cluster: every master's keys
    assert after == before - set(viewer_keys(victim))
    assert not any(victim in key for key in after)
    assert not await registry.exists(victim)
    with pytest.raises(UnknownViewer):
        await registry.export(victim)
    assert (await registry.export(bystander))["steers"] == ["more ocean"]
    assert not await registry.erase(victim)  # nothing left to erase
    assert not await registry.erase("{bad}")
