"""The long-lived objects one server shares between requests and sessions."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from models.tuning.capacity import CapacityModel
from personalization.experimenting import Experiments
from personalization.personalizer import Personalizer
from personalization.spool import EventSpool
from personalization.store import Store
from personalization.tokens import TokenSigner
from personalization.viewers import ViewerRegistry
from personalization.workers import WorkerDirectory

from .batching import FrameBatcher
from .config import ServerConfig
from .limits import RateLimiter
from .metrics import Metrics


@dataclass
class Services:
    """Built by the app's lifespan, closed by it; handed to routes through `app.state.services`."""

    config: ServerConfig
    metrics: Metrics
    store: Store
    viewers: ViewerRegistry
    personalizer: Personalizer
    signer: TokenSigner
    batcher: FrameBatcher
    capacity: CapacityModel | None = None
    experiments: Experiments | None = None
    admin_token: str = ""
    spool: EventSpool | None = None  # feedback waiting for Redis (it is away)
    offer_limiter: RateLimiter | None = None  # POST /whep and /offer per address
    viewer_limiter: RateLimiter | None = None  # POST /api/viewers per address
    workers: WorkerDirectory | None = None  # the live workers' heartbeats (with --worker-id)


def services_of(request: Request) -> Services:
    """The server's services, from a request's app."""
    return request.app.state.services  # type: ignore[no-any-return]
