"""Nonce-count stores for digest servers (RFC 7616 §3.4: nc lets the server detect replays).

A store remembers the highest nonce-count accepted per nonce until the nonce expires. This one
lives in the process; ``security.redis_counters`` keeps the same record in Redis so that a nonce
issued by one instance and answered at another is counted once across all of them.
"""

from __future__ import annotations

import heapq
from typing import Protocol


class NonceCounter(Protocol):
    """Remembers the highest nonce-count accepted per nonce.

    ``check_and_set`` must be atomic: return True and record *nc* if *nc* is higher than anything
    seen for *nonce*, else False. *expires_at* and *now* are on the same clock as the server's
    ``now``; a networked backend (Redis) can keep each key for ``expires_at - now`` seconds, which
    works whatever that clock is.
    """

    def check_and_set(self, nonce: str, nc: int, expires_at: float, now: float) -> bool: ...


class MemoryNonceCounter:
    """In-process :class:`NonceCounter` with bounded memory.

    Entries leave when their nonce expires. When more than *capacity* nonces are live, the one
    that expires first is evicted. That never opens a replay window: an evicted entry sorts before
    every entry kept, so until a purge makes room (which means it has expired too) a replay of it is
    again the first to go and is refused. Eviction can cost a client one extra challenge.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._highest: dict[str, int] = {}
        self._expiry: list[tuple[float, str]] = []  # min-heap; each nonce pushed once

    def __len__(self) -> int:
        return len(self._highest)

    def check_and_set(self, nonce: str, nc: int, expires_at: float, now: float) -> bool:
        self._purge(now)
        seen = self._highest.get(nonce)
        if seen is None:
            if expires_at <= now:  # an expired nonce cannot be counted, so cannot be accepted
                return False
            self._highest[nonce] = nc
            heapq.heappush(self._expiry, (expires_at, nonce))
            self._evict()
            return nonce in self._highest
        if nc <= seen:
            return False
        self._highest[nonce] = nc
        return True

    def _purge(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, nonce = heapq.heappop(self._expiry)
            self._highest.pop(nonce, None)

    def _evict(self) -> None:
        while len(self._highest) > self._capacity:
            _, nonce = heapq.heappop(self._expiry)
            self._highest.pop(nonce, None)
