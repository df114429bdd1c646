"""Failing closed, clearly, when the shared counters (Redis) are unreachable.

A stateful layer cannot decide without its counters: admitting the request would switch the flood
layer, the lockout or the per-expert limit off for as long as Redis is down, which is what an
attacker would want. So the request is refused, but with an answer (RFC 3261 §21.5.4: ``503
Service Unavailable`` with Retry-After, "the server is temporarily unable to process the request"),
not silence, and without a traceback per request.

:class:`GuardedCounters` wraps a shared backend as a circuit breaker: the first failure opens it
(:class:`CountersHealth` records the outage once), and while it is open every operation raises
:class:`CountersUnavailable` at once, without touching the network, so a dead or hanging Redis
costs neither a timeout per request nor a pile of waiting requests. The breaker closes only when
the owner's probe (``net.security_gate``, one ``PING`` per interval) succeeds: recovery needs no
traffic and no restart. Requests that need no counter (in-dialog requests, trusted sources'
requests without credentials) never reach the backend and keep passing during an outage.

Pure apart from awaiting the wrapped backend: the caller passes the clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from .counters import Acquired, Counters, Hit
from .facts import Layer, Reject

T = TypeVar("T")

#: The reason label of a refusal because the counters are unreachable (one per layer that needs
#: them: flood, digest, expert_limit).
COUNTERS_UNAVAILABLE = "counters_unavailable"
UNAVAILABLE_PHRASE = "Service Unavailable - Security Counters Down"


def unavailable(layer: Layer, retry_after: int) -> Reject:
    """The refusal of a request ``layer`` could not decide: 503 with Retry-After (§21.5.4,
    §20.33), labelled ``counters_unavailable`` under the layer whose counters failed."""
    return Reject(
        503,
        UNAVAILABLE_PHRASE,
        layer,
        COUNTERS_UNAVAILABLE,
        (("Retry-After", str(max(1, retry_after))),),
    )


def is_outage(decision: Reject) -> bool:
    """A refusal for our own outage, not for anything the caller did."""
    return decision.reason_label == COUNTERS_UNAVAILABLE


class CountersUnavailable(Exception):
    """The counter backend could not answer (connection refused or lost, timeout, server error).
    The message says what happened, for the one log line per outage."""


class CountersHealth:
    """Whether the shared counters answer, and since when not; the transitions are returned so
    the caller logs each outage once (when it starts and when it ends)."""

    __slots__ = ("down_since", "error", "outages", "refused")

    def __init__(self) -> None:
        self.down_since: float | None = None
        self.error: str | None = None
        #: Outages seen since start, and requests refused during the current one.
        self.outages = 0
        self.refused = 0

    @property
    def up(self) -> bool:
        return self.down_since is None

    def failed(self, error: str, now: float) -> bool:
        """Record a failure; True when it starts an outage (log it), False while one lasts."""
        if self.down_since is not None:
            return False
        self.down_since, self.error, self.refused = now, error, 0
        self.outages += 1
        return True

    def recovered(self, now: float) -> float | None:
        """Record a success; the outage's length when this ends one, else None."""
        if self.down_since is None:
            return None
        length = now - self.down_since
        self.down_since, self.error = None, None
        return length

    def problem(self, now: float) -> str | None:
        """None when up, else why (for ``/ready``)."""
        if self.down_since is None:
            return None
        return f"security counters unreachable for {now - self.down_since:.1f} s: {self.error}"


class GuardedCounters:
    """:class:`Counters` that refuse at once while ``health`` says the backend is down, and mark
    it down on the first :class:`CountersUnavailable` the backend raises."""

    def __init__(
        self, inner: Counters, clock: Callable[[], float], health: CountersHealth | None = None
    ) -> None:
        self.inner = inner
        self.clock = clock
        self.health = health if health is not None else CountersHealth()
        #: Called with the error text when an outage starts (the owner logs it and starts probing).
        self.on_down: Callable[[str], None] | None = None

    async def _run(self, op: Callable[[], Awaitable[T]]) -> T:
        health = self.health
        if not health.up:
            health.refused += 1
            raise CountersUnavailable(health.error or "down")
        try:
            return await op()
        except CountersUnavailable as exc:
            if health.failed(str(exc), self.clock()) and self.on_down is not None:
                self.on_down(str(exc))
            health.refused += 1
            raise

    async def probe(self) -> None:
        """One round trip to the backend, whatever the breaker says; raises CountersUnavailable."""
        await self.inner.ping()

    async def hit(self, key: str, now: float, window: float) -> int:
        return await self._run(lambda: self.inner.hit(key, now, window))

    async def count(self, key: str, now: float, window: float) -> int:
        return await self._run(lambda: self.inner.count(key, now, window))

    async def acquire(self, key: str, now: float, window: float, limit: int) -> Acquired:
        return await self._run(lambda: self.inner.acquire(key, now, window, limit))

    async def hit_and_block(
        self, key: str, now: float, window: float, threshold: int, block_for: float
    ) -> Hit:
        return await self._run(
            lambda: self.inner.hit_and_block(key, now, window, threshold, block_for)
        )

    async def blocked_until(self, key: str, now: float) -> float | None:
        return await self._run(lambda: self.inner.blocked_until(key, now))

    async def block(self, key: str, until: float, now: float) -> None:
        await self._run(lambda: self.inner.block(key, until, now))

    async def clear(self, key: str) -> None:
        await self._run(lambda: self.inner.clear(key))

    async def nonce_count(self, nonce: str, nc: int, expires_at: float, now: float) -> bool:
        return await self._run(lambda: self.inner.nonce_count(nonce, nc, expires_at, now))

    async def shared_secret(self, name: str, size: int) -> bytes | None:
        return await self._run(lambda: self.inner.shared_secret(name, size))

    async def ping(self) -> None:
        await self._run(self.inner.ping)

    async def aclose(self) -> None:
        await self.inner.aclose()
