"""The asyncio 20 ms ticker that drives a conference room (the only asyncio piece of the MCU).

Deadlines come from :class:`~ifescalate.media.clock.MediaClock`: tick ``n`` is due at
``start + n * 20 ms`` on the loop's monotonic clock, so a late wake-up never shifts the schedule
(no drift over an hour-long call) and the ticks missed while the loop was busy are run back to back
(up to ``max_catchup``; older ones are dropped and counted). One ``loop.call_at`` per tick, no
task and no sleep: stopping is cancelling one handle.

A tick that starts more than ``late_threshold`` (5 ms) after its deadline is counted late: that is
the figure the media benchmark reports, since a late tick is audio the far ends get late.

Every 20 ms clock of a loop (rooms here, RTP sessions in ``net/rtp.py``) shares one
:class:`SharedTicker`: a heap of deadlines behind one ``loop.call_at``. One wake-up runs every
deadline already due, so clocks whose deadlines fall in the same millisecond of uvloop's clock
(which counts milliseconds: with hundreds of calls, tens of clocks per millisecond) cost one
wake-up, not one each. A deadline within :data:`EARLY` (float rounding of ``start + n * period``)
counts as due: before, ``X.0200000000001 > X.020`` made a clock re-arm a zero delay until uvloop's
millisecond turned (about three timer fires per tick, up to 1 ms of spinning).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ifescalate.media.clock import MediaClock
from ifescalate.media.frames import FRAME_SECONDS

__all__ = [
    "EARLY",
    "LATE_THRESHOLD",
    "ClockStats",
    "Leg",
    "RoomClock",
    "SharedTicker",
    "Tickable",
    "TickerHandle",
]

LATE_THRESHOLD = 0.005
"""Seconds after its deadline that a tick counts as late."""

EARLY = 1e-6
"""A deadline this close to now is due now (float rounding of deadlines; no tick runs early)."""


class TickerHandle:
    """One scheduled callback of a :class:`SharedTicker`; :meth:`cancel` it like a TimerHandle."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class SharedTicker:
    """Many one-shot deadlines behind one ``loop.call_at`` (see the module docstring).

    :meth:`for_loop` gives the loop's ticker. Callbacks run in deadline order; one scheduled while
    the ticker runs waits for the next wake-up (a clock that re-arms at once cannot starve the
    loop). A callback that raises reaches the loop's exception handler, as from a TimerHandle; the
    ticker re-arms first, so the other clocks keep ticking.
    """

    _by_loop: dict[asyncio.AbstractEventLoop, SharedTicker] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop, *, early: float = EARLY) -> None:
        self.loop = loop
        self.early = early
        self._heap: list[tuple[float, int, TickerHandle]] = []
        self._seq = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = 0.0

    @classmethod
    def for_loop(cls, loop: asyncio.AbstractEventLoop) -> SharedTicker:
        """The ticker of ``loop`` (made on first use; tickers of closed loops are dropped)."""
        ticker = cls._by_loop.get(loop)
        if ticker is None:
            for old in [old for old in cls._by_loop if old.is_closed()]:
                del cls._by_loop[old]
            ticker = cls._by_loop[loop] = cls(loop)
        return ticker

    def call_at(self, when: float, callback: Callable[[], None]) -> TickerHandle:
        """Run ``callback()`` once at ``when`` (loop time), or up to :attr:`early` before."""
        handle = TickerHandle(when, callback)
        heapq.heappush(self._heap, (when, next(self._seq), handle))
        if self._handle is None or when < self._armed_at:
            self._arm()
        return handle

    def __len__(self) -> int:
        """Scheduled callbacks, cancelled ones not yet dropped included."""
        return len(self._heap)

    def _arm(self) -> None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if heap:
            self._armed_at = heap[0][0]
            self._handle = self.loop.call_at(self._armed_at, self._fire)

    def _fire(self) -> None:
        self._handle = None
        heap, loop, early = self._heap, self.loop, self.early
        limit = next(self._seq)  # what gets scheduled from here on waits for the next wake-up
        horizon = loop.time() + early
        try:
            while heap:
                when, seq, handle = heap[0]
                if handle.cancelled:
                    heapq.heappop(heap)
                    continue
                if seq > limit:
                    break
                if when > horizon:  # not due at the last look: look at the clock again
                    horizon = loop.time() + early
                    if when > horizon:
                        break
                heapq.heappop(heap)
                handle.callback()
        finally:
            self._arm()


class Tickable(Protocol):
    """What the clock drives: a room (``council.Room``) or anything with ``tick(now)``."""

    def tick(self, now: float) -> None: ...


class Leg(Protocol):
    """An RTP session whose ticks the room clock runs (``net.rtp.MediaSession``)."""

    def follow(self) -> None: ...
    def lead(self) -> None: ...
    def receive_tick(self, now: float) -> None: ...
    def send_tick(self, now: float) -> None: ...
    def after_ticks(self, now: float, skipped: int) -> None: ...


@dataclass(slots=True)
class ClockStats:
    """Counters since :meth:`RoomClock.start`: ticks run, late ones, dropped ones, worst delay."""

    ticks: int = 0
    late: int = 0
    skipped: int = 0
    max_lateness: float = 0.0


class RoomClock:
    """Calls ``room.tick(now)`` every 20 ms on ``loop``, then ``after_tick()`` once per wake-up.

    Legs it :meth:`drive` (the bridged calls' RTP sessions) tick with the room instead of on a
    clock of their own: each tick plays their jitter buffers' frames into the room, mixes, and
    sends the mix-minus at once. One clock per call instead of two (each costs a timer, a clock
    step and a schedule entry per 20 ms), and no wait of up to 20 ms between two independent
    phases on each way through the room.

    ``after_tick`` is where the owner dispatches the room's events
    (``lambda: council.dispatch(escalation_id)``) or feeds test signals. An exception from either
    stops the clock and reaches the loop's exception handler (nothing is swallowed).
    """

    def __init__(
        self,
        room: Tickable,
        loop: asyncio.AbstractEventLoop,
        *,
        after_tick: Callable[[], None] | None = None,
        period: float = FRAME_SECONDS,
        late_threshold: float = LATE_THRESHOLD,
        max_catchup: int = 5,
    ) -> None:
        self.room = room
        self.loop = loop
        self.after_tick = after_tick
        self.period = period
        self.late_threshold = late_threshold
        self.max_catchup = max_catchup
        self.stats = ClockStats()
        self._clock: MediaClock | None = None
        self._handle: TickerHandle | None = None
        self._ticker = SharedTicker.for_loop(loop)
        self._active = False
        self._legs: list[Leg] = []

    @property
    def running(self) -> bool:
        return self._active

    def start(self) -> None:
        """Start ticking: the first tick is due now (idempotent while running)."""
        if self._active:
            return
        self._active = True
        self.stats = ClockStats()
        self._clock = MediaClock(self.loop.time(), period=self.period, max_catchup=self.max_catchup)
        self._arm()

    def stop(self) -> None:
        """Stop ticking (also from inside a tick); the room is left as it is, legs go back to
        their own clocks."""
        self._active = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        legs, self._legs = self._legs, []
        for leg in legs:
            leg.lead()

    def drive(self, leg: Leg) -> None:
        """Run ``leg``'s ticks with the room's (see the class docstring) while the clock runs."""
        if self._active and leg not in self._legs:
            leg.follow()
            self._legs.append(leg)

    def release(self, leg: Leg) -> None:
        """``leg`` goes back to its own clock (it left the room, or its call ended)."""
        if leg in self._legs:
            self._legs.remove(leg)
            leg.lead()

    def _arm(self) -> None:
        assert self._clock is not None
        self._handle = self._ticker.call_at(self._clock.next_deadline(), self._fire)

    def _fire(self) -> None:
        self._handle = None
        finished = False
        try:
            self._run_due()
            finished = True
        finally:
            # Re-armed only after a clean tick: a failing room stops the clock (running turns
            # False) instead of failing 50 times a second; the exception goes to the loop.
            if not finished:
                self.stop()  # legs keep sending on their own clocks
        if self._active:
            self._arm()

    def _run_due(self) -> None:
        clock = self._clock
        assert clock is not None  # armed only by start(), which made it
        now = self.loop.time()
        first, due, skipped = clock.advance(now + EARLY)  # the ticker runs up to EARLY early
        stats = self.stats
        stats.skipped += skipped
        legs = tuple(self._legs)  # a leg may hang up (and be released) inside its tick
        for index in range(first, first + due):
            lateness = now - clock.deadline(index)
            if lateness > stats.max_lateness:
                stats.max_lateness = lateness
            stats.late += lateness > self.late_threshold
            for leg in legs:
                leg.receive_tick(now)
            self.room.tick(now)
            for leg in legs:
                leg.send_tick(now)
            stats.ticks += 1
        for leg in legs:
            leg.after_ticks(now, skipped)
        if due and self.after_tick is not None:
            self.after_tick()
