"""`pixelcast bench churn`: N connect / stream / disconnect cycles of real aiortc viewers, and what they leave.

Every third viewer goes away without DELETE (it closes its peer connection, as a closed tab would). Before
and after, it reads the server's asyncio tasks (`/metrics`), threads, open file descriptors and RSS
(`/proc`), and the census of anonymous viewers' Redis keys; the report says whether each stayed within
`BOUNDS`. "Before" is taken after `WARMUP_CYCLES`, whose first sessions start the server's lazy pools.
RSS is also sampled along the way (`RSS_SAMPLES` times), so a report shows whether memory levels off or
keeps growing: its growth per 100 cycles over the second half of the run is reported beside the total.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from pathlib import Path
from typing import Any

import httpx

from personalization.census import key_census
from personalization.store import connect
from streamer.whep_client import WhepClient, use_loopback_only

from .report import machine, write_json
from .server_process import ServerProcess

WARMUP_CYCLES = 2
FRAMES_PER_CYCLE = 3
RSS_SAMPLES = 10
DRAIN_SECONDS = 30.0  # how long sessions of viewers that left without DELETE may take to be noticed
# What N cycles may leave behind, after warm-up. Anonymous viewers keep their profile (it expires a week after
# their last visit), so their keys grow with N; every one of those keys must carry that TTL.
BOUNDS = {
    "asyncio_tasks": 5,
    "threads": 4,
    "open_fds": 16,
    "rss_mib": 96.0,
    "anonymous_keys_without_ttl": 0,
    "sessions": 0,
}


def _proc(pid: int) -> dict[str, Any]:
    """Threads, open file descriptors and resident memory of a process (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    rss_kib = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    return {"threads": threads, "open_fds": len(os.listdir(f"/proc/{pid}/fd")), "rss_mib": round(rss_kib / 1024, 1)}


async def _tasks(http: httpx.AsyncClient) -> int:
    text = (await http.get("/metrics")).text
    return int(float(re.search(r"^pixelcast_asyncio_tasks (\S+)", text, re.M).group(1)))  # type: ignore[union-attr]


async def _snapshot(http: httpx.AsyncClient, pid: int, redis_url: str) -> dict[str, Any]:
    redis = connect(redis_url)
    try:
        census = (await key_census(redis)).to_json()
    finally:
        await redis.aclose()
    health = (await http.get("/healthz")).json()
    return {"asyncio_tasks": await _tasks(http), **_proc(pid), "sessions": health["sessions"], "redis": census}


async def _cycle(url: str, http: httpx.AsyncClient, delete: bool) -> None:
    """One anonymous viewer: connect, receive a few frames, leave (with or without DELETE)."""
    client = WhepClient(url)
    try:
        response = await client.connect()
        if response.status_code != 201:
            raise RuntimeError(f"WHEP refused a viewer: {response.status_code} {response.text}")
        await client.wait_channel_open()
        await client.frames(FRAMES_PER_CYCLE)
        if delete:
            assert client.location is not None
            await http.delete(client.location)
    finally:
        await client.close()


async def _drained(http: httpx.AsyncClient) -> None:
    """Wait until the server has noticed every viewer that left (no session left), or DRAIN_SECONDS passed."""
    deadline = asyncio.get_running_loop().time() + DRAIN_SECONDS
    while (await http.get("/healthz")).json()["sessions"] and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)


async def _run(url: str, pid: int, redis_url: str, cycles: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for i in range(WARMUP_CYCLES):
            await _cycle(url, http, delete=i % 2 == 0)
        await _drained(http)
        before = await _snapshot(http, pid, redis_url)
        every = max(1, cycles // RSS_SAMPLES)
        samples = [(0, before["rss_mib"])]
        for i in range(cycles):
            await _cycle(url, http, delete=i % 3 != 2)
            if (i + 1) % every == 0 and i + 1 < cycles:
                samples.append((i + 1, _proc(pid)["rss_mib"]))
        await _drained(http)
        after = await _snapshot(http, pid, redis_url)
        samples.append((cycles, after["rss_mib"]))
    growth = {key: round(after[key] - before[key], 1) for key in ("asyncio_tasks", "threads", "open_fds", "rss_mib")}
    growth["anonymous_keys_without_ttl"] = after["redis"]["anonymous_keys_without_ttl"]
    growth["sessions"] = after["sessions"]
    return {
        "before": before,
        "after": after,
        "growth": growth,
        "bounds": BOUNDS,
        "within_bounds": all(growth[key] <= bound for key, bound in BOUNDS.items()),
        "anonymous_viewers_added": after["redis"]["anonymous_viewers"] - before["redis"]["anonymous_viewers"],
        "rss_mib_by_cycle": samples,
        "rss_mib_per_100_cycles_second_half": late_growth(samples),
    }


def late_growth(samples: list[tuple[int, float]]) -> float | None:
    """RSS growth per 100 cycles between the sample nearest the run's middle and the last one (None for
    fewer than two samples): a leak keeps it up, an allocator that settles brings it towards 0."""
    if len(samples) < 2:
        return None
    last_cycle, last_rss = samples[-1]
    middle_cycle, middle_rss = min(samples[:-1], key=lambda s: abs(s[0] - last_cycle / 2))
    if last_cycle == middle_cycle:
        return None
    return round((last_rss - middle_rss) / (last_cycle - middle_cycle) * 100, 1)


def _redis_url(server: ServerProcess) -> str:
    lines = server.log_lines("Pixelcast ready on")
    if not lines:
        raise RuntimeError("the server's log does not say which Redis it uses")
    return lines[-1].rsplit("(Redis: ", 1)[1].rstrip(")")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `pixelcast bench churn`."""
    parser.add_argument("--cycles", type=int, default=100, help="connect/stream/disconnect cycles (default 100)")
    parser.add_argument("--fps", type=int, default=12, help="frames per second of each stream (default 12)")
    parser.add_argument("--json", type=Path, required=True, help="where to write the report")


def main(args: argparse.Namespace) -> int:
    """Entry point of `pixelcast bench churn`; exit status 1 when something grew past its bound."""
    if args.cycles < 1:
        raise SystemExit("pixelcast bench churn: --cycles must be at least 1")
    use_loopback_only()
    with ServerProcess("--fps", str(args.fps)) as server:
        assert server.process is not None
        measured = asyncio.run(_run(server.url, server.process.pid, _redis_url(server), args.cycles))
    report = {"benchmark": "churn", "machine": machine(), "cycles": args.cycles, **measured}
    write_json(report, args.json)
    print(
        f"{args.cycles} cycles ({args.cycles // 3} without DELETE): growth {measured['growth']}; "
        f"{'within' if measured['within_bounds'] else 'PAST'} the bounds {BOUNDS}; RSS over the second half "
        f"{measured['rss_mib_per_100_cycles_second_half']} MiB per 100 cycles"
    )
    return 0 if measured["within_bounds"] else 1
