"""Static pages (viewer page and its assets), health and metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .security import DASHBOARD_CSP, PAGE_CSP, PAGE_HEADERS

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


async def index(request: Request) -> FileResponse:
    """The viewer page, under a Content-Security-Policy that allows no inline script."""
    return FileResponse(WEB_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP, **PAGE_HEADERS})


async def dashboard(request: Request) -> FileResponse:
    """The experiments dashboard (its data come from the API, with the admin token the page asks for)."""
    headers = {"Content-Security-Policy": DASHBOARD_CSP, **PAGE_HEADERS}
    return FileResponse(WEB_DIR / "dashboard.html", headers=headers)


async def healthz(request: Request) -> JSONResponse:
    """200 `ok` while the model is loaded and Redis answers; 503 `degraded` with the reason while it is away.

    Live streams go on while degraded; only what needs Redis (new viewers, sessions, profiles) waits.
    """
    services = request.app.state.services
    store = services.store
    body: dict[str, Any] = {"status": "ok", "sessions": len(request.app.state.sessions)}
    if services.config.worker_id:
        body["worker"] = services.config.worker_id
    if store.server is not None:
        body["redis"] = {"embedded": True, "restarts": store.server.restarts}
    if services.spool is not None:
        body["spool"] = services.spool.stats()
    reason = await store.health()
    if reason is None:
        return JSONResponse(body)
    body.update(status="degraded", reason=reason)
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})


async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    return Response(
        request.app.state.services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


routes = [
    Route("/", index, methods=["GET"]),
    Route("/dashboard", dashboard, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Mount("/static", app=StaticFiles(directory=WEB_DIR), name="static"),
]
