"""RFC 3261 §17 / RFC 6026 transaction state machines, driven with virtual time."""

from __future__ import annotations

import pytest

from ifescalate.sip.message import Request, Response, parse_message
from ifescalate.sip.transaction import (
    DEFAULT_TIMERS,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    Deliver,
    ProtocolError,
    Send,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    Terminated,
    Timeout,
    Timers,
    TransportError,
    TxEvent,
    TxState,
    build_ack,
    build_cancel,
)


def sip(*lines: str, body: str = "") -> Request | Response:
    return parse_message(("\r\n".join(lines) + "\r\n\r\n" + body).encode())


def req(*lines: str, body: str = "") -> Request:
    m = sip(*lines, body=body)
    assert isinstance(m, Request)
    return m


def resp(*lines: str) -> Response:
    m = sip(*lines)
    assert isinstance(m, Response)
    return m


INVITE = req(
    "INVITE sip:bob@biloxi.example.com SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
    "Via: SIP/2.0/UDP client.example.com;branch=z9hG4bKfirst",
    "Max-Forwards: 69",
    "Route: <sip:p1.example.com;lr>",
    "Route: <sip:p2.example.com;lr>, <sip:p3.example.com;lr>",
    "To: Bob <sip:bob@biloxi.example.com>",
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@pc33.atlanta.example.com>",
    "Content-Type: application/sdp",
    "Content-Length: 4",
    body="v=0\n",
)


def invite_response(status: int, reason: str, to_tag: str | None = "a6c85cf") -> Response:
    to = "Bob <sip:bob@biloxi.example.com>" + (f";tag={to_tag}" if to_tag else "")
    return resp(
        f"SIP/2.0 {status} {reason}",
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
        "Via: SIP/2.0/UDP client.example.com;branch=z9hG4bKfirst",
        f"To: {to}",
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
        "CSeq: 314159 INVITE",
        "Content-Length: 0",
    )


OPTIONS = req(
    "OPTIONS sip:carol@chicago.example.com SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877",
    "Max-Forwards: 70",
    "To: <sip:carol@chicago.example.com>",
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710",
    "CSeq: 63104 OPTIONS",
    "Content-Length: 0",
)


def options_response(status: int, reason: str) -> Response:
    return resp(
        f"SIP/2.0 {status} {reason}",
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877",
        "To: <sip:carol@chicago.example.com>;tag=93810874",
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
        "Call-ID: a84b4c76e66710",
        "CSeq: 63104 OPTIONS",
        "Content-Length: 0",
    )


ACK_SAME_BRANCH = req(
    "ACK sip:bob@biloxi.example.com SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf",
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 ACK",
    "Content-Length: 0",
)

RINGING = invite_response(180, "Ringing")
OK = invite_response(200, "OK")
BUSY = invite_response(486, "Busy Here")
TRYING = invite_response(100, "Trying", to_tag=None)


def sends(events: list[TxEvent]) -> list[Request | Response]:
    return [e.message for e in events if isinstance(e, Send)]


def run_until(tx: object, end: float) -> list[tuple[float, list[TxEvent]]]:
    """Fire every timer of ``tx`` up to ``end``, as an event loop would: (when, events) pairs."""
    out: list[tuple[float, list[TxEvent]]] = []
    while True:
        when = tx.get_timer()  # type: ignore[attr-defined]
        if when is None or when > end:
            return out
        out.append((when, tx.handle_timer(when)))  # type: ignore[attr-defined]


def send_times(fired: list[tuple[float, list[TxEvent]]]) -> list[float]:
    return [t for t, events in fired for e in events if isinstance(e, Send)]


# ------------------------------------------------------------------------------------ Timers


def test_default_timers_are_rfc_values() -> None:
    assert (DEFAULT_TIMERS.t1, DEFAULT_TIMERS.t2, DEFAULT_TIMERS.t4) == (0.5, 4.0, 5.0)
    assert DEFAULT_TIMERS.timer_d == 32.0


@pytest.mark.parametrize("kwargs", [{"t1": 0}, {"t1": 5.0, "t2": 4.0}, {"t4": -1}])
def test_timers_reject_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Timers(**kwargs)


def test_timeout_event_validates_timer_name() -> None:
    with pytest.raises(ValueError):
        Timeout("Z")


# ------------------------------------------------------------------------------- INVITE client


def test_ict_start_sends_invite_and_arms_a_and_b() -> None:
    tx = ClientInviteTransaction(INVITE, reliable=False, now=0.0)
    assert tx.state is TxState.CALLING
    assert tx.get_timer() is None
    assert tx.start(0.0) == [Send(INVITE)]
    assert tx.get_timer() == 0.5
    assert tx.key == ("z9hG4bK776asdhds", "INVITE")


def test_ict_start_twice_is_a_protocol_error() -> None:
    tx = ClientInviteTransaction(INVITE, reliable=False, now=0.0)
    tx.start(0.0)
    with pytest.raises(ProtocolError):
        tx.start(0.1)


def test_ict_rejects_non_invite() -> None:
    with pytest.raises(ProtocolError):
        ClientInviteTransaction(OPTIONS, reliable=False, now=0.0)


def test_ict_loss_retransmits_doubling_then_timer_b() -> None:
    tx = ClientInviteTransaction(INVITE, reliable=False, now=10.0)
    tx.start(10.0)
    fired = run_until(tx, 100.0)
    # §17.1.1.2: A at T1, 2T1, 4T1, ... (no T2 cap); B at 64*T1 = 32 s.
    assert send_times(fired) == [10.5, 11.5, 13.5, 17.5, 25.5, 41.5]
    assert all(sends(ev) == [INVITE] for _, ev in fired[:-1])
    assert fired[-1] == (42.0, [Timeout("B"), Terminated()])
    assert tx.state is TxState.TERMINATED
    assert tx.get_timer() is None


def test_ict_reliable_never_retransmits() -> None:
    tx = ClientInviteTransaction(INVITE, reliable=True, now=0.0)
    tx.start(0.0)
    assert tx.get_timer() == 32.0
    assert tx.handle_timer(31.9) == []
    assert tx.handle_timer(32.0) == [Timeout("B"), Terminated()]


def test_ict_custom_timers_scale() -> None:
    tx = ClientInviteTransaction(INVITE, reliable=False, now=0.0, timers=Timers(t1=0.1))
    tx.start(0.0)
    fired = run_until(tx, 100.0)
    assert send_times(fired) == pytest.approx([0.1, 0.3, 0.7, 1.5, 3.1, 6.3])
    assert fired[-1][0] == pytest.approx(6.4)


def test_ict_handle_timer_early_does_nothing() -> None:
    tx = ClientInviteTransaction(INVITE, reliable=False, now=0.0)
    tx.start(0.0)
    assert tx.handle_timer(0.49) == []
    assert tx.get_timer() == 0.5


def test_ict_provisional_stops_retransmissions_and_timer_b() -> None:
    tx = ClientInviteTransaction(INVITE, reliable=False, now=0.0)
    tx.start(0.0)
    tx.handle_timer(0.5)
    assert tx.receive_response(TRYING, 0.7) == [Deliver(TRYING)]
    assert tx.state is TxState.PROCEEDING
    assert tx.can_cancel
    assert tx.get_timer() is None  # §17.1.1.2: no retransmission, no B in Proceeding
    assert tx.receive_response(RINGING, 1.0) == [Deliver(RINGING)]
    assert tx.state is TxState.PROCEEDING


def test_ict_non_2xx_generates_ack_and_absorbs_retransmissions() -> None:
    tx = ClientInviteTransaction(INVITE, reliable=False, now=0.0)
    tx.start(0.0)
    tx.receive_response(RINGING, 0.2)
    events = tx.receive_response(BUSY, 3.0)
    ack = tx.ack
    assert ack is not None
    assert events == [Deliver(BUSY), Send(ack)]
    assert tx.state is TxState.COMPLETED
    assert not tx.can_cancel
    assert tx.get_timer() == 35.0  # Timer D: 32 s on unreliable transports
    # A retransmitted 486 is not passed up again; the same ACK goes out again.
    again = tx.receive_response(invite_response(486, "Busy Here"), 4.0)
    assert again == [Send(ack)]
    assert tx.receive_response(RINGING, 4.1) == []
    assert tx.handle_timer(34.9) == []
    assert tx.handle_timer(35.0) == [Terminated()]


def test_ict_ack_is_byte_exact() -> None:
    ack = build_ack(INVITE, BUSY)
    assert bytes(ack) == (
        b"ACK sip:bob@biloxi.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
        b"Route: <sip:p1.example.com;lr>\r\n"
        b"Route: <sip:p2.example.com;lr>, <sip:p3.example.com;lr>\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
        b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        b"CSeq: 314159 ACK\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    )


def test_ict_ack_fields_follow_17_1_1_3() -> None:
    tx = ClientInviteTransaction(INVITE, reliable=False, now=0.0)
    tx.start(0.0)
    tx.receive_response(BUSY, 1.0)
    ack = tx.ack
    assert ack is not None
    assert ack.method == "ACK"
    assert ack.uri == INVITE.uri
    assert ack.headers.get_lines("Via") == [INVITE.top_via]  # a single Via, same branch
    assert ack.call_id == INVITE.call_id
    assert ack.headers.get("From") == INVITE.headers.get("From")
    assert ack.headers.get("To") == BUSY.headers.get("To")
    assert ack.cseq == (314159, "ACK")
    assert ack.headers.get_lines("Route") == INVITE.headers.get_lines("Route")
    assert ack.body == b""


def test_ict_ack_follows_a_final_with_another_to_tag() -> None:
    tx = ClientInviteTransaction(INVITE, reliable=False, now=0.0)
    tx.start(0.0)
    tx.receive_response(BUSY, 1.0)
    other = invite_response(486, "Busy Here", to_tag="other")
    (event,) = tx.receive_response(other, 2.0)
    assert isinstance(event, Send)
    assert event.message.headers.get("To") == other.headers.get("To")


def test_ict_reliable_non_2xx_terminates_at_once() -> None:
    tx = ClientInviteTransaction(INVITE, reliable=True, now=0.0)
    tx.start(0.0)
    events = tx.receive_response(BUSY, 1.0)
    ack = tx.ack
    assert ack is not None
    assert events == [Deliver(BUSY), Send(ack), Terminated()]  # Timer D = 0
    assert tx.state is TxState.TERMINATED
    assert tx.get_timer() is None
    assert tx.receive_response(BUSY, 1.1) == []


@pytest.mark.parametrize("reliable", [False, True])
def test_ict_2xx_enters_accepted_and_passes_every_2xx_up(reliable: bool) -> None:
    tx = ClientInviteTransaction(INVITE, reliable=reliable, now=0.0)
    tx.start(0.0)
    tx.receive_response(RINGING, 0.1)
    assert tx.receive_response(OK, 2.0) == [Deliver(OK)]
    assert tx.state is TxState.ACCEPTED
    assert tx.ack is None  # the TU ACKs a 2xx itself (§13.2.2.4)
    assert tx.get_timer() == 34.0  # RFC 6026 Timer M = 64*T1 on every transport
    retransmitted = invite_response(200, "OK")
    forked = invite_response(200, "OK", to_tag="fork2")
    assert tx.receive_response(retransmitted, 2.5) == [Deliver(retransmitted)]
    assert tx.receive_response(forked, 3.0) == [Deliver(forked)]
    assert tx.receive_response(RINGING, 3.1) == []
    assert tx.receive_response(BUSY, 3.2) == []
    assert tx.transport_error(3.3) == []
    assert tx.handle_timer(34.0) == [Terminated()]
    assert tx.receive_response(OK, 35.0) == []


def test_ict_2xx_straight_from_calling_stops_retransmissions() -> None:
    tx = ClientInviteTransaction(INVITE, reliable=False, now=0.0)
    tx.start(0.0)
    tx.receive_response(OK, 0.3)
    assert tx.get_timer() == pytest.approx(32.3)
    fired = run_until(tx, 100.0)
    assert [events for _, events in fired] == [[Terminated()]]
    assert fired[0][0] == pytest.approx(32.3)


def test_ict_2xx_after_non_2xx_is_passed_up_for_ack_and_bye() -> None:
    tx = ClientInviteTransaction(INVITE, reliable=False, now=0.0)
    tx.start(0.0)
    tx.receive_response(BUSY, 1.0)
    late = invite_response(200, "OK", to_tag="fork2")
    assert tx.receive_response(late, 2.0) == [Deliver(late)]
    assert tx.state is TxState.COMPLETED


@pytest.mark.parametrize("when", ["calling", "proceeding", "completed"])
def test_ict_transport_error_informs_tu(when: str) -> None:
    tx = ClientInviteTransaction(INVITE, reliable=False, now=0.0)
    tx.start(0.0)
    if when != "calling":
        tx.receive_response(RINGING, 0.1)
    if when == "completed":
        tx.receive_response(BUSY, 0.2)
    assert tx.transport_error(0.3) == [TransportError(), Terminated()]
    assert tx.get_timer() is None
    assert tx.transport_error(0.4) == []


def test_build_cancel_is_byte_exact() -> None:
    cancel = build_cancel(INVITE)
    assert bytes(cancel) == (
        b"CANCEL sip:bob@biloxi.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
        b"Route: <sip:p1.example.com;lr>\r\n"
        b"Route: <sip:p2.example.com;lr>, <sip:p3.example.com;lr>\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>\r\n"
        b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        b"CSeq: 314159 CANCEL\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    )


def test_cancel_runs_in_its_own_non_invite_transaction() -> None:
    cancel = build_cancel(INVITE)
    ctx = ClientNonInviteTransaction(cancel, reliable=False, now=0.0)
    ict = ClientInviteTransaction(INVITE, reliable=False, now=0.0)
    assert ctx.key == ("z9hG4bK776asdhds", "CANCEL")
    assert ctx.key != ict.key


# --------------------------------------------------------------------------- non-INVITE client


def test_nict_rejects_invite_and_ack() -> None:
    with pytest.raises(ProtocolError):
        ClientNonInviteTransaction(INVITE, reliable=False, now=0.0)
    with pytest.raises(ProtocolError):
        ClientNonInviteTransaction(ACK_SAME_BRANCH, reliable=False, now=0.0)


def test_nict_loss_retransmits_capped_at_t2_then_timer_f() -> None:
    tx = ClientNonInviteTransaction(OPTIONS, reliable=False, now=0.0)
    assert tx.state is TxState.TRYING
    assert tx.start(0.0) == [Send(OPTIONS)]
    fired = run_until(tx, 100.0)
    times = send_times(fired)
    # §17.1.2.2: spacing 0.5, 1, 2, 4, 4, 4 ... until F at 64*T1.
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert gaps == [0.5, 1, 2, 4, 4, 4, 4, 4, 4, 4]
    assert fired[-1] == (32.0, [Timeout("F"), Terminated()])


def test_nict_provisional_switches_retransmission_to_t2() -> None:
    tx = ClientNonInviteTransaction(OPTIONS, reliable=False, now=0.0)
    tx.start(0.0)
    tx.handle_timer(0.5)  # next E at 1.5 (interval 1)
    trying = options_response(100, "Trying")
    assert tx.receive_response(trying, 0.7) == [Deliver(trying)]
    assert tx.state is TxState.PROCEEDING
    fired = run_until(tx, 100.0)
    assert send_times(fired) == [1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert fired[-1] == (32.0, [Timeout("F"), Terminated()])


def test_nict_final_completes_then_timer_k() -> None:
    tx = ClientNonInviteTransaction(OPTIONS, reliable=False, now=0.0)
    tx.start(0.0)
    ok = options_response(200, "OK")
    assert tx.receive_response(ok, 0.2) == [Deliver(ok)]
    assert tx.state is TxState.COMPLETED
    assert tx.get_timer() == 5.2  # Timer K = T4
    assert tx.receive_response(options_response(200, "OK"), 0.3) == []  # absorbed
    assert tx.receive_response(options_response(100, "Trying"), 0.4) == []
    assert tx.handle_timer(5.2) == [Terminated()]


def test_nict_error_response_completes_too() -> None:
    tx = ClientNonInviteTransaction(OPTIONS, reliable=False, now=0.0)
    tx.start(0.0)
    tx.receive_response(options_response(100, "Trying"), 0.1)
    nope = options_response(404, "Not Found")
    assert tx.receive_response(nope, 0.2) == [Deliver(nope)]
    assert tx.state is TxState.COMPLETED


def test_nict_reliable_no_retransmission_and_zero_k() -> None:
    tx = ClientNonInviteTransaction(OPTIONS, reliable=True, now=0.0)
    tx.start(0.0)
    assert tx.get_timer() == 32.0
    ok = options_response(200, "OK")
    assert tx.receive_response(ok, 1.0) == [Deliver(ok), Terminated()]
    assert tx.get_timer() is None


def test_nict_reliable_timeout() -> None:
    tx = ClientNonInviteTransaction(OPTIONS, reliable=True, now=0.0)
    tx.start(0.0)
    assert run_until(tx, 100.0) == [(32.0, [Timeout("F"), Terminated()])]


def test_nict_transport_error() -> None:
    tx = ClientNonInviteTransaction(OPTIONS, reliable=False, now=0.0)
    tx.start(0.0)
    assert tx.transport_error(0.1) == [TransportError(), Terminated()]


# ------------------------------------------------------------------------------- INVITE server

SERVER_INVITE = req(
    "INVITE sip:bob@biloxi.example.com SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@biloxi.example.com>",
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Content-Length: 0",
)


def test_ist_waits_for_tu_and_sends_no_100_itself() -> None:
    tx = ServerInviteTransaction(SERVER_INVITE, reliable=False, now=0.0)
    assert tx.state is TxState.PROCEEDING
    assert tx.get_timer() is None
    assert tx.key == ("z9hG4bK776asdhds", "pc33.atlanta.example.com", "INVITE")
    assert tx.receive_request(SERVER_INVITE, 0.5) == []  # nothing to repeat yet
    assert tx.send_response(TRYING, 0.6) == [Send(TRYING)]
    assert tx.send_response(RINGING, 0.7) == [Send(RINGING)]
    assert tx.state is TxState.PROCEEDING
    # §17.2.1: a retransmitted INVITE gets the most recent provisional again.
    assert tx.receive_request(SERVER_INVITE, 1.0) == [Send(RINGING)]


def test_ist_rejects_non_invite() -> None:
    with pytest.raises(ProtocolError):
        ServerInviteTransaction(OPTIONS, reliable=False, now=0.0)


def test_ist_non_2xx_retransmitted_by_timer_g_until_h() -> None:
    tx = ServerInviteTransaction(SERVER_INVITE, reliable=False, now=0.0)
    assert tx.send_response(BUSY, 1.0) == [Send(BUSY)]
    assert tx.state is TxState.COMPLETED
    fired = run_until(tx, 100.0)
    times = send_times(fired)
    assert times == [1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5]
    assert all(sends(ev) == [BUSY] for _, ev in fired[:-1])
    assert fired[-1] == (33.0, [Timeout("H"), Terminated()])


def test_ist_ack_confirms_then_timer_i() -> None:
    tx = ServerInviteTransaction(SERVER_INVITE, reliable=False, now=0.0)
    tx.send_response(BUSY, 1.0)
    tx.handle_timer(1.5)
    assert tx.receive_request(SERVER_INVITE, 1.6) == [Send(BUSY)]  # retransmitted INVITE
    assert tx.receive_request(ACK_SAME_BRANCH, 2.0) == []  # not passed up: part of the tx
    assert tx.state is TxState.CONFIRMED
    assert tx.get_timer() == 7.0  # Timer I = T4; G and H cancelled
    assert tx.receive_request(ACK_SAME_BRANCH, 2.1) == []
    assert tx.receive_request(SERVER_INVITE, 2.2) == []
    assert tx.handle_timer(7.0) == [Terminated()]


def test_ist_reliable_no_timer_g_and_zero_timer_i() -> None:
    tx = ServerInviteTransaction(SERVER_INVITE, reliable=True, now=0.0)
    tx.send_response(BUSY, 1.0)
    assert tx.get_timer() == 33.0  # only H
    assert tx.receive_request(ACK_SAME_BRANCH, 2.0) == [Terminated()]
    assert tx.get_timer() is None


def test_ist_reliable_timer_h() -> None:
    tx = ServerInviteTransaction(SERVER_INVITE, reliable=True, now=0.0)
    tx.send_response(BUSY, 1.0)
    assert run_until(tx, 100.0) == [(33.0, [Timeout("H"), Terminated()])]


@pytest.mark.parametrize("reliable", [False, True])
def test_ist_2xx_enters_accepted_per_rfc_6026(reliable: bool) -> None:
    tx = ServerInviteTransaction(SERVER_INVITE, reliable=reliable, now=0.0)
    tx.send_response(RINGING, 0.1)
    assert tx.send_response(OK, 1.0) == [Send(OK)]
    assert tx.state is TxState.ACCEPTED
    assert tx.get_timer() == 33.0  # Timer L = 64*T1
    # Retransmitted INVITEs are absorbed, not answered by the transaction (RFC 6026 §8.7).
    assert tx.receive_request(SERVER_INVITE, 1.5) == []
    # The TU retransmits the 2xx itself through the transaction.
    assert tx.send_response(OK, 1.5) == [Send(OK)]
    assert tx.receive_request(ACK_SAME_BRANCH, 2.0) == [Deliver(ACK_SAME_BRANCH)]
    assert tx.state is TxState.ACCEPTED
    assert tx.to_tag == "a6c85cf"
    with pytest.raises(ProtocolError):
        tx.send_response(BUSY, 2.1)
    with pytest.raises(ProtocolError):
        tx.send_response(RINGING, 2.1)
    assert tx.handle_timer(33.0) == [Terminated()]
    assert tx.send_response(OK, 34.0) == []  # too late: nothing to do


def test_ist_tu_cannot_answer_twice_after_non_2xx() -> None:
    tx = ServerInviteTransaction(SERVER_INVITE, reliable=False, now=0.0)
    tx.send_response(BUSY, 1.0)
    for late in (OK, RINGING, invite_response(487, "Request Terminated")):
        with pytest.raises(ProtocolError):
            tx.send_response(late, 1.1)
    assert tx.state is TxState.COMPLETED
    assert tx.last_response is BUSY


def test_send_response_rejects_bad_status() -> None:
    tx = ServerInviteTransaction(SERVER_INVITE, reliable=False, now=0.0)
    bogus = invite_response(200, "OK")
    bogus.status = 99
    with pytest.raises(ProtocolError):
        tx.send_response(bogus, 0.0)


@pytest.mark.parametrize("final", [BUSY, OK])
def test_ist_transport_error(final: Response) -> None:
    tx = ServerInviteTransaction(SERVER_INVITE, reliable=False, now=0.0)
    tx.send_response(final, 1.0)
    assert tx.transport_error(1.1) == [TransportError(), Terminated()]
    assert tx.get_timer() is None


# --------------------------------------------------------------------------- non-INVITE server


def test_nist_full_path_unreliable() -> None:
    tx = ServerNonInviteTransaction(OPTIONS, reliable=False, now=0.0)
    assert tx.state.name == "TRYING"
    assert tx.receive_request(OPTIONS, 0.1) == []  # §17.2.2: discarded while Trying
    trying = options_response(100, "Trying")
    assert tx.send_response(trying, 0.2) == [Send(trying)]
    assert tx.state.name == "PROCEEDING"
    assert tx.receive_request(OPTIONS, 0.3) == [Send(trying)]
    ok = options_response(200, "OK")
    assert tx.send_response(ok, 0.4) == [Send(ok)]
    assert tx.state is TxState.COMPLETED
    assert tx.get_timer() == pytest.approx(32.4)  # Timer J = 64*T1
    assert tx.receive_request(OPTIONS, 1.0) == [Send(ok)]
    # §17.2.2: other finals from the TU are discarded in Completed.
    assert tx.send_response(options_response(500, "Server Internal Error"), 1.1) == []
    assert tx.handle_timer(32.4) == [Terminated()]
    assert tx.receive_request(OPTIONS, 33.0) == []
    assert tx.send_response(ok, 33.0) == []


def test_nist_reliable_final_terminates_at_once() -> None:
    tx = ServerNonInviteTransaction(OPTIONS, reliable=True, now=0.0)
    ok = options_response(200, "OK")
    assert tx.send_response(ok, 0.1) == [Send(ok), Terminated()]
    assert tx.get_timer() is None


def test_nist_rejects_invite() -> None:
    with pytest.raises(ProtocolError):
        ServerNonInviteTransaction(SERVER_INVITE, reliable=False, now=0.0)


def test_nist_transport_error() -> None:
    tx = ServerNonInviteTransaction(OPTIONS, reliable=False, now=0.0)
    tx.send_response(options_response(404, "Not Found"), 0.1)
    assert tx.transport_error(0.2) == [TransportError(), Terminated()]
