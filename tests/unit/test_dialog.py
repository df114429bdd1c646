"""Dialogs (RFC 3261 §12, §13.2.2.4, §14, §15) over RFC 3665 §3.2-style flows.

Alice (atlanta) calls Bob (biloxi) through two record-routing proxies, ss1.atlanta and ss2.biloxi.
Fixtures are the bytes on the wire; built requests are compared byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ifescalate.sip.build import make_response
from ifescalate.sip.dialog import (
    CallLegDoesNotExist,
    Dialog,
    DialogId,
    DialogState,
    DialogTable,
    InviteInProgress,
    NoDialog,
    RequestOutOfOrder,
    RequestPending,
    call_leg_does_not_exist,
    dialog_id_for_request,
    dialog_id_for_response,
)
from ifescalate.sip.errors import SipParseError
from ifescalate.sip.message import Request, Response, parse_message
from ifescalate.sip.request_builder import name_addr_uri

CALL_ID = "3848276298220188511@atlanta.example.com"
PROXY_AUTH = (
    'Digest username="alice", realm="atlanta.example.com", '
    'nonce="wf84f1ceczx41ae6cbe5aea9c8e88d359", opaque="", '
    'uri="sip:bob@biloxi.example.com", response="42ce3cef44b22f50c6a6071bc8"'
)


def wire(*lines: str, body: bytes = b"") -> bytes:
    head = "\r\n".join([*lines, f"Content-Length: {len(body)}", "", ""])
    return head.encode() + body


def req(data: bytes) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def resp(data: bytes) -> Response:
    msg = parse_message(data)
    assert isinstance(msg, Response)
    return msg


def fixed_rand(value: int) -> Callable[[int], bytes]:
    def rand(n: int) -> bytes:
        return value.to_bytes(n, "big")

    return rand


# Alice's INVITE as she sent it (after the 407 challenge: CSeq 2 with credentials).
ALICE_INVITE = req(
    wire(
        "INVITE sip:bob@biloxi.example.com SIP/2.0",
        "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;rport",
        "Max-Forwards: 70",
        "To: Bob <sip:bob@biloxi.example.com>",
        "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl",
        f"Call-ID: {CALL_ID}",
        "CSeq: 2 INVITE",
        "Contact: <sip:alice@client.atlanta.example.com;transport=tcp>",
        f"Proxy-Authorization: {PROXY_AUTH}",
    )
)

# The same INVITE as Bob receives it: both proxies record-routed (ss2 on top, one line).
BOB_INVITE = req(
    wire(
        "INVITE sip:bob@client.biloxi.example.com SIP/2.0",
        "Via: SIP/2.0/TCP ss2.biloxi.example.com:5060;branch=z9hG4bK721e4.1",
        "Via: SIP/2.0/TLS ss1.atlanta.example.com:5061;branch=z9hG4bK2d4790.1;received=192.0.2.111",
        "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;received=192.0.2.101",
        "Max-Forwards: 68",
        "Record-Route: <sip:ss2.biloxi.example.com;lr>, <sip:ss1.atlanta.example.com;lr>",
        "To: Bob <sip:bob@biloxi.example.com>",
        "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl",
        f"Call-ID: {CALL_ID}",
        "CSeq: 2 INVITE",
        "Contact: <sip:alice@client.atlanta.example.com;transport=tcp>",
    )
)


def ok_for_alice(
    *, to_tag: str = "314159", record_route: tuple[str, ...] | None = None
) -> Response:
    rr = (
        ("<sip:ss2.biloxi.example.com;lr>", "<sip:ss1.atlanta.example.com;lr>")
        if record_route is None
        else record_route
    )
    return resp(
        wire(
            "SIP/2.0 200 OK",
            "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9"
            ";received=192.0.2.101",
            *(f"Record-Route: {r}" for r in rr),
            "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl",
            f"To: Bob <sip:bob@biloxi.example.com>;tag={to_tag}",
            f"Call-ID: {CALL_ID}",
            "CSeq: 2 INVITE",
            "Contact: <sip:bob@client.biloxi.example.com;transport=tcp>",
        )
    )


def provisional(to_tag: str, contact: str, status: str = "180 Ringing") -> Response:
    return resp(
        wire(
            f"SIP/2.0 {status}",
            "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9",
            "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl",
            f"To: Bob <sip:bob@biloxi.example.com>;tag={to_tag}",
            f"Call-ID: {CALL_ID}",
            "CSeq: 2 INVITE",
            f"Contact: {contact}",
        )
    )


VIA = {"via_host": "client.atlanta.example.com", "via_port": 5060, "transport": "TCP"}
BOB_VIA = {"via_host": "client.biloxi.example.com", "via_port": 5060, "transport": "TCP"}


def alice_dialog() -> Dialog:
    return Dialog.from_uac_response(ALICE_INVITE, ok_for_alice())


def bob_dialog() -> Dialog:
    return Dialog.from_uas_request(
        BOB_INVITE,
        local_tag="314159",
        local_contact="<sip:bob@client.biloxi.example.com;transport=tcp>",
    )


# --- Creation: both sides of the two-proxy flow --------------------------------------------------


def test_uac_dialog_from_2xx() -> None:
    d = alice_dialog()
    assert d.id == DialogId(CALL_ID, "9fxced76sl", "314159")
    assert d.state is DialogState.CONFIRMED
    assert d.is_uac
    # §12.1.2: the response's Record-Route reversed: Alice's own proxy first.
    assert d.route_set == ["<sip:ss1.atlanta.example.com;lr>", "<sip:ss2.biloxi.example.com;lr>"]
    assert d.remote_target == "sip:bob@client.biloxi.example.com;transport=tcp"
    assert d.local_uri == "Alice <sip:alice@atlanta.example.com>"
    assert d.remote_uri == "Bob <sip:bob@biloxi.example.com>"
    assert (d.local_seq, d.remote_seq) == (2, None)
    assert not d.secure
    assert d.pending_client_invite is None


def test_uas_dialog_from_request() -> None:
    d = bob_dialog()
    assert d.id == DialogId(CALL_ID, "314159", "9fxced76sl")
    assert d.state is DialogState.EARLY
    assert not d.is_uac
    # §12.1.1: the request's Record-Route in order: Bob's own proxy first.
    assert d.route_set == ["<sip:ss2.biloxi.example.com;lr>", "<sip:ss1.atlanta.example.com;lr>"]
    assert d.remote_target == "sip:alice@client.atlanta.example.com;transport=tcp"
    assert d.local_uri == "Bob <sip:bob@biloxi.example.com>"
    assert d.remote_uri == "Alice <sip:alice@atlanta.example.com>"
    assert (d.local_seq, d.remote_seq) == (None, 2)
    assert d.pending_server_invite == 2


def test_uas_response_copies_record_route_and_adds_contact() -> None:
    d = bob_dialog()
    ok = make_response(BOB_INVITE, 200, to_tag=d.local_tag, headers=d.uas_response_headers())
    assert bytes(ok) == wire(
        "SIP/2.0 200 OK",
        "Via: SIP/2.0/TCP ss2.biloxi.example.com:5060;branch=z9hG4bK721e4.1",
        "Via: SIP/2.0/TLS ss1.atlanta.example.com:5061;branch=z9hG4bK2d4790.1;received=192.0.2.111",
        "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;received=192.0.2.101",
        "To: Bob <sip:bob@biloxi.example.com>;tag=314159",
        "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl",
        f"Call-ID: {CALL_ID}",
        "CSeq: 2 INVITE",
        "Record-Route: <sip:ss2.biloxi.example.com;lr>, <sip:ss1.atlanta.example.com;lr>",
        "Contact: <sip:bob@client.biloxi.example.com;transport=tcp>",
    )
    d.response_sent(ok)
    assert d.state is DialogState.CONFIRMED
    assert d.pending_server_invite is None
    # The UAC reading this 200 ends up with the mirror image of Bob's route set.
    assert Dialog.from_uac_response(ALICE_INVITE, ok).route_set == d.route_set[::-1]


def test_uas_non_2xx_final_ends_early_dialog() -> None:
    d = bob_dialog()
    d.response_sent(make_response(BOB_INVITE, 180, to_tag=d.local_tag))
    assert d.state is DialogState.EARLY
    d.response_sent(make_response(BOB_INVITE, 486, to_tag=d.local_tag))
    assert d.state is DialogState.TERMINATED


def test_secure_flags() -> None:
    sips_invite = req(bytes(ALICE_INVITE).replace(b"INVITE sip:", b"INVITE sips:", 1))
    assert Dialog.from_uac_response(sips_invite, ok_for_alice()).secure
    sips_bob = req(bytes(BOB_INVITE).replace(b"INVITE sip:", b"INVITE sips:", 1))
    kwargs = {"local_tag": "1", "local_contact": "sips:bob@client.biloxi.example.com"}
    assert Dialog.from_uas_request(sips_bob, over_tls=True, **kwargs).secure
    # The message cannot vouch for TLS: without the transport fact it is not secure.
    assert not Dialog.from_uas_request(sips_bob, **kwargs).secure
    assert not Dialog.from_uas_request(BOB_INVITE, over_tls=True, **kwargs).secure


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (provisional("x", "<sip:b@h>", "100 Trying"), "does not create"),
        (provisional("x", "<sip:b@h>", "486 Busy Here"), "does not create"),
        (resp(bytes(ok_for_alice()).replace(b";tag=314159", b"")), "To tag"),
        (resp(bytes(ok_for_alice()).replace(b"Contact: ", b"X-Contact: ")), "Contact"),
        (resp(bytes(ok_for_alice()).replace(b"tag=9fxced76sl", b"tag=zz")), "does not answer"),
        (resp(bytes(ok_for_alice()).replace(b"Call-ID: 38", b"Call-ID: 39")), "does not answer"),
    ],
)
def test_responses_that_create_no_dialog(response: Response, message: str) -> None:
    with pytest.raises(NoDialog, match=message):
        Dialog.from_uac_response(ALICE_INVITE, response)


def test_malformed_record_route_is_a_parse_error() -> None:
    bad = ok_for_alice(record_route=("<sip:ss2.biloxi.example.com;lr",))
    with pytest.raises(SipParseError):
        Dialog.from_uac_response(ALICE_INVITE, bad)
    with pytest.raises(SipParseError):
        Dialog.from_uas_request(
            req(
                bytes(BOB_INVITE).replace(
                    b"Record-Route: <sip:ss2.biloxi.example.com;lr>,", b"Record-Route: <>,"
                )
            ),
            local_tag="1",
            local_contact="<sip:b@h>",
        )


def test_requests_that_create_no_dialog() -> None:
    tagged = req(
        bytes(BOB_INVITE).replace(b"To: Bob <sip:bob@biloxi.example.com>", b"To: <sip:b@x>;tag=1")
    )
    no_contact = req(bytes(BOB_INVITE).replace(b"Contact: ", b"X-Contact: "))
    for bad in (tagged, no_contact):
        with pytest.raises(NoDialog):
            Dialog.from_uas_request(bad, local_tag="1", local_contact="<sip:b@h>")


# --- Requests inside the dialog (§12.2.1.1, §13.2.2.4, §15) --------------------------------------


def test_ack_for_2xx_is_byte_exact() -> None:
    d = alice_dialog()
    ack = d.build_ack(ALICE_INVITE, ok_for_alice(), branch="z9hG4bK74b76", **VIA)
    assert bytes(ack) == wire(
        "ACK sip:bob@client.biloxi.example.com;transport=tcp SIP/2.0",
        "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74b76;rport",
        "Max-Forwards: 70",
        "Route: <sip:ss1.atlanta.example.com;lr>",
        "Route: <sip:ss2.biloxi.example.com;lr>",
        "To: Bob <sip:bob@biloxi.example.com>;tag=314159",
        "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl",
        f"Call-ID: {CALL_ID}",
        "CSeq: 2 ACK",
        f"Proxy-Authorization: {PROXY_AUTH}",
    )
    assert d.local_seq == 2  # the ACK takes no new sequence number


def test_ack_may_carry_the_answer() -> None:
    d = alice_dialog()
    ack = d.build_ack(
        ALICE_INVITE,
        ok_for_alice(),
        branch="z9hG4bK1",
        body=b"v=0\r\n",
        content_type="application/sdp",
        **VIA,
    )
    assert ack.body == b"v=0\r\n"
    assert ack.headers.get("Content-Type") == "application/sdp"


def test_ack_refuses_foreign_responses() -> None:
    d = alice_dialog()
    with pytest.raises(ValueError, match="2xx"):
        d.build_ack(ALICE_INVITE, provisional("314159", "<sip:b@h>"), branch="z9hG4bK1", **VIA)
    with pytest.raises(CallLegDoesNotExist):
        d.build_ack(ALICE_INVITE, ok_for_alice(to_tag="other"), branch="z9hG4bK1", **VIA)
    other_cseq = resp(bytes(ok_for_alice()).replace(b"CSeq: 2 INVITE", b"CSeq: 3 INVITE"))
    with pytest.raises(ValueError, match="does not answer"):
        d.build_ack(ALICE_INVITE, other_cseq, branch="z9hG4bK1", **VIA)


def test_bye_from_uas_is_byte_exact_and_received_by_uac() -> None:
    bob = bob_dialog()
    bob.response_sent(make_response(BOB_INVITE, 200, to_tag=bob.local_tag))
    bye, next_hop = bob.create_request("BYE", branch="z9hG4bKnashds7", **BOB_VIA)
    assert bytes(bye) == wire(
        "BYE sip:alice@client.atlanta.example.com;transport=tcp SIP/2.0",
        "Via: SIP/2.0/TCP client.biloxi.example.com:5060;branch=z9hG4bKnashds7;rport",
        "Max-Forwards: 70",
        "Route: <sip:ss2.biloxi.example.com;lr>",
        "Route: <sip:ss1.atlanta.example.com;lr>",
        "To: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl",
        "From: Bob <sip:bob@biloxi.example.com>;tag=314159",
        f"Call-ID: {CALL_ID}",
        "CSeq: 1 BYE",
    )
    assert next_hop == "sip:ss2.biloxi.example.com;lr"
    assert bob.state is DialogState.TERMINATED  # §15.1.1: over once the BYE is sent
    alice = alice_dialog()
    alice.receive_request(req(bytes(bye)))
    assert alice.remote_seq == 1
    assert alice.state is DialogState.TERMINATED
    with pytest.raises(CallLegDoesNotExist):
        bob.create_request("INFO", branch="z9hG4bK2", **BOB_VIA)


def test_bye_from_uac_goes_to_its_first_proxy() -> None:
    d = alice_dialog()
    bye, next_hop = d.create_request("BYE", branch="z9hG4bKb1", **VIA)
    assert bye.uri == "sip:bob@client.biloxi.example.com;transport=tcp"
    assert bye.headers.get("CSeq") == "3 BYE"
    assert bye.headers.get_lines("Route")[0] == "<sip:ss1.atlanta.example.com;lr>"
    assert next_hop == "sip:ss1.atlanta.example.com;lr"
    assert "Proxy-Authorization" not in bye.headers


def test_strict_router_in_route_set() -> None:
    # ss1 is an RFC 2543 strict router (no ;lr). Reversed, it is Alice's first hop.
    ok = ok_for_alice(
        record_route=("<sip:ss2.biloxi.example.com;lr>", "<sip:ss1.atlanta.example.com>")
    )
    d = Dialog.from_uac_response(ALICE_INVITE, ok)
    info, next_hop = d.create_request("INFO", branch="z9hG4bKs1", **VIA)
    assert bytes(info).split(b"\r\n")[:5] == [
        b"INFO sip:ss1.atlanta.example.com SIP/2.0",
        b"Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bKs1;rport",
        b"Max-Forwards: 70",
        b"Route: <sip:ss2.biloxi.example.com;lr>",
        b"Route: <sip:bob@client.biloxi.example.com;transport=tcp>",
    ]
    assert next_hop == "sip:ss1.atlanta.example.com"


def test_no_route_set_sends_to_remote_target() -> None:
    d = Dialog.from_uac_response(ALICE_INVITE, ok_for_alice(record_route=()))
    info, next_hop = d.create_request("INFO", branch="z9hG4bK9", **VIA)
    assert "Route" not in info.headers
    assert info.uri == next_hop == "sip:bob@client.biloxi.example.com;transport=tcp"


def test_cseq_increments_except_ack_and_cancel() -> None:
    d = alice_dialog()
    seqs = [
        d.create_request(m, branch=f"z9hG4bK{i}", **VIA)[0].cseq
        for i, m in enumerate(["INFO", "ACK", "CANCEL", "MESSAGE", "OPTIONS"])
    ]
    assert seqs == [(3, "INFO"), (3, "ACK"), (3, "CANCEL"), (4, "MESSAGE"), (5, "OPTIONS")]
    assert d.local_seq == 5


def test_uas_first_request_picks_a_local_seq_and_ack_needs_one() -> None:
    d = bob_dialog()
    with pytest.raises(ValueError, match="ACK"):
        d.create_request("ACK", branch="z9hG4bK1", **BOB_VIA)
    info, _ = d.create_request("INFO", branch="z9hG4bK2", **BOB_VIA)
    assert info.cseq == (1, "INFO")


def test_target_refresh_requests_carry_contact() -> None:
    d = alice_dialog()
    reinvite, _ = d.create_request("INVITE", branch="z9hG4bK1", **VIA)
    assert reinvite.headers.get("Contact") == "<sip:alice@client.atlanta.example.com;transport=tcp>"
    info, _ = d.create_request("INFO", branch="z9hG4bK2", **VIA)
    assert "Contact" not in info.headers
    upd, _ = d.create_request("UPDATE", branch="z9hG4bK3", contact="sip:alice@192.0.2.9", **VIA)
    assert upd.headers.get("Contact") == "<sip:alice@192.0.2.9>"
    assert d.local_contact == "<sip:alice@192.0.2.9>"


# --- Requests received inside the dialog (§12.2.2) -----------------------------------------------


def in_dialog_from_alice(method: str, seq: int, *, contact: str | None = None) -> Request:
    lines = [
        f"{method} sip:bob@client.biloxi.example.com;transport=tcp SIP/2.0",
        f"Via: SIP/2.0/TCP ss2.biloxi.example.com:5060;branch=z9hG4bK{seq}x",
        "Max-Forwards: 69",
        "To: Bob <sip:bob@biloxi.example.com>;tag=314159",
        "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl",
        f"Call-ID: {CALL_ID}",
        f"CSeq: {seq} {method}",
    ]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    return req(wire(*lines))


def confirmed_bob() -> Dialog:
    d = bob_dialog()
    d.response_sent(make_response(BOB_INVITE, 200, to_tag=d.local_tag))
    return d


def test_lower_cseq_is_rejected_with_500() -> None:
    d = confirmed_bob()
    d.receive_request(in_dialog_from_alice("INFO", 5))
    assert d.remote_seq == 5
    with pytest.raises(RequestOutOfOrder) as err:
        d.receive_request(in_dialog_from_alice("INFO", 4))
    assert (err.value.status, err.value.reason) == (500, "Server Internal Error")
    assert d.remote_seq == 5
    d.receive_request(in_dialog_from_alice("ACK", 2))  # ACK reuses the INVITE's number
    d.receive_request(in_dialog_from_alice("INFO", 5))  # equal is not "lower"
    d.receive_request(in_dialog_from_alice("INFO", 9))
    assert d.remote_seq == 9


def test_uac_sets_remote_seq_from_first_request() -> None:
    d = alice_dialog()
    bob = confirmed_bob()
    info, _ = bob.create_request("INFO", branch="z9hG4bK77", **BOB_VIA)
    d.receive_request(info)
    assert d.remote_seq == 1


def test_request_for_another_dialog_or_ended_dialog_gets_481() -> None:
    d = confirmed_bob()
    stranger = req(bytes(in_dialog_from_alice("INFO", 3)).replace(b"tag=314159", b"tag=999"))
    with pytest.raises(CallLegDoesNotExist) as err:
        d.receive_request(stranger)
    assert err.value.status == 481
    d.receive_request(in_dialog_from_alice("BYE", 3))
    assert d.state is DialogState.TERMINATED
    with pytest.raises(CallLegDoesNotExist):
        d.receive_request(in_dialog_from_alice("INFO", 4))


def test_call_leg_does_not_exist_response_is_byte_exact() -> None:
    table = DialogTable()
    stray = in_dialog_from_alice("BYE", 7)
    assert table.find_for_request(stray) is None
    assert bytes(call_leg_does_not_exist(stray)) == wire(
        "SIP/2.0 481 Call/Transaction Does Not Exist",
        "Via: SIP/2.0/TCP ss2.biloxi.example.com:5060;branch=z9hG4bK7x",
        "To: Bob <sip:bob@biloxi.example.com>;tag=314159",
        "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl",
        f"Call-ID: {CALL_ID}",
        "CSeq: 7 BYE",
    )
    with pytest.raises(ValueError, match="ACK"):
        call_leg_does_not_exist(in_dialog_from_alice("ACK", 7))


def test_target_refresh_on_accepted_reinvite_only() -> None:
    d = confirmed_bob()
    reinvite = in_dialog_from_alice("INVITE", 3, contact="<sip:alice@192.0.2.55;transport=tcp>")
    d.receive_request(reinvite)
    assert d.pending_server_invite == 3
    d.response_sent(make_response(reinvite, 488), reinvite)
    assert d.remote_target == "sip:alice@client.atlanta.example.com;transport=tcp"
    assert d.pending_server_invite is None
    again = in_dialog_from_alice("INVITE", 4, contact="<sip:alice@192.0.2.55;transport=tcp>")
    d.receive_request(again)
    d.response_sent(make_response(again, 200), again)
    assert d.remote_target == "sip:alice@192.0.2.55;transport=tcp"
    assert d.state is DialogState.CONFIRMED


def test_uac_target_refresh_from_2xx_and_termination_on_481_408() -> None:
    d = alice_dialog()
    upd, _ = d.create_request("UPDATE", branch="z9hG4bK1", **VIA)
    ok = make_response(upd, 200, headers=[("Contact", "<sip:bob@192.0.2.77>")])
    assert d.update_from_response(ok) is None
    assert d.remote_target == "sip:bob@192.0.2.77"
    for status in (408, 481):
        d2 = alice_dialog()
        info, _ = d2.create_request("INFO", branch="z9hG4bK2", **VIA)
        d2.update_from_response(make_response(info, 404))
        assert d2.state is DialogState.CONFIRMED
        d2.update_from_response(make_response(info, status))
        assert d2.state is DialogState.TERMINATED


# --- Early dialogs and forking (§12.1.2, §12.3, §13.2.2.4) ---------------------------------------


def test_early_dialog_from_180_then_confirmed_by_200() -> None:
    ringing = provisional("314159", "<sip:bob@192.0.2.4>")
    d = Dialog.from_uac_response(ALICE_INVITE, ringing)
    assert d.state is DialogState.EARLY
    assert d.route_set == []
    assert d.remote_target == "sip:bob@192.0.2.4"
    assert d.pending_client_invite == 2
    ok = ok_for_alice()
    assert d.update_from_response(ok) is None
    assert d.state is DialogState.CONFIRMED
    assert d.pending_client_invite is None
    # §13.2.2.4: the 2xx recomputes route set and target.
    assert d.route_set == ["<sip:ss1.atlanta.example.com;lr>", "<sip:ss2.biloxi.example.com;lr>"]
    assert d.remote_target == "sip:bob@client.biloxi.example.com;transport=tcp"


def test_build_ack_confirms_a_still_early_dialog() -> None:
    d = Dialog.from_uac_response(ALICE_INVITE, provisional("314159", "<sip:bob@192.0.2.4>"))
    ack = d.build_ack(ALICE_INVITE, ok_for_alice(), branch="z9hG4bKa", **VIA)
    assert d.state is DialogState.CONFIRMED
    assert ack.headers.get_lines("Route")[0] == "<sip:ss1.atlanta.example.com;lr>"


def test_forked_early_dialogs_are_separate() -> None:
    table = DialogTable()
    a = Dialog.from_uac_response(ALICE_INVITE, provisional("fork-a", "<sip:bob@192.0.2.4>"))
    b = Dialog.from_uac_response(ALICE_INVITE, provisional("fork-b", "<sip:bob@192.0.2.5>"))
    table.add(a)
    table.add(b)
    assert a.id != b.id
    assert len(table) == 2
    ok_b = ok_for_alice(to_tag="fork-b")
    assert table.find_for_response(ok_b) is b
    with pytest.raises(CallLegDoesNotExist):
        a.update_from_response(ok_b)  # another fork's 2xx is not ours
    b.update_from_response(ok_b)
    assert (a.state, b.state) == (DialogState.EARLY, DialogState.CONFIRMED)
    assert table.early_dialogs(CALL_ID, "9fxced76sl") == [a]
    # A 2xx from yet another fork makes a new, confirmed dialog (§13.2.2.4).
    c = Dialog.from_uac_response(ALICE_INVITE, ok_for_alice(to_tag="fork-c"))
    table.add(c)
    with pytest.raises(ValueError, match="already exists"):
        table.add(c)
    assert table.find(DialogId(CALL_ID, "9fxced76sl", "fork-c")) is c
    assert table.remove(c.id) is c
    assert c.id not in table


def test_non_2xx_final_ends_every_early_dialog() -> None:
    table = DialogTable()
    for tag in ("fork-a", "fork-b"):
        table.add(Dialog.from_uac_response(ALICE_INVITE, provisional(tag, "<sip:bob@h>")))
    # The final response may come from a third branch, with its own To tag.
    busy = provisional("proxy-tag", "<sip:ss1.atlanta.example.com>", "486 Busy Here")
    for d in table.early_dialogs(CALL_ID, "9fxced76sl"):
        d.update_from_response(busy)
    assert all(d.state is DialogState.TERMINATED for d in table)
    assert len(table.remove_terminated()) == 2
    assert len(table) == 0


def test_dialog_ids_seen_from_each_side() -> None:
    assert dialog_id_for_response(ok_for_alice()) == alice_dialog().id
    bye = in_dialog_from_alice("BYE", 3)
    assert dialog_id_for_request(bye) == confirmed_bob().id
    assert dialog_id_for_request(BOB_INVITE) == DialogId(CALL_ID, "", "9fxced76sl")


# --- Re-INVITE glare (§14) -----------------------------------------------------------------------


def test_reinvite_glare_gets_491_and_owner_waits_2_1_to_4_s() -> None:
    alice = alice_dialog()
    reinvite, _ = alice.create_request("INVITE", branch="z9hG4bKg1", **VIA)
    assert alice.pending_client_invite == 3
    with pytest.raises(RequestPending):
        alice.create_request("INVITE", branch="z9hG4bKg2", **VIA)  # §14.1: one at a time
    bob = confirmed_bob()
    bob_reinvite, _ = bob.create_request("INVITE", branch="z9hG4bKg3", **BOB_VIA)
    with pytest.raises(RequestPending) as err:
        alice.receive_request(bob_reinvite)
    assert (err.value.status, err.value.reason) == (491, "Request Pending")
    pending = make_response(reinvite, 491)
    assert alice.update_from_response(pending, rand=fixed_rand(5)) == 2.15
    assert alice.pending_client_invite is None
    assert alice.glare_retry_delay(fixed_rand(0)) == 2.1
    assert alice.glare_retry_delay(fixed_rand(190)) == 4.0
    # Bob does not own the Call-ID: 0 to 2 s.
    assert bob.glare_retry_delay(fixed_rand(5)) == 0.05
    assert bob.glare_retry_delay(fixed_rand(200)) == 2.0
    assert bob.glare_retry_delay(fixed_rand(201)) == 0.0


def test_second_invite_before_final_gets_500_with_retry_after() -> None:
    d = bob_dialog()  # the initial INVITE (CSeq 2) is not answered yet
    d.response_sent(make_response(BOB_INVITE, 180, to_tag=d.local_tag))
    with pytest.raises(InviteInProgress) as err:
        d.receive_request(in_dialog_from_alice("INVITE", 3), rand=fixed_rand(29))
    assert (err.value.status, err.value.retry_after) == (500, 7)  # 29 % 11
    with pytest.raises(RequestPending):
        d.create_request("INVITE", branch="z9hG4bK1", **BOB_VIA)


def test_rfc2543_invite_without_contact_targets_the_from_uri() -> None:
    # RFC 4475 §3.4.1 (inv2543): an RFC 2543 peer (no magic cookie) may omit Contact.
    old = req(
        bytes(BOB_INVITE)
        .replace(b"Contact: ", b"X-Contact: ")
        .replace(b"branch=z9hG4bK", b"branch=old")
    )
    d = Dialog.from_uas_request(old, local_tag="1", local_contact="<sip:b@h>")
    assert d.remote_target == name_addr_uri(old.headers.get("From") or "")
