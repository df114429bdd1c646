"""Message parse/serialize (RFC 3261 §7, §18.3, §20.14, §25): byte-exact fixtures."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ifescalate.sip.errors import (
    IncompleteMessage,
    MessageTooLarge,
    SipError,
    SipParseError,
    VersionNotSupported,
)
from ifescalate.sip.message import (
    DEFAULT_MAX_HEADERS,
    Headers,
    Request,
    Response,
    canonical_name,
    parse_cseq,
    parse_message,
    parse_request,
    parse_response,
    split_header_values,
)

INVITE = (
    b"INVITE sip:bob@biloxi.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.com>\r\n"
    b"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)

RINGING = (
    b"SIP/2.0 180 Ringing\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds;received=192.0.2.1\r\n"
    b"To: Bob <sip:bob@biloxi.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


# --- round trips ------------------------------------------------------------------------------------


def test_request_round_trip_is_byte_exact() -> None:
    req = parse_request(INVITE)
    assert (req.method, req.uri, req.version) == ("INVITE", "sip:bob@biloxi.com", "SIP/2.0")
    assert req.call_id == "a84b4c76e66710@pc33.atlanta.com"
    assert req.cseq == (314159, "INVITE")
    assert req.top_via == "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds"
    assert req.body == b"v=0\n"
    assert bytes(req) == INVITE


def test_response_round_trip_is_byte_exact() -> None:
    resp = parse_response(RINGING)
    assert (resp.status, resp.reason) == (180, "Ringing")
    assert resp.to_bytes() == RINGING


def test_serialization_of_built_messages() -> None:
    resp = Response(
        status=200,
        reason="OK",
        headers=Headers([("v", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("Content-Length", "99")]),
        body=b"ab",
    )
    # Compact names are written in full; Content-Length always matches the body (§20.14).
    assert bytes(resp) == (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 2\r\n\r\nab"
    )
    req = Request(method="OPTIONS", uri="sip:a@b.example", headers=Headers([("X-A", "1")]))
    assert bytes(req) == b"OPTIONS sip:a@b.example SIP/2.0\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n"


def test_utf8_header_and_binary_body_survive() -> None:
    data = (
        b"MESSAGE sip:a@b.example SIP/2.0\r\nSubject: \xc3\xa9t\xc3\xa9\r\n"
        b"Content-Length: 3\r\n\r\n\xff\x00\xfe"
    )
    msg = parse_message(data)
    assert msg.headers.get("Subject") == "\u00e9t\u00e9"
    assert msg.body == b"\xff\x00\xfe"
    assert bytes(msg) == data


# --- folding and compact forms ------------------------------------------------------------------


def test_folded_headers_are_unfolded() -> None:
    data = (
        b"OPTIONS sip:a@b.example SIP/2.0\r\n"
        b"Subject: I know you're there,\r\n"
        b"         pick up the phone\r\n"
        b"\t and talk to me!\r\n"
        b"Contact:\r\n <sip:a@c.example>\r\n"
        b"\r\n"
    )
    msg = parse_message(data)
    assert msg.headers.get("Subject") == "I know you're there, pick up the phone and talk to me!"
    assert msg.headers.get("Contact") == "<sip:a@c.example>"


@pytest.mark.parametrize(
    ("short", "full"),
    [
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("e", "Content-Encoding"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("f", "From"),
        ("s", "Subject"),
        ("k", "Supported"),
        ("t", "To"),
        ("v", "Via"),
        ("I", "Call-ID"),
        ("V", "Via"),
    ],
)
def test_compact_forms_are_expanded(short: str, full: str) -> None:
    value = "0" if full == "Content-Length" else "x"
    data = f"OPTIONS sip:a@b.example SIP/2.0\r\n{short}: {value}\r\n\r\n".encode()
    msg = parse_message(data)
    assert msg.headers.items() == [(full, value)]
    assert msg.headers.get(full) == value
    assert msg.headers.get(short) == value
    assert canonical_name(short) == full


def test_header_names_case_insensitive_and_lws_before_colon() -> None:
    data = b"OPTIONS sip:a@b.example SIP/2.0\r\nMaX-fOrWaRdS  : 0068\r\nX-Custom : a\r\n\r\n"
    msg = parse_message(data)
    assert msg.headers.items() == [("Max-Forwards", "0068"), ("X-Custom", "a")]
    assert msg.headers.get("x-custom") == "a"


# --- Content-Length framing (§18.3) -------------------------------------------------------------


def test_bytes_beyond_content_length_are_ignored() -> None:
    msg = parse_message(INVITE + b"GARBAGE")
    assert msg.body == b"v=0\n"


def test_no_content_length_takes_rest_of_datagram() -> None:
    data = b"OPTIONS sip:a@b.example SIP/2.0\r\nCall-ID: x\r\n\r\nhello"
    assert parse_message(data).body == b"hello"


def test_content_length_larger_than_body() -> None:
    with pytest.raises(IncompleteMessage) as info:
        parse_message(INVITE.replace(b"Content-Length: 4", b"Content-Length: 5"))
    assert info.value.status == 400


@pytest.mark.parametrize("value", [b"-1", b"abc", b"1 2", b"", b"1234567890", b"\xd9\xa1"])
def test_malformed_content_length(value: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_message(INVITE.replace(b"Content-Length: 4", b"Content-Length: " + value))


def test_duplicate_content_length() -> None:
    same = INVITE.replace(b"Content-Length: 4\r\n", b"Content-Length: 4\r\nl: 4\r\n")
    assert parse_message(same).body == b"v=0\n"
    conflict = INVITE.replace(b"Content-Length: 4\r\n", b"Content-Length: 4\r\nl: 2\r\n")
    with pytest.raises(SipParseError, match="conflicting"):
        parse_message(conflict)


# --- limits -------------------------------------------------------------------------------------------


def test_message_size_limit() -> None:
    assert parse_message(INVITE, max_size=len(INVITE)).body == b"v=0\n"
    with pytest.raises(MessageTooLarge) as info:
        parse_message(INVITE, max_size=len(INVITE) - 1)
    assert info.value.status == 513


def test_header_flood() -> None:
    head = b"OPTIONS sip:a@b.example SIP/2.0\r\n"
    ok = head + b"X: 1\r\n" * DEFAULT_MAX_HEADERS + b"\r\n"
    assert len(parse_message(ok).headers) == DEFAULT_MAX_HEADERS
    with pytest.raises(MessageTooLarge):
        parse_message(head + b"X: 1\r\n" * (DEFAULT_MAX_HEADERS + 1) + b"\r\n")
    with pytest.raises(MessageTooLarge):
        parse_message(head + b"X: 1\r\n" * 11 + b"\r\n", max_headers=10)


# --- line ends and start lines ------------------------------------------------------------------


def test_bare_lf_line_ends_are_tolerated() -> None:
    msg = parse_message(INVITE.replace(b"\r\n", b"\n"))
    assert msg.headers.get("Call-ID") == "a84b4c76e66710@pc33.atlanta.com"
    assert msg.body == b"v=0\n"


def test_bare_lf_head_with_crlf_in_body() -> None:
    data = b"MESSAGE sip:a@b.example SIP/2.0\nContent-Length: 6\n\nab\r\n\r\n"
    msg = parse_message(data)
    assert msg.body == b"ab\r\n\r\n"


def test_mixed_crlf_then_bare_lf_blank_line() -> None:
    data = b"OPTIONS sip:a@b.example SIP/2.0\r\nContent-Length: 2\r\n\nhi"
    assert parse_message(data).body == b"hi"


def test_leading_crlf_keepalives_are_skipped() -> None:
    assert parse_message(b"\r\n\r\n" + RINGING).status == 180  # type: ignore[union-attr]


def test_message_without_final_blank_line() -> None:
    msg = parse_message(b"OPTIONS sip:a@b.example SIP/2.0\r\nCall-ID: x\r\n")
    assert msg.call_id == "x" and msg.body == b""


@pytest.mark.parametrize(
    ("line", "status", "reason"),
    [
        (b"SIP/2.0 100 ", 100, ""),
        (b"SIP/2.0 180", 180, ""),
        (b"SIP/2.0 699 Whatever it is", 699, "Whatever it is"),
    ],
)
def test_status_lines(line: bytes, status: int, reason: str) -> None:
    msg = parse_message(line + b"\r\n\r\n")
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (status, reason)


@pytest.mark.parametrize(
    "line",
    [
        b"SIP/2.0 4294967301 big",
        b"SIP/2.0 099 Low",
        b"SIP/2.0 700 High",
        b"SIP/2.0 20 Short",
        b"SIP/2.0  200 OK",
        b"SIP/2.0 200OK",
        b"INVITE  sip:a@b SIP/2.0",
        b"INVITE sip:a@b SIP/2.0 ",
        b"INVITE <sip:a@b> SIP/2.0",
        b"INVITE sip:a@b; lr SIP/2.0",
        b"INV:ITE sip:a@b SIP/2.0",
        b"INVITE sip:a@b HTTP/1.1",
        b"INVITE sip:a@b",
        b"",
    ],
)
def test_malformed_start_lines(line: bytes) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(line + b"\r\n\r\n")
    assert info.value.status == 400


@pytest.mark.parametrize("line", [b"SIP/3.0 200 OK", b"OPTIONS sip:a@b SIP/7.0"])
def test_other_versions_are_505(line: bytes) -> None:
    with pytest.raises(VersionNotSupported) as info:
        parse_message(line + b"\r\n\r\n")
    assert info.value.status == 505


@pytest.mark.parametrize("header", [b"NoColon", b": empty-name", b"Bad Name: x", b"X\x00: y"])
def test_malformed_header_lines(header: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\n" + header + b"\r\n\r\n")


def test_non_utf8_header_section() -> None:
    with pytest.raises(SipParseError, match="UTF-8"):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nSubject: \xff\r\n\r\n")


def test_parse_request_and_response_check_kind() -> None:
    with pytest.raises(SipParseError):
        parse_request(RINGING)
    with pytest.raises(SipParseError):
        parse_response(INVITE)


# --- CSeq and the Headers multimap ---------------------------------------------------------------


def test_parse_cseq() -> None:
    assert parse_cseq("0009   INVITE") == (9, "INVITE")
    for bad in (None, "1", "x INVITE", "1 INVITE extra", "2147483648 INVITE", "1 IN<VITE"):
        with pytest.raises(SipParseError):
            parse_cseq(bad)


def test_headers_multimap_operations() -> None:
    h = Headers([("Via", "a, b"), ("Route", "<sip:r1>"), ("via", "c")])
    assert h.values("Via") == ["a", "b", "c"]
    assert h.first("Via") == "a"
    assert h.get_lines("v") == ["a, b", "c"]
    h.prepend("Via", "z")
    assert h.values("Via") == ["z", "a", "b", "c"]
    assert h.pop_first("Via") == "z"
    assert h.pop_first("Via") == "a"
    assert h.get_lines("Via") == ["b", "c"]
    h.set("Via", "only")
    assert h.items() == [("Via", "only"), ("Route", "<sip:r1>")]
    assert h.remove("route") == 1
    assert "Route" not in h and "Via" in h
    assert h.copy() == h


def test_list_values_respect_quotes_and_brackets() -> None:
    assert split_header_values('"Doe, J" <sip:a@b;x=1,2>, <sip:c@d>') == [
        '"Doe, J" <sip:a@b;x=1,2>',
        "<sip:c@d>",
    ]
    h = Headers([("WWW-Authenticate", 'Digest realm="a", nonce="b"')])
    assert h.values("WWW-Authenticate") == ['Digest realm="a", nonce="b"']
    with pytest.raises(SipParseError):
        split_header_values('"open, x')


# --- property: serialize(parse(x)) is a fixed point ----------------------------------------------

_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~", min_size=1, max_size=12)  # fmt: skip
_value = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x85"
    ),
    max_size=40,
).map(str.strip)


@settings(max_examples=200, deadline=None)
@given(
    method=_token,
    headers=st.lists(st.tuples(_token, _value), max_size=12),
    body=st.binary(max_size=64),
)
def test_serialize_parse_round_trip(
    method: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    headers = [(k, v) for k, v in headers if canonical_name(k) != "Content-Length"]
    req = Request(method=method, uri="sip:a@b.example", headers=Headers(headers), body=body)
    wire = bytes(req)
    again = parse_message(wire)
    assert isinstance(again, Request)
    assert again.method == method and again.body == body
    assert [(k, v) for k, v in again.headers.items() if k != "Content-Length"] == [
        (canonical_name(k), v) for k, v in headers
    ]
    assert bytes(again) == wire


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_parse_random_bytes_raises_only_sip_errors(data: bytes) -> None:
    try:
        msg = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\n" + data)
    except SipError:
        return
    bytes(msg)
