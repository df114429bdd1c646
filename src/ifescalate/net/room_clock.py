"""The asyncio 20 ms ticker that drives a conference room (the only asyncio piece of the MCU).

Deadlines come from :class:`~ifescalate.media.clock.MediaClock`: tick ``n`` is due at
``start + n * 20 ms`` on the loop's monotonic clock, so a late wake-up never shifts the schedule
(no drift over an hour-long call) and the ticks missed while the loop was busy are run back to back
(up to ``max_catchup``; older ones are dropped and counted). One ``loop.call_at`` per tick, no
task and no sleep: stopping is cancelling one handle.

A tick that starts more than ``late_threshold`` (5 ms) after its deadline is counted late: that is
the figure the media benchmark reports, since a late tick is audio the far ends get late.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ifescalate.media.clock import MediaClock
from ifescalate.media.frames import FRAME_SECONDS

__all__ = ["ClockStats", "RoomClock", "Tickable"]

LATE_THRESHOLD = 0.005
"""Seconds after its deadline that a tick counts as late."""


class Tickable(Protocol):
    """What the clock drives: a room (``council.Room``) or anything with ``tick(now)``."""

    def tick(self, now: float) -> None: ...


@dataclass(slots=True)
class ClockStats:
    """Counters since :meth:`RoomClock.start`: ticks run, late ones, dropped ones, worst delay."""

    ticks: int = 0
    late: int = 0
    skipped: int = 0
    max_lateness: float = 0.0


class RoomClock:
    """Calls ``room.tick(now)`` every 20 ms on ``loop``, then ``after_tick()`` once per wake-up.

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
        self._handle: asyncio.TimerHandle | None = None
        self._active = False

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
        """Stop ticking (also from inside a tick); the room is left as it is."""
        self._active = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self) -> None:
        assert self._clock is not None
        self._handle = self.loop.call_at(self._clock.next_deadline(), self._fire)

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
                self._active = False
        if self._active:
            self._arm()

    def _run_due(self) -> None:
        clock = self._clock
        assert clock is not None  # armed only by start(), which made it
        now = self.loop.time()
        ticks = clock.advance(now)
        self.stats.skipped += ticks.skipped
        for index in range(ticks.first, ticks.first + ticks.due):
            lateness = now - clock.deadline(index)
            self.stats.max_lateness = max(self.stats.max_lateness, lateness)
            self.stats.late += lateness > self.late_threshold
            self.room.tick(now)
            self.stats.ticks += 1
        if ticks.due and self.after_tick is not None:
            self.after_tick()
