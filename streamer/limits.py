"""Rate limits: a token bucket per key (a client address, a session), in memory, with bounded size."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request

MAX_KEYS = 100_000  # buckets kept; beyond it full (idle) buckets are forgotten first


class RateLimiter:
    """Allow `rate` events per second per key, in bursts of at most `burst`.

    `check(key)` returns 0 when the event may go ahead (and counts it), else the seconds until it may.
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    @classmethod
    def per_minute(cls, count: float) -> RateLimiter:
        """`count` a minute, all of them at once if need be."""
        return cls(count / 60, burst=max(1.0, count))

    def check(self, key: str) -> float:
        """0 if `key` may act now (counted), else seconds to wait."""
        now = self._clock()
        tokens, when = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - when) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > MAX_KEYS:
            self._forget_idle(now)
        return 0.0

    def _forget_idle(self, now: float) -> None:
        full = [k for k, (tokens, when) in self._buckets.items() if tokens + (now - when) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


def client_address(request: Request) -> str:
    """The peer address of a request (the reverse proxy's, unless uvicorn trusts its forwarded headers)."""
    return request.client.host if request.client is not None else "unknown"


def enforce(limiter: RateLimiter | None, request: Request, what: str) -> None:
    """429 with Retry-After when the request's address exceeds `limiter`'s rate for `what`."""
    if limiter is None:
        return
    wait = limiter.check(client_address(request))
    if wait > 0:
        per_minute = limiter.rate * 60
        raise HTTPException(
            429,
            f"too many {what} from this address (at most {per_minute:g} a minute); retry in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )
