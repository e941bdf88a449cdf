"""End-to-end checks of the viewer page in a real headless Chromium.

The page is loaded from a real running Pixelcast server (`server_url`, defined in
tests/conftest.py), negotiates WHEP, and must actually decode video frames.
"""

from __future__ import annotations

import asyncio
import re
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

PLAY_TIMEOUT_S = 30
STEER_TIMEOUT_S = 20
FRAMES_WINDOW_S = 10  # reads ~1 s apart; a few retries so one slow second on a busy CI box is not a failure

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian chromium not installed; `make test` installs it with apt-get",
    ),
]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

JS_FRAMES_DECODED = """
async () => {
  const h = window.pixelcast;
  if (!h || !h.pc) return -1;
  const report = await h.pc.getStats();
  let n = -1;
  report.forEach((r) => {
    if (r.type === 'inbound-rtp' && (r.kind || r.mediaType) === 'video') n = Math.max(n, r.framesDecoded || 0);
  });
  return n;
}
"""

JS_VIDEO_SHOWING = """
() => {
  const v = document.querySelector('video');
  return !!v && v.videoWidth > 0 && v.videoHeight > 0 && v.clientWidth > 0 && v.clientHeight > 0;
}
"""


@asynccontextmanager
async def chromium():
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        try:
            yield browser
        finally:
            # Closing the pages fires `pagehide`, so the page DELETEs its WHEP session and the
            # server stops generating for it before the next test starts.
            for context in browser.contexts:
                for page in context.pages:
                    try:
                        await page.close()
                    except Exception:
                        pass
            await asyncio.sleep(0.3)
            await browser.close()


class Viewer:
    """One browser tab on the viewer page, with the page's errors collected."""

    def __init__(self, page):
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught exception: {exc}"))
        page.on("console", self._on_console)

    def _on_console(self, msg) -> None:
        # Network failures (e.g. a 404 for some resource) are logged by Chromium as console
        # errors too; only script errors count here.
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            self.errors.append(f"console error: {msg.text}")

    async def status(self) -> str:
        try:
            return (await self.page.text_content("#status") or "").strip()
        except Exception as exc:  # pragma: no cover - diagnostics only
            return f"<status line unreadable: {exc}>"

    async def wait_playing(self, timeout_s: float = PLAY_TIMEOUT_S) -> None:
        try:
            await self.page.wait_for_function(JS_VIDEO_SHOWING, timeout=timeout_s * 1000, polling=200)
        except Exception:
            pytest.fail(
                f"the video never appeared within {timeout_s:.0f} s: the viewer would see a black box "
                f"(status line says {await self.status()!r}; page errors: {self.errors})"
            )

    async def frames_decoded(self) -> int:
        return int(await self.page.evaluate(JS_FRAMES_DECODED))

    async def assert_frames_advance(self, what: str) -> tuple[int, int]:
        """framesDecoded must grow between two reads ~1 s apart (a few tries allowed)."""
        first = await self.frames_decoded()
        second = first
        deadline = time.monotonic() + FRAMES_WINDOW_S
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            second = await self.frames_decoded()
            if first >= 0 and second > first:
                return first, second
            first = second if second >= 0 else first
        pytest.fail(
            f"{what}: the picture is frozen — the browser decoded no new frames in {FRAMES_WINDOW_S} s "
            f"(framesDecoded stayed at {second}; status line says {await self.status()!r})"
        )

    def assert_no_errors(self) -> None:
        assert not self.errors, f"the page hit JavaScript errors a viewer could trip over: {self.errors}"


async def open_viewer(browser, server_url: str, viewport: dict, **context_kw) -> Viewer:
    context = await browser.new_context(viewport=viewport, **context_kw)
    page = await context.new_page()
    viewer = Viewer(page)
    await page.goto(server_url.rstrip("/") + "/", wait_until="load")
    return viewer


def _screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


async def test_desktop_plays_video_with_stats(server_url):
    async with chromium() as browser:
        v = await open_viewer(browser, server_url, DESKTOP)
        await v.wait_playing()
        await v.assert_frames_advance("desktop")

        # The overlay shows a number for the generation fps (stats arrive ~1/s).
        try:
            await v.page.wait_for_function(
                "() => /\\d/.test(document.getElementById('stat-fps').textContent)", timeout=10_000
            )
        except Exception:
            pytest.fail(
                "the stats overlay never showed a generation fps number: the viewer cannot tell how "
                f"fast the stream is generated (fps cell: {await v.page.text_content('#stat-fps')!r})"
            )
        fps_text = (await v.page.text_content("#stat-fps")) or ""
        assert re.search(r"\d+(\.\d+)?", fps_text), f"the fps in the overlay is not a number: {fps_text!r}"

        box = await v.page.evaluate(
            "() => { const r = document.querySelector('video').getBoundingClientRect();"
            " return {w: r.width, h: r.height, vw: window.innerWidth}; }"
        )
        assert box["w"] >= 0.6 * box["vw"], f"the video is a small box on a desktop screen: {box}"

        await v.page.screenshot(path=str(_screenshot_path("viewer-desktop.png")))
        v.assert_no_errors()


async def test_steer_changes_prompt(server_url):
    text = "calm ocean at night"
    async with chromium() as browser:
        v = await open_viewer(browser, server_url, DESKTOP)
        await v.wait_playing()
        # The data channel must be open before steering means anything to the server.
        await v.page.wait_for_function(
            "() => window.pixelcast && window.pixelcast.channel && window.pixelcast.channel.readyState === 'open'",
            timeout=PLAY_TIMEOUT_S * 1000,
        )
        await v.page.fill("#steer-input", text)
        await v.page.press("#steer-input", "Enter")

        assert (await v.page.input_value("#steer-input")) == "", "the steer box kept the text after submitting"
        hint = (await v.page.text_content("#steer-hint")) or ""
        assert "steering to" in hint.lower(), f"no 'steering to …' feedback after submitting a steer: {hint!r}"

        try:
            await v.page.wait_for_function(
                "(t) => (document.getElementById('stat-prompt').textContent || '').toLowerCase().includes(t)",
                arg=text.lower(),
                timeout=STEER_TIMEOUT_S * 1000,
            )
        except Exception:
            shown = await v.page.text_content("#stat-prompt")
            pytest.fail(
                f"steering was ignored: {STEER_TIMEOUT_S} s after asking for {text!r} the scene is still "
                f"{shown!r} (status line says {await v.status()!r})"
            )
        v.assert_no_errors()


async def test_phone_viewport_fits_and_plays(server_url):
    async with chromium() as browser:
        v = await open_viewer(
            browser, server_url, PHONE, is_mobile=True, has_touch=True, device_scale_factor=2
        )
        await v.wait_playing()
        await v.assert_frames_advance("phone")

        layout = await v.page.evaluate(
            """() => {
                 const r = document.querySelector('video').getBoundingClientRect();
                 return {left: r.left, right: r.right, width: r.width, height: r.height,
                         innerWidth: window.innerWidth,
                         scrollWidth: document.documentElement.scrollWidth};
               }"""
        )
        assert layout["scrollWidth"] <= layout["innerWidth"], (
            f"the page scrolls sideways on a phone: content is {layout['scrollWidth']} px wide "
            f"in a {layout['innerWidth']} px screen"
        )
        assert layout["left"] >= 0 and layout["right"] <= layout["innerWidth"] + 0.5, (
            f"the video is cut off at the phone screen's edge: {layout}"
        )
        assert layout["width"] >= 0.8 * layout["innerWidth"], (
            f"the video does not fill the phone screen's width: {layout['width']:.0f} of {layout['innerWidth']} px"
        )
        for control in ("#steer-input", "#steer-button", "#like-button", "#skip-button"):
            r = await v.page.evaluate(
                "(sel) => { const b = document.querySelector(sel).getBoundingClientRect();"
                " return {left: b.left, right: b.right}; }",
                control,
            )
            assert r["left"] >= 0 and r["right"] <= layout["innerWidth"] + 0.5, (
                f"the {control} control hangs off the phone screen: {r}"
            )

        await v.page.screenshot(path=str(_screenshot_path("viewer-phone.png")))
        v.assert_no_errors()


async def test_viewer_token_persists_across_reload(server_url):
    async with chromium() as browser:
        v = await open_viewer(browser, server_url, DESKTOP)
        await v.page.wait_for_function(
            "() => !!localStorage.getItem('pixelcast.viewer')", timeout=PLAY_TIMEOUT_S * 1000
        )
        stored = await v.page.evaluate("() => JSON.parse(localStorage.getItem('pixelcast.viewer'))")
        assert stored.get("viewer_id") and stored.get("token"), f"the stored viewer record is incomplete: {stored}"
        await v.wait_playing()

        requests = []
        v.page.on("request", lambda r: requests.append((r.method, r.url, r.headers.get("authorization"))))
        await v.page.reload(wait_until="load")
        await v.wait_playing()

        again = await v.page.evaluate("() => JSON.parse(localStorage.getItem('pixelcast.viewer'))")
        assert again.get("viewer_id") == stored["viewer_id"], (
            f"a reload made the viewer a stranger: viewer {stored['viewer_id']} became {again.get('viewer_id')}, "
            "so their personalization would be lost"
        )
        # a returning viewer may swap its token for one under the current signing key (with its token); a
        # registration without one would make it a stranger
        created = [u for m, u, a in requests if m == "POST" and u.rstrip("/").endswith("/api/viewers") and not a]
        assert not created, f"the page registered a new viewer on reload instead of reusing the stored one: {created}"
        whep = [a for m, u, a in requests if m == "POST" and u.rstrip("/").endswith("/whep")]
        assert whep and whep[-1] == f"Bearer {again['token']}", (
            "after a reload the stream was not requested with the stored viewer token "
            f"(WHEP Authorization headers seen: {whep})"
        )
        handle = await v.page.evaluate("() => window.pixelcast && window.pixelcast.viewerId")
        assert str(handle) == str(stored["viewer_id"]), f"the page plays as viewer {handle}, not {stored['viewer_id']}"
        v.assert_no_errors()
