"""sip.retransmit.TwoXXRetransmitter: the UAS core's 2xx retransmission (RFC 3261 §13.3.1.4)."""

from __future__ import annotations

import pytest

from ifescalate.sip.message import Response
from ifescalate.sip.retransmit import TwoXXRetransmitter, TwoXXState
from ifescalate.sip.transaction import Send, Timeout, Timers

T = Timers(t1=0.5, t2=4.0)


def _ok() -> Response:
    resp = Response(status=200, reason="OK")
    resp.headers.add("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-1")
    resp.headers.add("CSeq", "1 INVITE")
    return resp


def _run(rtx: TwoXXRetransmitter, until: float) -> list[tuple[float, str]]:
    """Fire the machine at each deadline it asks for, as a timer heap would; log what it does."""
    log: list[tuple[float, str]] = []
    while (at := rtx.get_timer()) is not None and at <= until:
        for ev in rtx.handle_timer(at):
            log.append((at, "send" if isinstance(ev, Send) else f"timeout-{ev.timer}"))
    return log


def test_unreliable_doubles_from_t1_to_t2_then_times_out_at_64_t1() -> None:
    resp = _ok()
    rtx = TwoXXRetransmitter(resp, reliable=False, now=100.0, timers=T)
    log = _run(rtx, until=200.0)
    sends = [round(at - 100.0, 6) for at, what in log if what == "send"]
    # Intervals 0.5, 1, 2, 4, 4, 4, ...: sent at 0.5, 1.5, 3.5, 7.5, 11.5, ... while < 32 s.
    expected = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert sends == expected
    assert log[-1] == (100.0 + 64 * 0.5, "timeout-H")
    assert rtx.state is TwoXXState.TIMED_OUT
    assert rtx.get_timer() is None


def test_every_send_carries_the_same_response() -> None:
    resp = _ok()
    rtx = TwoXXRetransmitter(resp, reliable=False, now=0.0, timers=T)
    events = rtx.handle_timer(0.5) + rtx.handle_timer(1.5)
    assert events == [Send(resp), Send(resp)]


def test_nothing_happens_before_the_first_deadline() -> None:
    rtx = TwoXXRetransmitter(_ok(), reliable=False, now=0.0, timers=T)
    assert rtx.get_timer() == 0.5
    assert rtx.handle_timer(0.49) == []
    assert rtx.get_timer() == 0.5


def test_ack_stops_retransmission_and_timeout() -> None:
    rtx = TwoXXRetransmitter(_ok(), reliable=False, now=0.0, timers=T)
    assert len(rtx.handle_timer(0.5)) == 1
    rtx.ack_received()
    assert rtx.state is TwoXXState.ACKED
    assert rtx.get_timer() is None
    assert rtx.handle_timer(1.5) == []
    assert rtx.handle_timer(40.0) == []


def test_late_ack_after_timeout_changes_nothing() -> None:
    rtx = TwoXXRetransmitter(_ok(), reliable=False, now=0.0, timers=T)
    assert rtx.handle_timer(32.0) == [Timeout("H")]
    rtx.ack_received()
    assert rtx.state is TwoXXState.TIMED_OUT


def test_reliable_never_retransmits_but_still_times_out() -> None:
    rtx = TwoXXRetransmitter(_ok(), reliable=True, now=10.0, timers=T)
    assert rtx.get_timer() == 10.0 + 32.0
    assert _run(rtx, until=100.0) == [(42.0, "timeout-H")]


@pytest.mark.parametrize(("t1", "t2"), [(0.05, 4.0), (0.5, 0.5), (0.1, 0.3)])
def test_interval_never_exceeds_t2(t1: float, t2: float) -> None:
    rtx = TwoXXRetransmitter(_ok(), reliable=False, now=0.0, timers=Timers(t1=t1, t2=t2))
    sends = [at for at, what in _run(rtx, until=1000.0) if what == "send"]
    gaps = [b - a for a, b in zip([0.0, *sends], sends, strict=False)]
    assert gaps[0] == pytest.approx(t1)
    assert all(g <= t2 + 1e-9 for g in gaps)
    assert sends[-1] < 64 * t1


def test_a_late_timer_fires_once_and_reschedules_from_now() -> None:
    # An event loop that wakes late must not send a burst of overdue retransmissions.
    rtx = TwoXXRetransmitter(_ok(), reliable=False, now=0.0, timers=T)
    assert len(rtx.handle_timer(5.0)) == 1
    assert rtx.get_timer() == pytest.approx(6.0)
