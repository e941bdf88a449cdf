"""An aiortc video track that sends pre-encoded packets paced by the playout clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .playout import EncodedFrame, PlayoutBuffer, PlayoutClock


class EncodedVideoTrack(MediaStreamTrack):
    """Hands aiortc one encoded packet per frame; aiortc's sender packetizes it as it is.

    Pacing happens here: each frame is released at its due time on the playout clock. A frame that
    is already late goes out at once, since dropping an encoded frame would corrupt the decoder.
    """

    kind = "video"

    def __init__(
        self, buffer: PlayoutBuffer, clock: PlayoutClock, on_sent: Callable[[EncodedFrame, float], None] | None = None
    ) -> None:
        super().__init__()
        self._buffer = buffer
        self._clock = clock
        self._on_sent = on_sent

    async def recv(self) -> av.Packet[Any]:
        """Wait for the next encoded frame and its due time, then hand its packet to the sender."""
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._buffer.get()
        if not self._clock.started:
            self._clock.start(frame.pts)
        delay = self._clock.due(frame.pts) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._on_sent is not None:
            self._on_sent(frame, max(0.0, -delay))
        return frame.packet
