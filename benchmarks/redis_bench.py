"""`pixelcast bench redis`: feedback ingestion into Redis profiles, with an exact count check.

W concurrent asyncio writers (one per viewer, like live sessions) append E events in total through
the real ``EventLog.append(..., apply=True)``: one script call appends the event to the viewer's
stream and applies it to the profile (idempotent). Appends of different viewers that arrive while a
round trip is in flight share the next one (group commit), as they do in the server. ``--batch B``
lets a writer send B events per call (``EventLog.append_many``), as a server would when it buffers a
burst of feedback.

Reported: events/s ingested, p50/p99 event-to-profile latency (from the call until the profile
reflects the event, i.e. the apply returned), and checks: counters == events sent, applied exactly
once, a replay of every stream applies nothing and leaves the posteriors untouched, and the
consumer group then finds nothing left to apply.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis.asyncio as aioredis

from models import reporting
from personalization.consumer import EventConsumer
from personalization.context import Context
from personalization.events import EventLog
from personalization.keys import affinity_key, events_key, profile_key
from personalization.messages import Feedback
from personalization.profiles import ProfileState, ProfileStore
from personalization.redis_server import EmbeddedRedis
from personalization.store import connect
from personalization.viewers import ViewerRegistry

_VOCABULARY = {  # a stand-in of the world's vocabulary: the benchmark needs only its shape
    "subject": ("ocean", "forest", "city", "mountains", "desert", "night_sky", "waterfall", "volcano"),
    "palette": ("dawn", "noon", "sunset", "dusk", "night", "neon"),
    "weather": ("clear", "rain", "snow", "fog"),
    "pace": ("calm", "lively"),
    "camera": ("static", "pan_left", "pan_right", "zoom_in"),
}


def machine() -> dict[str, Any]:
    """What the numbers were measured on (no torch needed), with the load when the run began."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        **reporting.machine(with_torch=False),
        "python": platform.python_version(),
        "load_average_1m_at_start": round(load[0], 2) if load else None,
    }


def _events(rng: np.random.Generator, n: int) -> list[tuple[Feedback, dict[str, str], Context]]:
    kinds = rng.choice(3, size=n, p=[0.15, 0.25, 0.6])
    out = []
    for i in range(n):
        scene = {a: v[int(rng.integers(len(v)))] for a, v in _VOCABULARY.items()}
        kind = ("like", "skip", "dwell")[int(kinds[i])]
        seconds = round(float(rng.uniform(0, 1.5)), 3) if kind == "dwell" else None
        context = Context(("night", "morning", "afternoon", "evening")[i % 4], ("desktop", "mobile")[i % 2])
        out.append((Feedback(kind, segment_id=i, seconds=seconds), scene, context))
    return out


async def _writer(
    log: EventLog, viewer_id: str, events: list[tuple[Feedback, dict[str, str], Context]], batch: int
) -> list[float]:
    latencies: list[float] = []
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        t0 = time.perf_counter()
        if batch == 1:
            feedback, scene, context = chunk[0]
            await log.append(viewer_id, feedback, scene, context=context, apply=True)
        else:
            await log.append_many(viewer_id, chunk, apply=True)
        latencies.extend([time.perf_counter() - t0] * len(chunk))
    return latencies


def _server_cpu(info: dict[str, Any]) -> float:
    return float(info.get("used_cpu_sys", 0.0)) + float(info.get("used_cpu_user", 0.0))


async def _check(
    redis: aioredis.Redis, viewers: list[str], plan: dict[str, list[tuple[Feedback, dict[str, str], Context]]]
) -> dict[str, Any]:
    """Exact counts, posteriors equal to an in-memory replay, and a replay in Redis that changes nothing."""
    profiles = ProfileStore(redis)
    problems: list[str] = []
    for viewer_id in viewers:
        sent = plan[viewer_id]
        profile = await redis.hgetall(profile_key(viewer_id))
        counted = sum(int(profile.get(f"n_{k}", 0)) for k in ("like", "skip", "dwell"))
        if counted != len(sent) or int(profile.get("n_applied", 0)) != len(sent):
            problems.append(f"{viewer_id}: sent {len(sent)}, counted {counted}, applied {profile.get('n_applied')}")
        if await redis.xlen(events_key(viewer_id)) != len(sent):
            problems.append(f"{viewer_id}: stream length differs from events sent")
        expected = ProfileState()
        for feedback, scene, context in sent:
            expected.apply(feedback.kind, feedback.seconds, scene, context.bucket)
        stored = ProfileState.from_fields(await redis.hgetall(affinity_key(viewer_id)))
        for cell, (a, b) in expected.evidence.items():
            got = stored.evidence.get(cell, [0.0, 0.0])
            if abs(got[0] - a) > 1e-6 or abs(got[1] - b) > 1e-6:
                problems.append(f"{viewer_id}: posterior {cell} is {got}, expected {[a, b]}")
                break
    before = {v: await redis.hgetall(affinity_key(v)) for v in viewers}
    replayed = 0
    for viewer_id in viewers:  # replay: ask for every event again, one by one
        for entry_id, _ in await redis.xrange(events_key(viewer_id)):
            replayed += await profiles.apply(viewer_id, upto=entry_id)
        replayed += await profiles.apply(viewer_id)
    after = {v: await redis.hgetall(affinity_key(v)) for v in viewers}
    consumer = EventConsumer(redis, name="bench")
    consumer_applied = await consumer.drain()
    return {
        "exact_counts": not problems,
        "problems": problems[:10],
        "replay_applied": replayed,
        "replay_changed_profiles": before != after,
        "consumer_pointers": consumer.pointers,
        "consumer_applied": consumer_applied,
    }


async def run_async(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark against ``args.redis_url`` or a fresh embedded Redis."""
    server: EmbeddedRedis | None = None
    tmp: tempfile.TemporaryDirectory[str] | None = None
    url = args.redis_url
    if url is None:
        tmp = tempfile.TemporaryDirectory(prefix="pc-bench-redis-")
        server = EmbeddedRedis(Path(tmp.name))
        url = await server.start()
    redis = connect(url, max_connections=args.writers + 8)
    try:
        registry = ViewerRegistry(redis)
        log = EventLog(redis)
        viewers = [await registry.create() for _ in range(args.writers)]
        rng = np.random.default_rng(args.seed)
        all_events = _events(rng, args.events)
        plan = {v: all_events[i :: args.writers] for i, v in enumerate(viewers)}
        warm = await registry.create()  # loads the scripts and opens connections, outside the timing
        gc.freeze()  # the plan is long-lived: keep it out of the collector's full passes, as the server does
        await asyncio.gather(*(log.append(warm, Feedback("like"), {"subject": "ocean"}, apply=True) for _ in viewers))
        cpu_before, client_before = _server_cpu(await redis.info("cpu")), time.process_time()
        started = time.perf_counter()
        results = await asyncio.gather(*(_writer(log, v, plan[v], args.batch) for v in viewers))
        elapsed = time.perf_counter() - started
        server_cpu = _server_cpu(await redis.info("cpu")) - cpu_before
        client_cpu = time.process_time() - client_before
        latencies = np.array([x for r in results for x in r]) * 1000.0
        checks = await _check(redis, viewers, plan)
        info = await redis.info("server")
    finally:
        await redis.aclose()
        if server is not None:
            await server.stop()
        if tmp is not None:
            tmp.cleanup()
    return {
        "benchmark": "redis",
        "machine": machine(),
        "redis": {"url": "embedded" if args.redis_url is None else "given", "version": info.get("redis_version")},
        "writers": args.writers,
        "events": args.events,
        "batch": args.batch,
        "seconds": round(elapsed, 3),
        "events_per_second": round(args.events / elapsed, 1),
        "latency_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 3),
            "p99": round(float(np.percentile(latencies, 99)), 3),
            "max": round(float(latencies.max()), 3),
        },
        "cpu_seconds": {"redis_server": round(server_cpu, 3), "python_client": round(client_cpu, 3)},
        "latency_is": "from the append call until it returned with the event applied to the profile",
        "checks": checks,
        "targets": {"events_per_second": 20_000, "p99_ms": 5.0},
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `pixelcast bench redis`."""
    parser.add_argument("--writers", type=int, default=64, help="concurrent writers, one viewer each (default 64)")
    parser.add_argument("--events", type=int, default=100_000, help="events in total (default 100000)")
    parser.add_argument("--batch", type=int, default=1, help="events per round trip per writer (default 1)")
    parser.add_argument("--redis-url", help="a Redis server to use (default: a fresh embedded one; FLUSHDB is not run)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated events (default 0)")
    parser.add_argument("--json", type=Path, required=True, help="where to write the report")


def main(args: argparse.Namespace) -> int:
    """Entry point of `pixelcast bench redis`."""
    report = asyncio.run(run_async(args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    lat = report["latency_ms"]
    print(
        f"{report['events_per_second']:.0f} events/s, p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, "
        f"exact counts {report['checks']['exact_counts']}, replay applied {report['checks']['replay_applied']}"
    )
    return 0 if report["checks"]["exact_counts"] and not report["checks"]["replay_changed_profiles"] else 1
