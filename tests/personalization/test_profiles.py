"""Profiles against a real Redis: idempotent apply, exact counts under concurrency, replay, restart, consumer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from personalization.consumer import EventConsumer
from personalization.context import Context
from personalization.errors import UnknownViewer
from personalization.events import EventLog
from personalization.keys import POINTERS_KEY, affinity_key, events_key, profile_key
from personalization.messages import Feedback
from personalization.profiles import (
    CELL_MOVE_B_AT,
    CELL_SHIFT,
    SCHEMA_VERSION,
    ProfileState,
    ProfileStore,
    parse_stream_id,
)
from personalization.redis_server import EmbeddedRedis
from personalization.rewards import EVIDENCE_SCALE
from personalization.store import connect
from personalization.viewers import ViewerRegistry
from personalization.wishes import Wishes
from tests.support.waiting import until

SCENES = [
    {"subject": "ocean", "palette": "night", "weather": "rain"},
    {"subject": "city", "palette": "noon", "weather": "clear"},
    {"subject": "forest", "palette": "night", "weather": "fog"},
]
FEEDBACK = [Feedback("like", 1), Feedback("skip", 2), Feedback("dwell", 3, 0.25), Feedback("dwell", 4, 2.5)]
CONTEXT = Context("evening", "mobile")


def _plan(n: int) -> list[tuple[Feedback, dict[str, str], Context | None]]:
    return [(FEEDBACK[i % 4], SCENES[i % 3], CONTEXT if i % 2 else None) for i in range(n)]


def _expected(plan: list[tuple[Feedback, dict[str, str], Context | None]]) -> ProfileState:
    state = ProfileState()
    for feedback, scene, context in plan:
        state.apply(feedback.kind, feedback.seconds, scene, context.bucket if context else None)
    return state


async def _state(redis: aioredis.Redis, viewer_id: str) -> ProfileState:
    return ProfileState.from_fields(
        await redis.hgetall(affinity_key(viewer_id)), await redis.hgetall(profile_key(viewer_id))
    )


def test_stream_ids_compare_as_numbers() -> None:
    assert parse_stream_id("10-0") > parse_stream_id("9-5")
    assert parse_stream_id("1700000000000-10") > parse_stream_id("1700000000000-9")
    state = ProfileState(last_event_id="10-0")
    assert not state.apply("like", None, {"subject": "ocean"}, event_id="9-99")
    assert state.apply("like", None, {"subject": "ocean"}, event_id="10-1")
    assert not state.apply("like", None, {"subject": "ocean"}, event_id="10-1")


async def test_lua_apply_matches_python_and_is_idempotent(redis_client: aioredis.Redis) -> None:
    viewer_id = await ViewerRegistry(redis_client).create()
    log, profiles = EventLog(redis_client), ProfileStore(redis_client)
    plan = _plan(24)
    ids = [await log.append(viewer_id, f, s, context=c) for f, s, c in plan]
    assert await redis_client.hget(profile_key(viewer_id), "last_event_id") == "0-0"
    assert await profiles.apply(viewer_id, upto=ids[9]) == 10  # (last, upto]
    assert await profiles.apply(viewer_id) == 14
    state = await _state(redis_client, viewer_id)
    assert state.last_event_id == ids[-1] and state.n_applied == 24
    expected = _expected(plan)
    assert state.evidence.keys() == expected.evidence.keys()
    for cell, (a, b) in expected.evidence.items():
        assert state.evidence[cell] == pytest.approx([a, b], abs=1e-9), cell
    before = await redis_client.hgetall(affinity_key(viewer_id))
    for event_id in ids:  # replaying every event changes nothing
        assert await profiles.apply(viewer_id, upto=event_id) == 0
    assert await profiles.apply(viewer_id) == 0
    assert await redis_client.hgetall(affinity_key(viewer_id)) == before
    assert await redis_client.hget(profile_key(viewer_id), "n_applied") == "24"


async def test_apply_unknown_viewer(redis_client: aioredis.Redis) -> None:
    with pytest.raises(UnknownViewer):
        await ProfileStore(redis_client).apply("nobody")
    with pytest.raises(UnknownViewer):
        await ProfileStore(redis_client).load("nobody")


async def test_64_concurrent_writers_count_exactly(redis_client: aioredis.Redis) -> None:
    """64 writers, 10,000 events in total, 4 writers per viewer, each event applied at once."""
    writers, total, viewers_n = 64, 10_000, 16
    registry, log = ViewerRegistry(redis_client), EventLog(redis_client)
    viewers = [await registry.create() for _ in range(viewers_n)]
    plan = _plan(total)
    shares = [plan[w::writers] for w in range(writers)]

    async def writer(w: int) -> None:
        for feedback, scene, context in shares[w]:
            await log.append(viewers[w % viewers_n], feedback, scene, context=context, apply=True)

    await asyncio.gather(*(writer(w) for w in range(writers)))
    profiles = ProfileStore(redis_client)
    for v, viewer_id in enumerate(viewers):
        sent = [e for w in range(v, writers, viewers_n) for e in shares[w]]
        profile = await redis_client.hgetall(profile_key(viewer_id))
        assert sum(int(profile[f"n_{k}"]) for k in ("like", "skip", "dwell")) == len(sent)
        assert int(profile["n_applied"]) == len(sent) == await redis_client.xlen(events_key(viewer_id))
        state = await _state(redis_client, viewer_id)
        for cell, (a, b) in _expected(sent).evidence.items():  # increments are exact binary fractions
            assert state.evidence[cell] == [a, b], cell
        assert await profiles.apply(viewer_id) == 0  # nothing left, nothing counted twice
    consumer = EventConsumer(redis_client, name="test")
    assert await consumer.drain() == 0  # the live path applied everything already
    assert consumer.pointers == 0  # events applied live leave nothing for the consumer to look at


async def test_consumer_applies_claims_and_skips_erased(redis_client: aioredis.Redis) -> None:
    registry, log = ViewerRegistry(redis_client), EventLog(redis_client)
    kept, erased = await registry.create(), await registry.create()
    for feedback, scene, context in _plan(6):
        await log.append(kept, feedback, scene, context=context)
        await log.append(erased, feedback, scene, context=context)
    await registry.erase(erased)
    dead = EventConsumer(redis_client, name="dead", batch=4)
    await dead.ensure_group()
    await redis_client.xreadgroup(dead.group, "dead", {POINTERS_KEY: ">"}, count=4)  # read, then "crash"
    consumer = EventConsumer(redis_client, name="alive", claim_idle_ms=0)
    assert await consumer.drain() == 6
    assert consumer.pointers == 12
    pending = await redis_client.xpending(POINTERS_KEY, consumer.group)
    assert pending["pending"] == 0 and await redis_client.xlen(POINTERS_KEY) == 0
    assert await redis_client.hget(profile_key(kept), "n_applied") == "6"
    assert await redis_client.exists(profile_key(erased), affinity_key(erased)) == 0


async def test_consumer_start_stop(redis_client: aioredis.Redis) -> None:
    viewer_id = await ViewerRegistry(redis_client).create()
    async with EventConsumer(redis_client, block_ms=50) as consumer:
        assert consumer.running
        await EventLog(redis_client).append(viewer_id, Feedback("like"), {"subject": "ocean"})
        await until(lambda: consumer.applied, seconds=30)
    assert not consumer.running
    assert consumer.applied == 1
    # a like: alpha +2, in thousandths, in the high part of the cell
    assert int(await redis_client.hget(affinity_key(viewer_id), "subject=ocean")) == 2000 << CELL_SHIFT


async def test_export_has_posteriors_and_wishes(redis_client: aioredis.Redis) -> None:
    registry = ViewerRegistry(redis_client)
    viewer_id = await registry.create()
    await ProfileStore(redis_client).set_wishes(
        viewer_id, Wishes({"weather": "snow"}, {"subject": frozenset({"city"})})
    )
    await EventLog(redis_client).append(viewer_id, Feedback("skip"), {"subject": "ocean"}, context=CONTEXT, apply=True)
    exported = await registry.export(viewer_id)
    assert exported["posteriors"]["global"]["subject"]["ocean"] == {"alpha": 1.0, "beta": 2.0}
    assert exported["posteriors"]["contexts"]["evening.mobile"]["subject"]["ocean"] == {"alpha": 1.0, "beta": 2.0}
    assert exported["wishes"]["want"] == {"weather": "snow"} and exported["wishes"]["avoid"] == {"subject": ["city"]}
    assert exported["events"][0]["scene"] == {"subject": "ocean"}
    assert exported["events"][0]["context"] == "evening.mobile"


async def test_profiles_survive_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    client = connect(await server.start())
    viewer_id = await ViewerRegistry(client).create()
    for feedback, scene, context in _plan(12):
        await EventLog(client).append(viewer_id, feedback, scene, context=context, apply=True)
    await ProfileStore(client).set_wishes(viewer_id, Wishes({"weather": "snow"}))
    before = await ProfileStore(client).load(viewer_id)
    await client.aclose()
    await server.stop()

    client = connect(await server.start())
    try:
        after = await ProfileStore(client).load(viewer_id)
        assert after.state.evidence == before.state.evidence
        assert after.state.last_event_id == before.state.last_event_id
        assert after.wishes == before.wishes
        assert await ProfileStore(client).apply(viewer_id) == 0
    finally:
        await client.aclose()
        await server.stop()


@pytest.mark.parametrize("through", ["append", "consumer apply"])
async def test_a_profile_of_an_older_layout_is_reset_with_a_warning(
    redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture, through: str
) -> None:
    """Pixelcast has never released another layout: an older one loses its evidence and takes the current
    version on its next apply, and reading it before then warns and shows no evidence."""
    viewer_id = await ViewerRegistry(redis_client).create(anonymous=True)
    await redis_client.hset(affinity_key(viewer_id), mapping={"subject=ocean:a": "3.0", "subject=ocean:b": "1.0"})
    await redis_client.hset(profile_key(viewer_id), "schema_version", SCHEMA_VERSION - 1)
    with caplog.at_level("WARNING", logger="personalization.profiles"):
        assert (await _state(redis_client, viewer_id)).evidence == {}
    assert "layout version" in caplog.text

    more = _plan(3)
    for feedback, scene, context in more:
        await EventLog(redis_client).append(viewer_id, feedback, scene, context=context, apply=through == "append")
    if through == "consumer apply":
        assert await ProfileStore(redis_client).apply(viewer_id) == 3
    assert await redis_client.hget(profile_key(viewer_id), "schema_version") == str(SCHEMA_VERSION)
    after = await _state(redis_client, viewer_id)
    expected = _expected(more)
    assert after.evidence.keys() == expected.evidence.keys()
    for cell, (a, b) in expected.evidence.items():
        assert after.evidence[cell] == pytest.approx([a, b], abs=1e-9), cell
    assert await redis_client.ttl(affinity_key(viewer_id)) > 0  # the reset hash keeps the viewer's TTL


async def test_a_full_cell_moves_to_its_overflow_fields_without_losing_evidence(redis_client: aioredis.Redis) -> None:
    viewer_id = await ViewerRegistry(redis_client).create()
    nearly_full = (5 << CELL_SHIFT) + CELL_MOVE_B_AT - 500  # b one half-skip below the move
    await redis_client.hset(affinity_key(viewer_id), "subject=ocean", nearly_full)
    log = EventLog(redis_client)
    await log.append(viewer_id, Feedback("skip"), {"subject": "ocean"}, apply=True)  # b + 1000: the cell moves
    await log.append(viewer_id, Feedback("like"), {"subject": "ocean"}, apply=True)  # starts the cell again
    fields = await redis_client.hgetall(affinity_key(viewer_id))
    assert int(fields["subject=ocean#a"]) == 5 and int(fields["subject=ocean#b"]) == CELL_MOVE_B_AT + 500
    assert int(fields["subject=ocean"]) == 2000 << CELL_SHIFT
    a, b = (await _state(redis_client, viewer_id)).evidence[("", "subject", "ocean")]
    assert a == pytest.approx((5 + 2000) / EVIDENCE_SCALE) and b == pytest.approx(
        (CELL_MOVE_B_AT + 500) / EVIDENCE_SCALE
    )
