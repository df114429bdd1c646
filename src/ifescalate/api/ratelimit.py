"""Per-client request rate limit for the HTTP API (security issue: "request rate limits").

Keyed by the TCP peer address (a transport fact, never a header such as X-Forwarded-For), IPv6
folded to its /64 as on the SIP side (one host usually holds a whole /64, RFC 6177 §2, and could
otherwise rotate addresses past the limit), applied before authentication so that guessing tokens is bounded too. A true sliding window: the timestamps
of the last ``limit`` requests per client; memory is bounded by ``max_clients`` (oldest dropped).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..security.facts import parse_ip, source_key
from .common import error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Liveness probes must never be refused.
EXEMPT = frozenset({"/health"})


class RateLimiter:
    """``allow(key, now) -> seconds to wait`` (0.0 when allowed)."""

    def __init__(self, limit: int, window: float, *, max_clients: int = 10_000) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("rate limit needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, key: str, now: float) -> float:
        times = self._seen.get(key)
        if times is None:
            times = deque()
            self._seen[key] = times
            if len(self._seen) > self.max_clients:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(key)
        while times and now - times[0] >= self.window:
            times.popleft()
        if len(times) >= self.limit:
            return times[0] + self.window - now
        times.append(now)
        return 0.0


def client_key(remote: str | None) -> str:
    """The limiter's key for a peer address: IPv4 as is (IPv4-mapped IPv6 too), IPv6 its /64."""
    if not remote:
        return "?"
    try:
        return source_key(parse_ip(remote))
    except ValueError:  # a Unix socket or a test transport: its own text
        return remote


def rate_limit_middleware(
    limiter: RateLimiter, clock: Callable[[], float] = time.monotonic
) -> Middleware:
    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in EXEMPT:
            return await handler(request)
        wait = limiter.allow(client_key(request.remote), clock())
        if wait > 0:
            retry = str(max(1, math.ceil(wait)))
            return error_response(
                429, "too many requests from this address", headers={"Retry-After": retry}
            )
        return await handler(request)

    return rate_limit
