"""Layer 7: turn the stream of rejections into a bounded stream of SECURITY_REJECTED entries.

A flood must not fill the witness store, so rejections are grouped per (source, layer, reason)
and window (IPv6 sources folded to their /64). The first rejection of a group is reported at once
(count 1), so a single refused call is witnessed without delay; the rest of that window is
reported as one summary entry with its count when the window ends. Beyond ``max_sources`` groups
open at once, new sources fold into one ``"*"`` group per (layer, reason). So each window yields at
most ``2 * (max_sources + layers x reasons)`` entries however many requests arrive, and memory is
bounded the same way.

Pure: the caller passes ``now`` and writes what comes back; it calls :meth:`flush` at
:meth:`next_deadline` (one timer, like a protocol object's ``get_timer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .facts import Reject, parse_ip, source_key

OVERFLOW_SOURCE = "*"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One SECURITY_REJECTED witness entry: ``count`` rejections of ``source`` by ``layer`` for
    ``reason`` between ``first_at`` and ``last_at``. ``summary`` is False for the immediate entry
    of a window's first rejection, True for the window-end summary of the rest."""

    source: str
    layer: str
    reason: str
    status: int
    reason_phrase: str
    count: int
    first_at: float
    last_at: float
    window_start: float
    window_end: float
    summary: bool
    policy_ids: tuple[str, ...] = ()
    #: The trusted proxy that named ``source`` (``security.proxy``), None for a direct caller.
    proxy: str | None = None

    def details(self) -> dict[str, Any]:
        """The ``details`` of the witness event (JSON-ready); ``policy_ids`` only for the policy
        layer and ``proxy`` only behind a trusted proxy, so every other entry keeps its exact
        shape."""
        extra: dict[str, Any] = {"policy_ids": list(self.policy_ids)} if self.policy_ids else {}
        if self.proxy is not None:
            extra["proxy"] = self.proxy
        return extra | {
            "layer": self.layer,
            "reason": self.reason,
            "status": self.status,
            "reason_phrase": self.reason_phrase,
            "source": self.source,
            "count": self.count,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "summary": self.summary,
        }


class _Group:
    __slots__ = (
        "count",
        "first_at",
        "last_at",
        "opened_at",
        "phrase",
        "policy_ids",
        "proxy",
        "status",
    )

    def __init__(self, rejection: Reject, now: float, proxy: str | None) -> None:
        self.proxy = proxy
        self.opened_at = now
        self.status = rejection.status
        self.phrase = rejection.reason_phrase
        self.policy_ids = rejection.policy_ids
        self.count = 0  # rejections after the first
        self.first_at = now
        self.last_at = now


_Key = tuple[str, str, str]


def audit_source(source_ip: str) -> str:
    """The grouping source: the IPv4 address or the IPv6 /64; unparsable text groups as-is."""
    try:
        return source_key(parse_ip(source_ip))
    except ValueError:
        return "invalid"


class RejectionAggregator:
    """Bounded aggregation of rejections into witness entries (see the module docstring)."""

    def __init__(self, window: float = 60.0, max_sources: int = 100) -> None:
        if window <= 0 or max_sources < 1:
            raise ValueError("window and max_sources must be positive")
        self.window = window
        self.max_sources = max_sources
        # Insertion order is opening order, so expired groups sit at the front.
        self._groups: dict[_Key, _Group] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def add(
        self, rejection: Reject, source_ip: str, now: float, proxy: str | None = None
    ) -> list[AuditEntry]:
        """Account one rejection; returns the entries to write now (summaries of windows that
        ended, then this rejection's entry if it opens a window). Rejections with
        ``audit=False`` (the ordinary first digest challenge) are not witnessed. ``proxy`` is
        the trusted proxy that named ``source_ip`` (the window's first one is recorded)."""
        out = self.flush(now)
        if not rejection.audit:
            return out
        key = self._key(rejection, audit_source(source_ip))
        group = self._groups.get(key)
        if group is not None:
            if group.count == 0:
                group.first_at = now
            group.count += 1
            group.last_at = now
            return out
        self._groups[key] = group = _Group(rejection, now, proxy)
        out.append(self._entry(key, group, 1, now, now, summary=False))
        return out

    def _key(self, rejection: Reject, source: str) -> _Key:
        key = (source, rejection.layer.value, rejection.reason_label)
        if key in self._groups or len(self._groups) < self.max_sources:
            return key
        return (OVERFLOW_SOURCE, key[1], key[2])

    def flush(self, now: float) -> list[AuditEntry]:
        """Summaries of every group whose window ended at or before ``now``."""
        out: list[AuditEntry] = []
        while self._groups:
            key, group = next(iter(self._groups.items()))
            if group.opened_at + self.window > now:
                break
            del self._groups[key]
            if group.count:
                out.append(self._summary(key, group))
        return out

    def flush_all(self) -> list[AuditEntry]:
        """Every pending summary, windows ended or not (at shutdown)."""
        out = [self._summary(k, g) for k, g in self._groups.items() if g.count]
        self._groups.clear()
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`flush` next has something to do, or None."""
        for group in self._groups.values():
            return group.opened_at + self.window
        return None

    def _summary(self, key: _Key, group: _Group) -> AuditEntry:
        return self._entry(key, group, group.count, group.first_at, group.last_at, summary=True)

    def _entry(
        self, key: _Key, group: _Group, count: int, first: float, last: float, *, summary: bool
    ) -> AuditEntry:
        return AuditEntry(
            source=key[0],
            layer=key[1],
            reason=key[2],
            status=group.status,
            reason_phrase=group.phrase,
            count=count,
            first_at=first,
            last_at=last,
            window_start=group.opened_at,
            window_end=group.opened_at + self.window,
            summary=summary,
            policy_ids=group.policy_ids,
            proxy=group.proxy,
        )
