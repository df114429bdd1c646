"""Availability windows: time zones, midnight, DST gaps and repeats, parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ifescalate.guard import AvailabilityWindow, ExpertValidationError, parse_window


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


BERLIN_OFFICE = parse_window("weekdays 08:00-18:00 Europe/Berlin")


def test_parse_and_str_round_trip() -> None:
    w = parse_window("mon-fri 08:00-18:00 Europe/Berlin")
    assert w == AvailabilityWindow(frozenset(range(5)), 8 * 60, 18 * 60, "Europe/Berlin")
    assert str(w) == "weekdays 08:00-18:00 Europe/Berlin"
    assert parse_window(str(w)) == w
    assert parse_window("sat,sun 22:00-06:00 UTC").days == frozenset({5, 6})
    assert parse_window("fri-mon 00:00-24:00 UTC").days == frozenset({4, 5, 6, 0})
    assert str(parse_window("always")) == "daily 00:00-24:00 UTC"


@pytest.mark.parametrize(
    "text",
    [
        "weekdays 08:00 Europe/Berlin",
        "weekdays 8-18 Europe/Berlin",
        "someday 08:00-18:00 UTC",
        "mon 08:00-18:00 Mars/Olympus",
        "mon 25:00-26:00 UTC",
        "mon 08:60-09:00 UTC",
        "mon 24:00-01:00 UTC",
        "mon 08:00-08:00 UTC",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ExpertValidationError):
        parse_window(text)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        BERLIN_OFFICE.contains(datetime(2025, 6, 4, 10, 0))


def test_berlin_office_hours_in_summer_and_winter() -> None:
    # Wednesday 2025-06-04: CEST (UTC+2). 06:00Z = 08:00 local: opens; 16:00Z = 18:00: closed.
    assert not BERLIN_OFFICE.contains(utc("2025-06-04T05:59:59"))
    assert BERLIN_OFFICE.contains(utc("2025-06-04T06:00:00"))
    assert BERLIN_OFFICE.contains(utc("2025-06-04T15:59:59"))
    assert not BERLIN_OFFICE.contains(utc("2025-06-04T16:00:00"))
    # Wednesday 2025-01-15: CET (UTC+1). 07:00Z = 08:00 local.
    assert not BERLIN_OFFICE.contains(utc("2025-01-15T06:59:00"))
    assert BERLIN_OFFICE.contains(utc("2025-01-15T07:00:00"))
    assert not BERLIN_OFFICE.contains(utc("2025-01-15T17:00:00"))


def test_same_instant_differs_across_zones() -> None:
    tokyo = parse_window("weekdays 09:00-17:00 Asia/Tokyo")
    new_york = parse_window("weekdays 09:00-17:00 America/New_York")
    # Wednesday 2025-06-04 14:00Z = 23:00 Tokyo (closed) = 10:00 New York (open).
    now = utc("2025-06-04T14:00:00")
    assert not tokyo.contains(now)
    assert new_york.contains(now)
    # The offset of the given datetime does not matter, only the instant.
    assert new_york.contains(now.astimezone(timezone(timedelta(hours=-7))))


def test_weekday_is_the_local_one() -> None:
    # Friday 2025-06-06 23:30Z is Saturday 01:30 in Berlin: a weekday-only window is closed,
    # but in Los Angeles it is Friday 16:30.
    late = utc("2025-06-06T23:30:00")
    assert not parse_window("weekdays 00:00-24:00 Europe/Berlin").contains(late)
    assert parse_window("weekdays 00:00-24:00 America/Los_Angeles").contains(late)


def test_window_across_midnight_belongs_to_its_start_day() -> None:
    night = parse_window("fri 22:00-06:00 UTC")
    assert night.crosses_midnight
    assert not night.contains(utc("2025-06-06T21:59:00"))  # Friday before
    assert night.contains(utc("2025-06-06T22:00:00"))  # Friday 22:00
    assert night.contains(utc("2025-06-07T05:59:59"))  # Saturday morning: still Friday's
    assert not night.contains(utc("2025-06-07T06:00:00"))
    assert not night.contains(utc("2025-06-07T23:00:00"))  # Saturday night is not in it
    assert not night.contains(utc("2025-06-05T23:00:00"))  # nor Thursday night


def test_midnight_window_in_a_zone_east_of_utc() -> None:
    # Sunday 22:00 - Monday 02:00 Tokyo = Sunday 13:00Z - 17:00Z.
    w = parse_window("sun 22:00-02:00 Asia/Tokyo")
    assert not w.contains(utc("2025-06-08T12:59:00"))
    assert w.contains(utc("2025-06-08T13:00:00"))
    assert w.contains(utc("2025-06-08T16:59:00"))
    assert not w.contains(utc("2025-06-08T17:00:00"))


def test_end_at_24_00_is_exclusive_midnight() -> None:
    w = parse_window("mon 20:00-24:00 UTC")
    assert w.contains(utc("2025-06-02T23:59:59"))
    assert not w.contains(utc("2025-06-03T00:00:00"))


def test_spring_forward_gap_is_never_inside() -> None:
    # 2025-03-30 Europe/Berlin: 02:00 CET jumps to 03:00 CEST (01:00Z). 02:xx local never exists.
    gap = parse_window("daily 02:00-03:00 Europe/Berlin")
    for minute in range(0, 120, 5):
        instant = utc("2025-03-30T00:00:00") + timedelta(minutes=minute)
        assert not gap.contains(instant), instant
    # The day before, 02:00-03:00 CET is 01:00-02:00Z and exists.
    assert gap.contains(utc("2025-03-29T01:30:00"))


def test_fall_back_repeated_hour_is_inside_twice() -> None:
    # 2025-10-26 Europe/Berlin: 03:00 CEST goes back to 02:00 CET; 02:00-03:00 happens twice,
    # 00:00Z-01:00Z (CEST) and 01:00Z-02:00Z (CET).
    repeated = parse_window("daily 02:00-03:00 Europe/Berlin")
    assert not repeated.contains(utc("2025-10-25T23:59:00"))
    assert repeated.contains(utc("2025-10-26T00:30:00"))
    assert repeated.contains(utc("2025-10-26T01:30:00"))
    assert not repeated.contains(utc("2025-10-26T02:00:00"))


def test_office_day_across_dst_keeps_local_hours() -> None:
    # Monday 2025-03-31 (after the change) opens at 06:00Z; Friday 2025-03-28 (before) at 07:00Z.
    assert BERLIN_OFFICE.contains(utc("2025-03-31T06:00:00"))
    assert not BERLIN_OFFICE.contains(utc("2025-03-28T06:30:00"))
    assert BERLIN_OFFICE.contains(utc("2025-03-28T07:00:00"))


def test_remaining_is_real_elapsed_time() -> None:
    assert BERLIN_OFFICE.remaining(utc("2025-06-04T14:00:00")) == timedelta(hours=2)
    assert BERLIN_OFFICE.remaining(utc("2025-06-04T17:00:00")) is None
    # Saturday night 2025-10-25 22:00 local (20:00Z) to Sunday 06:00 local (05:00Z): the
    # night is 9 real hours because the clock goes back an hour.
    night = parse_window("sat 22:00-06:00 Europe/Berlin")
    assert night.remaining(utc("2025-10-25T20:00:00")) == timedelta(hours=9)
    # Spring: Saturday 2025-03-29 22:00 CET (21:00Z) to Sunday 06:00 CEST (04:00Z): 7 hours.
    assert night.remaining(utc("2025-03-29T21:00:00")) == timedelta(hours=7)


def test_constructor_validates() -> None:
    with pytest.raises(ExpertValidationError):
        AvailabilityWindow(frozenset(), 0, 60, "UTC")
    with pytest.raises(ExpertValidationError):
        AvailabilityWindow(frozenset({7}), 0, 60, "UTC")
    with pytest.raises(ExpertValidationError):
        AvailabilityWindow(frozenset({0}), 0, 1441, "UTC")
    with pytest.raises(ExpertValidationError):
        AvailabilityWindow(frozenset({0}), 0, 60, "No/Such_Zone")
