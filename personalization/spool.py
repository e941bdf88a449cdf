"""The event spool: feedback and steers that could not reach Redis, kept on disk until they can.

While Redis is away (dead, restarting, unreachable) a viewer's feedback still counts and a steer's words
are still remembered: each is appended to ``events.spool`` in the data directory, one JSON line per
event, and fsynced (on a thread) before the caller hears back. ``replay`` sends them to Redis once it
answers again, feedback through the same append and idempotent apply as live feedback and steers through
``steers`` (the personalizer's ``store_steer``), then empties the file.

Nothing is counted twice: every event carries its own id (``eid``) from the moment it is first sent,
and ``replay`` skips events whose eid is already in the viewer's stream; a steer carries the time it was
sent, and one no newer than the viewer's last stored steer is skipped. That covers both a replay cut
short by another Redis failure and a write whose reply was lost as Redis died (the script may have run).
Nothing acknowledged is lost: an event is acknowledged only once Redis or the fsynced spool has it, and a
server restarted with a non-empty spool replays it at start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personalization.context import Context
from personalization.errors import PixelcastError, UnknownViewer
from personalization.events import EventLog
from personalization.messages import Feedback

if TYPE_CHECKING:
    from personalization.experimenting import Experiments

logger = logging.getLogger(__name__)

SPOOL_FILE = "events.spool"
MAX_SPOOLED_EVENTS = 100_000  # about 20 MB of JSON lines
REPLAY_INTERVAL = 1.0  # seconds between tries while the spool holds events
# Stream ids carry Redis' clock and spool records this process' clock; search the stream from this long
# before the oldest record so that an event that landed just before Redis died is found whatever the skew.
CLOCK_SKEW_MS = 10 * 60 * 1000
STEER = "steer"  # the kind of a spooled steer; every other kind is feedback

StoreSteer = Callable[[str, str, int], Awaitable[bool]]
"""``(viewer_id, text, sent_ms) -> stored``: False where a steer as new was stored already."""


class SpoolFull(PixelcastError):
    """The spool holds its maximum of events: Redis has been away too long to keep more."""

    status = 503


@dataclass(frozen=True)
class SpooledEvent:
    """One feedback event, or a steer (kind ``steer``, with its ``text``), as written to the spool."""

    eid: str
    viewer: str
    kind: str
    segment_id: int | None
    seconds: float | None
    scene: dict[str, str] | None
    time_of_day: str | None
    device: str | None
    ms: int  # when it was first sent (unix milliseconds)
    experiment: str | None = None  # the experiment the viewer's session ran, whose metrics count the event
    text: str | None = None  # a steer's words

    @property
    def metric_id(self) -> str:
        """What makes counting the event in its experiment's metrics a second time harmless."""
        return f"spooled:{self.eid}"

    @classmethod
    def of(
        cls,
        viewer_id: str,
        feedback: Feedback,
        scene: Mapping[str, str] | None,
        context: Context | None,
        eid: str,
        experiment: str | None = None,
    ) -> SpooledEvent:
        """The record of one event (`experiment`: the one the viewer's session runs, if any)."""
        return cls(
            eid=eid,
            viewer=viewer_id,
            kind=feedback.kind,
            segment_id=feedback.segment_id,
            seconds=feedback.seconds,
            scene=dict(scene) if scene else None,
            time_of_day=context.time_of_day if context is not None else None,
            device=context.device if context is not None else None,
            ms=int(time.time() * 1000),
            experiment=experiment,
        )

    @classmethod
    def steer(
        cls, viewer_id: str, text: str, eid: str, sent_ms: int, experiment: str | None = None
    ) -> SpooledEvent:
        """The record of one steer sent at `sent_ms` (unix ms); `experiment`: the one the viewer's session runs."""
        return cls(
            eid=eid, viewer=viewer_id, kind=STEER, segment_id=None, seconds=None, scene=None, time_of_day=None,
            device=None, ms=sent_ms, experiment=experiment, text=text,
        )  # fmt: skip

    def feedback(self) -> tuple[Feedback, dict[str, str] | None, Context | None]:
        """The ``(feedback, scene, context)`` that ``EventLog.append_many`` takes."""
        context = Context(self.time_of_day, self.device) if self.time_of_day and self.device else None
        return Feedback(self.kind, self.segment_id, self.seconds), self.scene, context  # type: ignore[arg-type]


class EventSpool:
    """A bounded, fsynced, append-only file of events waiting for Redis; ``await EventSpool.open(...)``."""

    def __init__(self, path: Path, events: EventLog, *, max_events: int = MAX_SPOOLED_EVENTS) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, got {max_events}")
        self.path = Path(path)
        self.events = events
        self.max_events = max_events
        self.replayed = 0  # events this spool sent to Redis
        self.duplicates = 0  # events found already in Redis when replayed (their first reply was lost)
        self.experiments: Experiments | None = None  # counts replayed events in their experiments (set by the server)
        self.steers: StoreSteer | None = None  # stores replayed steers (``Personalizer.attach_spool`` sets it)
        self._count = 0
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, data_dir: Path, events: EventLog, *, max_events: int = MAX_SPOOLED_EVENTS) -> EventSpool:
        """The spool of ``data_dir``, with whatever a previous run left in it counted."""
        spool = cls(Path(data_dir) / SPOOL_FILE, events, max_events=max_events)
        spool._count = len(await asyncio.to_thread(spool._read))
        if spool._count:
            logger.warning("event spool %s holds %d events from before; they go to Redis once it answers",
                           spool.path, spool._count)
        return spool

    @property
    def pending(self) -> int:
        """Events waiting for Redis."""
        return self._count

    async def add(self, event: SpooledEvent) -> None:
        """Write one event and fsync it; raises ``SpoolFull`` at ``max_events``."""
        line = json.dumps(asdict(event), separators=(",", ":")) + "\n"
        async with self._lock:
            if self._count >= self.max_events:
                raise SpoolFull(f"the event spool holds its maximum of {self.max_events} events")
            await asyncio.to_thread(self._append, line.encode("utf-8"))
            self._count += 1

    async def replay(self) -> int:
        """Send every spooled event to Redis (skipping ones already there), then empty the spool.

        Returns the events sent. Raises what Redis raises (the spool is then kept whole; the events
        that did land are recognised and skipped by the next replay).
        """
        async with self._lock:
            records = await asyncio.to_thread(self._read)
            if not records:
                return 0
            by_viewer: dict[str, list[SpooledEvent]] = {}
            for record in records:
                by_viewer.setdefault(record.viewer, []).append(record)
            sent = 0
            for viewer_id, events in by_viewer.items():
                try:
                    sent += await self._replay_feedback(viewer_id, [e for e in events if e.kind != STEER])
                    sent += await self._replay_steers(viewer_id, [e for e in events if e.kind == STEER])
                except UnknownViewer:
                    logger.warning("event spool: viewer %s was erased; its spooled events dropped", viewer_id)
            await asyncio.to_thread(self._clear)
            self._count = 0
            self.replayed += sent
            logger.info("event spool: %d events sent to Redis (%d had landed before)", sent, len(records) - sent)
            return sent

    async def _replay_feedback(self, viewer_id: str, events: list[SpooledEvent]) -> int:
        """Send one viewer's spooled feedback not in Redis yet; the events sent."""
        if not events:
            return 0
        since = min(e.ms for e in events) - CLOCK_SKEW_MS
        landed = await self.events.landed(viewer_id, [e.eid for e in events], since)
        todo = [e for e in events if e.eid not in landed]
        self.duplicates += len(events) - len(todo)
        if todo:
            await self.events.append_many(
                viewer_id, [e.feedback() for e in todo], apply=True, eids=[e.eid for e in todo]
            )
        # landed or not, no event here was counted in its experiment yet: the session skips that
        # while Redis is away, and each count is keyed by the event, so a replay cut short repeats none
        await self._count_in_experiments(events)
        return len(todo)

    async def _replay_steers(self, viewer_id: str, steers: list[SpooledEvent]) -> int:
        """Store one viewer's spooled steers in the order they were sent; the steers stored."""
        store = self.steers
        if store is None:
            if steers:
                logger.warning("event spool: nothing stores steers here; %d of %s's dropped", len(steers), viewer_id)
            return 0
        stored = 0
        for steer in steers:
            if await store(viewer_id, steer.text or "", steer.ms):
                stored += 1
            else:
                self.duplicates += 1
        # stored now or before, none was counted in its experiment yet (each count is keyed by the steer)
        await self._count_in_experiments(steers)
        return stored

    async def _count_in_experiments(self, events: list[SpooledEvent]) -> None:
        if self.experiments is None:
            return
        for event in events:
            if event.experiment is None:
                continue
            if event.kind == STEER:
                await self.experiments.count_steer(event.experiment, event.viewer, event.metric_id, ts=event.ms / 1000)
            else:
                feedback = event.feedback()[0]
                await self.experiments.count_feedback(
                    event.experiment, event.viewer, feedback, event.metric_id, ts=event.ms / 1000
                )

    async def run(self, interval: float = REPLAY_INTERVAL) -> None:
        """Replay whenever the spool holds events, until cancelled (a background task of the server)."""
        while True:
            await asyncio.sleep(interval)
            if not self._count:
                continue
            try:
                await self.replay()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Redis still away: the events stay spooled for the next try
                logger.debug("event spool: replay deferred: %s", error)

    # -- file, on a worker thread ------------------------------------------------------------------

    def _append(self, line: bytes) -> None:
        new = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:  # the file's name must survive a crash too
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _read(self) -> list[SpooledEvent]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(SpooledEvent(**json.loads(line)))
            except (ValueError, TypeError) as error:  # a line torn by a crash mid-write was never acknowledged
                logger.warning("event spool %s line %d is unreadable, skipped: %s", self.path, number, error)
        return records

    def _clear(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    def stats(self) -> dict[str, Any]:
        """Pending, replayed and duplicate counts (for /healthz)."""
        return {"pending": self._count, "replayed": self.replayed, "duplicates_skipped": self.duplicates}
