"""A phone behind carrier NAT reaches the stream only through TURN: Chromium forced to relay still plays.

coturn (Debian's package) runs on loopback with a shared secret; the server gets `--ice-server` and
`--turn-secret`, uses the TURN server itself and tells the page about it in the WHEP Link header.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from benchmarks.deployment import TurnProcess, find_program
from benchmarks.server_process import ServerProcess
from tests.support.waiting import until
from tests.test_browser import CHROMIUM, DESKTOP, Viewer, chromium

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed; `make test` installs it"),
    pytest.mark.skipif(find_program("turnserver") is None, reason="coturn not installed; `make test` installs it"),
]

# What a viewer behind a symmetric NAT gets: no host or server-reflexive path works, only the relay.
FORCE_RELAY = """
(() => {
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = function (config) {
    return new Native({ ...(config || {}), iceTransportPolicy: 'relay' });
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})();
"""

JS_SELECTED_PAIR = """
async () => {
  const report = await window.pixelcast.pc.getStats();
  let pair = null;
  report.forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) pair = report.get(r.selectedCandidatePairId);
  });
  if (!pair) return null;
  const local = report.get(pair.localCandidateId);
  return { local: local && local.candidateType, received: pair.bytesReceived };
}
"""


async def _selected_pair_once_it_carries_bytes(page: Page, seconds: float = 10.0) -> dict | None:
    """The transport's selected candidate pair, read again until its byte count shows what already played:
    Chromium's stats of a pair lag the media (a full run once read 0 bytes on a pair whose frames had
    advanced). After `seconds` it is returned as it is, for the caller's assertions to describe."""

    async def carries_bytes() -> bool:
        pair = await page.evaluate(JS_SELECTED_PAIR)
        return bool(pair and pair["received"] > 0)

    with contextlib.suppress(TimeoutError):
        await until(carries_bytes, seconds)
    return await page.evaluate(JS_SELECTED_PAIR)


@pytest.fixture(scope="module")
def turn_server() -> Iterator[TurnProcess]:
    with TurnProcess(secrets.token_urlsafe(24)) as turn:
        yield turn


@pytest.fixture(scope="module")
def server_with_turn(turn_server: TurnProcess, artifacts_dir) -> Iterator[ServerProcess]:  # type: ignore[no-untyped-def]
    # `=`: a URL-safe secret may start with "-", which argparse would take for another option
    args = ("--ice-server", turn_server.url, f"--turn-secret={turn_server.secret}")
    with ServerProcess(*args, log_path=artifacts_dir / "server-turn.log") as server:
        yield server


async def test_whep_advertises_the_turn_server_with_short_lived_credentials(
    server_with_turn: ServerProcess, turn_server: TurnProcess
) -> None:
    async with httpx.AsyncClient(base_url=server_with_turn.url) as http:
        response = await http.options("/whep")
    link = response.headers["link"]
    assert link.startswith(f'<{turn_server.url}>; rel="ice-server"')
    assert 'username="' in link and 'credential="' in link and 'credential-type="password"' in link


async def test_a_viewer_forced_to_relay_plays_through_turn(
    server_with_turn: ServerProcess, turn_server: TurnProcess
) -> None:
    async with chromium() as browser:
        context = await browser.new_context(viewport=DESKTOP)
        await context.add_init_script(FORCE_RELAY)
        page = await context.new_page()
        await page.goto(server_with_turn.url + "/", wait_until="load")
        viewer = Viewer(page)
        await viewer.wait_playing()
        await viewer.assert_frames_advance("relayed stream")
        pair = await _selected_pair_once_it_carries_bytes(page)
        assert pair is not None and pair["local"] == "relay", f"the media did not go through TURN: {pair}"
        assert pair["received"] > 0, f"the selected pair carried nothing: {pair}"
        assert "allocation" in turn_server.log().lower(), "coturn logged the page's allocation"
        viewer.assert_no_errors()
