"""Waiting in async tests for something the code under test does in the background."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], object], seconds: float = 60.0) -> None:
    """Return once `condition()` is true, checking every 10 ms; `TimeoutError` after `seconds`.

    Generous by default: on a loaded CI machine a background task may wait seconds for its turn.
    """
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)
