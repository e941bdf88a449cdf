"""PyAV video encoder that turns generated RGB frames into H.264 or VP8 packets for WebRTC."""

from __future__ import annotations

import fractions
from typing import Any, Literal, cast

import av
import numpy as np
from av.video.frame import PictureType

from models.interface import Frame

Codec = Literal["h264", "vp8"]

VIDEO_CLOCK_RATE = 90_000  # Hz, the RTP clock of every video codec
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)

MIN_BITRATE = 150_000  # 150 kbps
DEFAULT_BITRATE = 800_000  # 800 kbps
MAX_BITRATE = 3_000_000  # 3 Mbps

_CODEC_NAMES: dict[str, str] = {"h264": "libx264", "vp8": "libvpx"}


class VideoEncoder:
    """Encode RGB frames one at a time, with keyframes on demand and a receiver-driven bitrate.

    Not thread-safe: one encoder belongs to one viewer and is driven by one task (through a worker
    thread). A bitrate change is applied at the next keyframe by rebuilding the codec, so that it
    never costs an extra keyframe: keyframes come at segment starts anyway.
    """

    def __init__(self, codec: Codec, width: int, height: int, fps: int, bitrate: int = DEFAULT_BITRATE) -> None:
        if codec not in _CODEC_NAMES:
            raise ValueError(f"codec must be one of {sorted(_CODEC_NAMES)}, got {codec!r}")
        if width % 2 or height % 2:
            raise ValueError(f"width and height must be even for yuv420p, got {width}x{height}")
        self.codec = codec
        self.width = width
        self.height = height
        self.fps = fps
        self._target_bitrate = self._clamp(bitrate)
        self._context: av.VideoCodecContext | None = None
        self._context_bitrate = 0

    @staticmethod
    def _clamp(bitrate: int) -> int:
        return max(MIN_BITRATE, min(MAX_BITRATE, int(bitrate)))

    @property
    def target_bitrate(self) -> int:
        """Bitrate in bits per second that the next keyframe starts encoding at."""
        return self._target_bitrate

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self._target_bitrate = self._clamp(bitrate)

    def _needs_rebuild(self) -> bool:
        if self._context is None:
            return True
        # Ignore small wobbles of the receiver's estimate: a rebuild resets rate control.
        return abs(self._target_bitrate - self._context_bitrate) > 0.1 * self._context_bitrate

    def _open(self) -> av.VideoCodecContext:
        context = cast(av.VideoCodecContext, av.CodecContext.create(_CODEC_NAMES[self.codec], "w"))
        context.width = self.width
        context.height = self.height
        context.pix_fmt = "yuv420p"
        context.time_base = VIDEO_TIME_BASE
        context.framerate = fractions.Fraction(self.fps, 1)
        context.bit_rate = self._target_bitrate
        # One thread per encoder: frames are tiny, and the cores belong to the model.
        context.thread_count = 1
        # Keyframes come only when asked for (segment starts, PLI/FIR), never on the codec's own schedule.
        context.gop_size = 10 * self.fps
        if self.codec == "h264":
            context.options = {
                "preset": "ultrafast",
                "tune": "zerolatency",
                "profile": "baseline",
                "forced-idr": "1",
                "scenecut": "0",
            }
        else:
            context.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1"}
        self._context_bitrate = self._target_bitrate
        return context

    def restart(self) -> None:
        """Start a new coded stream at the next frame: a keyframe, and pts may go back in time.

        Used when frames the codec already referenced were thrown away before being sent.
        """
        self._context = None

    def encode(self, rgb: Frame, pts: int, keyframe: bool) -> list[av.Packet[Any]]:
        """Encode one HxWx3 uint8 frame shown at `pts` (90 kHz ticks); force an IDR frame if `keyframe`."""
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"expected a {self.height}x{self.width}x3 uint8 frame, got {rgb.shape} {rgb.dtype}")
        if self._context is None or (keyframe and self._needs_rebuild()):
            self._context = self._open()
            keyframe = True
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        packets = list(self._context.encode(frame))
        for packet in packets:
            packet.time_base = VIDEO_TIME_BASE
        return packets
