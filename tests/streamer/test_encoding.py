"""The PyAV encoder: real encode -> decode round trips, keyframes on demand, bounded bitrate."""

from __future__ import annotations

import av
import numpy as np
import pytest

from streamer.encoding import MAX_BITRATE, MIN_BITRATE, VideoEncoder

DECODERS = {"h264": "h264", "vp8": "vp8"}


def _moving_pattern(index: int) -> np.ndarray:
    y, x = np.mgrid[0:128, 0:128]
    frame = np.stack([(x + 4 * index) % 256, (y * 2) % 256, ((x + y) // 2 + index) % 256], axis=-1)
    return frame.astype(np.uint8)


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_round_trip_keeps_size_timing_and_picture(codec: str) -> None:
    encoder = VideoEncoder(codec, 128, 128, fps=24)  # type: ignore[arg-type]
    decoder = av.CodecContext.create(DECODERS[codec], "r")
    decoded = []
    for index in range(24):
        packets = encoder.encode(_moving_pattern(index), pts=index * 3750, keyframe=index == 0)
        assert len(packets) == 1, "one packet per frame: the sender packetizes one frame at a time"
        assert packets[0].pts == index * 3750
        for frame in decoder.decode(packets[0]):
            decoded.append(frame.to_ndarray(format="rgb24"))
    assert len(decoded) >= 23
    error = np.abs(decoded[-1].astype(int) - _moving_pattern(len(decoded) - 1).astype(int)).mean()
    assert error < 20, f"decoded picture differs from the source by {error:.1f} levels on average"


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_keyframes_only_when_asked(codec: str) -> None:
    encoder = VideoEncoder(codec, 128, 128, fps=24)  # type: ignore[arg-type]
    flags = [
        encoder.encode(_moving_pattern(i), pts=i * 3750, keyframe=i in (0, 24, 31))[0].is_keyframe for i in range(48)
    ]
    assert [i for i, key in enumerate(flags) if key] == [0, 24, 31]


def test_bitrate_is_clamped_and_applied_at_the_next_keyframe() -> None:
    encoder = VideoEncoder("h264", 128, 128, fps=24)
    encoder.target_bitrate = 10
    assert encoder.target_bitrate == MIN_BITRATE
    encoder.target_bitrate = 10**9
    assert encoder.target_bitrate == MAX_BITRATE
    encoder.encode(_moving_pattern(0), pts=0, keyframe=True)
    encoder.target_bitrate = MIN_BITRATE
    sizes = [len(bytes(encoder.encode(_moving_pattern(i), i * 3750, keyframe=False)[0])) for i in range(1, 5)]
    assert encoder._context_bitrate == MAX_BITRATE, "a bitrate change must not force an extra keyframe"
    encoder.encode(_moving_pattern(5), pts=5 * 3750, keyframe=True)
    assert encoder._context_bitrate == MIN_BITRATE
    assert sizes


def test_rejects_frames_of_the_wrong_shape() -> None:
    encoder = VideoEncoder("h264", 128, 128, fps=24)
    with pytest.raises(ValueError, match="128x128x3"):
        encoder.encode(np.zeros((64, 64, 3), np.uint8), pts=0, keyframe=True)
    with pytest.raises(ValueError, match="even"):
        VideoEncoder("h264", 127, 128, fps=24)
