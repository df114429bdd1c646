"""Typed header values: generic params, Via (§20.42), name-addr / addr-spec (§20.10, §20.20)."""

from __future__ import annotations

import pytest

from ifescalate.sip.errors import SipParseError, VersionNotSupported
from ifescalate.sip.headers import (
    NameAddr,
    Via,
    format_params,
    parse_contacts,
    parse_name_addr,
    parse_params,
    parse_via,
    quote_string,
)
from ifescalate.sip.uri import SipUri

# --- generic params ----------------------------------------------------------------------------


def test_params_with_lws_flags_and_case() -> None:
    assert parse_params(" ; Tag = abc ;lr; Q=0.5") == {"tag": "abc", "lr": None, "q": "0.5"}
    assert parse_params("tag=abc") == {"tag": "abc"}
    assert parse_params("") == {}


def test_quoted_param_value_kept_with_quotes() -> None:
    params = parse_params(';p="a;b,c \\" d";x=1')
    assert params == {"p": '"a;b,c \\" d"', "x": "1"}
    assert format_params(params) == ';p="a;b,c \\" d";x=1'


@pytest.mark.parametrize("text", [";;", ";a;;b", ";=x", ";a=", ";a=b c", ';a="x', ";a b", ";a=<x>"])
def test_malformed_params(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_params(text)


def test_format_params() -> None:
    assert format_params({"branch": "z9hG4bK1", "rport": None}) == ";branch=z9hG4bK1;rport"
    assert format_params({}) == ""


# --- Via -------------------------------------------------------------------------------------------


def test_typical_via() -> None:
    via = parse_via("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport")
    assert via == Via("UDP", "10.0.0.1", 5060, {"branch": "z9hG4bK776asdhds", "rport": None})
    assert (via.branch, via.received, via.rport, via.has_rport) == (
        "z9hG4bK776asdhds",
        None,
        None,
        True,
    )
    assert via.sent_by == "10.0.0.1:5060"
    assert str(via) == "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport"


def test_via_received_rport_filled_in() -> None:
    via = parse_via("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;rport")
    filled = via.with_param("received", "192.0.2.4").with_param("rport", "5062")
    assert str(filled) == "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;rport=5062;received=192.0.2.4"
    assert (filled.received, filled.rport) == ("192.0.2.4", 5062)
    assert via.params == {"branch": "z9hG4bK1", "rport": None}  # the original is unchanged


def test_via_ipv6_sent_by_and_received() -> None:
    via = parse_via("SIP/2.0/TLS [2001:db8::9]:5061;branch=z9hG4bKx;received=2001:db8::9")
    assert (via.transport, via.host, via.port) == ("TLS", "2001:db8::9", 5061)
    assert via.received == "2001:db8::9"
    assert str(via) == "SIP/2.0/TLS [2001:db8::9]:5061;branch=z9hG4bKx;received=2001:db8::9"


def test_via_with_lws_everywhere() -> None:
    via = parse_via("SIP  /   2.0 / tcp   spindle.example.com : 5070  ;  branch  =   z9hG4bK9ikj8")
    assert (via.transport, via.host, via.port, via.branch) == (
        "TCP",
        "spindle.example.com",
        5070,
        "z9hG4bK9ikj8",
    )
    tabbed = parse_via("SIP/2.0/UDP\thost.example.com;maddr=224.0.0.1")
    assert (tabbed.host, tabbed.maddr) == ("host.example.com", "224.0.0.1")


def test_via_without_params() -> None:
    assert parse_via("SIP/2.0/UDP iftgw.example.com") == Via("UDP", "iftgw.example.com", None, {})


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0/UDP",
        "SIP/2.0/UDP ",
        "SIP/2.0 host",
        "XIP/2.0/UDP host",
        "SIP/2.0/UDP host;;",
        "SIP/2.0/UDP 192.0.2.15;;",
        ";",
        "SIP/2.0/UDP host:70000",
        "SIP/2.0/UDP ho st",
        "SIP/2.0/U=P host",
        "SIP/2.0/UDP host;branch=a b",
    ],
)
def test_malformed_via(value: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_via(value)
    assert info.value.status == 400


def test_via_other_version_is_505() -> None:
    with pytest.raises(VersionNotSupported) as info:
        parse_via("SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw")
    assert info.value.status == 505


# --- name-addr / addr-spec ------------------------------------------------------------------------


def test_name_addr_forms() -> None:
    na = parse_name_addr('"Bob" <sip:bob@biloxi.com>;tag=a6c85cf')
    assert na == NameAddr("Bob", SipUri("sip", "bob", None, "biloxi.com"), {"tag": "a6c85cf"})
    assert na.tag == "a6c85cf"
    assert str(na) == '"Bob" <sip:bob@biloxi.com>;tag=a6c85cf'
    plain = parse_name_addr("<sip:alice@atlanta.com>")
    assert (plain.display, plain.params) == (None, {})
    assert str(plain) == "<sip:alice@atlanta.com>"


def test_token_display_name() -> None:
    na = parse_name_addr("Alice  Liddell <sip:alice@atlanta.com>")
    assert na.display == "Alice Liddell"
    assert str(na) == '"Alice Liddell" <sip:alice@atlanta.com>'
    assert parse_name_addr("caller<sip:caller@example.com>").display == "caller"


def test_quoted_display_escapes_round_trip() -> None:
    na = parse_name_addr(r'"J Rosenberg \\\"" <sip:jdrosen@example.com>')
    assert na.display == 'J Rosenberg \\"'
    assert str(na) == r'"J Rosenberg \\\"" <sip:jdrosen@example.com>'
    assert parse_name_addr(str(na)) == na
    assert parse_name_addr('"" <sip:a@b.example>').display == ""


def test_quote_string_never_emits_line_breaks() -> None:
    assert quote_string("a\r\nTo: x") == '"a  To: x"'
    assert quote_string("BEL:\x07") == '"BEL:\\\x07"'
    na = NameAddr("BEL:\x07 NUL:\x00", SipUri("sip", "a", None, "b.example"))
    assert parse_name_addr(str(na)).display == "BEL:\x07 NUL:\x00"


def test_addr_spec_params_belong_to_header() -> None:
    na = parse_name_addr("sip:+19725552222@gw1.example.net;unknownparam;tag=1")
    assert na.uri.params == {}
    assert na.params == {"unknownparam": None, "tag": "1"}
    assert str(na) == "<sip:+19725552222@gw1.example.net>;unknownparam;tag=1"
    spaced = parse_name_addr("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n")
    assert spaced.tag == "1918181833n"


def test_name_addr_uri_params_stay_in_uri() -> None:
    na = parse_name_addr("<sip:p.example.com;lr>;x=1")
    assert (na.uri.params, na.params) == ({"lr": None}, {"x": "1"})


def test_unknown_scheme_in_address() -> None:
    na = parse_name_addr("<http://www.example.com>;tag=3234233")
    assert (na.uri.scheme, na.uri.opaque, na.tag) == ("http", "//www.example.com", "3234233")
    assert parse_name_addr("isbn:2983792873").uri.opaque == "2983792873"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "  ",
        '"Mr. J. User <sip:j.user@example.com>',
        "< sip:t.watson@example.org >",
        "Watson, Thomas <sip:t.watson@example.org>",
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        "<sip:a@b.example",
        "<sip:a@b.example>junk",
        '"Joe" <sip:joe@example.org>;;;;',
        '"Joe" sip:joe@example.org',
        "<>",
    ],
)
def test_malformed_addresses(value: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_name_addr(value)
    assert info.value.status == 400


def test_with_param_adds_to_tag() -> None:
    na = parse_name_addr("<sip:bob@biloxi.com>")
    tagged = na.with_param("tag", "xyz")
    assert str(tagged) == "<sip:bob@biloxi.com>;tag=xyz"
    assert na.tag is None


def test_contacts_and_star() -> None:
    contacts = parse_contacts(["<sip:a@h1.example>;expires=60", "sip:b@h2.example;q=0.5"])
    assert contacts is not None
    assert [(c.uri.user, c.expires, c.q) for c in contacts] == [
        ("a", "60", None),
        ("b", None, "0.5"),
    ]
    assert parse_contacts(["*"]) is None
    assert parse_contacts([]) == []
    with pytest.raises(SipParseError):
        parse_contacts(["*", "<sip:a@h1.example>"])
