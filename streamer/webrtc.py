"""aiortc glue: peer connections that send one pre-encoded video track, and their RTCP feedback."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import aioice.ice
from aiortc import RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver, RTCSessionDescription
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket, unpack_remb_fci
from aiortc.sdp import SessionDescription

from personalization.errors import PixelcastError

from .encoding import Codec

logger = logging.getLogger(__name__)

# H.264 first: every browser decodes it in hardware; VP8 is the fallback for offers without it.
_CODEC_ORDER = ("video/h264", "video/vp8")


class OfferError(PixelcastError, ValueError):
    """The client's SDP offer cannot be answered; the message says why, for a 400 response."""

    status = 400


def validate_offer(sdp: str) -> None:
    """Reject offers that are not SDP or carry no video we could send, before touching aiortc state."""
    if not sdp.strip():
        raise OfferError("the SDP offer is empty")
    if not sdp.lstrip().startswith("v=0"):
        raise OfferError("the body is not an SDP offer: it must start with 'v=0'")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as error:  # aiortc's parser raises whatever the malformed line triggers
        raise OfferError(f"malformed SDP offer: {error}") from error
    videos = [media for media in description.media if media.kind == "video"]
    if not videos:
        raise OfferError("the SDP offer has no video m-line: Pixelcast sends video")
    if not any(media.direction in (None, "recvonly", "sendrecv") for media in videos):
        raise OfferError("the SDP offer's video is send-only: the client must be able to receive video")
    names = {codec.mimeType.lower() for media in videos for codec in media.rtp.codecs}
    if not names.intersection(_CODEC_ORDER):
        raise OfferError("the SDP offer supports neither H.264 nor VP8")
    if "a=ice-ufrag:" not in sdp or "a=ice-pwd:" not in sdp:
        raise OfferError("the SDP offer has no ICE credentials (a=ice-ufrag / a=ice-pwd)")


def prefer_codecs(transceiver: RTCRtpTransceiver) -> None:
    """Ask for H.264 first, then VP8, keeping retransmission (RTX) available."""
    capabilities = RTCRtpSender.getCapabilities("video").codecs
    ordered = [c for name in _CODEC_ORDER for c in capabilities if c.mimeType.lower() == name]
    ordered += [c for c in capabilities if c.mimeType.lower() == "video/rtx"]
    transceiver.setCodecPreferences(ordered)


def negotiated_codec(answer_sdp: str) -> Codec:
    """The codec our answer settled on for video, read from the answer's first video payload type."""
    for media in SessionDescription.parse(answer_sdp).media:
        if media.kind == "video" and media.rtp.codecs:
            name = media.rtp.codecs[0].mimeType.lower()
            if name == "video/h264":
                return "h264"
            if name == "video/vp8":
                return "vp8"
    raise OfferError("no common video codec with the client (H.264 or VP8 needed)")


def route_rtcp_feedback(
    sender: RTCRtpSender, on_keyframe_request: Callable[[], None], on_bitrate_estimate: Callable[[int], None]
) -> None:
    """Deliver PLI/FIR and REMB from the receiver to our own encoder.

    aiortc applies them only to encoders it owns; for pre-encoded packets we have to listen
    ourselves, so the sender's RTCP handler is wrapped on this one instance.
    """
    handle_original = sender._handle_rtcp_packet

    async def handle(packet: object) -> None:
        if isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                on_keyframe_request()
            elif packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    pass  # an APP message that is not REMB
                else:
                    if sender._ssrc in ssrcs:
                        on_bitrate_estimate(bitrate)
        await handle_original(packet)  # type: ignore[arg-type]

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


def restrict_host_candidates(addresses: Sequence[str] | None) -> None:
    """Gather ICE host candidates only on `addresses` (None: every interface, aioice's default).

    aioice never offers 127.0.0.1, so a server bound to loopback would otherwise advertise only
    addresses it does not serve on; a loopback server should offer loopback alone.
    """
    original = getattr(aioice.ice, "_pixelcast_original_get_host_addresses", aioice.ice.get_host_addresses)
    aioice.ice._pixelcast_original_get_host_addresses = original  # type: ignore[attr-defined]
    if addresses is None:
        aioice.ice.get_host_addresses = original
        return
    chosen = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


async def answer_offer(pc: RTCPeerConnection, offer_sdp: str, track: object) -> tuple[str, RTCRtpSender]:
    """Attach `track` as our send-only video, apply the offer and return the complete answer SDP.

    aiortc gathers all ICE candidates inside setLocalDescription, so the answer needs no trickle.
    """
    transceiver = pc.addTransceiver(track, direction="sendonly")  # type: ignore[arg-type]
    prefer_codecs(transceiver)
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as error:  # the offer is the only input here: whatever aiortc trips on is the client's
        raise OfferError(f"cannot answer the SDP offer: {error or type(error).__name__}") from error
    return pc.localDescription.sdp, transceiver.sender
