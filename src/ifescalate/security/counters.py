"""Counter backends for the stateful layers: exact sliding windows and blocks with an expiry.

The interface is async because the shared backend (Redis, ``redis_counters.py``) is I/O; the
in-memory backend answers without awaiting anything. Every operation takes ``now`` from the
caller, so tests run in virtual time and every instance sharing a Redis must pass the same clock
(wall-clock seconds, ``time.time()``), exactly as ``sip.digest.DigestServer`` requires for its
nonces. Expiry is decided by comparing stored times with ``now``; Redis TTLs only collect garbage.

A window holds the event times ``t`` with ``now - window < t``: an event at ``t`` leaves the
window at exactly ``t + window``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Protocol

from ..sip.nonce_count import MemoryNonceCounter


@dataclass(frozen=True, slots=True)
class Acquired:
    """Result of :meth:`Counters.acquire`: whether the event was admitted, the events in the
    window afterwards, and the time of the oldest one (for Retry-After)."""

    allowed: bool
    count: int
    oldest: float | None


@dataclass(frozen=True, slots=True)
class Hit:
    """Result of :meth:`Counters.hit_and_block`: the events in the window including this one (0
    when the key was already blocked and nothing was counted) and the block's end, if blocked."""

    count: int
    blocked_until: float | None

    @property
    def blocked(self) -> bool:
        return self.blocked_until is not None


class Counters(Protocol):
    """Sliding windows and blocks under string keys. Implementations are atomic per call."""

    async def hit(self, key: str, now: float, window: float) -> int:
        """Record one event at ``now``; return the events now in the window."""
        ...

    async def count(self, key: str, now: float, window: float) -> int:
        """The events in the window, recording nothing."""
        ...

    async def acquire(self, key: str, now: float, window: float, limit: int) -> Acquired:
        """Record an event only if fewer than ``limit`` are in the window (a true sliding-window
        limiter: refused events are not counted, so a client that keeps trying is not punished
        beyond the window)."""
        ...

    async def hit_and_block(
        self, key: str, now: float, window: float, threshold: int, block_for: float
    ) -> Hit:
        """Unless ``key`` is blocked, record an event; when the window then holds ``threshold``
        events, block ``key`` until ``now + block_for`` and empty its window."""
        ...

    async def blocked_until(self, key: str, now: float) -> float | None:
        """When the block on ``key`` ends, or None when it is not blocked at ``now``."""
        ...

    async def block(self, key: str, until: float, now: float) -> None:
        """Block ``key`` until ``until``."""
        ...

    async def clear(self, key: str) -> None:
        """Forget the window and the block of ``key``."""
        ...

    async def nonce_count(self, nonce: str, nc: int, expires_at: float, now: float) -> bool:
        """Digest nonce-count replay check (RFC 7616 §3.4), atomic: record ``nc`` and return True
        if it is above every count seen for ``nonce``, else False. Kept until ``expires_at``."""
        ...

    async def shared_secret(self, name: str, size: int) -> bytes | None:
        """A random secret of ``size`` bytes every instance sharing this backend reads alike
        (the first to ask creates it), or None when the backend is not shared."""
        ...

    async def ping(self) -> None:
        """One round trip to the backend; raises ``CountersUnavailable`` when it does not answer
        (``security.availability``)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class _Window:
    __slots__ = ("length", "times")

    def __init__(self, length: float) -> None:
        self.length = length
        self.times: list[float] = []

    def trim(self, now: float) -> None:
        # Drop every t <= now - length (the same inclusive bound as ZREMRANGEBYSCORE -inf cutoff).
        cut = bisect.bisect_right(self.times, now - self.length)
        if cut:
            del self.times[:cut]

    def add(self, now: float) -> None:
        # insort keeps the list sorted even if a caller's clock steps back slightly.
        bisect.insort(self.times, now)


class MemoryCounters:
    """In-process :class:`Counters` with bounded memory.

    Idle windows and ended blocks are swept every ``sweep_every`` operations; beyond ``max_keys``
    live windows the oldest-created ones are dropped (blocks are kept: forgetting a block would
    let an attacker free himself by spraying new keys).
    """

    def __init__(self, *, max_keys: int = 1_000_000, sweep_every: int = 4096) -> None:
        if max_keys < 1 or sweep_every < 1:
            raise ValueError("max_keys and sweep_every must be positive")
        self._windows: dict[str, _Window] = {}
        self._blocks: dict[str, float] = {}
        self._max_keys = max_keys
        self._sweep_every = sweep_every
        self._ops = 0
        self._nonces = MemoryNonceCounter()

    def __len__(self) -> int:
        """Live keys held (windows plus blocks), for memory-bound tests."""
        return len(self._windows) + len(self._blocks)

    def _window(self, key: str, now: float, length: float) -> _Window:
        self._tick(now)
        win = self._windows.get(key)
        if win is None:
            win = self._windows[key] = _Window(length)
            if len(self._windows) > self._max_keys:
                del self._windows[next(iter(self._windows))]
        win.length = length
        win.trim(now)
        return win

    def _tick(self, now: float) -> None:
        self._ops += 1
        if self._ops % self._sweep_every == 0:
            self.sweep(now)

    def sweep(self, now: float) -> None:
        """Forget empty windows and ended blocks."""
        for key in [
            k for k, w in self._windows.items() if not w.times or w.times[-1] <= now - w.length
        ]:
            del self._windows[key]
        for key in [k for k, until in self._blocks.items() if until <= now]:
            del self._blocks[key]

    async def hit(self, key: str, now: float, window: float) -> int:
        win = self._window(key, now, window)
        win.add(now)
        return len(win.times)

    async def count(self, key: str, now: float, window: float) -> int:
        win = self._windows.get(key)
        if win is None:
            return 0
        win.trim(now)
        return len(win.times)

    async def acquire(self, key: str, now: float, window: float, limit: int) -> Acquired:
        win = self._window(key, now, window)
        allowed = len(win.times) < limit
        if allowed:
            win.add(now)
        return Acquired(allowed, len(win.times), win.times[0] if win.times else None)

    async def hit_and_block(
        self, key: str, now: float, window: float, threshold: int, block_for: float
    ) -> Hit:
        until = self._blocks.get(key)
        if until is not None and until > now:
            return Hit(0, until)
        win = self._window(key, now, window)
        win.add(now)
        count = len(win.times)
        if count < threshold:
            return Hit(count, None)
        self._blocks[key] = now + block_for
        del self._windows[key]
        return Hit(count, now + block_for)

    async def blocked_until(self, key: str, now: float) -> float | None:
        until = self._blocks.get(key)
        return until if until is not None and until > now else None

    async def block(self, key: str, until: float, now: float) -> None:
        self._tick(now)
        self._blocks[key] = until

    async def clear(self, key: str) -> None:
        self._windows.pop(key, None)
        self._blocks.pop(key, None)

    async def nonce_count(self, nonce: str, nc: int, expires_at: float, now: float) -> bool:
        return self._nonces.check_and_set(nonce, nc, expires_at, now)

    async def shared_secret(self, name: str, size: int) -> bytes | None:
        return None  # one process: each digest server keeps its own key

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
