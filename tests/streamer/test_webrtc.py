"""RTCP feedback reaches our encoder, and offers are checked before aiortc sees them."""

from __future__ import annotations

import pytest
from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport, RTCRtpSender
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket, pack_remb_fci

from streamer.webrtc import OfferError, route_rtcp_feedback, validate_offer


def _sender() -> RTCRtpSender:
    transport = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()])
    return RTCRtpSender("video", transport)


@pytest.mark.parametrize("fmt", [RTCP_PSFB_PLI, RTCP_PSFB_FIR])
async def test_picture_loss_asks_our_encoder_for_a_keyframe(fmt: int) -> None:
    sender = _sender()
    requests: list[str] = []
    route_rtcp_feedback(sender, lambda: requests.append("key"), lambda bitrate: None)
    await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=fmt, ssrc=1, media_ssrc=sender._ssrc))
    assert requests == ["key"]


async def test_remb_for_our_stream_sets_the_bitrate_and_others_do_not() -> None:
    sender = _sender()
    estimates: list[int] = []
    route_rtcp_feedback(sender, lambda: None, estimates.append)
    ours = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(420_000, [sender._ssrc]))
    theirs = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(99_000, [sender._ssrc + 1]))
    await sender._handle_rtcp_packet(ours)
    await sender._handle_rtcp_packet(theirs)
    assert len(estimates) == 1 and abs(estimates[0] - 420_000) / 420_000 < 0.01


@pytest.mark.parametrize(
    ("sdp", "says"),
    [
        ("", "empty"),
        ("GET / HTTP/1.1", "v=0"),
        ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n", "send-only"),
        ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\na=rtpmap:96 AV1/90000\r\n", "neither"),
        ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\n", "ICE"),
    ],
)
def test_unusable_offers_are_explained(sdp: str, says: str) -> None:
    with pytest.raises(OfferError, match=says):
        validate_offer(sdp)
