"""RFC 4475 torture messages: every one of the 49 files, handled as the RFC says.

The corpus lives in ``shared/conformance/rfc4475`` beside the repository (read-only, pinned by
MANIFEST.sha256). Each file is in exactly one table below with its expected outcome; a test
checks that the tables cover the directory, so a file can neither be skipped nor forgotten.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ifescalate.sip.errors import (
    IncompleteMessage,
    SipError,
    UnsupportedUriScheme,
    VersionNotSupported,
)
from ifescalate.sip.headers import parse_contacts, parse_name_addr, parse_via
from ifescalate.sip.message import Request, Response, parse_message
from ifescalate.sip.uri import parse_uri, unescape, uri_equal
from ifescalate.sip.validate import (
    BadExtension,
    MethodNotImplemented,
    NotAcceptable,
    ResponseDiscarded,
    TooManyHops,
    Unauthorized,
    UnsupportedMediaType,
    ValidationError,
    check_accept,
    check_authorization_scheme,
    check_content,
    check_max_forwards,
    check_method,
    check_register,
    check_require,
    check_response_vias,
    validate_request,
    validate_response,
)


def _find_corpus() -> Path:
    env = os.environ.get("IFESCALATE_RFC4475_DIR")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "conformance" / "rfc4475"
        if candidate.is_dir():
            return candidate
    return Path("/work/shared/conformance/rfc4475")


CORPUS = _find_corpus()


def load(name: str) -> bytes:
    return (CORPUS / f"{name}.dat").read_bytes()


def parse_req(name: str) -> Request:
    msg = parse_message(load(name))
    assert isinstance(msg, Request)
    return msg


def parse_resp(name: str) -> Response:
    msg = parse_message(load(name))
    assert isinstance(msg, Response)
    return msg


def validate(msg: Request | Response) -> None:
    if isinstance(msg, Request):
        validate_request(msg)
    else:
        validate_response(msg)


# --- coverage of the corpus ---------------------------------------------------------------------

# §3.1.1: valid; each has its own field test below.
VALID = [
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq", "semiuri",
    "transports", "mpart01", "unreason", "noreason",
]  # fmt: skip

# §3.1.2: invalid. (stage that rejects it, exact status, exception class).
INVALID: dict[str, tuple[str, int, type[SipError]]] = {
    "badinv01": ("validate", 400, SipError),  # ";;,;,," in Via and Contact
    "clerr": ("parse", 400, IncompleteMessage),  # Content-Length larger than the datagram
    "scalar02": ("validate", 400, SipError),  # CSeq, Max-Forwards, Expires out of range
    "scalarlg": ("validate", 400, SipError),  # response: dropped
    "quotbal": ("validate", 400, SipError),  # unterminated quote in To
    "ltgtruri": ("parse", 400, SipError),  # Request-URI in <>
    "lwsruri": ("parse", 400, SipError),  # LWS inside the Request-URI
    "lwsstart": ("parse", 400, SipError),  # several SP between Request-Line elements
    "trws": ("parse", 400, SipError),  # SP after SIP/2.0 (RFC: rejecting is acceptable)
    "escruri": ("validate", 400, SipError),  # escaped headers in the Request-URI
    "baddate": ("validate", 400, SipError),  # Date not in GMT
    "regbadct": ("validate", 400, SipError),  # addr-spec with "?" outside <>
    "badaspec": ("validate", 400, SipError),  # spaces inside <> of To
    "baddn": ("validate", 400, SipError),  # unquoted display name with a comma
    "badvers": ("parse", 505, VersionNotSupported),  # SIP/7.0
    "mismatch01": ("validate", 400, SipError),  # CSeq method != request method
    "mismatch02": ("validate", 400, SipError),  # unknown method, CSeq says INVITE
    "bigcode": ("parse", 400, SipError),  # response: status 4294967301, dropped
    "ncl": ("parse", 400, SipError),  # negative Content-Length
}

# §3.2, §3.3, §3.4: each has its own test below.
SEMANTIC = [
    "badbranch", "insuf", "unkscm", "novelsc", "unksm2", "bext01", "invut", "regaut01",
    "multi01", "mcl01", "bcast", "zeromf", "cparam01", "cparam02", "regescrt", "sdp01",
    "inv2543",
]  # fmt: skip


def test_manifest_pins_every_file() -> None:
    lines = (CORPUS / "MANIFEST.sha256").read_text().splitlines()
    pinned = {}
    for line in lines:
        digest, name = line.split()
        pinned[name] = digest
    assert len(pinned) == 49
    for name, digest in pinned.items():
        assert hashlib.sha256((CORPUS / name).read_bytes()).hexdigest() == digest, name
    on_disk = {p.name for p in CORPUS.glob("*.dat")}
    assert on_disk == set(pinned)


def test_tables_cover_the_corpus_exactly_once() -> None:
    names = VALID + list(INVALID) + SEMANTIC
    assert len(names) == len(set(names)) == 49
    assert {f"{n}.dat" for n in names} == {p.name for p in CORPUS.glob("*.dat")}


# --- §3.1.2 invalid messages ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "stage", "status", "exc"), [(n, *v) for n, v in INVALID.items()])
def test_invalid_message_rejected_with_rfc_status(
    name: str, stage: str, status: int, exc: type[SipError]
) -> None:
    data = load(name)
    if stage == "parse":
        with pytest.raises(exc) as info:
            parse_message(data)
    else:
        msg = parse_message(data)  # must parse: the rejection belongs to validation
        with pytest.raises(exc) as info:
            validate(msg)
    assert info.value.status == status


def _mutate(name: str, old: bytes, new: bytes) -> bytes:
    data = load(name)
    assert old in data
    return data.replace(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # scalar02 carries four range errors; each alone must still be caught.
        (b"CSeq: 36893488147419103232 REGISTER", b"CSeq: 2147483648 REGISTER"),
        (b"Max-Forwards: 70", b"Max-Forwards: 300"),
        (b"Max-Forwards: 70", b"Max-Forwards: -1"),
        (b"Contact: <sip:caller@host5.example.net>", b"Contact: <sip:c@h.example.net>;expires=4294967296"),
    ],
)  # fmt: skip
def test_each_scalar_range_error_alone(old: bytes, new: bytes) -> None:
    base = "scalar02" if old.startswith(b"CSeq") else "baddate"
    data = _mutate(base, old, new)
    if base == "scalar02":
        data = data.replace(b"Max-Forwards: 300", b"Max-Forwards: 70")
        data = data.replace(b"Expires: 1" + b"0" * 100, b"Expires: 10")
        data = data.replace(b";expires=280297596632815", b"")
    else:
        data = data.replace(b"EST", b"GMT")
    msg = parse_message(data)
    with pytest.raises(SipError) as info:
        validate(msg)
    assert info.value.status == 400


def test_scalar02_only_expires_out_of_range() -> None:
    data = load("scalar02")
    data = data.replace(b"36893488147419103232", b"1").replace(
        b"Max-Forwards: 300", b"Max-Forwards: 70"
    )
    data = data.replace(b";expires=280297596632815", b"")
    with pytest.raises(SipError, match="Expires out of range"):
        validate(parse_message(data))
    fixed = data.replace(b"Expires: 1" + b"0" * 100, b"Expires: 4294967295")
    validate(parse_message(fixed))  # the largest delta-seconds is fine


def _scalarlg_fixed() -> bytes:
    data = load("scalarlg").replace(b"9292394834772304023312", b"1")
    return data.replace(b"949302838503028349304023988", b"10").replace(b"1812 ", b"399 ")


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        (b"CSeq: 1 OPTIONS", b"CSeq: 9292394834772304023312 OPTIONS", "CSeq"),
        (b"Retry-After: 10", b"Retry-After: 949302838503028349304023988", "Retry-After"),
        (b"Warning: 399 ", b"Warning: 1812 ", "Warning"),
    ],
)
def test_scalarlg_each_response_error_alone(old: bytes, new: bytes, match: str) -> None:
    fixed = _scalarlg_fixed()
    validate(parse_message(fixed))
    assert old in fixed
    with pytest.raises(SipError, match=match):
        validate(parse_message(fixed.replace(old, new)))


def test_bigcode_is_not_read_as_429() -> None:
    with pytest.raises(SipError, match="malformed status line"):
        parse_message(load("bigcode"))


# --- §3.1.1 valid messages --------------------------------------------------------------------


@pytest.mark.parametrize("name", VALID)
def test_valid_message_parses_and_validates(name: str) -> None:
    msg = parse_message(load(name))
    validate(msg)
    # Serializing and parsing again keeps every header (order and values) and the body.
    again = parse_message(bytes(msg))

    def without_length(m: Request | Response) -> list[tuple[str, str]]:
        return [(k, v) for k, v in m.headers.items() if k != "Content-Length"]

    assert without_length(again) == without_length(msg)
    assert again.headers.get("Content-Length") == str(len(msg.body))
    assert again.body == msg.body


def test_wsinv_whitespace_folding_and_display_names() -> None:
    req = parse_req("wsinv")
    assert req.method == "INVITE"
    assert parse_uri(req.uri).params == {"unknownparam": None}
    to = parse_name_addr(req.headers.get("To") or "")
    assert (str(to.uri), to.tag, to.display) == (
        "sip:vivekg@chair-dnrc.example.com",
        "1918181833n",
        None,
    )
    frm = parse_name_addr(req.headers.get("From") or "")
    assert frm.display == 'J Rosenberg \\"'
    assert frm.tag == "98asjd8"
    assert req.headers.get("Max-Forwards") == "0068"
    assert req.cseq == (9, "INVITE")
    vias = [parse_via(v) for v in req.headers.values("Via")]
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert req.headers.get("Subject") == ""
    assert req.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert req.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    route = parse_name_addr(req.headers.get("Route") or "")
    assert route.uri.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    contact = parse_name_addr(req.headers.get("Contact") or "")
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(req.body) == 150 and req.body.startswith(b"v=0\r\n")


def test_intmeth_wide_range_of_valid_characters() -> None:
    req = parse_req("intmeth")
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert req.method == method
    assert req.cseq == (139122385, method)
    ruri = parse_uri(req.uri)
    user = "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert (ruri.user, ruri.password, ruri.host) == (
        user,
        "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)",
        "example.com",
    )
    to = parse_name_addr(req.headers.get("To") or "")
    assert to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert (to.uri.user, to.uri.password) == (user, None)
    frm = parse_name_addr(req.headers.get("From") or "")
    assert frm.display == "token1~` token2'+_ token3*%!.-"
    assert frm.params == {
        "fromparam''~+*_!.-%": '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"',
        "tag": "_token~1'+`*%!-.",
    }
    assert req.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert req.headers.get("Max-Forwards") == "255"
    assert req.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"
    assert parse_via(req.top_via or "").branch == "z9hG4bK-.!%66*_+`'~"


def test_esc01_escaping_is_equivalent_to_plain() -> None:
    req = parse_req("esc01")
    ruri = parse_uri(req.uri)
    assert ruri.user == "sips%3Auser%40example.com"
    assert ruri.user_unescaped == "sips:user@example.com"
    assert ruri.host == "example.net"
    to = parse_name_addr(req.headers.get("To") or "")
    assert uri_equal(to.uri, "sip:user@example.com")
    frm = parse_name_addr(req.headers.get("From") or "")
    assert frm.uri.user_unescaped == "I have spaces"
    contact = parse_name_addr(req.headers.get("Contact") or "")
    assert contact.uri.user_unescaped == "caller"
    assert contact.uri.params == {"lr": None, "name": "value%41"}
    assert req.headers.get("Content-Type") == "application/sdp"  # compact "C:"
    assert req.call_id == "esc01.239409asdfakjkn23onasd0-3234"


def test_escnull_escaped_nulls() -> None:
    req = parse_req("escnull")
    to = parse_name_addr(req.headers.get("To") or "")
    frm = parse_name_addr(req.headers.get("From") or "")
    assert to.uri.user_unescaped == "null-\x00-null"
    assert uri_equal(to.uri, frm.uri)
    contacts = parse_contacts(req.headers.values("Contact")) or []
    assert [c.uri.user_unescaped for c in contacts] == ["\x00", "\x00\x00"]


def test_esc02_escapes_in_method_and_header_name_are_literal() -> None:
    req = parse_req("esc02")
    assert req.method == "RE%47IST%45R"  # not REGISTER
    assert req.cseq == (29344, "RE%47IST%45R")
    to = parse_name_addr(req.headers.get("To") or "")
    assert to.display == "%Z%45"
    contacts = parse_contacts(req.headers.values("Contact")) or []
    assert [c.uri.host for c in contacts] == ["host1.example.com", "host3.example.com"]
    assert req.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert parse_via(req.top_via or "").branch == "z9hG4bK209%fzsnel234"
    # An unknown method: a UAS answers 501 (§8.2.1), not 405.
    with pytest.raises(MethodNotImplemented) as info:
        check_method(req, {"REGISTER", "OPTIONS", "INVITE"})
    assert info.value.status == 501


def test_lwsdisp_display_name_without_space() -> None:
    frm = parse_name_addr(parse_req("lwsdisp").headers.get("From") or "")
    assert (frm.display, str(frm.uri), frm.tag) == ("caller", "sip:caller@example.com", "323")


def test_longreq_long_values() -> None:
    req = parse_req("longreq")
    to = parse_name_addr(req.headers.get("To") or "")
    assert to.display is not None and to.display.startswith("I have a user name of extreme")
    assert to.display.endswith("extreme proportion")
    assert to.uri.port == 6000 and len(to.uri.params) == 3 and to.params == {}
    frm = parse_name_addr(req.headers.get("From") or "")
    assert frm.tag is not None and len(frm.tag) == 155
    assert len(frm.params) == 3
    assert len(req.call_id) == 141 and req.call_id.endswith("reallylongcallid")
    vias = [parse_via(v) for v in req.headers.values("Via")]
    assert len(vias) == 34
    assert [v.host for v in vias[:3]] == [
        "sip33.example.com",
        "sip32.example.com",
        "sip31.example.com",
    ]
    assert vias[-1].received == "192.0.2.5"
    assert vias[-1].branch is not None and len(vias[-1].branch) == 215
    assert len(req.body) == 150


def test_dblreq_only_first_message_counts() -> None:
    req = parse_req("dblreq")
    assert (req.method, req.body) == ("REGISTER", b"")
    assert req.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"


def test_semiuri_semicolon_in_user_part() -> None:
    req = parse_req("semiuri")
    ruri = parse_uri(req.uri)
    assert (ruri.user, ruri.host, ruri.params) == ("user;par=u%40example.net", "example.com", {})
    assert req.headers.values("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_transports_every_via_transport() -> None:
    req = parse_req("transports")
    assert [parse_via(v).transport for v in req.headers.values("Via")] == [
        "UDP",
        "SCTP",
        "TLS",
        "UNKNOWN",
        "TCP",
    ]
    assert req.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_mpart01_binary_multipart_body_is_byte_exact() -> None:
    raw = load("mpart01")
    req = parse_req("mpart01")
    assert len(req.body) == 553
    assert raw.endswith(req.body)
    assert req.body.count(b"--7a9cbec02ceef655") == 3
    with pytest.raises(UnicodeDecodeError):
        req.body.decode("utf-8")
    assert req.headers.get("Content-Type") == "multipart/mixed;boundary=7a9cbec02ceef655"
    assert bytes(req).endswith(req.body)


def test_unreason_utf8_reason_phrase() -> None:
    resp = parse_resp("unreason")
    assert resp.status == 200
    assert resp.reason == (
        "= 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432\u044f\u043d\u043e"
        "\u0441\u0442\u043e \u0434\u0435\u0432\u044f\u0442\u044c - \u043f\u0440\u043e\u0441"
        "\u0442\u043e\u0435"
    )
    assert len(resp.body) == 154


def test_noreason_empty_reason_phrase() -> None:
    resp = parse_resp("noreason")
    assert (resp.status, resp.reason) == (100, "")


# --- §3.2 transaction layer, §3.3 application layer, §3.4 backward compatibility -------------


def test_badbranch_magic_cookie_only_is_accepted() -> None:
    # RFC 4475 §3.2.1: reject with 400 or fall back to RFC 2543 matching. We accept it; the
    # branch is kept verbatim for the transaction layer.
    req = parse_req("badbranch")
    validate_request(req)
    assert parse_via(req.top_via or "").branch == "z9hG4bK"


def test_insuf_missing_mandatory_headers() -> None:
    with pytest.raises(SipError, match="missing mandatory") as info:
        validate_request(parse_req("insuf"))
    assert info.value.status == 400


@pytest.mark.parametrize("name", ["unkscm", "novelsc"])
def test_unknown_request_uri_scheme_is_416(name: str) -> None:
    with pytest.raises(UnsupportedUriScheme) as info:
        validate_request(parse_req(name))
    assert info.value.status == 416


def test_unksm2_unknown_schemes_in_headers() -> None:
    req = parse_req("unksm2")
    validate_request(req)  # syntactically valid: parsers must not fail
    to = parse_name_addr(req.headers.get("To") or "")
    assert (to.uri.scheme, to.uri.opaque, to.uri.is_sip) == ("isbn", "2983792873", False)
    with pytest.raises(ValidationError) as info:
        check_register(req)  # a registrar needs a SIP AOR
    assert info.value.status == 400


def test_bext01_unknown_require_is_420_with_unsupported() -> None:
    req = parse_req("bext01")
    validate_request(req)
    with pytest.raises(BadExtension) as info:
        check_require(req, supported={"100rel", "timer", "replaces"})
    assert info.value.status == 420
    # Proxy-Require is not a UAS matter.
    assert info.value.response_headers == [
        ("Unsupported", "nothingSupportsThis, nothingSupportsThisEither")
    ]


def test_invut_unknown_content_type_is_415_with_accept() -> None:
    req = parse_req("invut")
    validate_request(req)
    with pytest.raises(UnsupportedMediaType) as info:
        check_content(req, accept=["application/sdp"])
    assert info.value.status == 415
    assert info.value.response_headers == [("Accept", "application/sdp")]


def test_regaut01_unknown_auth_scheme_is_401() -> None:
    req = parse_req("regaut01")
    validate_request(req)
    with pytest.raises(Unauthorized) as info:
        check_authorization_scheme(req, ["Digest"])
    assert info.value.status == 401


def test_multi01_repeated_single_valued_headers_is_400() -> None:
    with pytest.raises(SipError, match="more than once") as info:
        validate_request(parse_req("multi01"))
    assert info.value.status == 400


def test_mcl01_conflicting_content_lengths_is_400() -> None:
    with pytest.raises(SipError, match="Content-Length") as info:
        parse_message(load("mcl01"))
    assert info.value.status == 400


def test_bcast_response_with_two_vias_is_discarded_by_uac() -> None:
    resp = parse_resp("bcast")
    validate_response(resp)  # well formed
    with pytest.raises(ResponseDiscarded):
        check_response_vias(resp)


def test_zeromf_endpoint_processes_proxy_answers_483() -> None:
    req = parse_req("zeromf")
    validate_request(req)  # an endpoint handles it as if Max-Forwards were positive
    with pytest.raises(TooManyHops) as info:
        check_max_forwards(req)
    assert info.value.status == 483


def test_cparam01_param_belongs_to_contact_header() -> None:
    req = parse_req("cparam01")
    validate_request(req)
    check_register(req)
    contact = parse_name_addr(req.headers.get("Contact") or "")
    assert contact.params == {"unknownparam": None}
    assert contact.uri.params == {}
    assert str(contact.uri) == "sip:+19725552222@gw1.example.net"


def test_cparam02_param_belongs_to_uri() -> None:
    req = parse_req("cparam02")
    validate_request(req)
    check_register(req)
    contact = parse_name_addr(req.headers.get("Contact") or "")
    assert contact.params == {}
    assert contact.uri.params == {"unknownparam": None}
    assert str(contact.uri) == "sip:+19725552222@gw1.example.net;unknownparam"


def test_regescrt_escaped_route_kept_in_contact_uri() -> None:
    req = parse_req("regescrt")
    validate_request(req)
    check_register(req)
    contact = parse_name_addr(req.headers.get("Contact") or "")
    assert contact.uri.headers == {"Route": "<sip:sip.example.com>"}
    assert str(contact.uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def test_sdp01_accept_without_sdp_is_406() -> None:
    req = parse_req("sdp01")
    validate_request(req)
    check_content(req)  # the offer itself is SDP: fine
    with pytest.raises(NotAcceptable) as info:
        check_accept(req, ["application/sdp"])
    assert info.value.status == 406


def test_inv2543_rfc2543_syntax_is_accepted() -> None:
    req = parse_req("inv2543")
    validate_request(req)  # no Max-Forwards, no branch, no From tag, no Content-Length
    via = parse_via(req.top_via or "")
    assert (via.host, via.branch) == ("iftgw.example.com", None)
    assert parse_name_addr(req.headers.get("From") or "").tag is None
    assert req.body.startswith(b"v=0\r\n") and req.body.endswith(b"RTP/AVP 0\r\n")


def test_check_functions_pass_on_ordinary_requests() -> None:
    req = parse_req("transports")
    check_require(req, ())
    check_content(req)
    check_accept(req, ["application/sdp"])
    check_max_forwards(req)
    check_authorization_scheme(req)
    check_method(req, {"OPTIONS"})


# --- fuzz: parse or raise SipError, nothing else ----------------------------------------------

_ALL = sorted(p.stem for p in CORPUS.glob("*.dat"))


def _full_pipeline(data: bytes) -> None:
    """Everything a UAS does with untrusted bytes; any step may raise SipError, none else."""
    try:
        msg = parse_message(data)
    except SipError:
        return

    def vias() -> None:
        for value in msg.headers.values("Via"):
            str(parse_via(value))

    def addresses() -> None:
        for name in ("To", "From", "Contact", "Route", "Record-Route"):
            for value in msg.headers.values(name):
                str(parse_name_addr(value))

    def request_uri() -> None:
        if isinstance(msg, Request):
            uri_equal(parse_uri(msg.uri), msg.uri)

    steps: list[Callable[[], object]] = [lambda: validate(msg), vias, addresses, request_uri]
    for step in steps:
        with contextlib.suppress(SipError):
            step()
    bytes(msg)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(data: bytes) -> None:
    _full_pipeline(data)


@st.composite
def mutated_torture(draw: st.DrawFn) -> bytes:
    data = bytearray(load(draw(st.sampled_from(_ALL))))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] = draw(st.sampled_from(b' \t\r\n:;,<>"\\%@=/?0\x00\xff'))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        else:
            end = draw(st.integers(pos, min(len(data), pos + 64)))
            data[pos:pos] = data[pos:end]
    return bytes(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_torture())
def test_fuzz_mutated_torture_messages(data: bytes) -> None:
    _full_pipeline(data)


def test_unescape_helper_round_trip() -> None:
    assert unescape("%75se%72") == "user"


# --- application-layer checks beyond the corpus -----------------------------------------------


def _options(extra: bytes = b"", method: bytes = b"OPTIONS", body: bytes = b"") -> Request:
    data = (
        method + b" sip:user@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n"
        b"To: <sip:user@example.com>\r\nFrom: <sip:c@example.net>;tag=1\r\n"
        b"Call-ID: x@y\r\nCSeq: 1 " + method + b"\r\nMax-Forwards: 70\r\n" + extra + b"\r\n" + body
    )
    msg = parse_message(data)
    assert isinstance(msg, Request)
    validate_request(msg)
    return msg


def test_check_method_405_carries_allow() -> None:
    with pytest.raises(ValidationError) as info:
        check_method(_options(method=b"SUBSCRIBE"), {"INVITE", "BYE"})
    assert info.value.status == 405
    assert info.value.response_headers == [("Allow", "BYE, INVITE")]


def test_check_require_ignores_ack_and_matches_case_insensitively() -> None:
    check_require(_options(b"Require: foo\r\n", method=b"CANCEL"), ())
    check_require(_options(b"Require: 100REL\r\n"), {"100rel"})
    with pytest.raises(BadExtension):
        check_require(_options(b"Require: 100rel, timer\r\n"), {"100rel"})


def test_check_content_encoding_and_missing_type() -> None:
    sdp = b"Content-Type: application/sdp\r\n"
    check_content(_options(sdp, body=b"v=0\r\n"))
    with pytest.raises(UnsupportedMediaType) as info:
        check_content(_options(sdp + b"Content-Encoding: gzip\r\n", body=b"v=0\r\n"))
    assert info.value.response_headers == [("Accept-Encoding", "identity")]
    with pytest.raises(UnsupportedMediaType):
        check_content(_options(body=b"v=0\r\n"))


@pytest.mark.parametrize(
    ("accept", "ok"),
    [
        (b"", True),  # no Accept means application/sdp (§20.1)
        (b"Accept: application/*\r\n", True),
        (b"Accept: */*;q=0.1\r\n", True),
        (b"Accept: text/plain, APPLICATION/SDP\r\n", True),
        (b"Accept: text/plain\r\n", False),
        (b"Accept:\r\n", False),  # empty: no body is acceptable
    ],
)
def test_check_accept(accept: bytes, ok: bool) -> None:
    req = _options(accept)
    if ok:
        check_accept(req, ["application/sdp"])
    else:
        with pytest.raises(NotAcceptable):
            check_accept(req, ["application/sdp"])


def test_star_contact_rules() -> None:
    with pytest.raises(SipError, match=r"Contact '\*'"):
        _options(b"Contact: *\r\n")
    register = _options(b"Contact: *\r\nExpires: 0\r\n", method=b"REGISTER")
    check_register(register)
    with pytest.raises(ValidationError):
        check_register(_options(b"Contact: *\r\n", method=b"REGISTER"))


@pytest.mark.parametrize(
    "extra",
    [
        b"Call-ID: second\r\n",
        b"Max-Forwards: 256\r\n",
        b"Expires: -1\r\n",
        b"Content-Type: sdp\r\n",
        b"Warning: 399 host\r\n",
        b"Contact: <sip:a@b>;expires=x\r\n",
        b"Contact: <sip:a@b>, *\r\n",
    ],
)
def test_validate_request_rejects(extra: bytes) -> None:
    with pytest.raises(SipError) as info:
        _options(extra)
    assert info.value.status == 400


def test_validate_request_missing_via_and_bad_call_id() -> None:
    req = _options()
    req.headers.remove("Via")
    with pytest.raises(SipError, match="Via"):
        validate_request(req)
    req = _options()
    req.headers.set("Call-ID", "a b")
    with pytest.raises(SipError, match="Call-ID"):
        validate_request(req)
