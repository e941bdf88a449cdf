"""Waiting in async tests for something the code under test does in the background."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable


async def until(
    condition: Callable[[], object],
    seconds: float = 60.0,
    *,
    failure: str | Callable[[], str] | None = None,
    every: float = 0.01,
) -> None:
    """Return once `condition()` is true (awaited, where it is a coroutine function), checking every `every`
    seconds; after `seconds`, fail with `failure` (or a function that words it from the state then).

    Generous by default: on a loaded CI machine a background task may wait seconds for its turn.
    """
    try:
        async with asyncio.timeout(seconds):
            while True:
                met = condition()
                if await met if inspect.isawaitable(met) else met:
                    return
                await asyncio.sleep(every)
    except TimeoutError:
        if failure is None:
            raise
        raise AssertionError(f"{failure() if callable(failure) else failure} (waited {seconds:g} s)") from None
