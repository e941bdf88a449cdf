"""ICE servers (STUN, TURN) for viewers behind NAT: the server's own peer connections use them, and WHEP
players and the page learn them from ``Link: <url>; rel="ice-server"`` headers (draft-ietf-wish-whep).

TURN credentials are either fixed (``--ice-username``/``--ice-credential``) or short-lived ones made from a
secret shared with the TURN server (``--turn-secret``; coturn's ``use-auth-secret``): the username is the
unix time they expire, and the credential its HMAC-SHA1 under the secret, base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCIceServer

SCHEMES = ("stun", "stuns", "turn", "turns")
#: How long short-lived TURN credentials stay valid: a stream refreshes its allocation with them.
CREDENTIAL_SECONDS = 24 * 3600


def check_ice_url(url: str) -> str:
    """``url`` if it is a ``stun:``, ``stuns:``, ``turn:`` or ``turns:`` URI with a host; ValueError otherwise."""
    scheme, _, rest = url.partition(":")
    if scheme.lower() not in SCHEMES or not rest or rest.startswith("//") or any(c in url for c in '<>"\\ ,;'):
        raise ValueError(f"bad ICE server {url!r}: expected stun:host[:port] or turn:host[:port][?transport=udp|tcp]")
    return url


def _is_turn(url: str) -> bool:
    return url.lower().startswith(("turn:", "turns:"))


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class IceSettings:
    """The ICE servers to use and offer, with the TURN servers' credentials."""

    urls: tuple[str, ...] = ()
    username: str | None = None
    credential: str | None = None
    turn_secret: str | None = None
    credential_seconds: float = CREDENTIAL_SECONDS

    def __post_init__(self) -> None:
        for url in self.urls:
            check_ice_url(url)
        if any(_is_turn(url) for url in self.urls) and not self.turn_secret and not (self.username and self.credential):
            raise ValueError("a TURN server needs --turn-secret, or --ice-username and --ice-credential")

    def turn_credentials(self, now: float | None = None) -> tuple[str, str] | None:
        """(username, credential) for the TURN servers now, or None without TURN credentials."""
        if self.turn_secret:
            expires = int((time.time() if now is None else now) + self.credential_seconds)
            username = f"{expires}:pixelcast"
            mac = hmac.new(self.turn_secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
            return username, base64.b64encode(mac).decode("ascii")
        if self.username and self.credential:
            return self.username, self.credential
        return None

    def servers(self, now: float | None = None) -> list[tuple[str, str | None, str | None]]:
        """``(url, username, credential)`` per server; STUN servers have no credentials."""
        credentials = self.turn_credentials(now)
        out: list[tuple[str, str | None, str | None]] = []
        for url in self.urls:
            if _is_turn(url) and credentials is not None:
                out.append((url, *credentials))
            else:
                out.append((url, None, None))
        return out

    def rtc_configuration(self, now: float | None = None) -> RTCConfiguration:
        """What a server-side ``RTCPeerConnection`` is built with."""
        servers = [RTCIceServer(urls=url, username=user, credential=cred) for url, user, cred in self.servers(now)]
        return RTCConfiguration(iceServers=servers)

    def link_header(self, now: float | None = None) -> str | None:
        """The ``Link`` header value that tells a WHEP player these servers, or None without any."""
        links = []
        for url, user, cred in self.servers(now):
            link = f'<{url}>; rel="ice-server"'
            if user is not None and cred is not None:
                link += f'; username={_quoted(user)}; credential={_quoted(cred)}; credential-type="password"'
            links.append(link)
        return ", ".join(links) or None
