"""One asyncio timer for thousands of sans-IO deadlines.

Each state machine reports its next absolute deadline (``get_timer()``); this heap keeps one entry
per armed deadline and one ``loop.call_at`` for the earliest. An entry whose deadline is no longer
the machine's armed one is stale and skipped when popped (lazy deletion: re-arming costs a push,
not a search).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable


class Timed:
    """Something the heap can wake: a deadline source and what to run at that deadline."""

    __slots__ = ("armed", "fire", "get_timer")

    def __init__(
        self, get_timer: Callable[[], float | None], fire: Callable[[float], None]
    ) -> None:
        self.get_timer = get_timer
        self.fire = fire
        self.armed: float | None = None


class TimerHeap:
    """Wakes ``Timed`` objects at their deadlines from one re-armed ``call_at``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, Timed]] = []
        self._seq = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at: float | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def arm(self, timed: Timed) -> None:
        """Re-read ``timed``'s deadline after it changed state; schedule it if it moved."""
        deadline = timed.get_timer()
        if deadline == timed.armed:
            return
        timed.armed = deadline
        if deadline is None:
            return
        heapq.heappush(self._heap, (deadline, next(self._seq), timed))
        if self._handle_at is None or deadline < self._handle_at:
            self._reschedule(deadline)

    def disarm(self, timed: Timed) -> None:
        timed.armed = None

    def _reschedule(self, at: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle_at = at
        self._handle = self._loop.call_at(at, self._run)

    def _run(self) -> None:
        self._handle = None
        self._handle_at = None
        now = self._loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, timed = heapq.heappop(heap)
            if timed.armed != deadline:
                continue  # stale entry: the machine moved its deadline since
            timed.armed = None
            timed.fire(now)
            self.arm(timed)
        if heap and (self._handle_at is None or heap[0][0] < self._handle_at):
            self._reschedule(heap[0][0])

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        # Forget the cancelled call_at too, or a later arm() would think one is still pending.
        self._handle = None
        self._handle_at = None
        self._heap.clear()
