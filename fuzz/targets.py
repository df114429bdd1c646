"""The fuzz targets: every parser that sees bytes or text from the network.

A target is a function of one input. It may return, or raise one of its ``allowed`` exceptions
(the project's own error types, which carry the reply to send). Anything else, including an
exception raised while *serializing* something that parsed, is a bug. Where a value parses, the
targets also serialize it and parse the result again: what we send must be what we accept.
"""

from __future__ import annotations

import contextlib
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from ifescalate.media.frames import MediaError
from ifescalate.media.rtcp import ReceiverReport, SenderReport, parse_compound
from ifescalate.media.rtp import RtpExtension, RtpPacket
from ifescalate.sip import digest, headers, sdp, uri
from ifescalate.sip.errors import SipError
from ifescalate.sip.framing import StreamFramer
from ifescalate.sip.message import Request, Response, parse_message
from ifescalate.sip.validate import validate_request, validate_response

from . import corpus


class RoundTripError(AssertionError):
    """A value parsed, but its serialization did not parse back (or parsed to something else)."""


def text(data: bytes) -> str:
    """Header values reach the parsers as UTF-8 decoded text (message.parse_head decodes so)."""
    return data.decode("utf-8", "replace")


# -- SIP messages ------------------------------------------------------------------------------


def _label(msg: Request | Response) -> str:
    return msg.method if isinstance(msg, Request) else str(msg.status)


def run_message(data: bytes) -> str | None:
    """A datagram: parse, serialize, and parse the serialization again."""
    msg = parse_message(data)
    wire = msg.to_bytes()
    try:
        again = parse_message(wire)
    except SipError as exc:
        raise RoundTripError(f"serialized message does not parse: {exc!r}\n{wire!r}") from exc
    if type(again) is not type(msg) or again.body != msg.body:
        raise RoundTripError(f"message changed in a round trip: {wire!r}")
    return _label(msg)


def run_validate(data: bytes) -> str | None:
    """A datagram through the UAS/UAC checks of sip.validate."""
    msg = parse_message(data)
    if isinstance(msg, Request):
        validate_request(msg)
    else:
        validate_response(msg)
    return _label(msg)


FRAMER_MAX = 8192  # small, so the size limits are reached by mutated inputs


def run_framer(data: bytes) -> str | None:
    """The input twice on one stream, cut into chunks chosen from the input itself (replayable)."""
    rng = random.Random(zlib.crc32(data))
    stream = data + data
    framer = StreamFramer(max_size=FRAMER_MAX)
    kinds: list[str] = []
    pos = 0
    while pos < len(stream):
        size = rng.choice((1, 2, 3, 7, 64, 500, 4096, len(stream)))
        chunk = stream[pos : pos + size]
        pos += len(chunk)
        for item in framer.feed(chunk):
            kinds.append(type(item).__name__)
            if isinstance(item, Request | Response):
                item.to_bytes()
        if framer.buffered > FRAMER_MAX + len(chunk):
            raise AssertionError(f"framer holds {framer.buffered} bytes, limit {FRAMER_MAX}")
    framer.feed(b"")
    return ",".join(kinds)


# -- header grammars ---------------------------------------------------------------------------


def _round_trip(kind: str, value: object, parse: Callable[[str], object]) -> None:
    wire = str(value)
    try:
        again = parse(wire)
    except SipError as exc:
        raise RoundTripError(f"{kind} {wire!r} does not parse back: {exc!r}") from exc
    if str(again) != wire:
        raise RoundTripError(f"{kind} {wire!r} parses back as {str(again)!r}")


def _round_trip_params(params: dict[str, str | None]) -> None:
    wire = headers.format_params(params)
    try:
        again = headers.parse_params(wire)
    except SipError as exc:
        raise RoundTripError(f"params {wire!r} do not parse back: {exc!r}") from exc
    if headers.format_params(again) != wire:
        raise RoundTripError(f"params {wire!r} parse back as {again!r}")


def run_uri(data: bytes) -> str | None:
    value = text(data)
    try:
        parsed = uri.parse_uri(value, any_scheme=True)
    except SipError:
        pass
    else:
        _round_trip("URI", parsed, lambda s: uri.parse_uri(s, any_scheme=True))
        uri.uri_equal(parsed, parsed)
    parsed = uri.parse_uri(value)
    _round_trip("URI", parsed, uri.parse_uri)
    _ = parsed.transport, parsed.host_port
    return f"{parsed.scheme}:{sorted(parsed.params)}:{sorted(parsed.headers)}"


def run_headers(data: bytes) -> str | None:
    """One value through every header grammar (each parser is run; the first error is raised)."""
    value = text(data)
    failure: SipError | None = None
    for name, parse in (
        ("Via", headers.parse_via),
        ("name-addr", headers.parse_name_addr),
        ("params", headers.parse_params),
        ("Contact", lambda s: headers.parse_contacts([s])),
    ):
        try:
            parsed = parse(value)
        except SipError as exc:
            failure = failure or exc
            continue
        if isinstance(parsed, headers.Via):
            _round_trip(name, parsed, headers.parse_via)
            _ = parsed.branch, parsed.received, parsed.rport
        elif isinstance(parsed, headers.NameAddr):
            _round_trip(name, parsed, headers.parse_name_addr)
            _ = parsed.tag
        elif isinstance(parsed, dict):
            _round_trip_params(parsed)
    if failure is not None:
        raise failure
    return "all"


# -- digest ------------------------------------------------------------------------------------

DIGEST_NOW = 1_000.0
_SERVER = digest.DigestServer(
    "biloxi.example.com", b"k" * 32, rand=lambda n: b"\x01" * n, allow_rfc2069=True
)
_HA1 = {alg: digest.ha1("bob", "biloxi.example.com", "zanzibar", alg) for alg in ("SHA-256", "MD5")}


def _lookup(username: str, realm: str, algorithm: str) -> str | None:
    return _HA1.get(algorithm) if username == "bob" else None


def digest_seeds() -> list[bytes]:
    """Credentials that verify (so mutations start on the deep path) and challenges."""
    out: list[bytes] = []
    challenges = _SERVER.challenge(DIGEST_NOW)
    for algorithms in (["SHA-256"], ["MD5"]):
        client = digest.DigestClient("bob", "zanzibar", rand=lambda n: b"\x02" * n)
        values = _SERVER.challenge(DIGEST_NOW, algorithms=algorithms)
        out.append(client.answer(values, "INVITE", "sip:bob@biloxi.example.com").encode())
    out.extend(c.encode() for c in challenges)
    out.append(", ".join(challenges).encode())
    return out


def run_digest(data: bytes) -> str | None:
    """The parsers and the client's challenge handling raise SipError only."""
    value = text(data)
    with contextlib.suppress(SipError):
        digest.DigestClient("bob", "zanzibar", rand=lambda n: b"\x03" * n).answer(
            [value], "INVITE", "sip:bob@biloxi.example.com", body=b"x"
        )
    digest.parse_challenges(value)
    scheme, params = digest.parse_auth_header(value)
    return f"{scheme}:{','.join(sorted(params))}"


def run_digest_verify(data: bytes) -> str | None:
    """DigestServer.verify never raises (bad credentials are MALFORMED); the reasons are the
    feedback, so mutations of valid credentials walk every refusal."""
    value = text(data)
    # A fresh nonce-count store per input: replays across inputs would only hide deeper paths.
    server = digest.DigestServer(
        "biloxi.example.com", b"k" * 32, rand=lambda n: b"\x01" * n, allow_rfc2069=True
    )
    reasons = []
    for method in ("INVITE", "REGISTER"):
        result = server.verify(
            method, value, _lookup, DIGEST_NOW + 1, request_uri="sip:bob@biloxi.example.com"
        )
        again = server.verify(method, value, _lookup, DIGEST_NOW + 1, body=b"x")
        reasons.append(f"{result.reason.name}/{again.reason.name}")
    return ",".join(reasons)


# -- SDP ---------------------------------------------------------------------------------------

_OUR_CODECS = (sdp.OPUS, sdp.PCMU, sdp.PCMA, sdp.TELEPHONE_EVENT)


def run_sdp(data: bytes) -> str | None:
    """An offer from the network: parse, read every derived field, answer it, negotiate."""
    offer = sdp.parse_sdp(data)
    wire = offer.to_bytes()
    try:
        again = sdp.parse_sdp(wire)
    except SipError as exc:
        raise RoundTripError(f"serialized SDP does not parse: {exc!r}\n{wire!r}") from exc
    if again.to_bytes() != wire:
        raise RoundTripError(f"SDP changed in a round trip: {wire!r}")
    _ = offer.direction
    for index, media in enumerate(offer.media):
        _ = media.codecs, media.direction, media.ptime, media.rtcp, media.rtcp_mux, media.crypto
        _ = offer.media_direction(index), offer.media_connection(index)
        for crypto in media.crypto:
            _ = crypto.keys
    answer = sdp.build_answer(
        offer, address="198.51.100.7", port=40000, codecs=_OUR_CODECS, session_id=7
    )
    agreed = sdp.negotiate(offer, answer, role="answerer")
    return f"{len(offer.media)}:{agreed.direction}:{len(agreed.codecs)}"


# -- media -------------------------------------------------------------------------------------

RTP_SEEDS: tuple[bytes, ...] = (
    bytes(RtpPacket(0, 1, 160, 0xDEADBEEF, bytes(160))),
    bytes(
        RtpPacket(
            101,
            65535,
            0x12345678,
            0xCAFEBABE,
            b"\x01\x02\x03\x04",
            marker=True,
            csrcs=(1, 2),
            extension=RtpExtension(0xBEDE, b"\x10\xff\x00\x00"),
        )
    ),
    bytes(RtpPacket(8, 2, 320, 10, b"\xd5" * 8, padding=4)),
)

RTCP_SEEDS: tuple[bytes, ...] = (
    bytes(SenderReport(0xDEADBEEF, 0xE6B7A3C010000000, 2560, 20, 3200)),
    bytes(ReceiverReport(0xCAFEBABE)),
)


def run_rtp(data: bytes) -> str | None:
    packet = RtpPacket.parse(data)
    # Padding octets other than the count carry nothing (RFC 3550 §5.1) and are written as
    # zeros, so the packet, not the bytes, must survive the round trip.
    wire = bytes(packet)
    if RtpPacket.parse(wire) != packet or len(wire) != len(data):
        raise RoundTripError(f"RTP packet {data.hex()} serializes as {wire.hex()}")
    return f"{len(packet.csrcs)}:{packet.extension is not None}:{packet.padding > 0}"


def run_rtcp(data: bytes) -> str | None:
    kinds = []
    for packet in parse_compound(data, require_report_first=False):
        bytes(packet)
        kinds.append(type(packet).__name__)
    parse_compound(data)
    return ",".join(kinds)


# -- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    run: Callable[[bytes], str | None]  # returns a label of the path taken, for feedback
    allowed: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]]


_VALUE_HEADERS = frozenset(
    (b"via", b"v", b"from", b"f", b"to", b"t", b"contact", b"m", b"route", b"record-route")
)
_AUTH_HEADERS = frozenset(
    (b"authorization", b"proxy-authorization", b"www-authenticate", b"proxy-authenticate")
)


def _uri_seeds() -> list[bytes]:
    messages = corpus.message_seeds()
    values = corpus.header_values(messages, _VALUE_HEADERS)
    inner = [v[v.find(b"<") + 1 : v.find(b">")] for v in values if b"<" in v and b">" in v]
    return [*corpus.request_uris(messages), *inner, b"tel:+1-201-555-0123;phone-context=x"]


def _header_seeds() -> list[bytes]:
    values = corpus.header_values(corpus.message_seeds(), _VALUE_HEADERS)
    params = [v.partition(b";")[2] for v in values if b";" in v]
    return [*values, *params]


def _digest_seeds() -> list[bytes]:
    return [*corpus.header_values(corpus.message_seeds(), _AUTH_HEADERS), *digest_seeds()]


def _sdp_seeds() -> list[bytes]:
    return [*corpus.bodies(corpus.message_seeds()), *corpus.VALID_SDP]


TARGETS: tuple[Target, ...] = (
    Target("message", run_message, (SipError,), corpus.message_seeds),
    Target("framer", run_framer, (SipError,), corpus.message_seeds),
    Target("validate", run_validate, (SipError,), corpus.message_seeds),
    Target("uri", run_uri, (SipError,), _uri_seeds),
    Target("headers", run_headers, (SipError,), _header_seeds),
    Target("digest", run_digest, (SipError,), _digest_seeds),
    Target("verify", run_digest_verify, (), _digest_seeds),
    Target("sdp", run_sdp, (SipError,), _sdp_seeds),
    Target("rtp", run_rtp, (MediaError,), lambda: list(RTP_SEEDS)),
    Target("rtcp", run_rtcp, (MediaError,), lambda: list(RTCP_SEEDS)),
)

BY_NAME = {t.name: t for t in TARGETS}
