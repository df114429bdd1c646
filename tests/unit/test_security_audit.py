"""RejectionAggregator: bounded SECURITY_REJECTED entries in virtual time."""

from __future__ import annotations

import pytest

from ifescalate.security import Challenge, Layer, Reject, RejectionAggregator
from ifescalate.security.audit import OVERFLOW_SOURCE, AuditEntry

FLOOD = Reject(503, "Service Unavailable", Layer.FLOOD, "blocked")
LOCKED = Reject(403, "Forbidden", Layer.DIGEST, "locked_out")
CHALLENGE = Reject(
    401, "Unauthorized", Layer.DIGEST, "challenge", challenge=Challenge.FRESH, audit=False
)


def test_first_rejection_is_reported_at_once_and_the_rest_summarised() -> None:
    agg = RejectionAggregator(window=60.0)
    out = agg.add(FLOOD, "198.51.100.1", 100.0)
    assert out == [
        AuditEntry(
            "198.51.100.1",
            "flood",
            "blocked",
            503,
            "Service Unavailable",
            1,
            100.0,
            100.0,
            100.0,
            160.0,
            False,
        )
    ]
    for i in range(1, 50):
        assert agg.add(FLOOD, "198.51.100.1", 100.0 + i) == []
    assert agg.next_deadline() == 160.0
    assert agg.flush(159.999) == []
    (summary,) = agg.flush(160.0)
    assert (summary.count, summary.first_at, summary.last_at, summary.summary) == (
        49,
        101.0,
        149.0,
        True,
    )
    assert summary.details()["layer"] == "flood" and summary.details()["count"] == 49
    assert agg.next_deadline() is None and len(agg) == 0
    # After the window the next rejection opens a new one, reported at once again.
    (again,) = agg.add(FLOOD, "198.51.100.1", 161.0)
    assert again.count == 1 and not again.summary


def test_a_lone_rejection_has_no_summary() -> None:
    agg = RejectionAggregator(window=60.0)
    assert len(agg.add(LOCKED, "198.51.100.1", 0.0)) == 1
    assert agg.flush(1000.0) == []


def test_groups_by_source_layer_and_reason_with_ipv6_folded() -> None:
    agg = RejectionAggregator(window=60.0)
    entries = []
    entries += agg.add(FLOOD, "2001:db8:1:2::1", 0.0)
    entries += agg.add(FLOOD, "2001:db8:1:2::99", 1.0)  # same /64: same group
    entries += agg.add(LOCKED, "2001:db8:1:2::1", 2.0)  # other layer: own group
    entries += agg.add(FLOOD, "2001:db8:1:3::1", 3.0)  # other /64
    assert [(e.source, e.layer) for e in entries] == [
        ("2001:db8:1:2::/64", "flood"),
        ("2001:db8:1:2::/64", "digest"),
        ("2001:db8:1:3::/64", "flood"),
    ]
    (summary,) = agg.flush(60.0)
    assert (summary.source, summary.count) == ("2001:db8:1:2::/64", 1)


def test_unaudited_rejections_are_not_witnessed() -> None:
    agg = RejectionAggregator()
    assert agg.add(CHALLENGE, "198.51.100.1", 0.0) == []
    assert len(agg) == 0


def test_add_returns_summaries_of_windows_that_ended() -> None:
    agg = RejectionAggregator(window=10.0)
    agg.add(FLOOD, "198.51.100.1", 0.0)
    agg.add(FLOOD, "198.51.100.1", 5.0)
    out = agg.add(LOCKED, "198.51.100.2", 12.0)
    assert [(e.layer, e.count, e.summary) for e in out] == [
        ("flood", 1, True),
        ("digest", 1, False),
    ]


@pytest.mark.parametrize("distinct", [False, True])
def test_output_is_bounded_under_a_10000_rejection_flood(distinct: bool) -> None:
    agg = RejectionAggregator(window=60.0, max_sources=100)
    written: list[AuditEntry] = []
    for i in range(10_000):
        ip = f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}" if distinct else "198.51.100.1"
        # 10,000 rejections inside one 60 s window, alternating two reasons.
        reject = FLOOD if i % 2 else LOCKED
        written += agg.add(reject, ip, i * 0.005)
    written += agg.flush(61.0)
    assert sum(e.count for e in written) == 10_000  # nothing lost, only folded
    if distinct:
        # At most one immediate entry and one summary per group; groups capped at 100 sources
        # plus one overflow group per (layer, reason).
        assert len(written) <= 2 * (100 + 2)
        overflow = [e for e in written if e.source == OVERFLOW_SOURCE]
        assert {(e.layer, e.reason) for e in overflow} == {
            ("flood", "blocked"),
            ("digest", "locked_out"),
        }
    else:
        assert len(written) == 4  # two groups: one immediate entry and one summary each
    assert len(agg) == 0


def test_flush_all_at_shutdown() -> None:
    agg = RejectionAggregator(window=60.0)
    agg.add(FLOOD, "198.51.100.1", 0.0)
    agg.add(FLOOD, "198.51.100.1", 1.0)
    agg.add(FLOOD, "198.51.100.1", 2.0)
    agg.add(LOCKED, "198.51.100.2", 3.0)
    (pending,) = agg.flush_all()
    assert (pending.count, pending.summary) == (2, True)
    assert len(agg) == 0


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        RejectionAggregator(window=0)
    with pytest.raises(ValueError):
        RejectionAggregator(max_sources=0)
