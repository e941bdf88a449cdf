"""Token signing keys shared through Redis: every worker verifies what another issued."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis

from personalization.shared_keys import TOKEN_KEYS_KEY, load_or_create_shared_keys
from personalization.tokens import TokenSigner, load_or_create_keys

DAY = 86400.0


async def test_workers_with_their_own_data_dirs_share_one_key_set(
    redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    first, second = await asyncio.gather(
        load_or_create_shared_keys(redis_client, tmp_path / "worker-1"),
        load_or_create_shared_keys(redis_client, tmp_path / "worker-2"),
    )
    assert first.to_json() == second.to_json(), "the worker that started second took the first one's keys"
    token = TokenSigner(first).issue("viewer_1")
    assert TokenSigner(second).verify(token) == "viewer_1"
    assert not (tmp_path / "worker-1").exists(), "the shared keys live in Redis only"


async def test_a_servers_own_keys_seed_the_shared_set_so_its_tokens_stay_valid(
    redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    before = TokenSigner(load_or_create_keys(tmp_path)).issue("returning")
    shared = await load_or_create_shared_keys(redis_client, tmp_path)
    assert TokenSigner(shared).verify(before) == "returning"
    assert await redis_client.exists(TOKEN_KEYS_KEY)


async def test_workers_rotating_at_once_agree_on_one_new_key(redis_client: aioredis.Redis, tmp_path: Path) -> None:
    start = 1_000_000.0
    old = await load_or_create_shared_keys(redis_client, tmp_path, now=start)
    token = TokenSigner(old).issue("viewer_2")
    later = start + 31 * DAY
    rotated = await asyncio.gather(
        *(load_or_create_shared_keys(redis_client, tmp_path / str(i), now=later) for i in range(4))
    )
    assert len({keys.current.kid for keys in rotated}) == 1, "one rotation, not one per worker"
    assert rotated[0].current.kid != old.current.kid
    assert [key.kid for key in rotated[0].keys] == [old.current.kid, rotated[0].current.kid]
    assert TokenSigner(rotated[0]).verify(token, now=later) == "viewer_2", "tokens of the replaced key still verify"
