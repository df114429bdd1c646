"""DTMF as RTP telephone events (RFC 4733 §2): payload format, a sender and a receiver.

The sender is driven by the 20 ms media clock: while a key press is in progress :meth:`DtmfSender.tick`
returns the event packet to send instead of an audio frame. The receiver turns a stream of event
packets (lost, reordered, retransmitted) into each key press exactly once.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from dataclasses import dataclass

from ifescalate.media.frames import MediaError
from ifescalate.media.rtp import RtpPacket, RtpSender, ts_diff

EVENT_KEYS = "0123456789*#ABCD"
"""RFC 4733 §3.2 events 0-15; event 16 is hook flash."""
FLASH = 16
MAX_DURATION = 0xFFFF
_PAYLOAD = struct.Struct("!BBH")


class DtmfError(MediaError):
    """A telephone-event payload or request that RFC 4733 does not allow."""


def key_to_event(key: str) -> int:
    """Event code of a key ("0"-"9", "*", "#", "A"-"D"; "flash" for hook flash)."""
    if key.lower() == "flash":
        return FLASH
    index = EVENT_KEYS.find(key.upper()) if len(key) == 1 else -1
    if index < 0:
        raise DtmfError(f"not a DTMF key: {key!r}")
    return index


def event_to_key(event: int) -> str:
    """Key for an event code; codes beyond DTMF and flash are named by number ("event-42")."""
    if event < len(EVENT_KEYS):
        return EVENT_KEYS[event]
    return "flash" if event == FLASH else f"event-{event}"


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-byte payload of RFC 4733 §2.3: event, E(nd) bit, volume (0..63 = -dBm0), duration."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    def __post_init__(self) -> None:
        for what, value, maximum in (
            ("event", self.event, 0xFF),
            ("volume", self.volume, 0x3F),
            ("duration", self.duration, MAX_DURATION),
        ):
            if not 0 <= value <= maximum:
                raise DtmfError(f"telephone-event {what} out of range 0..{maximum}: {value}")

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        """Parse the payload; §2.3 allows several events per packet, only the first is read."""
        if len(data) < _PAYLOAD.size:
            raise DtmfError(f"telephone-event payload too short: {len(data)} bytes, need 4")
        event, flags, duration = _PAYLOAD.unpack_from(data)
        # The R bit (0x40) is reserved: senders set it to 0, receivers ignore it (§2.3.3).
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @property
    def key(self) -> str:
        return event_to_key(self.event)


@dataclass(frozen=True, slots=True)
class _Press:
    event: int
    samples: int
    volume: int


class DtmfSender:
    """Produces the RFC 4733 packets of key presses, one per media clock tick.

    All packets of an event share its start timestamp and carry the growing duration; the first
    has the marker bit (§2.5.1.1); the final one has the E bit and is sent ``end_repeats`` times
    (§2.5.1.4, three by default). Every packet gets its own sequence number, and media time keeps
    advancing one frame per tick so audio resumes at the right timestamp.
    """

    def __init__(self, rtp: RtpSender, payload_type: int = 101, *, end_repeats: int = 3) -> None:
        self.rtp = rtp
        self.payload_type = payload_type
        self.end_repeats = end_repeats
        self._queue: deque[_Press] = deque()
        self._current: _Press | None = None
        self._start_ts = 0
        self._tick = 0

    @property
    def busy(self) -> bool:
        """A press is in progress or queued: send :meth:`tick`'s packet instead of audio."""
        return self._current is not None or bool(self._queue)

    def press(self, key: str, duration_ms: int = 100, volume: int = 10) -> None:
        """Queue a key press of ``duration_ms`` (RFC 4733 suggests at least 40 ms of tone)."""
        samples = duration_ms * self.rtp.clock_rate // 1000
        if not 0 < samples <= MAX_DURATION:
            raise DtmfError(f"DTMF duration {duration_ms} ms out of range for one event")
        TelephoneEvent(key_to_event(key), volume=volume)  # validate now, not at send time
        self._queue.append(_Press(key_to_event(key), samples, volume))

    def tick(self) -> RtpPacket | None:
        """The event packet for this 20 ms tick, or None when no press is in progress."""
        if self._current is None:
            if not self._queue:
                return None
            self._current = self._queue.popleft()
            self._start_ts = self.rtp.timestamp
            self._tick = 0
        press = self._current
        frame = self.rtp.frame_samples
        updates = math.ceil(press.samples / frame)
        duration = min((self._tick + 1) * frame, press.samples)
        end = self._tick >= updates - 1
        payload = TelephoneEvent(press.event, end, press.volume, duration)
        packet = self.rtp.stamp(
            bytes(payload),
            marker=self._tick == 0,
            payload_type=self.payload_type,
            timestamp=self._start_ts,
        )
        self.rtp.advance(frame)
        self._tick += 1
        if self._tick >= updates - 1 + self.end_repeats:
            self._current = None
        return packet


def key_press_packets(
    rtp: RtpSender, key: str, duration_ms: int = 100, payload_type: int = 101, volume: int = 10
) -> list[RtpPacket]:
    """Every packet of one key press, in order; packet ``i`` is meant to leave at tick ``i``."""
    sender = DtmfSender(rtp, payload_type)
    sender.press(key, duration_ms, volume)
    packets: list[RtpPacket] = []
    while (packet := sender.tick()) is not None:
        packets.append(packet)
    return packets


@dataclass(frozen=True, slots=True)
class DtmfKey:
    """One key press as received: the key, its RTP start timestamp and duration in samples."""

    key: str
    event: int
    timestamp: int
    duration: int
    ended: bool
    """True when an end packet was seen; False when the event was closed by a newer one or flush."""


@dataclass(slots=True)
class _Pending:
    event: int
    timestamp: int
    duration: int


class DtmfReceiver:
    """Turns telephone-event packets into key presses, each reported once.

    An event is identified by its RTP timestamp (§2.5.2.1: a new timestamp starts a new event), so
    losing the first packets (and the marker) still yields the key; retransmitted end packets and
    stragglers of finished events are ignored; an event whose end packets were all lost is
    reported when the next event starts or on :meth:`flush`.
    """

    def __init__(self, payload_type: int = 101, *, memory: int = 32) -> None:
        self.payload_type = payload_type
        self._done: deque[int] = deque(maxlen=memory)
        self._pending: _Pending | None = None
        self._last_ts: int | None = None
        self.malformed = 0
        """Event packets dropped because the payload did not parse (counted, never raised)."""

    def feed(self, packet: RtpPacket) -> list[DtmfKey]:
        """Account for one RTP packet; return the key presses it completes (usually none or one)."""
        if packet.payload_type != self.payload_type:
            return []
        try:
            event = TelephoneEvent.parse(packet.payload)
        except DtmfError:
            self.malformed += 1
            return []
        ts = packet.timestamp
        if ts in self._done or (self._last_ts is not None and ts_diff(ts, self._last_ts) < 0):
            return []  # retransmitted end, or a straggler of an event already reported or older
        keys: list[DtmfKey] = []
        pending = self._pending
        if pending is not None and pending.timestamp != ts:
            keys.extend(self.flush())  # its end packets were lost: the new event closes it
            pending = None
        if pending is None:
            pending = self._pending = _Pending(event.event, ts, event.duration)
            self._last_ts = ts
        pending.duration = max(pending.duration, event.duration)
        if event.end:
            keys.append(self._finish(ended=True))
        return keys

    def flush(self) -> list[DtmfKey]:
        """Report the event in progress as finished (stream ended, or no end packet ever came)."""
        return [self._finish(ended=False)] if self._pending is not None else []

    def _finish(self, *, ended: bool) -> DtmfKey:
        pending = self._pending
        assert pending is not None
        self._pending = None
        self._done.append(pending.timestamp)
        return DtmfKey(
            event_to_key(pending.event), pending.event, pending.timestamp, pending.duration, ended
        )
