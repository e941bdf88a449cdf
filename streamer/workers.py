"""This server as one worker of several: its heartbeat, and where a viewer it cannot take should go.

With ``--worker-id`` a server publishes its free slots every ``HEARTBEAT_SECONDS`` (``personalization.workers``),
its WHEP session resources carry the prefix ``/w/<id>`` that nginx maps back to it, and a full server
redirects a new viewer (307) to a live worker with room, if there is one, instead of refusing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from personalization.store import UNAVAILABLE
from personalization.workers import WorkerDirectory, WorkerStatus

from .config import ServerConfig
from .session import SessionManager

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0


def path_prefix(worker_id: str | None) -> str:
    """``/w/<id>`` for a named worker, "" for a lone server."""
    return f"/w/{worker_id}" if worker_id else ""


def status_of(config: ServerConfig, sessions: SessionManager) -> WorkerStatus:
    """This worker's heartbeat now: free slots are 0 while it would refuse a viewer."""
    assert config.worker_id is not None
    live = len(sessions)
    free = 0 if sessions.admission_refusal() is not None else max(0, config.max_sessions - live)
    return WorkerStatus(config.worker_id, config.advertised_url, live, free, time.time())


async def beat(directory: WorkerDirectory, config: ServerConfig, sessions: SessionManager) -> None:
    """Publish the heartbeat every ``HEARTBEAT_SECONDS`` until cancelled; leave the directory then."""
    try:
        while True:
            try:
                await directory.heartbeat(status_of(config, sessions))
            except UNAVAILABLE as error:  # Redis away: the heartbeat lapses, and peers stop sending viewers here
                logger.warning("worker heartbeat not written: %s", error)
            await asyncio.sleep(HEARTBEAT_SECONDS)
    finally:
        assert config.worker_id is not None
        with contextlib.suppress(*UNAVAILABLE):
            await directory.leave(config.worker_id)


async def worker_with_room(directory: WorkerDirectory, own_id: str) -> WorkerStatus | None:
    """Another live worker with a free slot (the one with most), or None."""
    try:
        workers = await directory.live()
    except UNAVAILABLE:
        return None
    return next((w for w in workers if w.worker_id != own_id and w.free_slots > 0), None)
