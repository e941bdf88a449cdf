"""Group commit: concurrent submits share flushes, each caller gets its own result or error."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from personalization.group_commit import GroupCommit


class _Recorder:
    """A flush that doubles numbers, fails on negative ones, and remembers its batches."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await asyncio.sleep(0.01)  # a round trip
        return [ValueError(f"bad {i}") if i < 0 else 2 * i for i in items]


async def test_concurrent_submits_share_flushes_and_get_their_own_results() -> None:
    flush = _Recorder()
    commit: GroupCommit[int, int] = GroupCommit(flush, max_batch=8)
    results = await asyncio.gather(*(commit.submit(i) for i in range(20)))
    assert results == [2 * i for i in range(20)]
    assert sorted(i for batch in flush.batches for i in batch) == list(range(20)), "each item flushed once"
    assert len(flush.batches) < 20 and max(len(b) for b in flush.batches) <= 8
    await commit.aclose()


async def test_an_item_error_reaches_only_its_caller() -> None:
    commit: GroupCommit[int, int] = GroupCommit(_Recorder())
    good, bad = await asyncio.gather(commit.submit(3), commit.submit(-1), return_exceptions=True)
    assert good == 6 and isinstance(bad, ValueError)
    await commit.aclose()


async def test_a_failing_flush_fails_its_batch_and_the_next_one_still_runs() -> None:
    calls = 0

    async def flaky(items: Sequence[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("redis went away")
        return list(items)

    commit: GroupCommit[int, int] = GroupCommit(flaky)
    with pytest.raises(ConnectionError):
        await commit.submit(1)
    assert await commit.submit(2) == 2
    await commit.aclose()


async def test_a_burst_is_spread_over_the_free_flushes() -> None:
    """64 items at once with 2 flushes allowed: two halves in flight together, not one big batch and a straggler."""
    flush = _Recorder()
    commit: GroupCommit[int, int] = GroupCommit(flush, max_batch=256, max_in_flight=2)
    assert await asyncio.gather(*(commit.submit(i) for i in range(64))) == [2 * i for i in range(64)]
    assert [len(batch) for batch in flush.batches] == [32, 32]
    await commit.aclose()
