"""WHEP (draft-ietf-wish-whep) endpoints, plus the JSON `/offer` for simple clients."""

from __future__ import annotations

import logging

from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from personalization.context import Context, device_class
from personalization.store import UNAVAILABLE

from .auth import viewer_from_token
from .bodies import read_json_object, read_limited
from .limits import client_address, enforce
from .services import services_of
from .session import SessionManager, ViewerSession
from .webrtc import OfferError, validate_offer
from .workers import path_prefix, worker_with_room

logger = logging.getLogger(__name__)

SESSION_PATH = "/whep/sessions/{session_id}"
#: The same endpoints under a worker's prefix (``streamer.workers.path_prefix``), which nginx routes by.
WORKER_PREFIX = "/w/{worker}"
RETRY_AFTER_SECONDS = 5
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Expose-Headers": "Location, Retry-After, Link",
}


def _sessions(request: Request) -> SessionManager:
    return request.app.state.sessions  # type: ignore[no-any-return]


async def _viewer_for(request: Request, token_viewer: str | None) -> str:
    """The token's viewer, or a new anonymous viewer for a request without a token."""
    viewers = services_of(request).viewers
    if token_viewer is None:
        return await viewers.create(anonymous=True)
    if not await viewers.exists(token_viewer):
        raise HTTPException(401, "this viewer no longer exists (erased or expired): create a new viewer")
    return token_viewer


def _check_worker(request: Request) -> None:
    """A ``/w/<id>/...`` path must name this worker (nginx sent it to the wrong one, or it has no id)."""
    named = request.path_params.get("worker")
    own = services_of(request).config.worker_id
    if named is not None and named != own:
        here = f"this is worker {own!r}" if own else "this server runs without --worker-id"
        raise HTTPException(404, f"no worker {named!r} here ({here})")


async def _redirect_to_a_worker_with_room(request: Request, refusal: str) -> None:
    """Raise a 307 to a live worker's own endpoint (``/w/<id>/whep``) when this one is full and another is not."""
    services = services_of(request)
    own = services.config.worker_id
    # a request to a worker's own endpoint was sent there on purpose (often by a redirect): it gets the
    # 503, so two workers whose heartbeats are a moment old never bounce a viewer between them
    if services.workers is None or own is None or "worker" in request.path_params:
        return
    peer = await worker_with_room(services.workers, own)
    if peer is None:
        return
    endpoint = request.url.path.rsplit("/", 1)[-1]  # "whep" or "offer"
    # behind nginx the peer is reached through its prefix on the same address; a client that came
    # straight to this worker goes straight to the peer
    proxied = "x-forwarded-for" in request.headers
    location = f"{'' if proxied else peer.url}{path_prefix(peer.worker_id)}/{endpoint}"
    raise HTTPException(
        307, f"this worker is full ({refusal}); worker {peer.worker_id!r} has room", headers={"Location": location}
    )


def _ice_link(request: Request) -> dict[str, str]:
    """The ``Link`` header with the ICE servers a player should use (none configured: no header)."""
    link = services_of(request).config.ice.link_header()
    return {"Link": link} if link else {}


def session_location(request: Request, session_id: str) -> str:
    """The session resource's path: behind nginx it carries this worker's prefix, so its DELETE comes back here."""
    return path_prefix(services_of(request).config.worker_id) + SESSION_PATH.format(session_id=session_id)


async def _open_session(request: Request, offer_sdp: str) -> tuple[ViewerSession, str]:
    services = services_of(request)
    token_viewer = viewer_from_token(request, services.signer)  # a bad token is refused before anything else
    validate_offer(offer_sdp)  # OfferError: 400 naming what is wrong
    sessions = _sessions(request)
    address = client_address(request)
    per_address = services.config.sessions_per_address
    if len(sessions.from_address(address)) >= per_address:
        raise HTTPException(
            429,
            f"this address already has {per_address} live sessions (the most allowed); end one with DELETE first",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    refusal = sessions.admission_refusal()
    if refusal is not None:
        services.metrics.admissions_refused.inc()
        await _redirect_to_a_worker_with_room(request, refusal)
        raise HTTPException(
            503,
            f"Pixelcast is at capacity: {refusal}; try again shortly",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    viewer_id = await _viewer_for(request, token_viewer)
    recent = await services.viewers.recent_steers(viewer_id)
    context = Context.at(device=device_class(request.headers.get("user-agent")))
    experiments = services.experiments
    assignment = await experiments.assign(viewer_id, context) if experiments is not None else None
    try:
        session, answer = await sessions.open(
            viewer_id,
            offer_sdp,
            context,
            steer_text=recent[0] if recent else "",
            assignment=assignment,
            address=address,
        )
    except (OfferError, ValueError, InvalidAccessError, InvalidStateError, OperationError, InternalError) as error:
        raise HTTPException(400, f"cannot answer this SDP offer: {error}") from error
    if experiments is not None and assignment is not None:  # exposed once the session really streams
        try:
            await experiments.expose_session(assignment, viewer_id, session.id)
        except UNAVAILABLE:  # Redis went away just now: the stream is worth more than one exposure
            logger.warning("session %s: exposure not recorded, Redis is away", session.id[:8])
    return session, answer


async def whep_post(request: Request) -> Response:
    """Create a session from an SDP offer: 201, `Location` of the session, the SDP answer as body."""
    _check_worker(request)
    enforce(services_of(request).offer_limiter, request, "session offers")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/sdp":
        raise HTTPException(415, "WHEP needs Content-Type: application/sdp with the SDP offer as body")
    body = await read_limited(request, services_of(request).config.max_sdp_bytes)
    try:
        offer_sdp = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise HTTPException(400, "the SDP offer is not UTF-8 text") from error
    session, answer = await _open_session(request, offer_sdp)
    headers = {"Location": session_location(request, session.id), **_ice_link(request)}
    return Response(answer, status_code=201, media_type="application/sdp", headers=headers)


async def whep_options(request: Request) -> Response:
    """Capability discovery for WHEP clients (a browser's CORS preflight is answered by `security.WhepCORS`)."""
    _check_worker(request)
    return Response(status_code=204, headers={"Accept-Post": "application/sdp", **_ice_link(request), **_CORS})


async def whep_delete(request: Request) -> Response:
    """End the session at this location and free everything it held."""
    _check_worker(request)
    session = _sessions(request).get(request.path_params["session_id"])
    if session is None:
        raise HTTPException(404, "no such WHEP session (it ended, or never existed)")
    await session.close()
    return Response(status_code=200)


async def offer_post(request: Request) -> JSONResponse:
    """JSON signalling for simple clients: `{"sdp", "type": "offer"}` in, the answer out."""
    _check_worker(request)
    enforce(services_of(request).offer_limiter, request, "session offers")
    payload = await read_json_object(request, services_of(request).config.max_sdp_bytes)
    if payload.get("type") != "offer" or not isinstance(payload.get("sdp"), str):
        raise HTTPException(400, 'expected {"sdp": "<SDP offer>", "type": "offer"}')
    session, answer = await _open_session(request, payload["sdp"])
    return JSONResponse(
        {
            "sdp": answer,
            "type": "answer",
            "session_id": session.id,
            "location": session_location(request, session.id),
        },
    )


_ENDPOINTS = (
    ("/whep", whep_post, "POST"),
    ("/whep", whep_options, "OPTIONS"),
    (SESSION_PATH, whep_delete, "DELETE"),
    ("/offer", offer_post, "POST"),
)
routes = [
    Route(prefix + path, endpoint, methods=[method])
    for prefix in ("", WORKER_PREFIX)
    for path, endpoint, method in _ENDPOINTS
]
