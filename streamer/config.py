"""Server settings, from the command line or the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from models import default_model_path
from personalization.messages import MAX_MESSAGE_BYTES, MAX_STEER_CHARS, MessageLimits
from personalization.redis_server import RESTART_DELAY
from personalization.spool import MAX_SPOOLED_EVENTS
from personalization.store import default_data_dir

from .bodies import MAX_JSON_BYTES, MAX_SDP_BYTES
from .faults import FaultInjector
from .generation import StreamSettings
from .ice import IceSettings


@dataclass(frozen=True)
class ServerConfig:
    """Everything one Pixelcast server needs to know at start-up."""

    host: str = "127.0.0.1"
    port: int = 8000
    model_path: Path = field(default_factory=default_model_path)
    redis_url: str | None = field(default_factory=lambda: os.environ.get("REDIS_URL") or None)
    data_dir: Path = field(default_factory=default_data_dir)
    stream: StreamSettings = field(default_factory=StreamSettings)
    steps: int = 1  # the shipped model follows the text best and flickers least at one step
    max_sessions: int = 8
    engine_threads: int | None = None  # torch threads per engine stage; default: half the cores but one
    min_fps: int = 12  # the frame-rate floor: below it a viewer is refused rather than everyone degraded
    max_batch: int = 8
    retime_precision: bool = False  # time float32 against bfloat16 again instead of reusing the saved choice
    redis_wait_replicas: int = 0  # replicas that must confirm a feedback event before it counts as stored
    redis_restart_delay: float = RESTART_DELAY  # seconds before an embedded Redis that died is restarted
    spool_max_events: int = MAX_SPOOLED_EVENTS  # feedback kept on disk while Redis is away
    token_rotate_days: float = 30.0  # a viewer-token signing key signs this long, then a new one takes over
    token_verify_days: float = 180.0  # and a replaced key still verifies this long
    offers_per_minute: float = 30.0  # POST /whep and /offer per client address
    viewers_per_minute: float = 10.0  # POST /api/viewers per client address
    sessions_per_address: int = 4  # live sessions of one client address
    messages_per_second: float = 30.0  # data channel messages per session (bursts of twice as many)
    ice_timeout: float = 15.0  # seconds a peer has to complete ICE before its session is freed
    max_body_bytes: int = MAX_JSON_BYTES  # JSON request bodies
    max_sdp_bytes: int = MAX_SDP_BYTES  # SDP offers (WHEP and /offer)
    max_message_bytes: int = MAX_MESSAGE_BYTES  # one data channel control message
    max_steer_chars: int = MAX_STEER_CHARS  # a steer's text, over the data channel or HTTP
    ice: IceSettings = field(default_factory=IceSettings)  # STUN/TURN servers for peers behind NAT
    worker_id: str | None = None  # one worker of several behind nginx: heartbeats, /w/<id>/ session paths
    advertise_url: str | None = None  # how peers and operators reach this worker (default: from host and port)
    faults: FaultInjector = field(default_factory=FaultInjector.from_environment)  # inert unless a test sets it

    @property
    def message_limits(self) -> MessageLimits:
        """The size limits of control messages."""
        return MessageLimits(max_bytes=self.max_message_bytes, max_steer_chars=self.max_steer_chars)

    @property
    def advertised_url(self) -> str:
        """This worker's base URL as its heartbeat publishes it."""
        return self.advertise_url or f"http://{self.host}:{self.port}"

    @property
    def ice_addresses(self) -> list[str] | None:
        """Host candidates to offer: loopback alone when serving on loopback, else every interface."""
        if self.host in ("127.0.0.1", "localhost"):
            return ["127.0.0.1"]
        if self.host == "::1":
            return ["::1"]
        return None
