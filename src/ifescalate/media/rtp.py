"""RTP data packets (RFC 3550 §5), sequence arithmetic, a sender and per-source receiver statistics.

Sans-IO: :class:`RtpSender` takes its randomness as a callable, :class:`ReceiverStats` takes the
arrival time ``now`` (seconds, monotonic) for every packet.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from ifescalate.media.frames import MediaError, samples_per_frame

RTP_VERSION = 2
HEADER_SIZE = 12
SEQ_MOD = 1 << 16
TS_MOD = 1 << 32

# RFC 3550 A.1: a jump of less than MAX_DROPOUT packets ahead is accepted as a gap; one of up to
# MAX_MISORDER behind is a late or duplicate packet; MIN_SEQUENTIAL in-order packets validate a
# new source.
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2

_HEADER = struct.Struct("!BBHII")


class RtpError(MediaError):
    """The bytes are not a well-formed RTP packet (RFC 3550 §5.1)."""


# --- sequence and timestamp arithmetic (modulo 2^16 / 2^32) -------------------------------------


def seq_add(seq: int, n: int) -> int:
    """``seq + n`` modulo 2^16."""
    return (seq + n) % SEQ_MOD


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` on the 16-bit circle, in ``[-32768, 32767]``."""
    return (a - b + SEQ_MOD // 2) % SEQ_MOD - SEQ_MOD // 2


def seq_lt(a: int, b: int) -> bool:
    """``a`` comes before ``b`` on the 16-bit circle (RFC 1982 serial number comparison)."""
    return seq_diff(a, b) < 0


def ts_add(ts: int, n: int) -> int:
    """``ts + n`` modulo 2^32."""
    return (ts + n) % TS_MOD


def ts_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` on the 32-bit timestamp circle."""
    return (a - b + TS_MOD // 2) % TS_MOD - TS_MOD // 2


# --- the packet ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """A header extension (RFC 3550 §5.3.1): 16-bit profile-defined id and 32-bit-aligned data."""

    profile: int
    data: bytes = b""

    def __post_init__(self) -> None:
        _check_range("extension profile", self.profile, 0xFFFF)
        if len(self.data) % 4:
            raise RtpError(
                f"RTP extension data must be a multiple of 4 bytes, got {len(self.data)}"
            )
        if len(self.data) // 4 > 0xFFFF:
            raise RtpError("RTP extension data longer than 65535 words")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1). ``bytes(pkt)`` serializes; :meth:`parse` is the inverse.

    ``padding`` is the number of padding octets at the end, the count octet included (0 means the
    P bit is clear). The version is always 2.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    def __post_init__(self) -> None:
        # One chained comparison for the usual packet (every field in range, no CSRC); the
        # field-by-field checks below only run to name what is wrong (or to check CSRCs).
        if (
            0 <= self.payload_type <= 0x7F
            and 0 <= self.sequence <= 0xFFFF
            and 0 <= self.timestamp <= 0xFFFFFFFF
            and 0 <= self.ssrc <= 0xFFFFFFFF
            and 0 <= self.padding <= 0xFF
            and not self.csrcs
        ):
            return
        _check_range("payload type", self.payload_type, 0x7F)
        _check_range("sequence number", self.sequence, 0xFFFF)
        _check_range("timestamp", self.timestamp, 0xFFFFFFFF)
        _check_range("SSRC", self.ssrc, 0xFFFFFFFF)
        if len(self.csrcs) > 15:
            raise RtpError(f"RTP packet can carry at most 15 CSRCs, got {len(self.csrcs)}")
        for csrc in self.csrcs:
            _check_range("CSRC", csrc, 0xFFFFFFFF)
        _check_range("padding", self.padding, 0xFF)

    @property
    def version(self) -> int:
        return RTP_VERSION

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one datagram; raise :class:`RtpError` naming the first thing that is wrong."""
        if len(data) < HEADER_SIZE:
            raise RtpError(f"RTP packet too short: {len(data)} bytes, need at least {HEADER_SIZE}")
        b0, b1, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
        if b0 == 0x80:  # version 2, no padding, no extension, no CSRC: the usual audio packet
            payload = bytes(data[HEADER_SIZE:])
            return cls(b1 & 0x7F, sequence, timestamp, ssrc, payload, bool(b1 & 0x80))
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version must be 2, got {b0 >> 6}")
        end = _payload_end(data, bool(b0 & 0x20))
        offset, csrcs = _parse_csrcs(data, b0 & 0x0F, end)
        extension = None
        if b0 & 0x10:
            offset, extension = _parse_extension(data, offset, end)
        return cls(
            payload_type=b1 & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=bool(b1 & 0x80),
            csrcs=csrcs,
            extension=extension,
            padding=len(data) - end,
        )

    def __bytes__(self) -> bytes:
        if not (self.padding or self.csrcs or self.extension is not None):
            b1 = (0x80 if self.marker else 0) | self.payload_type
            return _HEADER.pack(0x80, b1, self.sequence, self.timestamp, self.ssrc) + self.payload
        b0 = (RTP_VERSION << 6) | (0x20 if self.padding else 0) | len(self.csrcs)
        b0 |= 0x10 if self.extension is not None else 0
        b1 = (0x80 if self.marker else 0) | self.payload_type
        parts = [_HEADER.pack(b0, b1, self.sequence, self.timestamp, self.ssrc)]
        parts.extend(struct.pack("!I", csrc) for csrc in self.csrcs)
        if self.extension is not None:
            ext = self.extension
            parts.append(struct.pack("!HH", ext.profile, len(ext.data) // 4) + ext.data)
        parts.append(self.payload)
        if self.padding:
            # §5.1: the last padding octet counts the padding octets, itself included.
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def _check_range(what: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise RtpError(f"RTP {what} out of range 0..{maximum}: {value}")


def _payload_end(data: bytes, padded: bool) -> int:
    if not padded:
        return len(data)
    count = data[-1]
    if count == 0:
        raise RtpError("RTP padding count must not be 0")
    if count > len(data) - HEADER_SIZE:
        raise RtpError(
            f"RTP padding count {count} exceeds the {len(data) - HEADER_SIZE} bytes after the header"
        )
    return len(data) - count


def _parse_csrcs(data: bytes, count: int, end: int) -> tuple[int, tuple[int, ...]]:
    offset = HEADER_SIZE + 4 * count
    if offset > end:
        raise RtpError(f"RTP packet too short for {count} CSRCs")
    return offset, struct.unpack_from(f"!{count}I", data, HEADER_SIZE)


def _parse_extension(data: bytes, offset: int, end: int) -> tuple[int, RtpExtension]:
    if offset + 4 > end:
        raise RtpError("RTP header extension truncated")
    profile, words = struct.unpack_from("!HH", data, offset)
    start = offset + 4
    stop = start + 4 * words
    if stop > end:
        raise RtpError(f"RTP header extension of {words} words exceeds the packet")
    return stop, RtpExtension(profile, bytes(data[start:stop]))


# --- sending ------------------------------------------------------------------------------------


class RtpSender:
    """Stamps outgoing packets of one source: SSRC, sequence numbers and media timestamps.

    §5.1: the initial sequence number and timestamp SHOULD be random, and §8.1 the SSRC; all three
    come from ``rand`` (``os.urandom`` shaped, injected so tests are deterministic). Sequence
    numbers advance by one per packet; the timestamp advances by the samples each frame covers.
    """

    def __init__(
        self,
        payload_type: int,
        clock_rate: int,
        *,
        rand: Callable[[int], bytes] = os.urandom,
        ssrc: int | None = None,
    ) -> None:
        _check_range("payload type", payload_type, 0x7F)
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.frame_samples = samples_per_frame(clock_rate)
        self.ssrc = ssrc if ssrc is not None else int.from_bytes(rand(4), "big")
        self.sequence = int.from_bytes(rand(2), "big")
        self.timestamp = int.from_bytes(rand(4), "big")
        self.packet_count = 0
        self.octet_count = 0
        # RFC 3551 §4.1: the first packet of a talkspurt carries the marker bit.
        self._talkspurt_start = True

    def stamp(
        self,
        payload: bytes,
        *,
        marker: bool = False,
        payload_type: int | None = None,
        timestamp: int | None = None,
    ) -> RtpPacket:
        """The next packet with ``payload``; consumes a sequence number, not media time.

        ``payload_type`` and ``timestamp`` override the stream's (RFC 4733 events use their own
        payload type and keep the event's start timestamp).
        """
        packet = RtpPacket(
            payload_type=self.payload_type if payload_type is None else payload_type,
            sequence=self.sequence,
            timestamp=self.timestamp if timestamp is None else timestamp,
            ssrc=self.ssrc,
            payload=payload,
            marker=marker,
        )
        self.sequence = seq_add(self.sequence, 1)
        self.packet_count = (self.packet_count + 1) % TS_MOD
        self.octet_count = (self.octet_count + len(payload)) % TS_MOD
        return packet

    def send_frame(self, payload: bytes, *, samples: int | None = None) -> RtpPacket:
        """The packet for one encoded frame, then advance media time by ``samples`` (20 ms default)."""
        packet = self.stamp(payload, marker=self._talkspurt_start)
        self._talkspurt_start = False
        self.advance(self.frame_samples if samples is None else samples)
        return packet

    def send_frame_bytes(self, payload: bytes) -> bytes:
        """``bytes(send_frame(payload))`` without the packet object: the media clock's hot path
        (one 20 ms frame per call, 50 times a second) needs only the wire bytes."""
        b1 = 0x80 | self.payload_type if self._talkspurt_start else self.payload_type
        data = _HEADER.pack(0x80, b1, self.sequence, self.timestamp, self.ssrc) + payload
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.packet_count = (self.packet_count + 1) % TS_MOD
        self.octet_count = (self.octet_count + len(payload)) % TS_MOD
        self._talkspurt_start = False
        self.timestamp = (self.timestamp + self.frame_samples) % TS_MOD
        return data

    def advance(self, samples: int) -> None:
        """Let media time pass without sending audio (silence, or time covered by DTMF events)."""
        self.timestamp = ts_add(self.timestamp, samples)

    def skip(self, samples: int | None = None) -> None:
        """Suppress one silent frame: time passes and the next frame starts a talkspurt."""
        self.advance(self.frame_samples if samples is None else samples)
        self._talkspurt_start = True


# --- receiving: RFC 3550 A.1, A.3, A.8 ----------------------------------------------------------


@dataclass(slots=True)
class ReceiverStats:
    """Reception statistics for one SSRC (RFC 3550 A.1 validation, A.3 loss, A.8 jitter).

    Feed every packet of the source to :meth:`update` with its arrival time. ``probation`` is the
    number of in-order packets needed before the source counts as valid (A.1 MIN_SEQUENTIAL);
    pass 0 for a source already validated by signalling.
    """

    ssrc: int
    clock_rate: int
    probation: int = MIN_SEQUENTIAL
    max_seq: int = 0
    cycles: int = 0
    base_seq: int = 0
    bad_seq: int = SEQ_MOD + 1
    received: int = 0
    expected_prior: int = 0
    received_prior: int = 0
    jitter: float = 0.0
    """Interarrival jitter estimate in timestamp units (A.8), before truncation."""
    last_sr_ntp_middle: int = 0
    last_sr_arrival: float | None = None
    _started: bool = field(default=False, repr=False)
    _last_arrival: float | None = field(default=None, repr=False)
    _last_timestamp: int = field(default=0, repr=False)

    def update(self, sequence: int, timestamp: int, now: float) -> bool:
        """Account for one packet; return whether it is valid (A.1 ``update_seq`` returned 1)."""
        if not self._started:
            self._start(sequence)
        valid = self._update_seq(sequence)
        if valid:
            self._update_jitter(timestamp, now)
        return valid

    def _start(self, sequence: int) -> None:
        self._started = True
        self._init_seq(sequence)
        if self.probation > 0:
            self.max_seq = seq_add(sequence, -1)  # A.1: so the first packet is "in order"

    def _init_seq(self, sequence: int) -> None:
        self.base_seq = sequence
        self.max_seq = sequence
        self.bad_seq = SEQ_MOD + 1  # so seq == bad_seq is false
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    def _update_seq(self, seq: int) -> bool:
        """RFC 3550 A.1 ``update_seq``, line by line."""
        udelta = (seq - self.max_seq) % SEQ_MOD
        if self.probation:
            # Source not valid until MIN_SEQUENTIAL packets in sequence have been received.
            if seq == seq_add(self.max_seq, 1):
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            # In order, with permissible gap.
            if seq < self.max_seq:
                self.cycles += SEQ_MOD  # sequence number wrapped: count another 64K cycle
            self.max_seq = seq
        elif udelta <= SEQ_MOD - MAX_MISORDER:
            # The sequence number made a very large jump.
            if seq == self.bad_seq:
                # Two sequential packets: assume the other side restarted without telling us.
                self._init_seq(seq)
            else:
                self.bad_seq = (seq + 1) & (SEQ_MOD - 1)
                return False
        # else: duplicate or reordered packet, still counted as received.
        self.received += 1
        return True

    def _update_jitter(self, timestamp: int, now: float) -> None:
        """A.8: J += (|D(i-1,i)| - J) / 16, D in timestamp units from the arrival clock."""
        if self._last_arrival is not None:
            arrival_delta = (now - self._last_arrival) * self.clock_rate
            d = abs(arrival_delta - ts_diff(timestamp, self._last_timestamp))
            self.jitter += (d - self.jitter) / 16.0
        self._last_arrival = now
        self._last_timestamp = timestamp

    @property
    def extended_max_seq(self) -> int:
        """Extended highest sequence number received: cycles in the high bits (A.3)."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max_seq - self.base_seq + 1 if self.received else 0

    @property
    def cumulative_lost(self) -> int:
        """Packets lost since the start, clamped to the 24-bit signed field of §6.4.1 (A.3)."""
        lost = self.expected - self.received
        return max(-0x800000, min(0x7FFFFF, lost))

    @property
    def interarrival_jitter(self) -> int:
        """The jitter as reported in a report block: truncated to an integer (A.8)."""
        return int(self.jitter)

    def fraction_lost(self) -> int:
        """Fraction lost since the previous call, in 1/256 (A.3); starts a new interval.

        A method, not a property, because it moves the interval's reference point.
        """
        expected = self.expected
        expected_interval = expected - self.expected_prior
        self.expected_prior = expected
        received_interval = self.received - self.received_prior
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            return 0
        return (lost_interval << 8) // expected_interval

    def note_sender_report(self, ntp_middle: int, now: float) -> None:
        """Remember an SR from this source: its NTP middle 32 bits and when it arrived (§6.4.1 LSR)."""
        self.last_sr_ntp_middle = ntp_middle
        self.last_sr_arrival = now
