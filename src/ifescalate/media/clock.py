"""A drift-free media clock: tick ``n`` is due at ``start + n * period``, always (absolute schedule).

The asyncio layer in ``net/`` sleeps until :meth:`MediaClock.next_deadline` and then calls
:meth:`MediaClock.advance` with the current monotonic time. Deadlines are computed from the tick
index, never by adding the period to the previous deadline, so neither float rounding nor a late
wake-up accumulates: a caller that wakes late is told how many ticks are due (and how many it
should drop, if it fell too far behind), and the schedule stays where it was.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ifescalate.media.frames import FRAME_SECONDS, MediaError


class Ticks(NamedTuple):
    """What :meth:`MediaClock.advance` found due.

    ``due`` ticks should be run now (first index ``first``); ``skipped`` more were due but are
    dropped because the caller fell further behind than ``max_catchup`` allows. A named tuple
    (immutable like a frozen dataclass, ~3x cheaper to make: every media clock makes one per
    20 ms tick).
    """

    first: int
    due: int
    skipped: int

    @property
    def late(self) -> bool:
        """More than one tick was due: the caller woke up after the next deadline had passed."""
        return self.due + self.skipped > 1


class MediaClock:
    """Absolute 20 ms schedule starting at ``start`` (seconds on the caller's monotonic clock)."""

    def __init__(
        self, start: float, *, period: float = FRAME_SECONDS, max_catchup: int = 5
    ) -> None:
        if period <= 0:
            raise MediaError(f"media clock period must be positive, got {period}")
        if max_catchup < 1:
            raise MediaError(f"max_catchup must be at least 1, got {max_catchup}")
        self.start = start
        self.period = period
        self.max_catchup = max_catchup
        self.next_index = 0
        """Index of the next tick not yet run."""
        self.skipped_total = 0
        self.late_total = 0

    def deadline(self, index: int) -> float:
        """When tick ``index`` is due."""
        return self.start + index * self.period

    def next_deadline(self) -> float:
        """When the next tick not yet run is due."""
        return self.deadline(self.next_index)

    def advance(self, now: float) -> Ticks:
        """Consume every tick due at ``now``; at most ``max_catchup`` are returned to run."""
        first = self.next_index
        # The usual wake-up: the next tick is due and the one after is not (same arithmetic as
        # deadline(), so the answer is the one _last_due gives, without its search).
        if self.start + first * self.period <= now < self.start + (first + 1) * self.period:
            self.next_index = first + 1
            return Ticks(first=first, due=1, skipped=0)
        last_due = self._last_due(now)
        pending = last_due - self.next_index + 1
        if pending <= 0:
            return Ticks(first=self.next_index, due=0, skipped=0)
        skipped = max(0, pending - self.max_catchup)
        # Drop the oldest ticks: the newest are the ones whose frames are still worth producing.
        first = self.next_index + skipped
        self.next_index = last_due + 1
        ticks = Ticks(first=first, due=pending - skipped, skipped=skipped)
        self.skipped_total += skipped
        self.late_total += ticks.late
        return ticks

    def _last_due(self, now: float) -> int:
        """Largest n with deadline(n) <= now (-1 if none), exact under float rounding."""
        n = math.floor((now - self.start) / self.period)
        # The division can land one off next to a boundary: settle with the exact comparison.
        while n >= 0 and self.deadline(n) > now:
            n -= 1
        while self.deadline(n + 1) <= now:
            n += 1
        return max(n, -1)
