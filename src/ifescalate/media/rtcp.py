"""RTCP (RFC 3550 §6): SR, RR, SDES, BYE and compound packets; report blocks, NTP time, RTT, interval.

Sans-IO: times come in as arguments. SR timestamps are 64-bit NTP values the caller derives from its
own clock (:func:`ntp_from_unix`); the round-trip time only needs that clock to be consistent with
the one used for the arrival time (§6.4.1), not to be wall-clock exact.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from ifescalate.media.frames import MediaError
from ifescalate.media.rtp import ReceiverStats, RtpSender

RTCP_VERSION = 2
SR, RR, SDES, BYE, APP = 200, 201, 202, 203, 204
SDES_END, SDES_CNAME = 0, 1
MAX_REPORT_BLOCKS = 31  # the 5-bit RC field

NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
_HEADER = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IB3sIIII")
_SENDER_INFO = struct.Struct("!IQIII")  # SSRC, NTP, RTP timestamp, packet count, octet count


class RtcpError(MediaError):
    """The bytes are not a well-formed RTCP packet (RFC 3550 §6.4-6.6, validity checks A.2)."""


def _check(what: str, value: int, maximum: int, minimum: int = 0) -> None:
    if not minimum <= value <= maximum:
        raise RtcpError(f"RTCP {what} out of range {minimum}..{maximum}: {value}")


# --- NTP time and RTT (§4, §6.4.1) --------------------------------------------------------------


def ntp_from_unix(seconds: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point since 1900) for a Unix time in seconds."""
    return round((seconds + NTP_UNIX_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def unix_from_ntp(ntp: int) -> float:
    """Inverse of :func:`ntp_from_unix` (NTP era 0)."""
    return ntp / (1 << 32) - NTP_UNIX_OFFSET


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of a 64-bit NTP timestamp: the LSR / compact form of §6.4.1 (16.16)."""
    return (ntp >> 16) & 0xFFFFFFFF


# --- report blocks (§6.4.1) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """Reception report about one source. ``cumulative_lost`` is signed 24-bit; LSR/DLSR in 16.16."""

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_seq: int
    jitter: int
    lsr: int = 0
    dlsr: int = 0

    SIZE: ClassVar[int] = 24

    def __post_init__(self) -> None:
        _check("report SSRC", self.ssrc, 0xFFFFFFFF)
        _check("fraction lost", self.fraction_lost, 0xFF)
        _check("cumulative lost", self.cumulative_lost, 0x7FFFFF, -0x800000)
        for what in ("highest_seq", "jitter", "lsr", "dlsr"):
            _check(what, getattr(self, what), 0xFFFFFFFF)

    @classmethod
    def unpack(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        return cls(
            ssrc, fraction, int.from_bytes(lost, "big", signed=True), highest, jitter, lsr, dlsr
        )

    def __bytes__(self) -> bytes:
        lost = self.cumulative_lost.to_bytes(3, "big", signed=True)
        return _BLOCK.pack(
            self.ssrc, self.fraction_lost, lost, self.highest_seq, self.jitter, self.lsr, self.dlsr
        )


def report_block(stats: ReceiverStats, now: float) -> ReportBlock:
    """The report block for ``stats`` at ``now``; starts a new A.3 fraction-lost interval."""
    dlsr = 0
    if stats.last_sr_arrival is not None:
        # §6.4.1: delay since last SR, in units of 1/65536 seconds.
        dlsr = min(0xFFFFFFFF, max(0, int((now - stats.last_sr_arrival) * 65536)))
    return ReportBlock(
        ssrc=stats.ssrc,
        fraction_lost=stats.fraction_lost(),
        cumulative_lost=stats.cumulative_lost,
        highest_seq=stats.extended_max_seq & 0xFFFFFFFF,
        jitter=min(stats.interarrival_jitter, 0xFFFFFFFF),
        lsr=stats.last_sr_ntp_middle,
        dlsr=dlsr,
    )


def round_trip_time(block: ReportBlock, arrival_ntp: int) -> float | None:
    """§6.4.1: RTT = A - LSR - DLSR in seconds, A the report's arrival as 64-bit NTP.

    None when the peer has not received an SR from us yet (LSR 0). A slightly negative result
    (clock granularity) is reported as 0.
    """
    if block.lsr == 0:
        return None
    diff = (ntp_middle(arrival_ntp) - block.lsr - block.dlsr) & 0xFFFFFFFF
    if diff >= 1 << 31:
        return 0.0
    return diff / 65536


# --- packets ------------------------------------------------------------------------------------


class RtcpPacket:
    """Base of the RTCP packet value classes. ``parse`` reads exactly one packet; ``bytes(p)`` writes one."""

    packet_type: ClassVar[int]

    @staticmethod
    def parse(data: bytes) -> RtcpPacket:
        """Parse ``data`` as exactly one RTCP packet (use :func:`parse_compound` for datagrams)."""
        packet, end = _parse_one(data, 0)
        if end != len(data):
            raise RtcpError(f"RTCP packet length {end} does not match the {len(data)} bytes given")
        return packet

    def _body(self) -> tuple[int, bytes]:
        """(count field, body after the 4-byte header); the body is 32-bit aligned."""
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        count, body = self._body()
        return _HEADER.pack(0x80 | count, self.packet_type, len(body) // 4) + body


@dataclass(frozen=True, slots=True)
class SenderReport(RtcpPacket):
    """SR (§6.4.1): sender info and up to 31 report blocks."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    packet_type: ClassVar[int] = SR

    def __post_init__(self) -> None:
        _check("SSRC", self.ssrc, 0xFFFFFFFF)
        _check("NTP timestamp", self.ntp_timestamp, 0xFFFFFFFFFFFFFFFF)
        for what in ("rtp_timestamp", "packet_count", "octet_count"):
            _check(what, getattr(self, what), 0xFFFFFFFF)
        _check_reports(self.reports, self.extension)

    def _body(self) -> tuple[int, bytes]:
        info = _SENDER_INFO.pack(
            self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        )
        return len(self.reports), info + _blocks(self.reports) + self.extension


@dataclass(frozen=True, slots=True)
class ReceiverReport(RtcpPacket):
    """RR (§6.4.2): the reporter's SSRC and up to 31 report blocks."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    packet_type: ClassVar[int] = RR

    def __post_init__(self) -> None:
        _check("SSRC", self.ssrc, 0xFFFFFFFF)
        _check_reports(self.reports, self.extension)

    def _body(self) -> tuple[int, bytes]:
        return len(self.reports), struct.pack("!I", self.ssrc) + _blocks(
            self.reports
        ) + self.extension


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """One SDES chunk (§6.5): a source and its (item type, value) pairs, e.g. (1, b"cname")."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        _check("SDES SSRC", self.ssrc, 0xFFFFFFFF)
        for kind, value in self.items:
            _check("SDES item type", kind, 0xFF, 1)
            _check("SDES item length", len(value), 0xFF)

    @property
    def cname(self) -> str | None:
        for kind, value in self.items:
            if kind == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None

    def __bytes__(self) -> bytes:
        out = bytearray(struct.pack("!I", self.ssrc))
        for kind, value in self.items:
            out += bytes((kind, len(value))) + value
        # §6.5: the item list ends with a null octet, then nulls to the next 32-bit boundary.
        out += bytes(4 - len(out) % 4)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class SourceDescription(RtcpPacket):
    """SDES (§6.5): up to 31 chunks."""

    chunks: tuple[SdesChunk, ...] = ()

    packet_type: ClassVar[int] = SDES

    def __post_init__(self) -> None:
        _check("SDES chunk count", len(self.chunks), MAX_REPORT_BLOCKS)

    @classmethod
    def cname(cls, ssrc: int, cname: str) -> SourceDescription:
        return cls((SdesChunk(ssrc, ((SDES_CNAME, cname.encode()),)),))

    def _body(self) -> tuple[int, bytes]:
        return len(self.chunks), b"".join(bytes(chunk) for chunk in self.chunks)


@dataclass(frozen=True, slots=True)
class Bye(RtcpPacket):
    """BYE (§6.6): the sources leaving and an optional reason."""

    sources: tuple[int, ...] = ()
    reason: str | None = None

    packet_type: ClassVar[int] = BYE

    def __post_init__(self) -> None:
        _check("BYE source count", len(self.sources), MAX_REPORT_BLOCKS)
        for ssrc in self.sources:
            _check("BYE SSRC", ssrc, 0xFFFFFFFF)
        if self.reason is not None:
            _check("BYE reason length", len(self.reason.encode()), 0xFF)

    def _body(self) -> tuple[int, bytes]:
        body = b"".join(struct.pack("!I", ssrc) for ssrc in self.sources)
        if self.reason is not None:
            text = self.reason.encode()
            reason = bytes((len(text),)) + text
            body += reason + bytes(-len(reason) % 4)
        return len(self.sources), body


@dataclass(frozen=True, slots=True)
class UnknownRtcp(RtcpPacket):
    """Any other packet type (APP, RTPFB, ...), kept raw: §6.1 says to ignore what we do not know."""

    type_code: int
    count: int
    body: bytes

    packet_type: ClassVar[int] = 0

    def __post_init__(self) -> None:
        _check("packet type", self.type_code, 0xFF)
        _check("count", self.count, 0x1F)
        if len(self.body) % 4:
            raise RtcpError(f"RTCP body must be 32-bit aligned, got {len(self.body)} bytes")

    def __bytes__(self) -> bytes:
        return _HEADER.pack(0x80 | self.count, self.type_code, len(self.body) // 4) + self.body


def _check_reports(reports: tuple[ReportBlock, ...], extension: bytes) -> None:
    _check("report count", len(reports), MAX_REPORT_BLOCKS)
    if len(extension) % 4:
        raise RtcpError(
            f"RTCP profile extension must be 32-bit aligned, got {len(extension)} bytes"
        )


def _blocks(reports: Iterable[ReportBlock]) -> bytes:
    return b"".join(bytes(block) for block in reports)


# --- parsing ------------------------------------------------------------------------------------


def parse_compound(data: bytes, *, require_report_first: bool = True) -> list[RtcpPacket]:
    """Split and parse a compound RTCP datagram (§6.1), with the A.2 validity checks.

    The first packet must be SR or RR unless ``require_report_first`` is false (reduced-size
    RTCP, RFC 5506); only the last packet may be padded; the lengths must add up to the datagram.
    """
    if not data:
        raise RtcpError("RTCP compound packet is empty")
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < len(data):
        packet, offset = _parse_one(data, offset)
        packets.append(packet)
    if require_report_first and not isinstance(packets[0], SenderReport | ReceiverReport):
        raise RtcpError("RTCP compound packet must start with SR or RR")
    return packets


def serialize_compound(packets: Sequence[RtcpPacket]) -> bytes:
    """Concatenate packets into one compound datagram (§6.1)."""
    return b"".join(bytes(packet) for packet in packets)


def _parse_one(data: bytes, offset: int) -> tuple[RtcpPacket, int]:
    if len(data) - offset < 4:
        raise RtcpError(f"RTCP header truncated: {len(data) - offset} bytes at offset {offset}")
    b0, packet_type, words = _HEADER.unpack_from(data, offset)
    if b0 >> 6 != RTCP_VERSION:
        raise RtcpError(f"RTCP version must be 2, got {b0 >> 6}")
    end = offset + 4 * (words + 1)
    if end > len(data):
        raise RtcpError(f"RTCP length {words} exceeds the {len(data) - offset} bytes left")
    body_end = end
    if b0 & 0x20:
        # A.2: padding is only allowed on the last packet of a compound.
        if end != len(data):
            raise RtcpError("RTCP padding only allowed on the last packet")
        body_end = _unpad(data, offset + 4, end)
    body = bytes(data[offset + 4 : body_end])
    return _decode(packet_type, b0 & 0x1F, body), end


def _unpad(data: bytes, start: int, end: int) -> int:
    count = data[end - 1]
    if count == 0 or count > end - start:
        raise RtcpError(f"RTCP padding count {count} invalid for a {end - start}-byte body")
    return end - count


def _decode(packet_type: int, count: int, body: bytes) -> RtcpPacket:
    if packet_type == SR:
        return _decode_sr(count, body)
    if packet_type == RR:
        return _decode_rr(count, body)
    if packet_type == SDES:
        return _decode_sdes(count, body)
    if packet_type == BYE:
        return _decode_bye(count, body)
    return UnknownRtcp(packet_type, count, body + bytes(-len(body) % 4))


def _decode_blocks(body: bytes, offset: int, count: int, what: str) -> tuple[ReportBlock, ...]:
    if len(body) < offset + ReportBlock.SIZE * count:
        raise RtcpError(f"RTCP {what} too short for {count} report blocks")
    return tuple(ReportBlock.unpack(body, offset + ReportBlock.SIZE * i) for i in range(count))


def _decode_sr(count: int, body: bytes) -> SenderReport:
    if len(body) < _SENDER_INFO.size:
        raise RtcpError(f"RTCP SR too short: {len(body)} bytes of body, need {_SENDER_INFO.size}")
    ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(body)
    reports = _decode_blocks(body, _SENDER_INFO.size, count, "SR")
    extension = _aligned_rest(body, _SENDER_INFO.size + ReportBlock.SIZE * count)
    return SenderReport(ssrc, ntp, rtp_ts, packets, octets, reports, extension)


def _decode_rr(count: int, body: bytes) -> ReceiverReport:
    if len(body) < 4:
        raise RtcpError(f"RTCP RR too short: {len(body)} bytes of body, need 4")
    (ssrc,) = struct.unpack_from("!I", body)
    reports = _decode_blocks(body, 4, count, "RR")
    return ReceiverReport(ssrc, reports, _aligned_rest(body, 4 + ReportBlock.SIZE * count))


def _aligned_rest(body: bytes, offset: int) -> bytes:
    rest = body[offset:]
    if len(rest) % 4:
        raise RtcpError(f"RTCP profile extension must be 32-bit aligned, got {len(rest)} bytes")
    return rest


def _decode_sdes(count: int, body: bytes) -> SourceDescription:
    chunks: list[SdesChunk] = []
    offset = 0
    for _ in range(count):
        chunk, offset = _decode_chunk(body, offset)
        chunks.append(chunk)
    return SourceDescription(tuple(chunks))


def _decode_chunk(body: bytes, offset: int) -> tuple[SdesChunk, int]:
    if len(body) < offset + 4:
        raise RtcpError("RTCP SDES chunk truncated")
    (ssrc,) = struct.unpack_from("!I", body, offset)
    offset += 4
    items: list[tuple[int, bytes]] = []
    while True:
        if offset >= len(body):
            raise RtcpError("RTCP SDES chunk has no end item")
        kind = body[offset]
        if kind == SDES_END:
            # Skip the null octet and the padding to the next 32-bit boundary (§6.5).
            return SdesChunk(ssrc, tuple(items)), offset + 4 - offset % 4
        if offset + 2 > len(body) or offset + 2 + body[offset + 1] > len(body):
            raise RtcpError("RTCP SDES item truncated")
        length = body[offset + 1]
        items.append((kind, bytes(body[offset + 2 : offset + 2 + length])))
        offset += 2 + length


def _decode_bye(count: int, body: bytes) -> Bye:
    if len(body) < 4 * count:
        raise RtcpError(f"RTCP BYE too short for {count} sources")
    sources = struct.unpack_from(f"!{count}I", body)
    rest = body[4 * count :]
    if not rest:
        return Bye(sources)
    if 1 + rest[0] > len(rest):
        raise RtcpError("RTCP BYE reason truncated")
    return Bye(sources, rest[1 : 1 + rest[0]].decode("utf-8", "replace"))


# --- building a report and scheduling it (§6.3, §6.4) -------------------------------------------


def make_report(
    ssrc: int,
    cname: str,
    sources: Sequence[ReceiverStats],
    now: float,
    *,
    sender: RtpSender | None = None,
    ntp_timestamp: int = 0,
) -> bytes:
    """One compound report: SR (if ``sender`` sent since the last report) or RR, then SDES CNAME.

    ``now`` is the monotonic time used for DLSR; ``ntp_timestamp`` is the SR's wall-clock stamp.
    Report blocks beyond 31 go into further RR packets (§6.4.2).
    """
    blocks = [report_block(stats, now) for stats in sources]
    first, rest = blocks[:MAX_REPORT_BLOCKS], blocks[MAX_REPORT_BLOCKS:]
    packets: list[RtcpPacket] = []
    if sender is not None:
        packets.append(
            SenderReport(
                ssrc,
                ntp_timestamp,
                sender.timestamp,
                sender.packet_count,
                sender.octet_count,
                tuple(first),
            )
        )
    else:
        packets.append(ReceiverReport(ssrc, tuple(first)))
    while rest:
        packets.append(ReceiverReport(ssrc, tuple(rest[:MAX_REPORT_BLOCKS])))
        rest = rest[MAX_REPORT_BLOCKS:]
    packets.append(SourceDescription.cname(ssrc, cname))
    return serialize_compound(packets)


RTCP_MIN_TIME = 5.0
RTCP_SENDER_BW_FRACTION = 0.25
COMPENSATION = 2.71828 - 1.5  # A.7: e - 3/2, for the timer reconsideration bias


def rtcp_interval(
    members: int,
    senders: int,
    rtcp_bw: float,
    we_sent: bool,
    avg_rtcp_size: float,
    initial: bool,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds until the next RTCP report (RFC 3550 §6.3.1 / A.7 ``rtcp_interval``).

    ``rtcp_bw`` is the RTCP share of the session bandwidth in octets per second (5% of it by
    default, §6.2); ``rand`` returns a uniform float in [0, 1) and is injected for tests.
    """
    t_min = RTCP_MIN_TIME / 2 if initial else RTCP_MIN_TIME
    n = members
    if senders <= members * RTCP_SENDER_BW_FRACTION:
        # Senders get a quarter of the RTCP bandwidth when they are a quarter or less of members.
        if we_sent:
            rtcp_bw *= RTCP_SENDER_BW_FRACTION
            n = senders
        else:
            rtcp_bw *= 1 - RTCP_SENDER_BW_FRACTION
            n -= senders
    t = max(avg_rtcp_size * n / rtcp_bw, t_min)
    # Randomise to [0.5, 1.5) of the nominal interval so reports do not synchronise.
    return t * (rand() + 0.5) / COMPENSATION
