"""Viewer identity, and the admin check, from the `Authorization: Bearer <token>` header."""

from __future__ import annotations

import hmac

from starlette.exceptions import HTTPException
from starlette.requests import Request

from personalization.tokens import TokenSigner


def bearer_token(request: Request) -> str | None:
    """The bearer token of the request, None if there is no Authorization header.

    Raises 401 for an Authorization header that is not a bearer token.
    """
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "the Authorization header must be 'Bearer <viewer token>'")
    return token.strip()


def viewer_from_token(request: Request, signer: TokenSigner) -> str | None:
    """The viewer id the request's token was issued to; None without a token, 401 for a bad one."""
    token = bearer_token(request)
    if token is None:
        return None
    viewer_id = signer.verify(token)
    if viewer_id is None:
        raise HTTPException(401, "invalid viewer token: create a new viewer with POST /api/viewers")
    return viewer_id


def require_viewer(request: Request, signer: TokenSigner, viewer_id: str) -> None:
    """Allow only the bearer of `viewer_id`'s own token (401 without one, 403 for someone else's)."""
    caller = viewer_from_token(request, signer)
    if caller is None:
        raise HTTPException(401, "this needs the viewer's token: Authorization: Bearer <token>")
    if caller != viewer_id:
        raise HTTPException(403, "this token belongs to another viewer")


def require_admin(request: Request, admin_token: str) -> None:
    """Allow only the admin token (401 without a token or with a wrong one, 403 for a viewer's token)."""
    token = bearer_token(request)
    if token is None:
        raise HTTPException(401, "this needs the admin token: Authorization: Bearer <admin token>")
    if hmac.compare_digest(token.encode("utf-8"), admin_token.encode("utf-8")):
        return
    signer: TokenSigner = request.app.state.services.signer
    if signer.verify(token) is not None:
        raise HTTPException(403, "a viewer token cannot manage experiments: use the admin token")
    raise HTTPException(401, "invalid admin token")
