"""The drift-free 20 ms media clock, in virtual time."""

from __future__ import annotations

import pytest

from ifescalate.media.clock import MediaClock, Ticks
from ifescalate.media.frames import MediaError


def test_ticks_on_schedule() -> None:
    clock = MediaClock(100.0)
    assert clock.next_deadline() == 100.0
    assert clock.advance(99.999) == Ticks(first=0, due=0, skipped=0)
    assert clock.advance(100.0) == Ticks(first=0, due=1, skipped=0)
    assert clock.advance(100.0) == Ticks(first=1, due=0, skipped=0)
    assert clock.next_deadline() == pytest.approx(100.02)
    assert clock.advance(100.025) == Ticks(first=1, due=1, skipped=0)


def test_late_caller_gets_the_missed_ticks_and_the_schedule_does_not_move() -> None:
    clock = MediaClock(0.0, max_catchup=5)
    clock.advance(0.0)
    ticks = clock.advance(0.065)  # woke up 45 ms late: ticks 1, 2, 3 are due
    assert ticks == Ticks(first=1, due=3, skipped=0) and ticks.late
    assert clock.next_deadline() == pytest.approx(0.08)  # not 0.085: no drift from lateness
    ticks = clock.advance(0.5)  # a 420 ms stall: ticks 4..25 due, only the newest 5 are run
    assert ticks == Ticks(first=21, due=5, skipped=17)
    assert (clock.skipped_total, clock.late_total) == (17, 2)
    assert clock.next_deadline() == pytest.approx(0.52)


def test_one_hour_of_virtual_ticks_has_zero_drift() -> None:
    start = 12345.678
    clock = MediaClock(start)
    ticks_run = 0
    # A caller that always wakes 3 ms after the deadline it asked for (timer latency).
    while ticks_run < 180_000:
        ticks = clock.advance(clock.next_deadline() + 0.003)
        assert ticks.due == 1 and ticks.skipped == 0
        ticks_run += ticks.due
    assert clock.next_index == 180_000
    assert clock.next_deadline() == start + 180_000 * 0.020
    assert abs(clock.next_deadline() - (start + 3600.0)) < 1e-9
    # The naive schedule (deadline += period) drifts measurably over the same hour.
    naive = start
    for _ in range(180_000):
        naive += 0.020
    assert naive != clock.next_deadline()


def test_exact_boundaries_under_float_rounding() -> None:
    clock = MediaClock(0.1)
    for n in range(1, 2000):
        # Exactly at deadline n: ticks up to n inclusive are due, never n+1 and never short.
        ticks = clock.advance(clock.deadline(n))
        assert ticks.first + ticks.due + ticks.skipped - 1 == n
        assert clock.next_index == n + 1


def test_rejects_bad_parameters() -> None:
    with pytest.raises(MediaError, match="period must be positive, got 0"):
        MediaClock(0.0, period=0)
    with pytest.raises(MediaError, match="max_catchup must be at least 1, got 0"):
        MediaClock(0.0, max_catchup=0)
