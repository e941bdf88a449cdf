"""One viewer's live stream: peer connection, generation loop, and the `control` data channel."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection

from personalization.assignment import Assignment
from personalization.context import Context
from personalization.errors import InvalidMessage
from personalization.messages import Feedback, parse_control_message
from personalization.personalizer import is_spooled
from personalization.spool import SpoolFull
from personalization.store import UNAVAILABLE

from .adaptive import AdaptiveController, Decision
from .commands import carry_out
from .encoding import VideoEncoder
from .generation import GenerationLoop
from .limits import RateLimiter
from .memory import FreedMemoryRelease
from .planning import SegmentPlan, SegmentPlanner
from .playout import PlayoutBuffer, PlayoutClock, PlayoutClosed
from .services import Services
from .track import EncodedVideoTrack
from .webrtc import answer_offer, negotiated_codec, route_rtcp_feedback

logger = logging.getLogger(__name__)

STATS_INTERVAL = 1.0  # seconds between `stats` messages
PEER_CLOSE_SECONDS = 2.0
SCENE_MEMORY = 120  # segments whose scene is remembered for late feedback
FAREWELL_SECONDS = 0.5  # on shutdown, between the last message and closing the peer connections


class ViewerSession:
    """Streams generated video to one viewer until closed; `close()` is idempotent and frees everything."""

    def __init__(
        self,
        services: Services,
        viewer_id: str,
        context: Context,
        on_closed: Callable[[ViewerSession], None],
        adaptation: Callable[[], Decision | None] = lambda: None,
        assignment: Assignment | None = None,
        address: str = "",
    ) -> None:
        self.id = secrets.token_urlsafe(16)
        self.address = address  # the client address that opened it (sessions per address are limited)
        self.viewer_id = viewer_id
        self.assignment = assignment  # the experiment variation this session runs, if any
        self._services = services
        self._on_closed = on_closed
        self._adaptation = adaptation
        self._pc = RTCPeerConnection(services.config.ice.rtc_configuration())
        self._channel: RTCDataChannel | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._closed = asyncio.Event()
        self._closing = False
        self._last_segment: dict[str, Any] | None = None
        self.context = context
        # scenes of recent segments, so feedback about a segment is credited to what it showed
        self._scenes: dict[int, dict[str, str]] = {}
        settings = services.config.stream
        self._buffer = PlayoutBuffer(settings.buffer_frames)
        self._clock = PlayoutClock()
        self._loop: GenerationLoop | None = None
        self._track = EncodedVideoTrack(self._buffer, self._clock, on_sent=self._frame_sent)
        self._pc.on("datachannel", self._attach_channel)
        self._pc.on("connectionstatechange", self._connection_state_changed)
        rate = services.config.messages_per_second
        self._messages = RateLimiter(rate, burst=max(1.0, 2 * rate))
        self._warned_rate = False

    @property
    def generation(self) -> GenerationLoop | None:
        """The generation loop (None until the offer is answered)."""
        return self._loop

    @property
    def realtime_factor(self) -> float:
        """The generation loop's real-time factor (0 before it ran)."""
        return self._loop.realtime_factor if self._loop else 0.0

    def _log(self, message: str, *args: object) -> None:
        logger.info("session %s (viewer %s): " + message, self.id[:8], self.viewer_id, *args)

    async def start(self, offer_sdp: str, steer_text: str = "") -> str:
        """Answer the viewer's offer and start generating; returns the SDP answer."""
        services = self._services
        config = services.config
        answer_sdp, sender = await answer_offer(self._pc, offer_sdp, self._track)
        codec = negotiated_codec(answer_sdp)
        engine = services.batcher.engine
        stream = config.stream
        policy = None
        if self.assignment is not None:
            policy = self.assignment.policy
            if "fps" in self.assignment.settings:  # the variation's frame rate is this stream's ceiling
                stream = replace(stream, fps=min(stream.fps, self.assignment.settings["fps"]))
            if "steps" in self.assignment.settings:  # and its denoising steps this stream's own
                stream = replace(stream, steps=int(self.assignment.settings["steps"]))
        encoder = VideoEncoder(codec, engine.width, engine.height, stream.fps)
        self._loop = GenerationLoop(
            services.batcher,
            encoder,
            self._buffer,
            self._clock,
            stream,
            services.metrics,
            planner=SegmentPlanner(
                services.personalizer, self.viewer_id, self.context, policy=policy, steer_text=steer_text
            ),
            seed=secrets.randbits(31),
            on_segment=self._segment_started,
            faults=config.faults,
        )
        route_rtcp_feedback(sender, self._loop.request_keyframe, self._loop.set_target_bitrate)
        self._tasks = [
            asyncio.create_task(self._generate(), name=f"generate-{self.id[:8]}"),
            asyncio.create_task(self._send_stats(), name=f"stats-{self.id[:8]}"),
            asyncio.create_task(self._ice_deadline(), name=f"ice-deadline-{self.id[:8]}"),
        ]
        self._log("started, %s at %dx%d", codec, engine.width, engine.height)
        return answer_sdp

    async def close(self) -> None:
        """Stop generating, close the peer connection and forget the session."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self._log("closing")
        self._buffer.close()
        try:
            current = asyncio.current_task()
            for task in self._tasks:
                if task is not current:
                    task.cancel()
            others = [t for t in self._tasks if t is not current]
            if others:
                _, stuck = await asyncio.wait(others, timeout=PEER_CLOSE_SECONDS)
                for task in stuck:
                    chain: list[str] = []
                    coro: Any = task.get_coro()
                    while coro is not None:
                        chain.append(getattr(coro, "__qualname__", repr(coro)))
                        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
                    logger.warning("session %s: task %s did not stop: %s", self.id[:8], task.get_name(), chain)
            self._track.stop()
            try:
                # aiortc can wait on an ICE check in flight for a long time; never let that hold a DELETE
                await asyncio.wait_for(self._pc.close(), PEER_CLOSE_SECONDS)
            except asyncio.TimeoutError:
                logger.warning("session %s: peer connection took over %ss to close", self.id[:8], PEER_CLOSE_SECONDS)
            except Exception:  # aiortc can trip over its own half-built transports after a failed negotiation
                logger.warning("session %s: peer connection did not close cleanly", self.id[:8], exc_info=True)
        finally:
            self._on_closed(self)
            self._closed.set()
            self._log("closed")

    def steer(self, text: str) -> None:
        """Apply a steer (its wishes already stored) to the live stream from the next frame on."""
        if self._loop is not None:
            self._loop.steer(text)

    def skip(self) -> None:
        """Show another scene from the next frame on."""
        if self._loop is not None:
            self._loop.skip()

    @property
    def experiment(self) -> str | None:
        """The key of the experiment this session runs a variation of, if any."""
        return self.assignment.experiment if self.assignment is not None else None

    def scene_of(self, segment_id: int | None) -> dict[str, str] | None:
        """The scene a recent segment showed (None for unknown or old segments)."""
        return self._scenes.get(segment_id) if segment_id is not None else None

    # -- generation -------------------------------------------------------------------------------

    async def _generate(self) -> None:
        assert self._loop is not None
        try:
            await self._loop.run()
        except asyncio.CancelledError:
            raise
        except PlayoutClosed:
            return  # the session is closing
        except Exception:
            logger.exception("session %s: generation failed", self.id[:8])
            self._send({"type": "error", "message": "generation failed on the server; reconnect to try again"})
            asyncio.create_task(self.close())

    async def _ice_deadline(self) -> None:
        """Free the session of a peer that never completes ICE (it holds a slot and a generation loop)."""
        await asyncio.sleep(self._services.config.ice_timeout)
        if self._pc.connectionState != "connected" and not self._closing:
            self._log("ICE not completed within %gs (state %s); freeing the session",
                      self._services.config.ice_timeout, self._pc.connectionState)
            await self.close()

    async def _send_stats(self) -> None:
        assert self._loop is not None
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            stats = self._loop.stats()
            last = self._adaptation()
            if last is not None:
                stats["adaptation"] = {"action": last.action, "value": last.value}
            self._send(stats)

    def _frame_sent(self, frame: Any, late_seconds: float) -> None:
        if self._loop is not None:
            self._loop.frame_sent(frame, late_seconds)

    def _segment_started(self, segment_id: int, plan: SegmentPlan) -> None:
        self._scenes[segment_id] = plan.scene
        self._scenes.pop(segment_id - SCENE_MEMORY, None)
        self._last_segment = {
            "type": "segment",
            "segment_id": segment_id,
            "prompt": plan.prompt,
            "scene": plan.scene,
            "variant": plan.variant,
        }
        if self.assignment is not None:
            self._last_segment["experiment"] = self.assignment.experiment
            self._last_segment["variation"] = self.assignment.variation
        self._send(self._last_segment)

    # -- control channel --------------------------------------------------------------------------

    def _attach_channel(self, channel: RTCDataChannel) -> None:
        if channel.label != "control":
            return
        self._channel = channel

        @channel.on("open")
        def _opened() -> None:
            if self._last_segment is not None:
                self._send(self._last_segment)

        @channel.on("message")
        def _message(raw: str | bytes) -> None:
            if self._messages.check("") > 0:  # dropped, and said once per burst
                if not self._warned_rate:
                    self._warned_rate = True
                    limit = self._services.config.messages_per_second
                    self._send({"type": "error", "message": f"too many messages: at most {limit:g} a second"})
                return
            self._warned_rate = False
            asyncio.create_task(self._handle_message(raw))

        if channel.readyState == "open" and self._last_segment is not None:
            self._send(self._last_segment)

    async def _handle_message(self, raw: str | bytes) -> None:
        try:
            message = parse_control_message(raw, self._services.config.message_limits)
        except InvalidMessage as error:
            self._send({"type": "error", "message": str(error)})
            return
        try:
            await carry_out(message, self.viewer_id, self._services.personalizer, [self])
        except SpoolFull:
            self._send({"type": "error", "message": "the server cannot keep feedback right now; please retry later"})
        except Exception:
            logger.exception("session %s: could not store %s", self.id[:8], type(message).__name__)
            self._send({"type": "error", "message": "the server could not store that message; please retry"})

    async def record_feedback(self, feedback: Feedback) -> str:
        """Store feedback about one of this session's segments, applied to the profile at once.

        With Redis away it is spooled, and applied and counted in the session's experiment when Redis is back.
        """
        event_id = await self._services.personalizer.record_feedback(
            self.viewer_id, feedback, self.scene_of(feedback.segment_id), context=self.context,
            experiment=self.experiment,
        )  # fmt: skip
        if feedback.kind == "skip":
            self.skip()
        experiments = self._services.experiments
        if experiments is not None and self.assignment is not None and not is_spooled(event_id):
            try:
                await experiments.record_feedback(self.assignment, self.viewer_id, feedback, event_id)
            except UNAVAILABLE as error:
                self._log("experiment metric not recorded, Redis is away (%s)", error)
        return event_id

    async def record_steer(self) -> None:
        """Count a steer in this session's experiment, if it runs one (one spooled while Redis is away is
        counted when it is replayed)."""
        experiments = self._services.experiments
        if experiments is not None and self.assignment is not None:
            try:
                await experiments.record_steer(self.assignment, self.viewer_id)
            except UNAVAILABLE as error:
                self._log("experiment steer not recorded, Redis is away (%s)", error)

    def notify_error(self, text: str) -> None:
        """Send the viewer an `error` message on the control channel (if it is open)."""
        self._send({"type": "error", "message": text})

    def _send(self, message: dict[str, Any]) -> None:
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            channel.send(json.dumps(message))

    def _connection_state_changed(self) -> None:
        state = self._pc.connectionState
        self._log("connection %s", state)
        if state in ("failed", "closed"):
            asyncio.create_task(self.close())


class SessionManager:
    """All live sessions of the server, with a cap on how many may stream at once."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._sessions: dict[str, ViewerSession] = {}
        self.freed_memory = FreedMemoryRelease()  # what a closed session freed goes back to the system
        services.metrics.track_realtime_factor(self.lowest_realtime_factor)
        config = services.config
        self.controller = AdaptiveController(
            services.batcher.engine,
            self.generation_loops,
            services.metrics,
            max_steps=config.steps,
            target_fps=config.stream.fps,
            min_fps=config.min_fps,
            throughput=services.batcher.throughput,
            mean_batch=services.batcher.mean_batch,
            capacity=services.capacity,
        )

    def generation_loops(self) -> list[GenerationLoop]:
        """The generation loops of live sessions that have started streaming."""
        return [s.generation for s in self._sessions.values() if s.generation is not None]

    def __len__(self) -> int:
        return len(self._sessions)

    def admission_refusal(self) -> str | None:
        """Why another viewer cannot be served right now, or None if it can."""
        if len(self._sessions) >= self._services.config.max_sessions:
            return f"the server streams to at most {self._services.config.max_sessions} viewers at once"
        if not self.controller.can_admit():
            return "one more viewer could not be served in real time without slowing everyone down"
        return None

    def get(self, session_id: str) -> ViewerSession | None:
        """The live session with that id, if any."""
        return self._sessions.get(session_id)

    def from_address(self, address: str) -> list[ViewerSession]:
        """The live sessions a client address opened."""
        return [s for s in self._sessions.values() if s.address == address]

    def for_viewer(self, viewer_id: str) -> list[ViewerSession]:
        """The viewer's live sessions."""
        return [s for s in self._sessions.values() if s.viewer_id == viewer_id]

    def lowest_realtime_factor(self) -> float:
        """The lowest real-time factor among sessions that have produced frames (0 with none)."""
        factors = [s.realtime_factor for s in self._sessions.values() if s.realtime_factor > 0]
        return min(factors, default=0.0)

    async def open(
        self,
        viewer_id: str,
        offer_sdp: str,
        context: Context,
        steer_text: str = "",
        assignment: Assignment | None = None,
        address: str = "",
    ) -> tuple[ViewerSession, str]:
        """Create and start a session; on any failure everything it took is released again."""
        session = ViewerSession(
            self._services,
            viewer_id,
            context,
            on_closed=self._forget,
            adaptation=lambda: self.controller.last,
            assignment=assignment,
            address=address,
        )
        fps = self.controller.joining_fps()
        self._sessions[session.id] = session
        self._services.metrics.sessions.set(len(self._sessions))
        try:
            answer = await session.start(offer_sdp, steer_text)
        except BaseException:
            await session.close()
            raise
        if session.generation is not None:  # it has made no frame yet
            session.generation.fps = min(fps, session.generation.settings.fps)
        return session, answer

    def _forget(self, session: ViewerSession) -> None:
        self._sessions.pop(session.id, None)
        self._services.metrics.sessions.set(len(self._sessions))
        self.freed_memory.request()

    async def close_all(self, farewell: str | None = None) -> None:
        """Close every session (server shutdown), telling each viewer `farewell` first when given."""
        sessions = list(self._sessions.values())
        if farewell and sessions:
            for session in sessions:
                session.notify_error(farewell)
            await asyncio.sleep(FAREWELL_SECONDS)  # the data channel sends it before the peer connection closes
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
