"""Viewer API: create viewers, export and erase profiles, send feedback over HTTP."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from personalization.errors import UnknownViewer
from personalization.messages import Steer, parse_control_message

from .auth import require_viewer, viewer_from_token
from .bodies import read_json_object, read_limited
from .commands import carry_out
from .limits import enforce
from .services import services_of
from .session import SessionManager


async def create_viewer(request: Request) -> JSONResponse:
    """201 with a new viewer and its token; a returning viewer (valid token) gets its own back, 200."""
    services = services_of(request)
    enforce(services.viewer_limiter, request, "new viewers")
    await read_limited(request, 1024)  # no body is expected; refuse large ones
    viewer_id = viewer_from_token(request, services.signer)
    if viewer_id is not None:
        if not await services.viewers.exists(viewer_id):
            raise HTTPException(401, "this viewer no longer exists (erased or expired): create a new viewer")
        return JSONResponse({"viewer_id": viewer_id, "token": services.signer.issue(viewer_id)}, status_code=200)
    viewer_id = await services.viewers.create()
    return JSONResponse({"viewer_id": viewer_id, "token": services.signer.issue(viewer_id)}, status_code=201)


async def profile(request: Request) -> Response:
    """GET exports everything stored about the viewer; DELETE erases it. Only with the viewer's own token."""
    services = services_of(request)
    viewer_id = request.path_params["viewer_id"]
    require_viewer(request, services.signer, viewer_id)
    if request.method == "DELETE":
        sessions: SessionManager = request.app.state.sessions
        for session in sessions.for_viewer(viewer_id):
            await session.close()
        if not await services.viewers.erase(viewer_id):
            raise HTTPException(404, "no profile is stored for this viewer")
        if services.experiments is not None:
            await services.experiments.forget_viewer(viewer_id)
        return Response(status_code=204)
    try:
        return JSONResponse(await services.viewers.export(viewer_id))
    except UnknownViewer as error:
        raise HTTPException(404, "no profile is stored for this viewer") from error


async def post_event(request: Request) -> JSONResponse:
    """Feedback or a steer over HTTP, same schema as the data channel; 202 once stored."""
    services = services_of(request)
    viewer_id = request.path_params["viewer_id"]
    require_viewer(request, services.signer, viewer_id)
    if not await services.viewers.exists(viewer_id):
        raise HTTPException(404, "no profile is stored for this viewer")
    body = await read_json_object(request, services.config.max_body_bytes)
    message = parse_control_message(body, services.config.message_limits)  # InvalidMessage: 400
    sessions: SessionManager = request.app.state.sessions
    event_id = await carry_out(message, viewer_id, services.personalizer, sessions.for_viewer(viewer_id))
    if isinstance(message, Steer):
        return JSONResponse({"accepted": "steer"}, status_code=202)
    return JSONResponse({"accepted": "feedback", "event_id": event_id}, status_code=202)


routes = [
    Route("/api/viewers", create_viewer, methods=["POST"]),
    Route("/api/viewers/{viewer_id}/profile", profile, methods=["GET", "DELETE"]),
    Route("/api/viewers/{viewer_id}/events", post_event, methods=["POST"]),
]
