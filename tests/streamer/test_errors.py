"""One mapping from Pixelcast's errors to HTTP: each error class carries its status, one handler answers it."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Route

from personalization.errors import EmbeddedRedisError, InvalidMessage, PixelcastError, UnknownViewer
from personalization.experiments import ExperimentError, UnknownExperiment
from personalization.spool import SpoolFull
from streamer.server import _http_error, _pixelcast_error
from streamer.webrtc import OfferError

RAISED = {
    "message": (InvalidMessage("steer \"text\" is empty"), 400),
    "viewer": (UnknownViewer("v1"), 404),
    "experiment": (UnknownExperiment("ab1"), 404),
    "definition": (ExperimentError("variations", "need two"), 400),
    "offer": (OfferError("the offer has no video section"), 400),
    "spool": (SpoolFull("the event spool holds its maximum of 5 events"), 503),
    "redis": (EmbeddedRedisError("redis-server exited"), 503),
}


def _app() -> Starlette:
    async def fail(request: Request) -> None:
        raise RAISED[request.path_params["what"]][0]

    routes = [Route("/api/{what}", fail), Route("/whep/{what}", fail)]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error, PixelcastError: _pixelcast_error})


@pytest.mark.parametrize("what", sorted(RAISED))
async def test_each_error_answers_its_status_with_its_message(what: str) -> None:
    error, status = RAISED[what]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://test") as http:
        api = await http.get(f"/api/{what}")
        assert api.status_code == status and api.json() == {"error": str(error)}
        whep = await http.get(f"/whep/{what}")  # WHEP players read plain text
        assert whep.status_code == status and whep.text == str(error)
