"""The experiments dashboard in a real headless Chromium, over a real A/B run on simulated viewers.

The app is the real dashboard page and experiments API (no model is needed for them) on a real Redis,
filled by `pixelcast simulate --ab`'s code: Thompson sampling against a static scene.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from benchmarks.server_process import free_port
from models.world.spec import ATTRIBUTES
from personalization.ab_simulation import run_ab
from personalization.experimenting import Experiments
from personalization.redis_server import EmbeddedRedis
from personalization.store import connect
from personalization.tokens import TokenSigner
from streamer import experiments_api, pages
from streamer.server import _http_error
from tests.test_browser import CHROMIUM, LAUNCH_ARGS

REPO = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "dashboard-test-admin-token-0123456789"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed; `make test` installs it"),
]


@contextlib.asynccontextmanager
async def dashboard_app(redis, port: int):
    app = Starlette(
        routes=[
            Route("/dashboard", pages.dashboard, methods=["GET"]),
            Mount("/static", app=StaticFiles(directory=pages.WEB_DIR), name="static"),
            *experiments_api.routes,
        ],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.services = SimpleNamespace(
        signer=TokenSigner(b"0123456789abcdef0123456789abcdef"), experiments=Experiments(redis), admin_token=ADMIN_TOKEN
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_dashboard_shows_the_winner(tmp_path: Path, artifacts_dir: Path) -> None:
    from playwright.async_api import async_playwright

    redis_server = EmbeddedRedis(tmp_path / "redis")
    redis = connect(await redis_server.start())
    try:
        definition = json.loads((REPO / "examples" / "thompson-vs-static.json").read_text())
        results = await run_ab(redis, definition, ATTRIBUTES, viewers=300, segments=20, seed=0)
        likes = results["metrics"]["likes_per_minute"]["variations"][1]
        assert likes["verdict"] == "better" and likes["variation"] == "thompson"
        async with dashboard_app(redis, free_port()) as base, async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 1000})
                await page.goto(f"{base}/dashboard", wait_until="load")
                assert "admin token" in (await page.text_content("#message")).lower()  # nothing without the token
                await page.fill("#token", ADMIN_TOKEN)
                await page.click("#token-form button")
                await page.wait_for_selector("#winner[data-verdict='winner']", timeout=20_000)
                assert await page.get_attribute("#winner", "data-variation") == "thompson"
                assert "likes_per_minute" in await page.text_content("#winner")
                assert await page.get_attribute("#srm", "data-warning") == "false"
                assert await page.locator("#experiments tbody tr").count() == 1
                drawn = await page.evaluate("() => Object.values(Chart.instances).map((c) => c.data.datasets.length)")
                assert len(drawn) == 2 and all(n > 0 for n in drawn)
                await page.screenshot(path=str(artifacts_dir / "dashboard.png"), full_page=True)

                wrong = await browser.new_page()
                await wrong.goto(f"{base}/dashboard#token=not-the-token", wait_until="load")
                await wrong.wait_for_function("document.querySelector('#message').textContent.includes('invalid')")
            finally:
                await browser.close()
    finally:
        await redis.aclose()
        await redis_server.stop()
