"""The hot-path caches and fast paths give exactly the answers of the slow paths they skip.

Each fast path (validity caches keyed without the per-call tag/branch, the CSeq and tag caches, the
CRLF split, the Via-stamp shortcut, cycle-free server entries) is checked against a direct parse.
"""

from __future__ import annotations

import asyncio
import gc

import pytest

from ifescalate.net import endpoint as ep_mod
from ifescalate.net.endpoint import SipEndpoint
from ifescalate.net.transport import Source
from ifescalate.sip import validate
from ifescalate.sip.errors import SipError
from ifescalate.sip.headers import parse_name_addr, parse_via
from ifescalate.sip.message import Request, parse_cseq, parse_message
from ifescalate.sip.request_builder import name_addr_params, name_addr_tag
from ifescalate.sip.txtable import _header_tag, header_tag

NAME_ADDRS = [
    "sipp <sip:sipp@127.0.0.1:5060>;tag=1234SIPpTag001",
    "<sip:a@b>;tag=x",
    "sip:a@b;tag=x",
    "sip:a@b;lr;tag=x",
    "<sip:a>;;tag=x",
    ";tag=x",
    "<sip:a;tag=x>",
    '"x;tag=y" <sip:a>;tag=z',
    '<sip:a>;p=";tag=x"',
    "<sip:a> ;tag=x",
    "<sip:a>;tag=",
    "<sip:a>;tag=a b",
    "<sip:a>junk;tag=x",
    "<sip:a b>;tag=x",
    "sip:a@b?x=y;tag=t",
]

VIAS = [
    "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1-2-3",
    "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1;rport",
    "SIP/2.0/UDP h;rport;branch=x",
    "SIP/2.0/UDP h;;branch=x",
    "SIP/2.0/UDP h;branch=x;",
    "SIP/2.0/UDP h;branch=",
    "SIP/2.0/UDP h ;branch=x",
    "SIP/2.0/UDP h;branch=x;branch=y",
    "SIP/3.0/UDP h;branch=x",
    "SIP/2.0/UDP h:99999;branch=x",
    'SIP/2.0/UDP h;p=";branch=x";branch=y',
    "SIP/2.0/UDP ;branch=x",
    "SIP/2.0/UDP h;branch=x;rport=",
]


def _verdict(fn: object, value: str) -> str:
    try:
        fn(value)  # type: ignore[operator]
    except SipError as exc:
        return f"{type(exc).__name__}:{exc}"
    return "ok"


@pytest.fixture(autouse=True)
def _cold_caches() -> None:
    validate._valid_name_addrs.clear()
    validate._valid_vias.clear()


@pytest.mark.parametrize("value", NAME_ADDRS)
def test_name_addr_check_matches_parse(value: str) -> None:
    expected = _verdict(parse_name_addr, value)
    assert _verdict(validate._check_name_addr, value) == expected  # cold
    assert _verdict(validate._check_name_addr, value) == expected  # warm
    # A sibling that differs only by its tag is judged like a direct parse too.
    other = value.replace("tag=x", "tag=other")
    assert _verdict(validate._check_name_addr, other) == _verdict(parse_name_addr, other)


@pytest.mark.parametrize("value", VIAS)
def test_via_check_matches_parse(value: str) -> None:
    expected = _verdict(parse_via, value)
    assert _verdict(validate._check_via, value) == expected
    assert _verdict(validate._check_via, value) == expected
    other = value.replace("branch=x", "branch=zz9")
    assert _verdict(validate._check_via, other) == _verdict(parse_via, other)


@pytest.mark.parametrize("value", ["1 INVITE", "2 BYE", "x INVITE", "1  INVITE", "2147483648 A"])
def test_cseq_cache_matches_parse(value: str) -> None:
    first = _verdict(parse_cseq, value)
    assert _verdict(parse_cseq, value) == first
    if first == "ok":
        assert parse_cseq(value) == (int(value.split()[0]), value.split()[1])


@pytest.mark.parametrize("value", NAME_ADDRS)
def test_tag_caches_match(value: str) -> None:
    try:
        direct = name_addr_params(value).get("tag") or None
    except SipError:
        direct = "raises"
    for _ in range(2):
        try:
            got = name_addr_tag(value)
        except SipError:
            got = "raises"
        assert got == direct
        assert header_tag(value) == _header_tag(value)


HEAD = (
    "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\n"
    "From: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nSubject: a\r\r\nContent-Length: 0"
)


def test_crlf_and_lf_heads_parse_alike() -> None:
    crlf = parse_message((HEAD + "\r\n\r\n").encode())
    mixed = parse_message(
        (HEAD.replace("INVITE\r\nSubject", "INVITE\nSubject") + "\r\n\r\n").encode()
    )
    assert crlf.headers.items() == mixed.headers.items()
    assert crlf.headers.get("Subject") == "a\r"  # one CR of "\r\r\n" belongs to the value
    plain = HEAD.replace("\r\r\n", "\r\n")
    lf = parse_message((plain.replace("\r\n", "\n") + "\n\n").encode())
    assert lf.headers.items() == parse_message((plain + "\r\n\r\n").encode()).headers.items()


@pytest.mark.parametrize(
    ("via", "host"),
    [
        ("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1", "127.0.0.1"),
        ("SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1", "127.0.0.1"),
        ("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1;rport", "127.0.0.1"),
        ("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1;RPORT", "127.0.0.1"),
        ("SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1", "127.0.0.1"),
        ("SIP/2.0/UDP host.example:5060;branch=z9hG4bK1", "host.example"),
        ("SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1", "::1"),
        ("SIP/2.0/UDP ::1:5060;branch=z9hG4bK1", "::1"),
        ("SIP/2.0/UDP 127.0.0.1 : 5060;branch=z9hG4bK1", "127.0.0.1"),
    ],
)
def test_stamp_shortcut_only_when_stamping_changes_nothing(via: str, host: str) -> None:
    def stamped(with_shortcut: bool) -> str | None:
        req = Request(method="OPTIONS", uri="sip:a@b")
        req.headers.add("Via", via)
        saved = ep_mod._stamp_not_needed
        if not with_shortcut:
            ep_mod._stamp_not_needed = lambda top, source_host: False
        try:
            ep_mod._stamp_via(req, Source("UDP", host, 5999))
        finally:
            ep_mod._stamp_not_needed = saved
        return req.headers.get("Via")

    assert stamped(True) == stamped(False)


class _NullTU:
    def on_request(self, request: Request, tx: object, source: Source) -> None:
        return None


def test_finished_server_transaction_is_freed_without_the_cyclic_gc() -> None:
    data = (
        b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKq1\r\n"
        b"To: <sip:a@127.0.0.1>\r\nFrom: <sip:b@127.0.0.1>;tag=1\r\nCall-ID: c1\r\n"
        b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )

    async def body() -> int:
        endpoint = SipEndpoint(_NullTU())  # type: ignore[arg-type]
        req = parse_message(data)
        assert isinstance(req, Request)
        entry = endpoint._new_server_tx(req, Source("TCP", "127.0.0.1", 5060), 0.0)
        from ifescalate.sip.build import make_response

        gc.collect()
        gc.disable()
        try:
            # Over TCP Timer J is zero: the 200 terminates the transaction at once.
            endpoint.respond(entry.tx, make_response(req, 200, to_tag="t"))
            del entry, req
            return gc.collect()
        finally:
            gc.enable()
            endpoint.timer_heap.close()

    assert asyncio.run(body()) == 0


AUTH_VALUES = [
    'Digest username="bench", realm="r", nonce="abc+/=", uri="sip:b@127.0.0.1:5070", '
    'response="0123", algorithm=MD5, cnonce="x", opaque="o", qop=auth, nc=00000001',
    "digest a=b",
    'Digest a = "b" ,c=d',
    "Digest a=b,,c=d",
    "Digest a=b,",
    'Digest a="b\\"c"',
    "Digest a=b, a=c",
    "Basic abc",
    "Digest",
    "Digest a=b c",
    "Foo a=b, Bar c=d",
    "  Digest  a=b  ",
    'Digest a="x\ty"',
    'Digest a=""',
    'Digest A=b, b="", C="q,w"',
    "Digest a=b,c",
    "Digest,a=b",
    'Digest a="x\x01"',
]


@pytest.mark.parametrize("value", AUTH_VALUES)
def test_auth_header_fast_path_matches_scanner(value: str) -> None:
    from ifescalate.sip import digest

    def scanner(text: str) -> object:
        try:
            items = digest.parse_challenges(text)
        except SipError:
            return "raises"
        return items[0] if len(items) == 1 else "raises"

    fast = digest._parse_auth_fast(value)
    if fast is not None:
        assert fast == scanner(value)
    try:
        got: object = digest.parse_auth_header(value)
    except SipError:
        got = "raises"
    assert got == scanner(value)
