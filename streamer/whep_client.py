"""A WHEP client: an aiortc peer that receives Pixelcast video and talks on the `control` channel.

Used by the tests and the stream benchmark; also a starting point for native clients.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, cast

import av
import httpx
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from models.interface import Frame

from .webrtc import restrict_host_candidates


def use_loopback_only() -> None:
    """Offer only loopback ICE candidates (for a client of a server on this machine)."""
    restrict_host_candidates(["127.0.0.1"])


@dataclass
class WhepClient:
    """One viewer: negotiates over WHEP, then exposes decoded frames and control messages."""

    base_url: str
    token: str | None = None
    codecs: tuple[str, ...] = ()  # e.g. ("video/VP8",) to offer only VP8
    pc: RTCPeerConnection = field(default_factory=RTCPeerConnection)
    messages: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    location: str | None = None
    response: httpx.Response | None = None
    transport: httpx.AsyncBaseTransport | None = None  # e.g. `httpx.ASGITransport(app)` for a server in this process
    _track: asyncio.Future[MediaStreamTrack] | None = None

    async def connect(self) -> httpx.Response:
        """Offer, POST /whep, apply the answer; returns the HTTP response."""
        self._track = asyncio.get_running_loop().create_future()
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        if self.codecs:
            wanted = {c.lower() for c in self.codecs}
            capabilities = RTCRtpReceiver.getCapabilities("video")
            codecs = capabilities.codecs if capabilities is not None else []
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() in wanted])
        self.channel = self.pc.createDataChannel("control")
        self.channel.on("message", lambda raw: self.messages.put_nowait(json.loads(raw)))
        self.pc.on("track", self._on_track)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        headers = {"Content-Type": "application/sdp"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        # a full worker may answer 307 to one with room: WHEP players follow it, POST body and all
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=60, follow_redirects=True, transport=self.transport
        ) as http:
            self.response = await http.post("/whep", content=self.pc.localDescription.sdp, headers=headers)
        if self.response.status_code == 201:
            self.location = self.response.headers["location"]
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=self.response.text, type="answer"))
        return self.response

    async def track(self, timeout: float = 60) -> MediaStreamTrack:
        """The received video track, once it is there."""
        assert self._track is not None, "connect() first"
        return await asyncio.wait_for(self._track, timeout)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if self._track is not None and not self._track.done():
            self._track.set_result(track)

    async def frames(self, count: int, timeout: float = 60) -> list[Frame]:
        """The next `count` decoded frames as RGB arrays."""
        track = await self.track(timeout)
        frames = []
        for _ in range(count):
            frame = await asyncio.wait_for(track.recv(), timeout)
            assert isinstance(frame, av.VideoFrame), f"a video track gave {type(frame).__name__}"
            frames.append(cast(Frame, frame.to_ndarray(format="rgb24")))
        return frames

    async def wait_channel_open(self, timeout: float = 30) -> None:
        """Wait until the control channel can carry messages."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.channel.readyState != "open":
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the control data channel did not open")
            await asyncio.sleep(0.05)

    def send(self, message: dict[str, Any] | str) -> None:
        """Send one control message (a dict is JSON-encoded; a str goes as it is)."""
        self.channel.send(message if isinstance(message, str) else json.dumps(message))

    async def next_message(self, type_: str, timeout: float = 30, where: Any = None) -> dict[str, Any]:
        """The next control message of `type_` (and matching `where`, if given)."""
        async def wait() -> dict[str, Any]:
            while True:
                message = await self.messages.get()
                if message.get("type") == type_ and (where is None or where(message)):
                    return message
        return await asyncio.wait_for(wait(), timeout)

    async def close(self) -> None:
        """Close the peer connection (does not DELETE the session)."""
        await self.pc.close()
