"""URIs: RFC 3261 §19.1 (sip/sips), RFC 3966 (tel), escaping and §19.1.4 comparison."""

from __future__ import annotations

import pytest

from ifescalate.sip.errors import SipParseError, UnsupportedUriScheme
from ifescalate.sip.uri import SipUri, escape, parse_hostport, parse_uri, unescape, uri_equal


def test_plain_sip_uri() -> None:
    uri = parse_uri("sip:alice@atlanta.com")
    assert uri == SipUri("sip", "alice", None, "atlanta.com", None, {}, {})
    assert (uri.transport, uri.host_port, uri.is_sip) == ("udp", "atlanta.com", True)


def test_every_component() -> None:
    text = "sips:bob:secret@[2001:db8::1]:5061;transport=tcp;lr;maddr=239.255.255.1?subject=hi%20there&priority=urgent"
    uri = parse_uri(text)
    assert (uri.scheme, uri.user, uri.password) == ("sips", "bob", "secret")
    assert (uri.host, uri.port) == ("2001:db8::1", 5061)
    assert uri.params == {"transport": "tcp", "lr": None, "maddr": "239.255.255.1"}
    assert uri.headers == {"subject": "hi there", "priority": "urgent"}
    assert uri.host_port == "[2001:db8::1]:5061"
    assert uri.transport == "tcp"
    assert str(uri) == text


def test_scheme_and_param_names_are_case_insensitive() -> None:
    uri = parse_uri("SIP:ALICE@AtLanTa.CoM;Transport=UDP")
    assert uri.scheme == "sip"
    assert uri.user == "ALICE" and uri.host == "AtLanTa.CoM"  # kept as received
    assert uri.params == {"transport": "UDP"}
    assert uri.transport == "udp"


def test_transport_defaults() -> None:
    assert parse_uri("sip:h.example.com").transport == "udp"
    assert parse_uri("sips:h.example.com").transport == "tls"
    assert parse_uri("sip:h.example.com;transport=TLS").transport == "tls"


def test_ipv4_and_hostnames() -> None:
    assert parse_hostport("192.0.2.1:5060") == ("192.0.2.1", 5060)
    assert parse_hostport("example.com.") == ("example.com.", None)
    assert parse_hostport("[::1]") == ("::1", None)
    assert parse_uri("sip:[::1]:5070").host_port == "[::1]:5070"


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:@example.com",
        "sip:alice@",
        "sip:alice@example.com:99999",
        "sip:alice@example.com:50a",
        "sip:alice@example.com:",
        "sip:alice@[::1",
        "sip:alice@[zz::1]",
        "sip:alice@[1:2:3:4:5:6:7:8:9]",
        "sip:al ice@example.com",
        "sip:alice@exa mple.com",
        "sip:alice@example.com;=x",
        "sip:alice@example.com;a b",
        "sip:alice@example.com;",
        "sip:alice@example.com?x",
        "sip:alice@example.com?=x",
        "sip:alice@ex%61mple.com",
        "sip:a%zzlice@example.com",
        "sip:alice@-example.com",
        "sip:a<b@example.com",
        "nocolon",
        ":alice@example.com",
        "1sip:alice@example.com",
        "tel:",
        "tel:+1 555",
    ],
)
def test_malformed_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


def test_unknown_scheme_is_416_unless_allowed() -> None:
    with pytest.raises(UnsupportedUriScheme) as info:
        parse_uri("http://www.example.com/")
    assert info.value.status == 416
    uri = parse_uri("http://www.example.com/", any_scheme=True)
    assert (uri.scheme, uri.opaque, uri.is_sip) == ("http", "//www.example.com/", False)
    assert str(uri) == "http://www.example.com/"
    with pytest.raises(SipParseError):
        parse_uri("http://a b", any_scheme=True)


def test_tel_uri() -> None:
    uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert (uri.scheme, uri.user, uri.host) == ("tel", "+1-201-555-0123", "")
    assert uri.params == {"phone-context": "example.com"}
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"


def test_user_kept_escaped_params_and_headers_unescaped() -> None:
    uri = parse_uri("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
    assert uri.user == "cal%6Cer"
    assert uri.user_unescaped == "caller"
    assert uri.params == {"lr": None, "name": "value%41"}
    # Serializing escapes only what §25.1 requires, so it parses back to the same params.
    assert str(uri) == "sip:cal%6Cer@host5.example.net;lr;name=value%2541"
    assert parse_uri(str(uri)) == uri


def test_headers_escaped_on_output() -> None:
    uri = SipUri("sip", "user", None, "example.com", headers={"Route": "<sip:p.example.com;lr>"})
    assert str(uri) == "sip:user@example.com?Route=%3Csip:p.example.com%3Blr%3E"
    assert parse_uri(str(uri)).headers == {"Route": "<sip:p.example.com;lr>"}


def test_user_with_semicolon_and_password() -> None:
    uri = parse_uri("sip:user;par=u%40example.net@example.com")
    assert (uri.user, uri.host, uri.params) == ("user;par=u%40example.net", "example.com", {})
    uri = parse_uri("sip:alice:pa$$@example.com")
    assert (uri.user, uri.password) == ("alice", "pa$$")


def test_escape_unescape() -> None:
    assert unescape("I%20have%20spaces") == "I have spaces"
    assert unescape("%E2%82%AC") == "\u20ac"
    assert unescape("plain") == "plain"
    # Octets that are not UTF-8 survive a round trip.
    raw = unescape("%FF%00")
    assert escape(raw) == "%FF%00"
    assert escape("a b;c") == "a%20b%3Bc"
    with pytest.raises(SipParseError):
        unescape("%4")
    with pytest.raises(SipParseError):
        unescape("%G1")


# RFC 3261 §19.1.4: the equivalent and non-equivalent examples, verbatim.
EQUAL = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=Tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
    ("tel:+1-201-555-0123", "tel:+1.201.555.0123"),
]
NOT_EQUAL = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:bob@biloxi.com", "sips:bob@biloxi.com"),
    ("sip:bob@biloxi.com;maddr=10.0.0.1", "sip:bob@biloxi.com"),
    ("sip:bob@biloxi.com;user=phone", "sip:bob@biloxi.com"),
    ("sip:bob@biloxi.com;ttl=1", "sip:bob@biloxi.com;ttl=2"),
    ("sip:bob:x@biloxi.com", "sip:bob@biloxi.com"),
    ("tel:+1-201-555-0123", "tel:+1-201-555-0124"),
    ("sip:bob@biloxi.com", "tel:+1-201-555-0124"),
]


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_uri_equal(a: str, b: str) -> None:
    assert uri_equal(a, b)
    assert uri_equal(b, a)


@pytest.mark.parametrize(("a", "b"), NOT_EQUAL)
def test_uri_not_equal(a: str, b: str) -> None:
    assert not uri_equal(a, b)
    assert not uri_equal(b, a)


def test_uri_equal_opaque() -> None:
    assert uri_equal("isbn:2983792873", "isbn:2983792873")
    assert not uri_equal("isbn:2983792873", "isbn:2983792874")
