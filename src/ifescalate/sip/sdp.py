"""SDP session descriptions (RFC 8866) and the offer/answer model for audio (RFC 3264), sans-IO.

The data model keeps what is on the wire: every line type of RFC 8866 §5 has a field, and attributes
stay as raw ``name[:value]`` pairs in their original order, so a description we did not build
serializes back byte for byte (when its lines were in the RFC 8866 order). Typed views of the
attributes that matter to a voice call (rtpmap, fmtp, ptime, direction, rtcp, rtcp-mux, crypto) are
computed on demand, which is why a malformed ``a=rtpmap`` on a stream we never look at (the video line
of RFC 4475 ``sdp01``) does not stop us from answering the audio line.

Offer/answer covers one audio stream: ``build_offer``, ``build_answer`` (rejects every other stream
with port 0 in its position, RFC 3264 §6) and ``negotiate`` (the common view both sides act on).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from .errors import SipError, SipParseError

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


class NotAcceptableHere(SipError):
    """RFC 3261 §21.4.26 / RFC 3264 §6: nothing in the offer is acceptable (no common audio codec)."""

    status = 488
    reason = "Not Acceptable Here"


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
# Offer/answer (RFC 3264)
# --------------------------------------------------------------------------------------------------

_ANSWERABLE_PROFILES = ("RTP/AVP", "RTP/SAVP")


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """The agreed audio stream, seen from one side (RFC 3264 §6.1 for the answerer, §7 offerer).

    ``codec`` carries the payload type to put in the RTP we send (the number the peer listed);
    ``direction`` is what *we* may do; ``ptime`` is what the peer asked to receive.
    """

    index: int
    remote_address: str
    remote_port: int
    remote_rtcp_address: str
    remote_rtcp_port: int
    rtcp_mux: bool
    codec: Codec
    codecs: tuple[Codec, ...]
    telephone_event: int | None
    direction: Direction
    ptime: int
    profile: str
    local_crypto: CryptoAttribute | None = None
    remote_crypto: CryptoAttribute | None = None

    @property
    def sends(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")

    @property
    def receives(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")


def _bits(direction: Direction) -> tuple[bool, bool]:
    return direction in ("sendrecv", "sendonly"), direction in ("sendrecv", "recvonly")


def _from_bits(send: bool, recv: bool) -> Direction:
    if send:
        return "sendrecv" if recv else "sendonly"
    return "recvonly" if recv else "inactive"


def _addrtype(address: str) -> str:
    try:
        return "IP6" if ipaddress.ip_address(address).version == 6 else "IP4"
    except ValueError:
        return "IP4"  # an FQDN (RFC 8866 §5.7); IP4 is what every peer assumes for names


def _check_codecs(codecs: Sequence[Codec]) -> None:
    pts = [c.payload_type for c in codecs]
    if not codecs or len(set(pts)) != len(pts):
        raise ValueError(f"codecs must be non-empty with distinct payload types, got {pts}")


def _codec_attributes(codecs: Sequence[Codec]) -> list[Attribute]:
    # rtpmap even for static types: RFC 3264 §5.1 recommends it and it costs a line.
    attrs = []
    for codec in codecs:
        attrs.append(Attribute("rtpmap", codec.rtpmap))
        if codec.fmtp:
            attrs.append(Attribute("fmtp", f"{codec.payload_type} {codec.fmtp}"))
    return attrs


def _audio_media(
    *,
    port: int,
    profile: str,
    codecs: Sequence[Codec],
    direction: Direction,
    ptime: int | None,
    rtcp_mux: bool,
    crypto: Sequence[CryptoAttribute],
) -> MediaDescription:
    attrs = _codec_attributes(codecs)
    if ptime is not None:
        attrs.append(Attribute("ptime", str(ptime)))
    attrs.append(Attribute(direction))
    if rtcp_mux:
        attrs.append(Attribute("rtcp-mux"))
    attrs.extend(Attribute("crypto", str(c)) for c in crypto)
    formats = tuple(str(c.payload_type) for c in codecs)
    return MediaDescription("audio", port, profile, formats, attributes=tuple(attrs))


def _session(
    username: str, session_id: int, session_version: int, address: str, media: MediaDescription
) -> SessionDescription:
    addrtype = _addrtype(address)
    return SessionDescription(
        origin=Origin(username, session_id, session_version, "IN", addrtype, address),
        connection=Connection(address, addrtype),
        media=(media,),
    )


def build_offer(
    *,
    address: str,
    port: int,
    codecs: Sequence[Codec],
    session_id: int,
    session_version: int,
    direction: Direction = "sendrecv",
    crypto: Sequence[CryptoAttribute] | None = None,
    profile: str = "RTP/AVP",
    ptime: int | None = DEFAULT_PTIME,
    rtcp_mux: bool = False,
    username: str = "-",
) -> SessionDescription:
    """An offer with one audio stream (RFC 3264 §5.1), codecs in our order of preference.

    SDES keys (RFC 4568) go in ``crypto``; pass ``profile="RTP/SAVP"`` with them, as RFC 4568 §3
    defines crypto for the SRTP profiles only. Use ``address="0.0.0.0"`` only for an offer whose
    address is not yet known (RFC 3264 §8.4); hold is ``direction="sendonly"``.
    """
    _check_codecs(codecs)
    media = _audio_media(
        port=port,
        profile=profile,
        codecs=codecs,
        direction=direction,
        ptime=ptime,
        rtcp_mux=rtcp_mux,
        crypto=crypto or (),
    )
    return _session(username, session_id, session_version, address, media)


def build_answer(
    offer: SessionDescription,
    *,
    address: str,
    port: int,
    codecs: Sequence[Codec],
    session_id: int,
    direction: Direction = "sendrecv",
    session_version: int | None = None,
    crypto_answer: CryptoAttribute | None = None,
    ptime: int | None = DEFAULT_PTIME,
    rtcp_mux: bool = False,
    prefer_offer_order: bool = True,
    username: str = "-",
) -> SessionDescription:
    """Answer ``offer`` (RFC 3264 §6): accept the first usable audio stream, reject the rest.

    ``codecs`` are those we support, in our preference order; the answer keeps the offerer's
    payload type numbers (§6.1) and, as §6.1 recommends, the offer's relative order unless
    ``prefer_offer_order`` is False. telephone-event is kept whenever both sides have it. Every
    other stream is answered with port 0 in the same position (§6). An RTP/SAVP stream is accepted
    only with ``crypto_answer``, whose tag must name an offered crypto line of the same suite
    (RFC 4568 §7.1.2). Raises NotAcceptableHere (488) when no audio stream can be accepted.
    """
    _check_codecs(codecs)
    answers: list[MediaDescription] = []
    reasons: list[str] = []
    accepted = False
    for index, offered in enumerate(offer.media):
        result: MediaDescription | str = "only one audio stream is answered"
        if not accepted:
            result = _answer_stream(
                offer,
                index,
                codecs=codecs,
                port=port,
                direction=direction,
                crypto=crypto_answer,
                ptime=ptime,
                rtcp_mux=rtcp_mux,
                prefer_offer_order=prefer_offer_order,
            )
        if isinstance(result, str):
            reasons.append(f"m-line {index} ({offered.media}): {result}")
            answers.append(MediaDescription(offered.media, 0, offered.proto, offered.formats))
        else:
            accepted = True
            answers.append(result)
    if not accepted:
        raise NotAcceptableHere(
            "no acceptable audio stream: " + "; ".join(reasons or ["no m= line"])
        )
    version = session_id if session_version is None else session_version
    answer = _session(username, session_id, version, address, answers[0])
    return replace(answer, media=tuple(answers))


def _answer_stream(
    offer: SessionDescription,
    index: int,
    *,
    codecs: Sequence[Codec],
    port: int,
    direction: Direction,
    crypto: CryptoAttribute | None,
    ptime: int | None,
    rtcp_mux: bool,
    prefer_offer_order: bool,
) -> MediaDescription | str:
    """The accepted media description for stream ``index``, or why it must be rejected."""
    offered = offer.media[index]
    if offered.media != "audio":
        return "not audio"
    if offered.port == 0:
        return "disabled in the offer"
    if offered.proto not in _ANSWERABLE_PROFILES:
        return f"profile {offered.proto} not supported"
    crypto_lines: tuple[CryptoAttribute, ...] = ()
    if offered.proto == "RTP/SAVP":
        if crypto is None:
            return "SRTP offered and no crypto answer given"
        if not any(c.tag == crypto.tag and c.suite == crypto.suite for c in offered.crypto):
            return f"crypto answer tag {crypto.tag} {crypto.suite} matches no offered crypto line"
        crypto_lines = (crypto,)
    common = _common_codecs(offered.codecs, codecs, prefer_offer_order)
    if not any(c.is_audio_codec for c in common):
        return "no common audio codec"
    return _audio_media(
        port=port,
        profile=offered.proto,
        codecs=common,
        direction=_answer_direction(offer, index, direction),
        ptime=ptime,
        rtcp_mux=rtcp_mux and offered.rtcp_mux,  # RFC 5761 §5.1.1: only if offered
        crypto=crypto_lines,
    )


def _common_codecs(
    offered: Sequence[Codec], supported: Sequence[Codec], prefer_offer_order: bool
) -> list[Codec]:
    """Offered codecs we support, with the offer's payload types (RFC 3264 §6.1)."""
    pairs = [(rank, o, s) for o in offered for rank, s in enumerate(supported) if o.matches(s)]
    if not prefer_offer_order:
        pairs.sort(key=lambda pair: pair[0])  # stable: ties keep the offer's order
    common: list[Codec] = []
    for _, ours_offered, ours in pairs:
        if all(c.payload_type != ours_offered.payload_type for c in common):
            # Our fmtp declares what we receive (e.g. telephone-event events); else echo theirs.
            common.append(replace(ours_offered, fmtp=ours.fmtp or ours_offered.fmtp))
    return common


def _answer_direction(offer: SessionDescription, index: int, local: Direction) -> Direction:
    """RFC 3264 §6.1: sendonly is answered recvonly, recvonly sendonly, inactive inactive."""
    their_send, their_recv = _remote_bits(offer, index)
    our_send, our_recv = _bits(local)
    return _from_bits(our_send and their_recv, our_recv and their_send)


def _remote_bits(sdp: SessionDescription, index: int) -> tuple[bool, bool]:
    send, recv = _bits(sdp.media_direction(index))
    conn = sdp.media_connection(index)
    # RFC 3264 §8.4: c=0.0.0.0 means "send nothing to me", whatever the attribute says.
    return send, recv and not (conn is not None and conn.is_null)


def negotiate(
    offer: SessionDescription,
    answer: SessionDescription,
    *,
    role: Literal["offerer", "answerer"] = "offerer",
) -> NegotiatedMedia:
    """The audio stream both sides agreed on, from the point of view of ``role``.

    The offerer calls it on receiving the answer (RFC 3264 §7); the answerer on the answer it
    sent. Raises NotAcceptableHere when the answer breaks §6 (wrong m-line count) or accepted no
    audio stream, SipParseError when an accepted stream has no connection address.
    """
    if len(answer.media) != len(offer.media):
        raise NotAcceptableHere(
            f"answer has {len(answer.media)} m-lines, offer {len(offer.media)} (RFC 3264 §6)"
        )
    local, remote = (offer, answer) if role == "offerer" else (answer, offer)
    for index, (o, a) in enumerate(zip(offer.media, answer.media, strict=True)):
        if o.media == "audio" and o.port != 0 and a.port != 0:
            return _negotiated(index, local, remote, answer)
    raise NotAcceptableHere("the answer accepted no audio stream")


def _negotiated(
    index: int, local: SessionDescription, remote: SessionDescription, answer: SessionDescription
) -> NegotiatedMedia:
    lm, rm = local.media[index], remote.media[index]
    conn = remote.media_connection(index)
    if conn is None:
        raise SipParseError(
            f"m-line {index} has no c= line at media or session level (RFC 8866 §5.7)"
        )
    codecs = _agreed_codecs(answer.media[index].codecs, lm.codecs, rm.codecs)
    codec = next((c for c in codecs if c.is_audio_codec), None)
    if codec is None:
        raise NotAcceptableHere(f"m-line {index}: no common audio codec in the answer")
    events = [c for c in codecs if c.is_telephone_event]
    event = next((c for c in events if c.clock_rate == codec.clock_rate), None)
    event = event or (events[0] if events else None)
    local_send, local_recv = _bits(local.media_direction(index))
    remote_send, remote_recv = _remote_bits(remote, index)
    mux = lm.rtcp_mux and rm.rtcp_mux
    rtcp = rm.rtcp
    rtcp_port = rm.port if mux else rtcp.port if rtcp else rm.port + 1  # RFC 3550 §11
    local_crypto, remote_crypto = _agreed_crypto(index, lm, rm, answer.media[index])
    return NegotiatedMedia(
        index=index,
        remote_address=conn.host,
        remote_port=rm.port,
        remote_rtcp_address=(rtcp.address if rtcp and rtcp.address and not mux else conn.host),
        remote_rtcp_port=rtcp_port,
        rtcp_mux=mux,
        codec=codec,
        codecs=codecs,
        telephone_event=event.payload_type if event else None,
        direction=_from_bits(local_send and remote_recv, local_recv and remote_send),
        ptime=rm.ptime or DEFAULT_PTIME,
        profile=rm.proto,
        local_crypto=local_crypto,
        remote_crypto=remote_crypto,
    )


def _agreed_codecs(
    answered: Sequence[Codec], local: Sequence[Codec], remote: Sequence[Codec]
) -> tuple[Codec, ...]:
    """The answer's codecs in its order, present on both sides, numbered as the peer numbers them."""
    agreed = []
    for codec in answered:
        ours = any(codec.matches(c) for c in local)
        theirs = next((c for c in remote if c.matches(codec)), None)
        if ours and theirs is not None:
            agreed.append(theirs)
    return tuple(agreed)


def _agreed_crypto(
    index: int, lm: MediaDescription, rm: MediaDescription, am: MediaDescription
) -> tuple[CryptoAttribute | None, CryptoAttribute | None]:
    """(ours, theirs): the answer's single crypto line and the offered one with its tag (RFC 4568 §7)."""
    if "SAVP" not in am.proto.upper():
        return None, None
    chosen = am.crypto
    if len(chosen) != 1:
        raise NotAcceptableHere(
            f"m-line {index}: an SRTP answer needs exactly one crypto line, got {len(chosen)}"
        )
    tag = chosen[0].tag
    ours = next((c for c in lm.crypto if c.tag == tag), None)
    theirs = next((c for c in rm.crypto if c.tag == tag), None)
    if ours is None or theirs is None or ours.suite != theirs.suite:
        raise NotAcceptableHere(f"m-line {index}: crypto tag {tag} does not match the offer")
    return ours, theirs


def next_version(sdp: SessionDescription) -> SessionDescription:
    """The same description with o= version + 1, as every changed re-offer needs (RFC 3264 §8)."""
    origin = replace(sdp.origin, session_version=sdp.origin.session_version + 1)
    return replace(sdp, origin=origin)


def with_direction(
    sdp: SessionDescription, direction: Direction, *, index: int | None = None
) -> SessionDescription:
    """Set the direction of every live stream (or only ``index``), e.g. ``sendonly`` to hold.

    Session-level direction attributes are dropped so the media-level one is the only word
    (RFC 8866 §6.7). The version is left alone: combine with ``next_version`` for a re-offer.
    """
    media = []
    for i, m in enumerate(sdp.media):
        if m.port != 0 and (index is None or i == index):
            kept = tuple(a for a in m.attributes if a.name not in DIRECTIONS)
            m = replace(m, attributes=(*kept, Attribute(direction)))
        media.append(m)
    if index is not None:
        return replace(sdp, media=tuple(media))  # other streams keep what the session level says
    session_attrs = tuple(a for a in sdp.attributes if a.name not in DIRECTIONS)
    return replace(sdp, media=tuple(media), attributes=session_attrs)
