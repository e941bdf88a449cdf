"""Browser-facing protections: CORS for the WHEP routes only, and a Content-Security-Policy for the pages."""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

WHEP_PATHS = ("/whep", "/offer")
# The pages load only their own scripts, styles and images: no inline script, no plugin, no framing.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
# Chart.js sizes its canvases through style attributes; scripts stay 'self' only.
DASHBOARD_CSP = PAGE_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
PAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def _is_whep(path: str) -> bool:
    if path.startswith("/w/"):  # a worker's own endpoints: /w/<id>/whep, /w/<id>/whep/sessions/..., /w/<id>/offer
        path = "/" + path.split("/", 3)[-1] if path.count("/") >= 3 else path
    return path in WHEP_PATHS or path.startswith("/whep/")


class WhepCORS:
    """CORS on the WHEP routes (`/whep`, its sessions, `/offer`): any origin, as WHEP players need.

    The viewer's credential there is a bearer token the player sends itself, never a cookie, so no
    credentials are allowed. Every other route answers without CORS headers, and browsers keep other
    origins from reading it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=["*"],
            allow_methods=["POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Location", "Retry-After", "Accept-Post", "Link"],
            allow_credentials=False,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _is_whep(scope["path"]):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
