"""`pixelcast bench stream`: K real WebRTC viewers over loopback, each with its own prompt.

What each viewer's client measures on decoded frames: frames/s received, stalls (gaps longer than
two frame intervals of the rate the stream runs at), time to first frame, and, for one viewer, how
long a steer takes to show.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from streamer.whep_client import WhepClient, use_loopback_only

from .deployment import loopback_deployment
from .report import machine, percentiles_ms, write_json
from .server_process import ServerProcess

PROMPTS = (
    "a calm ocean at sunset",
    "a neon city at night in the rain",
    "snowy mountains at dawn",
    "a desert at noon",
    "a forest in the fog at dusk",
    "a volcano at night",
    "a waterfall at noon",
    "the night sky full of stars",
)
STEER_FROM, STEER_TO = "a desert at noon", "a neon city at night"
CHANGE_FRACTION = 0.5  # a steer is visible once the picture moved half way to its new look
HOLD_FRAMES = 5  # and stays there this many frames in a row (a passing flicker is not the steer)
ADMISSION_PATIENCE_S = 20.0  # a refused viewer retries after Retry-After, as a player would, this long
STEADY_LEVELS = 5.0  # the steer waits for a second in which the picture's mean colour stayed this close
STEER_WINDOW_S = 5.0  # ... for at most this long after the middle of the run (and 3.5 s before its end)


class ViewerProbe:
    """One viewer: connects, steers to its own prompt, and records decoded frames with their times."""

    def __init__(self, url: str, prompt: str) -> None:
        self.client = WhepClient(url)
        self.prompt = prompt
        self.times: list[float] = []
        self.means: list[np.ndarray] = []
        self.first_frame_seconds: float | None = None
        self.refusals = 0
        self.until = float("inf")  # receiving stops here; set once every viewer is connected
        self._url = url
        self._started = 0.0

    async def start(self, patience: float = ADMISSION_PATIENCE_S) -> bool:
        """Connect, retrying after `Retry-After` while refused (503) for up to `patience` seconds.

        False when the server still turned the viewer away at the end.
        """
        give_up = time.perf_counter() + patience
        while True:
            self._started = time.perf_counter()
            response = await self.client.connect()
            if response.status_code != 503:
                break
            self.refusals += 1
            wait = float(response.headers.get("retry-after", "1"))
            if time.perf_counter() + wait > give_up:
                return False  # the caller closes the client
            await self.client.close()
            await asyncio.sleep(wait)
            self.client = WhepClient(self._url)
        if response.status_code != 201:
            raise RuntimeError(f"WHEP refused a viewer: {response.status_code} {response.text}")
        await self.client.wait_channel_open()
        self.client.send({"type": "steer", "text": self.prompt})
        return True

    async def receive(self) -> None:
        while time.perf_counter() < self.until:
            frame = (await self.client.frames(1))[0]
            now = time.perf_counter()
            if self.first_frame_seconds is None:
                self.first_frame_seconds = now - self._started
            self.times.append(now)
            self.means.append(frame.reshape(-1, 3).mean(axis=0))

    def steady(self, seconds: float = 1.0) -> bool:
        """Whether the picture's mean colour stayed within `STEADY_LEVELS` of its mean over the last `seconds`.

        The planner changes scenes on its own every few seconds; a steer sent during such a change could
        not be told from it.
        """
        now = time.perf_counter()
        recent = [m for t, m in zip(self.times, self.means) if now - seconds < t <= now]
        if len(recent) < 2:
            return False
        stacked = np.stack(recent)
        return bool(np.linalg.norm(stacked - stacked.mean(axis=0), axis=1).max() < STEADY_LEVELS)

    def summary(self, fps: int, after: float) -> dict[str, Any]:
        times = [t for t in self.times if t >= after]
        gaps = np.diff(times) if len(times) > 1 else np.array([])
        duration = times[-1] - times[0] if len(times) > 1 else 0.0
        return {
            "prompt": self.prompt,
            "frames": len(times),
            "fps": round((len(times) - 1) / duration, 2) if duration else 0.0,
            # a stall: a gap over two frame intervals, at the frame rate the stream actually runs at
            # (adaptive control may have lowered it from the target)
            "stalls": int((gaps > 2.0 * float(np.median(gaps))).sum()) if len(gaps) else 0,
            "longest_gap_ms": round(float(gaps.max()) * 1000, 1) if len(gaps) else None,
            "time_to_first_frame_s": round(self.first_frame_seconds or float("nan"), 3),
            **{f"frame_interval_{k}": v for k, v in percentiles_ms(list(gaps)).items()},
        }


def steer_visible_seconds(probe: ViewerProbe, steered_at: float) -> float | None:
    """Seconds from the steer until the mean colour moved `CHANGE_FRACTION` of the way towards its new
    level and stayed there for `HOLD_FRAMES` frames.

    Movement counts only along the line from the old look to the new one, so a scene that swings in
    some other direction does not pass for the steer. `None` when the steer changed too little to
    measure, or when the stream already met the test in the second before the steer: then it cannot
    tell the steer from the scene's own motion.
    """
    times = np.asarray(probe.times)
    means = np.asarray(probe.means)
    window = (times < steered_at) & (times > steered_at - 1.0)
    # the steered scene's look, before the planner may move on from it (it holds a scene for a few seconds)
    after = means[(times > steered_at + 2.0) & (times < steered_at + 3.0)]
    if not window.any() or not len(after):
        return None
    start, end = means[window].mean(axis=0), after.mean(axis=0)
    distance = float(np.linalg.norm(end - start))
    if distance < 5.0:  # under 5 grey levels: the steer did not visibly change the picture
        return None
    progress = (means - start) @ ((end - start) / distance)
    moved = progress >= CHANGE_FRACTION * distance
    held = np.array([moved[i : i + HOLD_FRAMES].all() and i + HOLD_FRAMES <= len(moved) for i in range(len(moved))])
    if (held & window).any():
        return None
    for i in np.flatnonzero((times > steered_at) & held):
        return float(times[i] - steered_at)
    return None


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime in clock ticks (USER_HZ = 100)


class ViewerLost(RuntimeError):
    """A viewer's session ended before the benchmark was done with it."""


async def _stop(probes: list[ViewerProbe], receivers: list[asyncio.Task[None]]) -> None:
    """Stop receiving (receivers that are done stay as they are) and close every viewer, whatever state its
    session is in."""
    for task in receivers:
        task.cancel()
    await asyncio.gather(*receivers, return_exceptions=True)
    for probe in probes:
        await probe.client.close()


def _worker_of(probe: ViewerProbe) -> str:
    """The worker a viewer landed on, from its session's path (``/w/<id>/...``); "" for a lone server."""
    location = probe.client.location or ""
    return location.split("/")[2] if location.startswith("/w/") else ""


async def _run(url: str, pids: list[int], viewers: int, seconds: float, fps: int) -> dict[str, Any]:
    # The first viewer starts from STEER_FROM (it is the one that steers later); every viewer has its own prompt.
    prompts = [STEER_FROM, *(p for p in PROMPTS if p != STEER_FROM)]
    probes = [ViewerProbe(url, prompts[i % len(prompts)]) for i in range(viewers)]
    admitted, receivers = [], []
    for probe in probes:  # one after another, each receiving as soon as it is in
        if await probe.start():
            admitted.append(probe)
            receivers.append(asyncio.create_task(probe.receive()))
        else:
            await probe.client.close()
    refusals = sum(p.refusals for p in probes)
    refused = len(probes) - len(admitted)
    probes = admitted
    warm = time.perf_counter() + 2.0  # the first seconds include connecting and the first steer
    end = warm + seconds
    for probe in probes:
        probe.until = end
    cpu_start, wall_start = sum(map(_cpu_seconds, pids)), time.perf_counter()
    with tqdm(total=round(end - time.perf_counter()), desc=f"bench stream x{viewers}", unit="s") as bar:
        steered_at = None
        middle, patience = warm + seconds / 2, max(0.0, min(STEER_WINDOW_S, seconds / 2 - 3.5))
        ticked = time.perf_counter()
        while time.perf_counter() < end:
            await asyncio.sleep(0.1)
            if time.perf_counter() - ticked >= 1.0:
                ticked += 1.0
                bar.update(1)
            now = time.perf_counter()
            if steered_at is None and now > middle and (probes[0].steady() or now > middle + patience):
                client = probes[0].client
                if client.channel.readyState != "open":
                    await _stop(probes, receivers)
                    raise ViewerLost(
                        f"the steering viewer's control channel is {client.channel.readyState}"
                        f" (peer connection {client.pc.connectionState}) before its steer"
                    )
                client.send({"type": "steer", "text": STEER_TO})
                steered_at = time.perf_counter()
    await asyncio.gather(*receivers)
    cpu = (sum(map(_cpu_seconds, pids)) - cpu_start) / (time.perf_counter() - wall_start)
    results = [{**p.summary(fps, warm), "worker": _worker_of(p)} for p in probes]
    await _stop(probes, receivers)
    latency = steer_visible_seconds(probes[0], steered_at) if steered_at else None
    return {
        "admitted": len(probes),
        "refused_in_the_end": refused,
        "refusals_503_before_admission": refusals,
        "viewers": results,
        "min_fps": min(r["fps"] for r in results),
        "total_stalls": sum(r["stalls"] for r in results),
        "max_time_to_first_frame_s": max(r["time_to_first_frame_s"] for r in results),
        "steer_visible_s": round(latency, 3) if latency is not None else None,
        "server_cpu_cores": round(cpu, 2),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `pixelcast bench stream`."""
    parser.add_argument("--viewers", type=int, default=1, help="concurrent viewers (default 1)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds (default 30)")
    parser.add_argument("--fps", type=int, default=24, help="target frames per second (default 24)")
    parser.add_argument("--steps", type=int, default=1, choices=(1, 2, 3, 4))
    parser.add_argument("--model", help="pipeline folder (default: the shipped model)")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="0: one server (default); N: N workers on a Redis Cluster behind nginx, viewers connecting through nginx",
    )
    parser.add_argument("--json", type=Path, required=True, help="where to write the report")


@contextlib.contextmanager
def _servers(args: argparse.Namespace, extra: list[str]) -> Iterator[tuple[str, list[ServerProcess]]]:
    """One server, or ``--workers`` of them behind nginx: (the URL viewers use, the server processes)."""
    if args.workers <= 0:
        with ServerProcess(*extra) as server:
            yield server.url, [server]
    else:
        with loopback_deployment(args.workers, worker_args=extra) as (url, servers, _):
            yield url, servers


def main(args: argparse.Namespace) -> int:
    """Entry point of `pixelcast bench stream`."""
    use_loopback_only()
    extra = ["--fps", str(args.fps), "--steps", str(args.steps), "--max-sessions", str(max(8, args.viewers))]
    if args.model:
        extra += ["--model", args.model]
    with _servers(args, extra) as (url, servers):
        pids = [server.process.pid for server in servers if server.process is not None]
        try:
            measured = asyncio.run(_run(url, pids, args.viewers, args.seconds, args.fps))
        except ViewerLost as lost:
            tail = "\n".join(servers[0].log_lines("")[-30:])
            print(f"pixelcast bench stream: {lost}; the server's log ends:\n{tail}")
            return 1
        # why viewers were turned away, and what adaptive control did, in the servers' own words
        measured["server_startup_s"] = round(max(s.startup_seconds or float("nan") for s in servers), 1)
        measured["server_decisions"] = [
            line.split(" INFO streamer.adaptive: ", 1)[-1]
            for server in servers
            for line in server.log_lines("streamer.adaptive:")
        ]
        if args.workers > 0:
            landed = [r["worker"] for r in measured["viewers"]]
            measured["admitted_by_worker"] = {f"w{i}": landed.count(f"w{i}") for i in range(1, args.workers + 1)}
    report = {
        "benchmark": "stream",
        "machine": machine(),
        "viewers": args.viewers,
        "seconds": args.seconds,
        "target_fps": args.fps,
        "steps": args.steps,
        "workers_behind_nginx": args.workers,
        **measured,
    }
    write_json(report, args.json)
    print(
        f"{report['admitted']} of {args.viewers} viewer(s) admitted "
        f"({report['refusals_503_before_admission']} 503 answers on the way): "
        f"min {report['min_fps']} fps, {report['total_stalls']} stalls, "
        f"first frame <= {report['max_time_to_first_frame_s']} s, steer visible {report['steer_visible_s']} s, "
        f"server CPU {report['server_cpu_cores']} cores"
    )
    return 0
