"""Handing the memory that closed sessions freed back to the operating system.

glibc's malloc gives threads their own arenas (up to eight per core) and keeps what is freed in them for
reuse, so a server whose viewers come and go, each with a peer connection, an encoder and frames handled
on several threads, holds tens of MiB that no live session uses (about 45 MiB in `pixelcast bench churn`
on 2 cores). Two arenas, and a trim shortly after sessions close, keep it near the size its live sessions
need. (The growth that never stopped was another matter: garbage cycles the collector never reached; see
the full pass after `gc.freeze()` in `streamer.server`.) Elsewhere than glibc both are no-ops.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools

M_ARENA_MAX = -8  # mallopt's parameter number for the arena limit (glibc's malloc.h)
SERVER_ARENAS = 2
RELEASE_DELAY_SECONDS = 2.0


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library, where it is glibc (the one with `mallopt` and `malloc_trim`)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def limit_arenas(count: int = SERVER_ARENAS) -> bool:
    """Let malloc create at most `count` arenas from now on (call before threads start); False where it cannot."""
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, count))


def release_free_memory() -> bool:
    """Give the free memory malloc holds back to the operating system (blocking: a few ms on a big heap);
    whether the C library could."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


class FreedMemoryRelease:
    """Runs `release_free_memory` on a worker thread `delay` seconds after it is asked to, once for all the
    requests in between: a closed session's peer connection, encoder and frames are freed over the moments
    after it closes, and one release serves a burst of closes."""

    def __init__(self, delay: float = RELEASE_DELAY_SECONDS) -> None:
        self.delay = delay
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def request(self) -> None:
        """Release freed memory soon (call from the event loop); nothing where the C library cannot."""
        if _glibc() is None:
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._run(), name="pixelcast-release-memory")

    async def _run(self) -> None:
        while True:
            self._again = False
            await asyncio.sleep(self.delay)
            if not await asyncio.to_thread(release_free_memory) or not self._again:
                return

    async def wait(self) -> None:
        """Until the release asked for, if any, has run."""
        if self._task is not None:
            await self._task
