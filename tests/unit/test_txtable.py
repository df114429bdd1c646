"""Transaction matching (RFC 3261 §17.1.3, §17.2.3, §9.2, §8.2.2.2) and the transaction table."""

from __future__ import annotations

import pytest

from ifescalate.sip.errors import SipParseError
from ifescalate.sip.message import Request, Response, parse_message
from ifescalate.sip.transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    build_cancel,
)
from ifescalate.sip.txtable import (
    TransactionTable,
    client_key,
    header_tag,
    is_rfc2543_key,
    parse_top_via,
    server_key,
)


def req(*lines: str) -> Request:
    m = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(m, Request)
    return m


def resp(*lines: str) -> Response:
    m = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(m, Response)
    return m


def invite(
    branch: str = "z9hG4bK776asdhds",
    sent_by: str = "pc33.atlanta.example.com",
    to: str = "Bob <sip:bob@biloxi.example.com>",
    method: str = "INVITE",
    cseq: int = 314159,
    call_id: str = "a84b4c76e66710",
    from_tag: str = "1928301774",
    uri: str = "sip:bob@biloxi.example.com",
) -> Request:
    branch_param = f";branch={branch}" if branch else ""
    return req(
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {sent_by}{branch_param}",
        "Max-Forwards: 70",
        f"To: {to}",
        f"From: Alice <sip:alice@atlanta.example.com>;tag={from_tag}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Content-Length: 0",
    )


def response_to(
    request: Request, status: int, reason: str, to_tag: str | None = "a6c85cf"
) -> Response:
    to = request.headers.get("To") or ""
    if to_tag and "tag=" not in to:
        to += f";tag={to_tag}"
    via = request.headers.get_lines("Via")
    return resp(
        f"SIP/2.0 {status} {reason}",
        *(f"Via: {v}" for v in via),
        f"To: {to}",
        f"From: {request.headers.get('From')}",
        f"Call-ID: {request.call_id}",
        f"CSeq: {request.cseq[0]} {request.cseq[1]}",
        "Content-Length: 0",
    )


# ------------------------------------------------------------------------------ header helpers


@pytest.mark.parametrize(
    ("via", "expected"),
    [
        (
            "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
            ("z9hG4bK776asdhds", "pc33.atlanta.example.com"),
        ),
        (
            "SIP / 2.0 / UDP  Host.Example.COM : 5062 ; rport ; BRANCH = z9hG4bKx ;received=1.2.3.4",
            ("z9hG4bKx", "host.example.com:5062"),
        ),
        ("SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKv6", ("z9hG4bKv6", "[2001:db8::1]:5061")),
        ("SIP/2.0/UDP 10.0.0.1", ("", "10.0.0.1")),
    ],
)
def test_parse_top_via(via: str, expected: tuple[str, str]) -> None:
    m = req(
        "OPTIONS sip:a@b SIP/2.0",
        f"v: {via}, SIP/2.0/UDP other.example.com;branch=z9hG4bKsecond",
        "CSeq: 1 OPTIONS",
    )
    branch, sent_by, raw = parse_top_via(m)
    assert (branch, sent_by) == expected
    assert raw == via.strip()


@pytest.mark.parametrize("via", [None, "garbage", "SIP/2.0/UDP"])
def test_parse_top_via_rejects_missing_or_malformed(via: str | None) -> None:
    lines = ["OPTIONS sip:a@b SIP/2.0", "CSeq: 1 OPTIONS"]
    if via is not None:
        lines.append(f"Via: {via}")
    with pytest.raises(SipParseError):
        parse_top_via(req(*lines))


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("Bob <sip:bob@biloxi.example.com>;tag=a6c85cf", "a6c85cf"),
        ("<sip:bob@biloxi.example.com;tag=uri-param>", ""),  # a URI parameter, not the tag
        ("<sip:bob@b;transport=tcp>;foo=bar; TAG = x1 ", "x1"),
        ("sip:bob@biloxi.example.com;tag=plain", "plain"),
        ('"A;B>C" <sip:a@b>;tag=q', "q"),
        ("sip:bob@biloxi.example.com", ""),
        (None, ""),
    ],
)
def test_header_tag(value: str | None, tag: str) -> None:
    assert header_tag(value) == tag


# ------------------------------------------------------------------------------------- keys


def test_client_key_matches_responses_and_keeps_cancel_apart() -> None:
    inv = invite()
    assert client_key(inv) == ("z9hG4bK776asdhds", "INVITE")
    assert client_key(response_to(inv, 180, "Ringing")) == client_key(inv)
    cancel = build_cancel(inv)
    assert client_key(cancel) == ("z9hG4bK776asdhds", "CANCEL")
    assert client_key(response_to(cancel, 200, "OK")) == client_key(cancel)


def test_server_key_for_retransmission_ack_and_cancel() -> None:
    inv = invite()
    assert server_key(inv) == ("z9hG4bK776asdhds", "pc33.atlanta.example.com", "INVITE")
    assert server_key(invite()) == server_key(inv)  # a retransmission
    ack = invite(method="ACK", to="Bob <sip:bob@biloxi.example.com>;tag=a6c85cf")
    assert server_key(ack) == server_key(inv)  # §17.2.3: ACK maps to its INVITE
    cancel = invite(method="CANCEL")
    assert server_key(cancel) != server_key(inv)  # CANCEL has its own transaction
    assert server_key(invite(sent_by="evil.example.com")) != server_key(inv)
    assert not is_rfc2543_key(server_key(inv))


def test_server_key_rfc_2543_fallback() -> None:
    old = invite(branch="")  # no branch at all
    key = server_key(old)
    assert is_rfc2543_key(key)
    assert server_key(invite(branch="")) == key
    assert server_key(invite(branch="1234")) != key  # top Via differs
    assert server_key(invite(branch="", call_id="other")) != key
    assert server_key(invite(branch="", cseq=2)) != key
    assert server_key(invite(branch="", from_tag="x")) != key
    assert server_key(invite(branch="", uri="sip:carol@chicago.example.com")) != key
    ack = invite(branch="", method="ACK", to="Bob <sip:bob@biloxi.example.com>;tag=a6c85cf")
    assert server_key(ack) == key


# ------------------------------------------------------------------------------------ table


def test_table_matches_responses_to_client_transactions() -> None:
    table = TransactionTable()
    inv = invite()
    ict = ClientInviteTransaction(inv, reliable=False, now=0.0)
    cancel = build_cancel(inv)
    cct = ClientNonInviteTransaction(cancel, reliable=False, now=0.0)
    table.add_client(ict)
    table.add_client(cct)
    assert table.client_count == 2
    assert table.match_response(response_to(inv, 487, "Request Terminated")) is ict
    assert table.match_response(response_to(cancel, 200, "OK")) is cct
    assert table.match_response(response_to(invite(branch="z9hG4bKother"), 200, "OK")) is None
    no_via = resp("SIP/2.0 200 OK", "CSeq: 1 INVITE")
    assert table.match_response(no_via) is None


def test_table_matches_requests_and_acks_to_server_transactions() -> None:
    table = TransactionTable()
    inv = invite()
    ist = ServerInviteTransaction(inv, reliable=False, now=0.0)
    table.add_server(ist)
    assert table.match_request(invite()) is ist
    ack = invite(method="ACK", to="Bob <sip:bob@biloxi.example.com>;tag=a6c85cf")
    assert table.match_request(ack) is ist
    # The ACK of a 2xx has a new branch: it is not part of the INVITE transaction.
    assert table.match_request(invite(method="ACK", branch="z9hG4bKnew")) is None
    assert table.match_request(invite(method="BYE", branch="z9hG4bKbye")) is None


def test_match_cancel_finds_the_invite_server_transaction() -> None:
    table = TransactionTable()
    inv = invite()
    ist = ServerInviteTransaction(inv, reliable=False, now=0.0)
    table.add_server(ist)
    cancel = invite(method="CANCEL")
    assert table.match_request(cancel) is None  # a new (non-INVITE) server transaction
    assert table.match_cancel(cancel) is ist
    assert table.match_cancel(invite(method="CANCEL", branch="z9hG4bKother")) is None
    # A non-INVITE transaction is never the target of a CANCEL.
    opts = invite(method="OPTIONS", branch="z9hG4bKopt")
    table.add_server(ServerNonInviteTransaction(opts, reliable=False, now=0.0))
    assert table.match_cancel(invite(method="CANCEL", branch="z9hG4bKopt")) is None


def test_rfc_2543_matching_of_retransmission_ack_and_cancel() -> None:
    table = TransactionTable()
    inv = invite(branch="")
    ist = ServerInviteTransaction(inv, reliable=False, now=0.0)
    table.add_server(ist)
    assert table.match_request(invite(branch="")) is ist
    ist.send_response(response_to(inv, 486, "Busy Here", to_tag="srv1"), 1.0)
    good_ack = invite(branch="", method="ACK", to="Bob <sip:bob@biloxi.example.com>;tag=srv1")
    bad_ack = invite(branch="", method="ACK", to="Bob <sip:bob@biloxi.example.com>;tag=nope")
    assert table.match_request(good_ack) is ist
    assert table.match_request(bad_ack) is None  # §17.2.3: To tag must be our response's
    assert table.match_cancel(invite(branch="", method="CANCEL")) is ist
    assert table.match_cancel(invite(branch="", method="CANCEL", cseq=9)) is None


def test_terminated_transactions_are_dropped() -> None:
    table = TransactionTable()
    inv = invite()
    ist = ServerInviteTransaction(inv, reliable=True, now=0.0)
    table.add_server(ist)
    opts = invite(method="OPTIONS", branch="z9hG4bKopt")
    nist = ServerNonInviteTransaction(opts, reliable=True, now=0.0)
    table.add_server(nist)
    nct = ClientNonInviteTransaction(
        invite(method="OPTIONS", branch="z9hG4bKcli"), reliable=True, now=0.0
    )
    table.add_client(nct)
    assert len(table) == 3
    ist.transport_error(0.0)
    assert table.match_request(invite()) is None  # lookup drops it
    assert table.server_count == 1
    nist.send_response(response_to(opts, 200, "OK"), 0.0)  # reliable: J = 0
    nct.transport_error(0.0)
    assert table.purge() == 2
    assert len(table) == 0
    assert table.purge() == 0


def test_remove_is_idempotent_and_frees_the_key() -> None:
    table = TransactionTable()
    ist = ServerInviteTransaction(invite(), reliable=False, now=0.0)
    table.add_server(ist)
    table.remove(ist)
    table.remove(ist)
    assert table.match_request(invite()) is None
    again = ServerInviteTransaction(invite(), reliable=False, now=0.0)
    table.add_server(again)
    assert table.match_request(invite()) is again


def test_duplicate_live_key_is_refused() -> None:
    table = TransactionTable()
    table.add_server(ServerInviteTransaction(invite(), reliable=False, now=0.0))
    with pytest.raises(ValueError):
        table.add_server(ServerInviteTransaction(invite(), reliable=False, now=0.0))
    table.add_client(ClientInviteTransaction(invite(), reliable=False, now=0.0))
    with pytest.raises(ValueError):
        table.add_client(ClientInviteTransaction(invite(), reliable=False, now=0.0))


def test_a_terminated_holder_of_a_key_can_be_replaced() -> None:
    table = TransactionTable()
    old = ClientNonInviteTransaction(invite(method="OPTIONS"), reliable=True, now=0.0)
    table.add_client(old)
    old.transport_error(0.0)
    new = ClientNonInviteTransaction(invite(method="OPTIONS"), reliable=True, now=0.0)
    table.add_client(new)
    assert table.match_response(response_to(invite(method="OPTIONS"), 200, "OK")) is new


# ---------------------------------------------------------------------- merged requests §8.2.2.2


def test_merged_request_detected() -> None:
    table = TransactionTable()
    first = invite(branch="z9hG4bKpath1", sent_by="proxy1.example.com")
    table.add_server(ServerInviteTransaction(first, reliable=False, now=0.0))
    # The same request forked by a proxy and arriving again over another path.
    merged = invite(branch="z9hG4bKpath2", sent_by="proxy2.example.com")
    assert table.match_request(merged) is None
    assert table.is_merged(merged)
    # A retransmission matches the transaction: not merged.
    assert not table.is_merged(invite(branch="z9hG4bKpath1", sent_by="proxy1.example.com"))
    # Other CSeq, Call-ID or From tag: a different request, not merged.
    assert not table.is_merged(invite(branch="z9hG4bKpath2", cseq=314160))
    assert not table.is_merged(invite(branch="z9hG4bKpath2", call_id="other"))
    assert not table.is_merged(invite(branch="z9hG4bKpath2", from_tag="zzz"))
    # A request with a To tag is in a dialog: §8.2.2.2 does not apply.
    in_dialog = invite(branch="z9hG4bKpath2", to="Bob <sip:bob@biloxi.example.com>;tag=t")
    assert not table.is_merged(in_dialog)
    # Nor to an ACK.
    assert not table.is_merged(invite(method="ACK", branch="z9hG4bKpath2"))


def test_merged_detection_ends_with_the_transaction() -> None:
    table = TransactionTable()
    first = invite(branch="z9hG4bKpath1")
    ist = ServerInviteTransaction(first, reliable=True, now=0.0)
    table.add_server(ist)
    merged = invite(branch="z9hG4bKpath2")
    assert table.is_merged(merged)
    ist.transport_error(0.0)
    assert not table.is_merged(merged)
    assert len(table) == 0


def test_merged_detection_for_non_invite() -> None:
    table = TransactionTable()
    opts = invite(method="OPTIONS", branch="z9hG4bKa")
    nist = ServerNonInviteTransaction(opts, reliable=False, now=0.0)
    table.add_server(nist)
    assert table.is_merged(invite(method="OPTIONS", branch="z9hG4bKb"))
    table.remove(nist)
    assert not table.is_merged(invite(method="OPTIONS", branch="z9hG4bKb"))
