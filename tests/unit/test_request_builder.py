"""Out-of-dialog request construction (RFC 3261 §8.1.1) and the routing rules it shares with dialogs."""

from __future__ import annotations

import pytest

from ifescalate.sip.message import Request, parse_message
from ifescalate.sip.request_builder import (
    apply_route_set,
    format_via,
    is_loose_route,
    name_addr_params,
    name_addr_tag,
    name_addr_uri,
    new_request,
    next_hop_uri,
    request_uri_from,
    strip_tag,
    wrap_name_addr,
)
from ifescalate.sip.uri import parse_uri

SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.101\r\n"
    b"t=0 0\r\n"
    b"m=audio 49172 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)


def _invite(**overrides: object) -> Request:
    kwargs: dict[str, object] = {
        "from_addr": "Alice <sip:alice@atlanta.example.com>",
        "from_tag": "9fxced76sl",
        "to_addr": "Bob <sip:bob@biloxi.example.com>",
        "call_id": "3848276298220188511@atlanta.example.com",
        "cseq": 1,
        "via_host": "client.atlanta.example.com",
        "via_port": 5060,
        "transport": "TCP",
        "branch": "z9hG4bK74bf9",
        "contact": "<sip:alice@client.atlanta.example.com;transport=tcp>",
        "body": SDP,
        "content_type": "application/sdp",
    }
    kwargs.update(overrides)
    uri = kwargs.pop("request_uri", "sip:bob@biloxi.example.com")
    return new_request("INVITE", uri, **kwargs)  # type: ignore[arg-type]


def test_invite_is_byte_exact_rfc3665_style() -> None:
    expected = (
        b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;rport\r\n"
        b"Max-Forwards: 70\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
        b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:alice@client.atlanta.example.com;transport=tcp>\r\n"
        b"Content-Type: application/sdp\r\n"
        b"Content-Length: 151\r\n"
        b"\r\n" + SDP
    )
    assert len(SDP) == 151
    assert bytes(_invite()) == expected


def test_request_uri_may_be_a_sip_uri_object() -> None:
    req = _invite(request_uri=parse_uri("sips:bob@biloxi.example.com;transport=tcp"))
    assert req.uri == "sips:bob@biloxi.example.com;transport=tcp"


def test_output_parses_back_with_same_fields() -> None:
    req = _invite(headers=[("Subject", "hazard"), ("X-IF-Trace-ID", "t-1")])
    again = parse_message(bytes(req))
    assert isinstance(again, Request)
    assert again.method == "INVITE"
    assert again.headers.items() == [*req.headers.items(), ("Content-Length", "151")]
    assert again.body == SDP
    assert again.cseq == (1, "INVITE")


def test_bare_uris_are_wrapped_so_tag_is_a_header_param() -> None:
    req = new_request(
        "OPTIONS",
        "sip:bob@biloxi.example.com",
        from_addr="sip:alice@atlanta.example.com",
        from_tag="abc",
        to_addr="sip:bob@biloxi.example.com",
        call_id="c1",
        cseq=7,
        via_host="192.0.2.1",
        via_port=None,
        transport="udp",
        branch="z9hG4bKx1",
        contact=None,
    )
    assert req.headers.get("From") == "<sip:alice@atlanta.example.com>;tag=abc"
    assert req.headers.get("To") == "<sip:bob@biloxi.example.com>"
    assert req.headers.get("Via") == "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx1;rport"
    assert "Contact" not in req.headers
    assert req.headers.get("CSeq") == "7 OPTIONS"


def test_preloaded_loose_route_keeps_request_uri() -> None:
    req = _invite(route=["sip:ss1.atlanta.example.com;lr", "<sip:ss2.biloxi.example.com;lr>"])
    assert req.uri == "sip:bob@biloxi.example.com"
    assert req.headers.get_lines("Route") == [
        "<sip:ss1.atlanta.example.com;lr>",
        "<sip:ss2.biloxi.example.com;lr>",
    ]
    assert next_hop_uri(req.uri, ["sip:ss1.atlanta.example.com;lr"]) == (
        "sip:ss1.atlanta.example.com;lr"
    )
    # Route comes right after Max-Forwards, before To.
    names = [n for n, _ in req.headers.items()]
    assert names[:5] == ["Via", "Max-Forwards", "Route", "Route", "To"]


def test_preloaded_strict_route_rewrites_request_uri() -> None:
    req = _invite(route=["<sip:strict.atlanta.example.com;method=INVITE>"])
    assert req.uri == "sip:strict.atlanta.example.com"
    assert req.headers.get_lines("Route") == ["<sip:bob@biloxi.example.com>"]
    route = ["<sip:strict.atlanta.example.com;method=INVITE>", "<sip:p2;lr>"]
    req = _invite(route=route)
    assert req.headers.get_lines("Route") == ["<sip:p2;lr>", "<sip:bob@biloxi.example.com>"]
    # The next hop is the strict router, not the first Route field left in the request.
    assert next_hop_uri("sip:bob@biloxi.example.com", route) == (
        "sip:strict.atlanta.example.com;method=INVITE"
    )


def test_next_hop_without_route_is_request_uri() -> None:
    assert next_hop_uri("sip:bob@biloxi.example.com;method=INVITE", []) == (
        "sip:bob@biloxi.example.com"
    )


def test_ipv6_via_host_is_bracketed() -> None:
    assert (
        format_via("TLS", "2001:db8::1", 5061, "z9hG4bKa")
        == "SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKa;rport"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"contact": None}, "needs a Contact"),
        ({"content_type": None}, "Content-Type"),
        ({"branch": "abc"}, "branch"),
        ({"branch": "z9hG4bK"}, "branch"),
        ({"cseq": 2**31}, "CSeq"),
        ({"cseq": -1}, "CSeq"),
        ({"transport": "QUIC"}, "transport"),
        ({"max_forwards": 256}, "Max-Forwards"),
    ],
)
def test_caller_errors_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _invite(**overrides)


def test_bad_method_is_refused() -> None:
    with pytest.raises(ValueError, match="method"):
        new_request(
            "IN VITE",
            "sip:b@x",
            from_addr="<sip:a@x>",
            from_tag="t",
            to_addr="<sip:b@x>",
            call_id="c",
            cseq=1,
            via_host="h",
            via_port=None,
            transport="UDP",
            branch="z9hG4bK1",
            contact="<sip:a@h>",
        )


def test_request_uri_drops_method_param_and_headers() -> None:
    assert (
        request_uri_from("sip:a@b.example;method=INVITE;transport=tcp?subject=x")
        == "sip:a@b.example;transport=tcp"
    )
    assert request_uri_from("sip:a@b.example;lr") == "sip:a@b.example;lr"
    assert request_uri_from(" sip:a@b.example ") == "sip:a@b.example"


def test_apply_route_set_cases() -> None:
    target = "sip:bob@client.biloxi.example.com"
    assert apply_route_set(target, []) == (target, [])
    assert apply_route_set(target, ["<sip:p1;lr>", "<sip:p2>"]) == (
        target,
        ["<sip:p1;lr>", "<sip:p2>"],
    )
    assert apply_route_set(target, ["<sip:p1>", "<sip:p2;lr>"]) == (
        "sip:p1",
        ["<sip:p2;lr>", f"<{target}>"],
    )


def test_loose_route_detection_reads_uri_params_only() -> None:
    assert is_loose_route("<sip:p1.example.com;lr>")
    assert is_loose_route("<sip:p1.example.com;LR=on;transport=tcp>")
    assert not is_loose_route("<sip:p1.example.com>;lr")  # header param, not URI param
    assert not is_loose_route("<sip:p1.example.com;transport=tcp?lr=x>")


def test_name_addr_helpers() -> None:
    value = '"Bob <boss>, Jr" <sip:bob@biloxi.example.com;transport=tcp>;tag=a6c85cf;x=1'
    assert name_addr_uri(value) == "sip:bob@biloxi.example.com;transport=tcp"
    assert name_addr_tag(value) == "a6c85cf"
    assert name_addr_params(value) == {"tag": "a6c85cf", "x": "1"}
    assert strip_tag(value) == '"Bob <boss>, Jr" <sip:bob@biloxi.example.com;transport=tcp>;x=1'
    # addr-spec form: every ;param belongs to the header field (§20.10).
    assert name_addr_uri("sip:bob@biloxi.example.com;tag=1") == "sip:bob@biloxi.example.com"
    assert name_addr_tag("sip:bob@biloxi.example.com;tag=1") == "1"
    assert name_addr_tag("<sip:bob@biloxi.example.com;tag=1>") is None
    assert name_addr_tag(None) is None
    assert wrap_name_addr("Bob <sip:b@x>") == "Bob <sip:b@x>"
    assert wrap_name_addr("sip:p;lr") == "<sip:p;lr>"
