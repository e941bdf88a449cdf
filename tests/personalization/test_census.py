"""The key census the churn benchmark reads: viewers, anonymous viewers' keys, their TTLs, orphans."""

from __future__ import annotations

from typing import Any

from personalization.census import key_census
from personalization.keys import steers_key
from personalization.viewers import ViewerRegistry
from tests.personalization.conftest import redis_client  # noqa: F401  (a real Redis)


async def test_census_counts_anonymous_keys_and_those_without_a_ttl(redis_client: Any) -> None:  # noqa: F811
    viewers = ViewerRegistry(redis_client)
    await viewers.create()
    anonymous = await viewers.create(anonymous=True)
    await viewers.record_steer(anonymous, "the ocean")
    census = await key_census(redis_client)
    assert (census.viewers, census.anonymous_viewers) == (2, 1)
    assert census.anonymous_keys >= 2 and census.anonymous_keys_without_ttl == 0 and census.orphan_keys == 0

    await redis_client.persist(steers_key(anonymous))  # a key that would never expire: a leak
    await redis_client.rpush("pc:{v:gone}:steers", "x")  # a key whose viewer has no profile
    census = await key_census(redis_client)
    assert census.anonymous_keys_without_ttl == 1 and census.orphan_keys == 1
