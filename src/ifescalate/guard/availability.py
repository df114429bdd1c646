"""Availability windows: "weekdays 08:00-18:00 Europe/Berlin", evaluated in the expert's own zone.

A window is a set of start days, a wall-clock start and end, and an IANA time zone. Evaluation
converts the (aware) instant to the window's zone and compares wall-clock minutes, so daylight
saving time behaves as people expect: a 08:00-18:00 shift is 08:00-18:00 local on both sides of
a transition, a wall-clock time skipped by a spring-forward gap is never inside, and a repeated
hour in autumn is inside both times it occurs.

A window whose end is not after its start crosses midnight; its day names the day it *starts*
("fri 22:00-06:00" covers Friday night into Saturday morning).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ExpertValidationError

__all__ = ["AvailabilityWindow", "parse_window", "require_aware"]

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_GROUPS = {
    "weekdays": frozenset(range(5)),
    "weekends": frozenset({5, 6}),
    "daily": frozenset(range(7)),
    "always": frozenset(range(7)),
}
_DAY_MINUTES = 24 * 60
_TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})$")


def require_aware(now: datetime) -> datetime:
    """Windows are calendar facts: a naive datetime has no instant, so it is refused."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now


def _parse_minutes(text: str, *, allow_24: bool) -> int:
    m = _TIME_RE.match(text.strip())
    if not m:
        raise ExpertValidationError(f"time must be HH:MM, got {text!r}")
    hours, minutes = int(m.group(1)), int(m.group(2))
    value = hours * 60 + minutes
    if minutes > 59 or value > _DAY_MINUTES or (value == _DAY_MINUTES and not allow_24):
        raise ExpertValidationError(f"time out of range: {text!r}")
    return value


def _format_minutes(value: int) -> str:
    return f"{value // 60:02d}:{value % 60:02d}"


def _parse_days(text: str) -> frozenset[int]:
    """'weekdays', 'daily', 'mon-fri', 'mon,wed,fri', 'sat-mon' (ranges wrap past Sunday)."""
    key = text.strip().lower()
    if key in _DAY_GROUPS:
        return _DAY_GROUPS[key]
    days: set[int] = set()
    for part in key.split(","):
        lo, sep, hi = part.strip().partition("-")
        if lo not in _DAY_NAMES or (sep and hi not in _DAY_NAMES):
            raise ExpertValidationError(f"unknown day(s) {text!r}: use mon..sun, weekdays, daily")
        first = _DAY_NAMES.index(lo)
        last = _DAY_NAMES.index(hi) if sep else first
        span = (last - first) % 7
        days.update((first + i) % 7 for i in range(span + 1))
    return frozenset(days)


def _format_days(days: frozenset[int]) -> str:
    for name, group in _DAY_GROUPS.items():
        if days == group and name != "always":
            return name
    return ",".join(_DAY_NAMES[d] for d in sorted(days))


@dataclass(frozen=True, slots=True)
class AvailabilityWindow:
    """Days (0 = Monday) on which a window *starts*, start/end in minutes of the local day.

    ``end`` may be 1440 ("24:00"). ``end <= start`` means the window runs past midnight.
    """

    days: frozenset[int]
    start: int
    end: int
    tz: str

    def __post_init__(self) -> None:
        if not self.days or not self.days <= frozenset(range(7)):
            raise ExpertValidationError(
                f"window days must be a non-empty subset of 0..6: {self.days}"
            )
        if not 0 <= self.start < _DAY_MINUTES or not 0 <= self.end <= _DAY_MINUTES:
            raise ExpertValidationError("window start/end out of range")
        if self.start == self.end:
            raise ExpertValidationError("window start and end must differ (use 00:00-24:00)")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ExpertValidationError(f"unknown time zone {self.tz!r}") from exc

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def __str__(self) -> str:
        span = f"{_format_minutes(self.start)}-{_format_minutes(self.end)}"
        return f"{_format_days(self.days)} {span} {self.tz}"

    def _open_intervals(self, now: datetime) -> list[tuple[datetime, datetime]]:
        """Local-wall-clock intervals (as naive local datetimes) that could contain *now*.

        Only yesterday's and today's starts matter: a window spans at most 24 hours.
        """
        local = now.astimezone(ZoneInfo(self.tz)).replace(tzinfo=None)
        today = local.replace(hour=0, minute=0, second=0, microsecond=0)
        out: list[tuple[datetime, datetime]] = []
        for start_day in (today - timedelta(days=1), today):
            if start_day.weekday() not in self.days:
                continue
            begin = start_day + timedelta(minutes=self.start)
            end_day = start_day + timedelta(days=1) if self.crosses_midnight else start_day
            out.append((begin, end_day + timedelta(minutes=self.end)))
        return out

    def contains(self, now: datetime) -> bool:
        """Is the wall-clock time of *now* in this window's zone inside [start, end)?"""
        require_aware(now)
        local = now.astimezone(ZoneInfo(self.tz)).replace(tzinfo=None)
        return any(b <= local < e for b, e in self._open_intervals(now))

    def remaining(self, now: datetime) -> timedelta | None:
        """Real (elapsed) time from *now* until this window closes, or None if outside it.

        Subtraction happens in UTC: aware datetimes sharing a ZoneInfo subtract as wall time,
        which would be an hour off across a DST change.
        """
        require_aware(now)
        zone = ZoneInfo(self.tz)
        local = now.astimezone(zone).replace(tzinfo=None)
        ends = [e for b, e in self._open_intervals(now) if b <= local < e]
        if not ends:
            return None
        # fold=0: an end inside a repeated autumn hour is taken at its first occurrence.
        end_utc = max(ends).replace(tzinfo=zone).astimezone(UTC)
        return max(end_utc - now.astimezone(UTC), timedelta(0))


def parse_window(text: str) -> AvailabilityWindow:
    """Parses "DAYS HH:MM-HH:MM ZONE", e.g. "weekdays 08:00-18:00 Europe/Berlin".

    "always" alone means every day, all day, UTC.
    """
    parts = text.split()
    if parts == ["always"]:
        return AvailabilityWindow(_DAY_GROUPS["daily"], 0, _DAY_MINUTES, "UTC")
    if len(parts) != 3:
        raise ExpertValidationError(
            f"availability must be 'DAYS HH:MM-HH:MM ZONE' (e.g. 'weekdays 08:00-18:00 "
            f"Europe/Berlin'), got {text!r}"
        )
    days, span, tz = parts
    start_text, sep, end_text = span.partition("-")
    if not sep:
        raise ExpertValidationError(f"availability span must be HH:MM-HH:MM, got {span!r}")
    return AvailabilityWindow(
        _parse_days(days),
        _parse_minutes(start_text, allow_24=False),
        _parse_minutes(end_text, allow_24=True),
        tz,
    )
