"""CORS is explicit (any origin on WHEP only) and the pages carry a Content-Security-Policy with no inline script."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from streamer import pages
from streamer.security import WhepCORS

ORIGIN = "https://player.example"


def _app() -> Starlette:
    async def ok(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    routes = [
        *pages.routes,
        Route("/whep", ok, methods=["POST"]),
        Route("/whep/sessions/{id}", ok, methods=["DELETE"]),
        Route("/api/viewers", ok, methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(WhepCORS)])


def test_whep_routes_allow_any_origin_without_credentials() -> None:
    client = TestClient(_app())
    asks = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    asks["Access-Control-Request-Headers"] = "authorization"
    preflight = client.options("/whep", headers=asks)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers
    post = client.post("/whep", headers={"Origin": ORIGIN})
    assert post.headers["access-control-allow-origin"] == "*"
    assert "location" in post.headers["access-control-expose-headers"].lower()
    assert client.delete("/whep/sessions/x", headers={"Origin": ORIGIN}).headers["access-control-allow-origin"] == "*"


def test_credentialed_routes_send_no_cors_headers() -> None:
    client = TestClient(_app())
    post = client.post("/api/viewers", headers={"Origin": ORIGIN})
    assert not any(name.startswith("access-control-") for name in post.headers)
    preflight = client.options(
        "/api/viewers", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 405
    assert not any(name.startswith("access-control-") for name in preflight.headers)


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.handlers: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        self.handlers += [name for name in names if name.startswith("on")]
        self._in_script = tag == "script" and "src" not in names

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def test_pages_are_served_with_a_csp_and_no_inline_script() -> None:
    client = TestClient(_app())
    for path in ("/", "/dashboard"):
        page = client.get(path)
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        script_src = re.search(r"script-src ([^;]*)", csp)
        assert script_src is not None and script_src.group(1).strip() == "'self'", csp
        assert "object-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        parser = _Scripts()
        parser.feed(page.text)
        assert not parser.inline, f"{path} has inline script"
        assert not parser.handlers, f"{path} has inline event handlers {parser.handlers}"
