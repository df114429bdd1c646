"""SDP session descriptions (RFC 8866): data model, parser and serializer, sans-IO.

The data model keeps what is on the wire: every line type of RFC 8866 §5 has a field, and attributes
stay as raw ``name[:value]`` pairs in their original order, so a description we did not build
serializes back byte for byte (when its lines were in the RFC 8866 order). Typed views of the
attributes that matter to a voice call (rtpmap, fmtp, ptime, direction, rtcp, rtcp-mux, crypto) are
computed on demand, which is why a malformed ``a=rtpmap`` on a stream we never look at (the video line
of RFC 4475 ``sdp01``) does not stop us from answering the audio line.

The offer/answer model (RFC 3264: ``build_offer``, ``build_answer``, ``negotiate``, ...) lives in
``offer_answer``; its public names stay importable from here (see the end of this module).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from .errors import SipParseError

__all__ = [
    "G722",
    "G729",
    "OPUS",
    "PCMA",
    "PCMU",
    "STATIC_PAYLOAD_TYPES",
    "TELEPHONE_EVENT",
    "Attribute",
    "Bandwidth",
    "Codec",
    "Connection",
    "CryptoAttribute",
    "CryptoKey",
    "Direction",
    "MediaDescription",
    "NegotiatedMedia",
    "NotAcceptableHere",
    "Origin",
    "RtcpAttribute",
    "SessionDescription",
    "Timing",
    "build_answer",
    "build_offer",
    "negotiate",
    "next_version",
    "parse_sdp",
    "with_direction",
]

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
DIRECTIONS: tuple[Direction, ...] = ("sendrecv", "sendonly", "recvonly", "inactive")

#: RFC 3551 §4.5: 20 ms is the default packetization interval for the G.711 family.
DEFAULT_PTIME = 20


# --------------------------------------------------------------------------------------------------
# Value classes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attribute:
    """One ``a=`` line: ``a=name`` (a flag, value None) or ``a=name:value`` (RFC 8866 §5.13)."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class Origin:
    """The ``o=`` line (RFC 8866 §5.2); (username, session_id, address) names the session."""

    username: str
    session_id: int
    session_version: int
    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """A ``c=`` line (RFC 8866 §5.7). ``address`` keeps any multicast ``/ttl/count`` suffix."""

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"

    @property
    def host(self) -> str:
        """The address without the multicast TTL and count suffixes."""
        return self.address.split("/", 1)[0]

    @property
    def is_null(self) -> bool:
        """RFC 3264 §8.4: c=0.0.0.0 (RFC 2543 hold) means send neither RTP nor RTCP to the peer."""
        return self.host == "0.0.0.0"

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """A ``b=<bwtype>:<bandwidth>`` line (RFC 8866 §5.8), bandwidth in kilobits per second for AS/CT."""

    bwtype: str
    bandwidth: int

    def __str__(self) -> str:
        return f"{self.bwtype}:{self.bandwidth}"


@dataclass(frozen=True, slots=True)
class Timing:
    """A ``t=`` line with the ``r=`` lines that follow it (RFC 8866 §5.9, §5.10); r= kept raw."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Codec:
    """An RTP payload format: what ``a=rtpmap`` and ``a=fmtp`` say about one payload type."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None

    def matches(self, other: Codec) -> bool:
        """Same encoding (names compare case-insensitively, RFC 4855 §3), rate and channels."""
        return (
            self.name.lower() == other.name.lower()
            and self.clock_rate == other.clock_rate
            and self.channels == other.channels
        )

    @property
    def is_telephone_event(self) -> bool:
        return self.name.lower() == "telephone-event"

    @property
    def is_audio_codec(self) -> bool:
        """A codec that carries the call's audio: not DTMF events (RFC 4733), not comfort noise."""
        return self.name.lower() not in ("telephone-event", "cn")

    @property
    def rtpmap(self) -> str:
        """The value of this codec's ``a=rtpmap`` (RFC 8866 §6.6); channels only when not 1."""
        suffix = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.payload_type} {self.name}/{self.clock_rate}{suffix}"


PCMU = Codec(0, "PCMU", 8000)
PCMA = Codec(8, "PCMA", 8000)
# RFC 3551 §4.5.2: G.722 samples at 16 kHz but its RTP clock rate is 8000 for historical reasons.
G722 = Codec(9, "G722", 8000)
G729 = Codec(18, "G729", 8000)
TELEPHONE_EVENT = Codec(101, "telephone-event", 8000, fmtp="0-16")
# RFC 7587 §7: opus is always announced as opus/48000/2, whatever is actually sent.
OPUS = Codec(111, "opus", 48000, 2)

#: RFC 3551 Tables 4 and 5: payload types that need no rtpmap (filled in after the parser below).
STATIC_PAYLOAD_TYPES: dict[int, Codec] = {}
_STATIC_RTPMAPS = (
    "0 PCMU/8000,3 GSM/8000,4 G723/8000,5 DVI4/8000,6 DVI4/16000,7 LPC/8000,8 PCMA/8000,"
    "9 G722/8000,10 L16/44100/2,11 L16/44100,12 QCELP/8000,13 CN/8000,14 MPA/90000,15 G728/8000,"
    "16 DVI4/11025,17 DVI4/22050,18 G729/8000,25 CelB/90000,26 JPEG/90000,28 nv/90000,"
    "31 H261/90000,32 MPV/90000,33 MP2T/90000,34 H263/90000"
)


@dataclass(frozen=True, slots=True)
class RtcpAttribute:
    """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605 §2.1)."""

    port: int
    nettype: str | None = None
    addrtype: str | None = None
    address: str | None = None

    @classmethod
    def parse(cls, value: str) -> RtcpAttribute:
        parts = value.split()
        if len(parts) not in (1, 4) or not _is_port(parts[0]):
            raise SipParseError(f"bad rtcp attribute 'a=rtcp:{value}' (RFC 3605 §2.1)")
        if len(parts) == 1:
            return cls(int(parts[0]))
        return cls(int(parts[0]), parts[1], parts[2], parts[3])

    def __str__(self) -> str:
        if self.address is None:
            return str(self.port)
        return f"{self.port} {self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class CryptoKey:
    """One ``inline:`` key of a crypto attribute (RFC 4568 §9.2): base64 key||salt, lifetime, MKI."""

    key_salt: str
    lifetime: str | None = None
    mki: str | None = None


_CRYPTO_RE = re.compile(r"([0-9]{1,9}) +(\S+) +(\S+)(?: +(.*))?\Z")


@dataclass(frozen=True, slots=True)
class CryptoAttribute:
    """``a=crypto:<tag> <crypto-suite> <key-params> [<session-params>]`` (RFC 4568 §9.1)."""

    tag: int
    suite: str
    key_params: tuple[str, ...]
    session_params: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str) -> CryptoAttribute:
        m = _CRYPTO_RE.match(value.strip())
        if m is None or any(":" not in kp for kp in m.group(3).split(";")):
            raise SipParseError(f"bad crypto attribute 'a=crypto:{value}' (RFC 4568 §9.1)")
        session = tuple(m.group(4).split()) if m.group(4) else ()
        return cls(int(m.group(1)), m.group(2), tuple(m.group(3).split(";")), session)

    @property
    def keys(self) -> tuple[CryptoKey, ...]:
        """The ``inline:`` keys; ``key||salt|lifetime|MKI:length`` with both tails optional."""
        keys = []
        for param in self.key_params:
            method, _, info = param.partition(":")
            if method.lower() != "inline":
                continue
            key_salt, *rest = info.split("|")
            # RFC 4568 §9.2: the MKI is the field with a colon, the lifetime the one without.
            mki = next((r for r in rest if ":" in r), None)
            lifetime = next((r for r in rest if ":" not in r), None)
            keys.append(CryptoKey(key_salt, lifetime, mki))
        return tuple(keys)

    def __str__(self) -> str:
        text = f"{self.tag} {self.suite} {';'.join(self.key_params)}"
        return f"{text} {' '.join(self.session_params)}" if self.session_params else text


# --------------------------------------------------------------------------------------------------
# Media and session descriptions
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """An ``m=`` line and the i/c/b/k/a lines that follow it (RFC 8866 §5.14)."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    title: str | None = None
    connections: tuple[Connection, ...] = ()
    bandwidths: tuple[Bandwidth, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()

    def get(self, name: str) -> str | None:
        """The value of the first ``a=name`` ("" for a flag attribute), or None when absent."""
        for attr in self.attributes:
            if attr.name == name:
                return "" if attr.value is None else attr.value
        return None

    def get_all(self, name: str) -> list[str]:
        return [a.value or "" for a in self.attributes if a.name == name]

    @property
    def is_rtp(self) -> bool:
        return "RTP/" in self.proto.upper()

    @property
    def codecs(self) -> tuple[Codec, ...]:
        """Codecs in ``m=`` order; static payload types need no rtpmap (RFC 3551 §6).

        A dynamic payload type without an rtpmap cannot be matched and is left out.
        Raises SipParseError for a malformed rtpmap or payload type on this line.
        """
        if not self.is_rtp:
            return ()
        rtpmaps = dict(_parse_rtpmap(v) for v in self.get_all("rtpmap"))
        fmtps = dict(_parse_fmtp(v) for v in self.get_all("fmtp"))
        codecs = []
        for fmt in self.formats:
            pt = _payload_type(fmt)
            base = rtpmaps.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)
            if base is not None:
                codecs.append(replace(base, payload_type=pt, fmtp=fmtps.get(pt)))
        return tuple(codecs)

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute (RFC 8866 §6.7), None when there is none."""
        return _direction_of(self.attributes)

    @property
    def ptime(self) -> int | None:
        value = self.get("ptime")
        if value is None:
            return None
        try:
            # RFC 8866 §6.4 allows a decimal fraction; we packetize on whole milliseconds.
            return max(1, round(float(value)))
        except (ValueError, OverflowError):  # "soon", "nan", "inf"
            raise SipParseError(f"bad ptime attribute 'a=ptime:{value}'") from None

    @property
    def rtcp(self) -> RtcpAttribute | None:
        value = self.get("rtcp")
        return None if value is None else RtcpAttribute.parse(value)

    @property
    def rtcp_mux(self) -> bool:
        return self.get("rtcp-mux") is not None

    @property
    def crypto(self) -> tuple[CryptoAttribute, ...]:
        return tuple(CryptoAttribute.parse(v) for v in self.get_all("crypto"))

    def lines(self) -> Iterator[str]:
        """The lines of this media description in the RFC 8866 §5 order, without line ends."""
        count = f"/{self.port_count}" if self.port_count is not None else ""
        yield f"m={self.media} {self.port}{count} {self.proto} {' '.join(self.formats)}"
        if self.title is not None:
            yield f"i={self.title}"
        yield from (f"c={c}" for c in self.connections)
        yield from (f"b={b}" for b in self.bandwidths)
        if self.key is not None:
            yield f"k={self.key}"
        yield from (f"a={a}" for a in self.attributes)


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole session description (RFC 8866 §5). Build new ones with ``dataclasses.replace``."""

    origin: Origin
    name: str = "-"
    media: tuple[MediaDescription, ...] = ()
    connection: Connection | None = None
    timings: tuple[Timing, ...] = (Timing(),)
    version: int = 0
    info: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    bandwidths: tuple[Bandwidth, ...] = ()
    zone: str | None = None
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, the default for every stream (RFC 8866 §6.7)."""
        return _direction_of(self.attributes)

    def media_direction(self, index: int) -> Direction:
        """Effective direction of stream ``index``: media level, else session level, else sendrecv."""
        return self.media[index].direction or self.direction or "sendrecv"

    def media_connection(self, index: int) -> Connection | None:
        """RFC 8866 §5.7: a media-level c= overrides the session-level one."""
        conns = self.media[index].connections
        return conns[0] if conns else self.connection

    def lines(self) -> Iterator[str]:
        """All lines in the RFC 8866 §5 order, without line ends."""
        yield f"v={self.version}"
        yield f"o={self.origin}"
        yield f"s={self.name}"
        yield from _optional("i", self.info)
        yield from _optional("u", self.uri)
        yield from (f"e={e}" for e in self.emails)
        yield from (f"p={p}" for p in self.phones)
        if self.connection is not None:
            yield f"c={self.connection}"
        yield from (f"b={b}" for b in self.bandwidths)
        for timing in self.timings:
            yield f"t={timing.start} {timing.stop}"
            yield from (f"r={r}" for r in timing.repeats)
        yield from _optional("z", self.zone)
        yield from _optional("k", self.key)
        yield from (f"a={a}" for a in self.attributes)
        for media in self.media:
            yield from media.lines()

    def to_bytes(self) -> bytes:
        """Serialize with CRLF after every line, the last included (RFC 8866 §5)."""
        return "".join(f"{line}\r\n" for line in self.lines()).encode("utf-8", "surrogateescape")

    def __bytes__(self) -> bytes:
        return self.to_bytes()


def _optional(kind: str, value: str | None) -> Iterator[str]:
    if value is not None:
        yield f"{kind}={value}"


def _direction_of(attributes: Sequence[Attribute]) -> Direction | None:
    for attr in attributes:
        for direction in DIRECTIONS:
            if attr.name == direction:
                return direction
    return None


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------

_LINE_RE = re.compile(r"([a-z])=(.*)\Z")
# RFC 8866 §9 att-field = token (RFC 3261 token characters).
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+\Z")
_RTPMAP_RE = re.compile(r"([0-9]{1,3}) +([^/\s]+)/([0-9]{1,40})(?:/([0-9]{1,40}))?\s*\Z")
_SESSION_KINDS = "vosiuepcbtrzka"
_SESSION_ONCE = "vosiuczk"
_MEDIA_KINDS = "micbka"
_MEDIA_ONCE = "mik"


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    kind: str
    value: str

    def error(self, why: str) -> SipParseError:
        return SipParseError(f"SDP line {self.number} '{self.kind}={self.value}': {why}")


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse a session description (RFC 8866 §5); raises SipParseError naming the bad line.

    Lenient where it costs nothing: bare LF line ends, trailing whitespace and trailing empty
    lines. Strict where it matters: unknown line types (§5: the description must be ignored),
    ``type=value`` syntax, missing v/o/s/t, numbers, and repeated single-occurrence lines.
    """
    lines = _split_lines(data)
    if not lines or lines[0].kind != "v":
        raise SipParseError("SDP must start with a v= line (RFC 8866 §5.1)")
    first_m = next((i for i, line in enumerate(lines) if line.kind == "m"), len(lines))
    session = _parse_session(lines[:first_m])
    blocks: list[list[_Line]] = []
    for line in lines[first_m:]:
        if line.kind == "m":
            blocks.append([])
        blocks[-1].append(line)
    return replace(session, media=tuple(_parse_media(block) for block in blocks))


def _split_lines(data: bytes | str) -> list[_Line]:
    # surrogateescape: non-UTF-8 text (a=charset, §6.10) survives a round trip byte for byte.
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    raw = [line.rstrip(" \t\r") for line in text.split("\n")]
    while raw and not raw[-1]:
        raw.pop()
    lines = []
    for number, item in enumerate(raw, start=1):
        m = _LINE_RE.match(item)
        if m is None or "\x00" in item or "\r" in item:
            raise SipParseError(f"SDP line {number} {item!r}: not a <type>=<value> line")
        lines.append(_Line(number, m.group(1), m.group(2)))
    return lines


def _check_kinds(lines: Sequence[_Line], allowed: str, once: str, where: str) -> None:
    seen: set[str] = set()
    for line in lines:
        if line.kind not in allowed:
            raise line.error(f"'{line.kind}=' is not allowed at {where} level (RFC 8866 §5)")
        if line.kind in once and line.kind in seen:
            raise line.error(f"more than one '{line.kind}=' line at {where} level")
        seen.add(line.kind)


def _parse_session(lines: Sequence[_Line]) -> SessionDescription:
    _check_kinds(lines, _SESSION_KINDS, _SESSION_ONCE, "session")
    first = {line.kind: line for line in reversed(lines)}
    if first["v"].value != "0":
        raise first["v"].error("only SDP version 0 exists (RFC 8866 §5.1)")
    for kind in "os":
        if kind not in first:
            raise SipParseError(f"SDP has no {kind}= line (RFC 8866 §5)")
    return SessionDescription(
        origin=_parse_origin(first["o"]),
        name=first["s"].value,
        connection=_parse_connection(first["c"]) if "c" in first else None,
        timings=_parse_timings(lines),
        info=_value(first, "i"),
        uri=_value(first, "u"),
        emails=tuple(line.value for line in lines if line.kind == "e"),
        phones=tuple(line.value for line in lines if line.kind == "p"),
        bandwidths=tuple(_parse_bandwidth(line) for line in lines if line.kind == "b"),
        zone=_value(first, "z"),
        key=_value(first, "k"),
        attributes=tuple(_parse_attribute(line) for line in lines if line.kind == "a"),
    )


def _value(first: dict[str, _Line], kind: str) -> str | None:
    line = first.get(kind)
    return None if line is None else line.value


def _parse_media(lines: Sequence[_Line]) -> MediaDescription:
    _check_kinds(lines, _MEDIA_KINDS, _MEDIA_ONCE, "media")
    m_line = lines[0]
    parts = m_line.value.split()
    if len(parts) < 4:
        raise m_line.error("expected <media> <port> <proto> <fmt> ... (RFC 8866 §5.14)")
    port_text, _, count_text = parts[1].partition("/")
    if not _is_port(port_text) or (count_text and not _is_digits(count_text)):
        raise m_line.error("bad port")
    first = {line.kind: line for line in reversed(lines)}
    return MediaDescription(
        media=parts[0],
        port=int(port_text),
        proto=parts[2],
        formats=tuple(parts[3:]),
        port_count=int(count_text) if count_text else None,
        title=_value(first, "i"),
        connections=tuple(_parse_connection(line) for line in lines if line.kind == "c"),
        bandwidths=tuple(_parse_bandwidth(line) for line in lines if line.kind == "b"),
        key=_value(first, "k"),
        attributes=tuple(_parse_attribute(line) for line in lines if line.kind == "a"),
    )


def _parse_origin(line: _Line) -> Origin:
    parts = line.value.split()
    if len(parts) != 6 or not (_is_digits(parts[1]) and _is_digits(parts[2])):
        raise line.error(
            "expected <username> <sess-id> <sess-version> <nettype> <addrtype> "
            "<address> with numeric id and version (RFC 8866 §5.2)"
        )
    return Origin(parts[0], int(parts[1]), int(parts[2]), parts[3], parts[4], parts[5])


def _parse_connection(line: _Line) -> Connection:
    parts = line.value.split()
    if len(parts) != 3:
        raise line.error("expected <nettype> <addrtype> <connection-address> (RFC 8866 §5.7)")
    return Connection(parts[2], parts[1], parts[0])


def _parse_bandwidth(line: _Line) -> Bandwidth:
    bwtype, sep, value = line.value.partition(":")
    if not sep or not _TOKEN_RE.match(bwtype) or not _is_digits(value):
        raise line.error("expected <bwtype>:<bandwidth> (RFC 8866 §5.8)")
    return Bandwidth(bwtype, int(value))


def _parse_timings(lines: Sequence[_Line]) -> tuple[Timing, ...]:
    timings: list[Timing] = []
    for line in lines:
        if line.kind == "t":
            parts = line.value.split()
            if len(parts) != 2 or not all(_is_digits(p) for p in parts):
                raise line.error("expected <start-time> <stop-time> (RFC 8866 §5.9)")
            timings.append(Timing(int(parts[0]), int(parts[1])))
        elif line.kind == "r":
            if not timings:
                raise line.error("r= must follow a t= line (RFC 8866 §5.10)")
            last = timings[-1]
            timings[-1] = replace(last, repeats=(*last.repeats, line.value))
    if not timings:
        raise SipParseError("SDP has no t= line (RFC 8866 §5.9)")
    return tuple(timings)


def _parse_attribute(line: _Line) -> Attribute:
    name, sep, value = line.value.partition(":")
    if not _TOKEN_RE.match(name):
        raise line.error("bad attribute name (RFC 8866 §5.13)")
    return Attribute(name, value if sep else None)


def _parse_rtpmap(value: str) -> tuple[int, Codec]:
    """``<payload type> <encoding name>/<clock rate>[/<encoding parameters>]`` (RFC 8866 §6.6)."""
    m = _RTPMAP_RE.match(value)
    if m is None or int(m.group(1)) > 127:
        raise SipParseError(f"bad rtpmap attribute 'a=rtpmap:{value}' (RFC 8866 §6.6)")
    pt = int(m.group(1))
    channels = int(m.group(4)) if m.group(4) else 1
    return pt, Codec(pt, m.group(2), int(m.group(3)), channels)


STATIC_PAYLOAD_TYPES.update(_parse_rtpmap(v) for v in _STATIC_RTPMAPS.split(","))


def _parse_fmtp(value: str) -> tuple[int, str]:
    fmt, _, params = value.partition(" ")
    return _payload_type(fmt, f"a=fmtp:{value}"), params.strip()


def _payload_type(text: str, where: str | None = None) -> int:
    if not _is_digits(text) or int(text) > 127:
        raise SipParseError(
            f"bad RTP payload type {text!r} in {where or 'm= line'} (RFC 3550 §5.1)"
        )
    return int(text)


# int() refuses strings of over 4300 digits with ValueError (CPython's int_max_str_digits). No SDP
# number needs more than 20 digits (64 bits, the NTP-style sess-id of RFC 8866 §5.2), so a longer
# run of digits is malformed (fuzz finding: a 10,000-digit sess-id).
_MAX_DIGITS = 40


def _is_digits(text: str) -> bool:
    """At most _MAX_DIGITS ASCII digits (str.isdigit() also accepts superscripts and non-Latin
    digits)."""
    return len(text) <= _MAX_DIGITS and text.isascii() and text.isdigit()


def _is_port(text: str) -> bool:
    return _is_digits(text) and int(text) <= 65535


# --------------------------------------------------------------------------------------------------
# Offer/answer names, re-exported from offer_answer
# --------------------------------------------------------------------------------------------------
# offer_answer imports the data model above, so an eager import here would be circular: whichever
# module is imported first would meet the other half-initialized. Resolving on first access
# (PEP 562) works in both orders; mypy reads the TYPE_CHECKING import.

if TYPE_CHECKING:
    from .offer_answer import (
        NegotiatedMedia,
        NotAcceptableHere,
        build_answer,
        build_offer,
        negotiate,
        next_version,
        with_direction,
    )

_OFFER_ANSWER_NAMES = frozenset(
    {
        "NegotiatedMedia",
        "NotAcceptableHere",
        "build_answer",
        "build_offer",
        "negotiate",
        "next_version",
        "with_direction",
    }
)


def __getattr__(name: str) -> object:
    if name not in _OFFER_ANSWER_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import offer_answer

    value: object = getattr(offer_answer, name)
    globals()[name] = value  # later lookups find it directly, without this hook
    return value
