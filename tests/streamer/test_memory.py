"""Memory a closed session freed goes back to the system instead of staying with the server."""

from __future__ import annotations

import ctypes
import re
import threading

import pytest

from streamer.memory import FreedMemoryRelease, _glibc

CHUNKS = 64 * 1024  # of 1 KiB each: 64 MiB, small enough that malloc keeps them in the thread's arena


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1)) / 1024  # type: ignore[union-attr]


def _allocate_and_free_on_a_thread(libc: ctypes.CDLL) -> None:
    """What a session's threads do: many small allocations, all freed when the session ends."""

    def work() -> None:
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        chunks = [libc.malloc(1024) for _ in range(CHUNKS)]
        for chunk in chunks:
            ctypes.memset(chunk, 1, 1024)  # touched, so the pages are resident
        for chunk in chunks[:-1]:  # the last one pins the top of the heap: only a trim can give the rest back
            libc.free(chunk)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()


async def test_freed_memory_goes_back_to_the_system() -> None:
    libc = _glibc()
    if libc is None:
        pytest.skip("not glibc: malloc_trim is not there, and nothing is released")
    _allocate_and_free_on_a_thread(libc)
    held = _rss_mib()
    release = FreedMemoryRelease(delay=0.1)
    release.request()
    release.request()  # asked again while the first runs: served by one more run, not left pending
    await release.wait()
    assert _rss_mib() < held - 32, f"RSS {held:.0f} MiB before the release, {_rss_mib():.0f} after"
