"""Waiting in async tests for something the code under test does in the background."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable


async def until(condition: Callable[[], object], seconds: float = 60.0) -> None:
    """Return once `condition()` is true (awaited, where it is a coroutine function), checking every 10 ms;
    `TimeoutError` after `seconds`.

    Generous by default: on a loaded CI machine a background task may wait seconds for its turn.
    """
    async with asyncio.timeout(seconds):
        while True:
            met = condition()
            if await met if inspect.isawaitable(met) else met:
                return
            await asyncio.sleep(0.01)
