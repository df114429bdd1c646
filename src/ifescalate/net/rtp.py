"""RTP/RTCP sockets and the 20 ms media clock for one call: the asyncio edge of ``media/``.

``RtpPortPool`` hands out (RTP, RTCP) port pairs: an even RTP port and RTCP on the next one
(RFC 3550 §11). ``MediaSession`` owns one pair for one call. It builds its own SDP offer or answer
(so the real port and, over TLS, SDES keys go out, RFC 4568), negotiates (RFC 3264), then runs:

- a drift-free 20 ms clock (``MediaClock`` deadlines on the loop's shared ticker, one timer for
  every clock of the loop: ``net/room_clock.py``) that pulls one frame
  from ``source`` (None = silence), encodes it (or sends RFC 4733 events while a key is pressed),
  and pops one frame from the jitter buffer into ``sink``;
- non-blocking sockets read through ``loop.add_reader``: SRTP unprotect, RTP parse, RFC 3550 A.1
  statistics, telephone-events to ``on_dtmf``, audio decoded into the jitter buffer;
- symmetric RTP (RFC 4961, and the common "latching" practice behind NATs): once the first valid
  packet arrives from the SDP host (or from anywhere when ``accept_any_source``), we send to the
  address it came from;
- RTCP SR/RR + SDES every ~5 s (RFC 3550 §6.2 minimum interval, randomised per §6.3.1), RTT from
  the peer's report blocks, BYE on close;
- a no-media timeout: ``no_media_timeout`` seconds without RTP calls ``on_timeout`` (not while the
  call is held: only a sendrecv stream must carry RTP);
- re-offers in the dialog (:meth:`MediaSession.update`, RFC 3264 §8): hold and resume change what
  we send (nothing toward a party that holds us) and restart the no-media period;
- RTP and RTCP on one port when both sides agreed to rtcp-mux (RFC 5761), else RTCP on port + 1.

Everything here is synchronous (no task per call): sockets are bound with plain ``socket`` calls
so the SDP can carry the port inside the SIP handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from ..media.clock import MediaClock, Ticks
from ..media.codecs import Codec as MediaCodec
from ..media.codecs import codec_for
from ..media.dtmf import DtmfReceiver, DtmfSender
from ..media.frames import AudioFrame, MediaError, silence
from ..media.jitter import JitterBuffer
from ..media.mux import is_rtcp
from ..media.rechunk import Rechunker
from ..media.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    make_report,
    ntp_from_unix,
    ntp_middle,
    parse_compound,
    round_trip_time,
)
from ..media.rtp import TS_MOD, ReceiverStats, RtpPacket, RtpSender
from ..media.srtp import CryptoAttribute as SrtpCrypto
from ..media.srtp import SrtpChannel, SrtpSuite, answer_crypto, make_crypto
from ..sip.reoffer import answer_reoffer
from ..sip.sdp import (
    Codec,
    CryptoAttribute,
    NegotiatedMedia,
    NotAcceptableHere,
    SessionDescription,
    build_answer,
    build_offer,
    negotiate,
    parse_sdp,
)
from .codec_prefs import (
    DEFAULT_PREFERENCE,
    answer_codecs,
    check_preference,
    event_for,
    offer_codecs,
)
from .room_clock import EARLY, LATE_THRESHOLD, ClockStats, SharedTicker, TickerHandle
from .rtp_ports import RtpPortError as RtpPortError  # re-exported (callers import it from here)
from .rtp_ports import RtpPortPool as RtpPortPool  # re-exported

log = logging.getLogger("ifescalate.rtp")

Rand = Callable[[int], bytes]
FrameSource = Callable[[], AudioFrame | None]
FrameSink = Callable[[AudioFrame], None]

_MAX_DATAGRAM = 2048
_READ_BURST = 64  # datagrams per readable event: bounded so one flood cannot starve the loop
_RTCP_INTERVAL = 5.0


# ----------------------------------------------------------------------------------------- config


@dataclass(slots=True)
class MediaConfig:
    """How calls get media (``UaConfig.media``); None there keeps the SIP-only path."""

    port_start: int = 40000
    port_end: int = 49999
    #: Seconds without RTP before ``on_timeout`` (the UA hangs up); 0 disables.
    no_media_timeout: float = 30.0
    #: Latch to the first valid RTP from any address, not only from the SDP host (NAT without ALG).
    accept_any_source: bool = False
    #: "auto": RTP/SAVP with SDES on TLS calls, RTP/AVP otherwise; "off": never offer SRTP;
    #: "mandatory": always offer RTP/SAVP.
    srtp: Literal["auto", "off", "mandatory"] = "auto"
    #: Called with every session when its call's media starts (attach source, sink, on_dtmf).
    on_start: Callable[[MediaSession], None] | None = None
    #: Audio codecs we offer and accept, best first (SDP encoding names: opus, G722, PCMU, PCMA).
    codecs: tuple[str, ...] = DEFAULT_PREFERENCE
    #: As answerer, pick the first of ``codecs`` the offer has, not the first offered codec we
    #: support (RFC 3264 §6.1 only recommends keeping the offerer's order).
    prefer_own_order: bool = False
    #: Offer and accept RTP/RTCP multiplexing on one port (RFC 5761); a peer that does not answer
    #: ``a=rtcp-mux`` gets RTCP on port + 1 as before.
    rtcp_mux: bool = True
    _pool: RtpPortPool | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_preference(self.codecs)

    def sdp_codecs(self) -> tuple[Codec, ...]:
        """What our offers list and our answers may accept: ``codecs`` plus telephone-events."""
        return offer_codecs(self.codecs)

    def port_pool(self) -> RtpPortPool:
        """The pool every session of this configuration takes its ports from (made on first use)."""
        if self._pool is None:
            self._pool = RtpPortPool(self.port_start, self.port_end)
        return self._pool


@dataclass(slots=True)
class MediaCounters:
    """What a session saw, for logs and the TERMINATED witness entry."""

    sent: int = 0
    received: int = 0
    dropped_source: int = 0
    """Datagrams from an address that is neither the SDP host nor the latched one."""
    dropped_invalid: int = 0
    """Datagrams that failed SRTP authentication or RTP parsing, or carried an unknown type."""
    dtmf: int = 0
    rtcp_sent: int = 0
    rtcp_received: int = 0
    rtt: float | None = None
    extra: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- session


class MediaSession:
    """One call's audio stream; see the module docstring. Create, offer/answer, ``start``, ``close``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        pool: RtpPortPool,
        host: str,
        *,
        config: MediaConfig | None = None,
        rand: Rand = os.urandom,
        call_id: str = "",
    ) -> None:
        self.loop = loop
        self.pool = pool
        self.host = host
        self.config = config or MediaConfig()
        self.rand = rand
        self.call_id = call_id
        self.port, self._rtp_sock, self._rtcp_sock = pool.bind(host)
        self.source: FrameSource | None = None
        self.sink: FrameSink | None = None
        self.on_dtmf: Callable[[str], None] | None = None
        self.on_timeout: Callable[[], None] | None = None
        #: Called with our new direction when a re-offer changed it (hold: recvonly/inactive).
        self.on_direction: Callable[[str], None] | None = None
        self.on_close: list[Callable[[], None]] = []
        self.counters = MediaCounters()
        #: The 20 ms send clock's punctuality (ticks run, late > 5 ms, dropped, worst delay).
        self.clock_stats = ClockStats()
        self.negotiated: NegotiatedMedia | None = None
        self.codec: MediaCodec | None = None
        self.srtp: SrtpChannel | None = None
        self.remote_rtp: tuple[str, int] | None = None
        self.remote_rtcp: tuple[str, int] | None = None
        self.latched = False
        self.started = False
        self.closed = False
        self._offer: SessionDescription | None = None
        self._local: SessionDescription | None = None  # the last SDP we sent (RFC 3264 §8)
        self._codecs: tuple[Codec, ...] = ()
        self._mux = False
        self._offered_crypto: SrtpCrypto | None = None
        self._rx_pts: set[int] = set()
        self._rx_event_pt: int | None = None
        self._ts_scale = 1  # PCM samples per RTP timestamp unit: 2 for G.722, else 1
        self._sender: RtpSender | None = None
        self._dtmf_tx: DtmfSender | None = None
        self._dtmf_rx: DtmfReceiver | None = None
        self._jitter: JitterBuffer | None = None
        self._rechunk = Rechunker(160)
        self._stats: ReceiverStats | None = None
        self._clock: MediaClock | None = None
        self._timer: TickerHandle | None = None
        self._driven = False  # a room clock runs our ticks (follow/lead)
        self._ticker = SharedTicker.for_loop(loop)
        self._last_rx = 0.0
        self._next_rtcp = 0.0
        self._packets_at_report = 0
        self._cname = f"{self.rand(6).hex()}@ifescalate"

    @property
    def rtcp_port(self) -> int:
        return self.port + 1

    @property
    def ssrc(self) -> int | None:
        """Our RTP SSRC once started (RFC 3550 §8.1: random)."""
        return self._sender.ssrc if self._sender is not None else None

    @property
    def sample_rate(self) -> int:
        """Sample rate (Hz) of the 20 ms frames ``source`` gives and ``sink`` takes: the codec's
        audio rate (8000 G.711, 16000 G.722, 48000 Opus), not its RTP clock; 8000 before offer/answer.
        """
        return self.codec.clock_rate if self.codec is not None else 8000

    @property
    def clock_rate(self) -> int:
        """Same as :attr:`sample_rate` (kept for callers written before G.722/Opus)."""
        return self.sample_rate

    @property
    def rtp_clock_rate(self) -> int:
        """Rate of our RTP timestamps (RFC 3551 §4.5): 8000 for G.711 and G.722, 48000 for Opus."""
        return self.codec.rtp_clock_rate if self.codec is not None else 8000

    # -- offer / answer (RFC 3264, RFC 4568) --------------------------------------------------------

    def offer(
        self, *, address: str, codecs: Sequence[Codec], session_id: int, secure: bool
    ) -> bytes:
        """Our offer: this session's port; RTP/SAVP with a fresh SDES key when ``secure``."""
        crypto: list[CryptoAttribute] = []
        profile = "RTP/AVP"
        self._codecs = tuple(codecs)
        if self._wants_srtp(secure):
            self._offered_crypto = make_crypto(1, SrtpSuite.AES_CM_128_HMAC_SHA1_80, self.rand)
            crypto.append(CryptoAttribute.parse(str(self._offered_crypto)))
            profile = "RTP/SAVP"
        self._offer = build_offer(
            address=address,
            port=self.port,
            codecs=codecs,
            session_id=session_id,
            session_version=session_id,
            crypto=crypto,
            profile=profile,
            rtcp_mux=self.config.rtcp_mux,
        )
        return self._offer.to_bytes()

    def _wants_srtp(self, secure: bool) -> bool:
        mode = self.config.srtp
        return mode == "mandatory" or (mode == "auto" and secure)

    def answer(
        self, offer: bytes, *, address: str, codecs: Sequence[Codec], session_id: int
    ) -> bytes:
        """Answer ``offer`` with one audio codec and negotiate; raises NotAcceptableHere (488) /
        SipParseError.

        ``codecs`` are those we support, best first. The choice is the first offered codec among
        them (RFC 3264 §6.1 keeps the offerer's order), or the first of ``codecs`` that was offered
        when ``config.prefer_own_order``; the answer carries it alone, with the telephone-event at
        its RTP clock if offered (:mod:`~ifescalate.net.codec_prefs`).
        """
        parsed = parse_sdp(offer)
        crypto_answer = self._crypto_answer(parsed)
        self._codecs = tuple(codecs)

        def answer_with(supported: Sequence[Codec]) -> SessionDescription:
            return build_answer(
                parsed,
                address=address,
                port=self.port,
                codecs=supported,
                session_id=session_id,
                crypto_answer=crypto_answer,
                prefer_offer_order=not self.config.prefer_own_order,
                rtcp_mux=self.config.rtcp_mux,
            )

        answer = answer_with(answer_codecs(answer_with(codecs), codecs))
        self._configure(negotiate(parsed, answer, role="answerer"), answer)
        return answer.to_bytes()

    def _crypto_answer(self, offer: SessionDescription) -> CryptoAttribute | None:
        secured = [m for m in offer.media if m.media == "audio" and m.proto == "RTP/SAVP"]
        if not secured or self.config.srtp == "off":
            return None
        try:
            _, ours = answer_crypto([str(c) for c in secured[0].crypto], self.rand)
        except MediaError as exc:
            raise NotAcceptableHere(f"no acceptable SRTP crypto: {exc}") from None
        return CryptoAttribute.parse(str(ours))

    def accept_answer(self, answer: bytes) -> None:
        """The peer's answer to :meth:`offer`; raises NotAcceptableHere / SipParseError."""
        if self._offer is None:
            raise NotAcceptableHere("an answer arrived for no offer")
        offer = self._offer
        self._configure(negotiate(offer, parse_sdp(answer), role="offerer"), offer)

    def _configure(self, nm: NegotiatedMedia, local: SessionDescription) -> None:
        try:
            codec = codec_for(nm.codec.name, nm.codec.payload_type)
            if nm.local_crypto is not None and nm.remote_crypto is not None:
                self.srtp = SrtpChannel(
                    SrtpCrypto.parse(str(nm.local_crypto)), SrtpCrypto.parse(str(nm.remote_crypto))
                )
        except MediaError as exc:
            raise NotAcceptableHere(f"cannot run the negotiated media: {exc}") from None
        if nm.profile == "RTP/SAVP" and self.srtp is None:
            raise NotAcceptableHere("RTP/SAVP negotiated without usable keys")
        if codec.clock_rate % codec.rtp_clock_rate:
            raise NotAcceptableHere(f"{codec.name}: sample rate is no multiple of the RTP clock")
        # RFC 4733 §2.1: events share the audio's timestamp clock; one at another rate is unusable.
        rtp_rate = codec.rtp_clock_rate
        event = next((c for c in nm.codecs if c.payload_type == nm.telephone_event), None)
        if event is not None and event.clock_rate != rtp_rate:
            nm = replace(nm, telephone_event=None)
        self.negotiated, self.codec = nm, codec
        self._ts_scale = codec.clock_rate // rtp_rate
        # We receive with the numbers our own SDP listed (RFC 3264 §6.1), send with the peer's.
        ours = local.media[nm.index].codecs
        self._rx_pts = {c.payload_type for c in ours if c.matches(nm.codec)}
        self._rx_pts.add(nm.codec.payload_type)
        our_event = event_for(ours, rtp_rate)
        self._rx_event_pt = our_event.payload_type if our_event else nm.telephone_event
        if not nm.rtcp_mux:
            self.remote_rtcp = (nm.remote_rtcp_address, nm.remote_rtcp_port)
        self.remote_rtp = (nm.remote_address, nm.remote_port)
        self._local, self._mux = local, nm.rtcp_mux

    def update(self, offer: bytes) -> bytes:
        """Answer a re-offer of the peer (re-INVITE or UPDATE, RFC 3264 §8); our new SDP.

        Hold (``sendonly``, ``inactive``, ``c=0.0.0.0``) and resume change what we send and restart
        the no-media period; a new address or port is used from now on. Raises NotAcceptableHere
        (488) / SipParseError, leaving the session as it was (RFC 3261 §14.2).
        """
        current, local = self.negotiated, self._local
        if current is None or local is None:
            raise NotAcceptableHere("a re-offer before the first offer/answer completed")
        result = answer_reoffer(
            parse_sdp(offer),
            previous=local,
            current=current,
            supported=self._codecs,
            rtcp_mux=self.config.rtcp_mux,
        )
        self._apply_update(result.negotiated)
        self._local = result.answer
        return result.answer.to_bytes()

    def _apply_update(self, nm: NegotiatedMedia) -> None:
        old = self.negotiated
        assert old is not None
        # The DTMF sender and receiver were made at start: keep their event payload type.
        nm = replace(nm, telephone_event=old.telephone_event)
        # RFC 3264 §8.4: c=0.0.0.0 (RFC 2543 hold) carries no address: keep where we sent to.
        if not _null(nm.remote_address):
            moved = (nm.remote_address, nm.remote_port) != (old.remote_address, old.remote_port)
            if moved:
                self.remote_rtp, self.latched = (nm.remote_address, nm.remote_port), False
            self.remote_rtcp = (
                None if nm.rtcp_mux else (nm.remote_rtcp_address, nm.remote_rtcp_port)
            )
        if self._sender is not None:
            self._sender.payload_type = nm.codec.payload_type  # the peer may renumber (§8.3.2)
        self._rx_pts.add(nm.codec.payload_type)
        self.negotiated, self._mux = nm, nm.rtcp_mux
        if nm.direction != old.direction:
            log.info("call %s: direction %s -> %s", self.call_id, old.direction, nm.direction)
            self._last_rx = self.loop.time()  # a fresh no-media period from hold or resume
            if self.on_direction is not None:
                self.on_direction(nm.direction)

    # -- running ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the clock and the readers (idempotent); needs a negotiated stream."""
        if self.started or self.closed:
            return
        nm, codec = self.negotiated, self.codec
        if nm is None or codec is None:
            raise RuntimeError("start() before the offer/answer completed")
        self.started = True
        self._sender = RtpSender(codec.payload_type, codec.rtp_clock_rate, rand=self.rand)
        if nm.telephone_event is not None:
            self._dtmf_tx = DtmfSender(self._sender, nm.telephone_event)
        self._dtmf_rx = DtmfReceiver(self._rx_event_pt if self._rx_event_pt is not None else -1)
        self._jitter = JitterBuffer(codec.clock_rate)
        self._rechunk = Rechunker(self._jitter.frame_samples)
        now = self.loop.time()
        self._last_rx = now
        self._next_rtcp = now + _RTCP_INTERVAL / 2  # §6.2: the first report after half the minimum
        self._clock = MediaClock(now)
        self.loop.add_reader(self._rtp_sock.fileno(), self._read_rtp)
        self.loop.add_reader(self._rtcp_sock.fileno(), self._read_rtcp)
        if self.config.on_start is not None:
            self.config.on_start(self)
        if not self._driven:
            self._arm()

    def _arm(self) -> None:
        assert self._clock is not None
        self._timer = self._ticker.call_at(self._clock.next_deadline(), self._on_clock)

    def _on_clock(self) -> None:
        if self.closed or self._clock is None or self._driven:
            return
        now = self.loop.time()
        clock = self._clock
        ticks = clock.advance(now + EARLY)  # the shared ticker runs up to EARLY before
        self._note_lateness(clock, ticks, now)
        for _ in range(ticks.due):
            self._tick(now)
            if self.closed:
                return
        self.after_ticks(now, ticks.skipped)
        if not self.closed:
            self._arm()

    def _note_lateness(self, clock: MediaClock, ticks: Ticks, now: float) -> None:
        """Count frames sent late (RoomClock's measure: > 5 ms after the deadline) or dropped."""
        stats = self.clock_stats
        stats.ticks += ticks.due
        stats.skipped += ticks.skipped
        for index in range(ticks.first, ticks.first + ticks.due):
            lateness = now - clock.deadline(index)
            if lateness > stats.max_lateness:
                stats.max_lateness = lateness
            stats.late += lateness > LATE_THRESHOLD

    def _tick(self, now: float) -> None:
        self.send_tick(now)
        self.receive_tick(now)

    # -- ticks run by a room clock (a bridged leg, ``RoomClock.drive``) ---------------------------

    def follow(self) -> None:
        """A room clock runs this session's 20 ms ticks from now on: one clock per bridged call,
        and the frame played out of the jitter buffer is mixed and sent back in the same tick."""
        self._driven = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def lead(self) -> None:
        """Back to the session's own clock (the room clock stopped or let go), from now."""
        if self._driven:
            self._driven = False
            if self.started and not self.closed:
                self._clock = MediaClock(self.loop.time())
                self._arm()

    def receive_tick(self, now: float) -> None:
        """The receive half of a tick: the jitter buffer's frame for these 20 ms to ``sink``."""
        if self._jitter is not None and not self.closed:
            frame = self._jitter.pop(now)
            if frame is not None and self.sink is not None:
                self.sink(frame)

    def send_tick(self, now: float) -> None:
        """The send half: these 20 ms from ``source`` (or an RFC 4733 event) to the peer."""
        nm = self.negotiated
        if nm is not None and nm.sends and self.remote_rtp is not None and self._sender is not None:
            self._send_media()

    def after_ticks(self, now: float, skipped: int) -> None:
        """Once per wake-up after the ticks: media time of ``skipped`` dropped ticks (RFC 3550
        §5.1 timestamps are sampling time), the no-media timeout and RTCP."""
        if skipped and self._sender is not None:
            self._sender.skip(self._sender.frame_samples * skipped)
        if not self.closed:
            self._housekeeping(now)

    def _send_media(self) -> None:
        sender, codec = self._sender, self.codec
        assert sender is not None and codec is not None
        if self._dtmf_tx is not None and self._dtmf_tx.busy:
            packet = self._dtmf_tx.tick()
            if packet is not None:
                self._send_rtp(packet)
                return
        frame = self.source() if self.source is not None else None
        if frame is None:
            frame = silence(codec.clock_rate)
        self._send_wire(sender.send_frame_bytes(codec.encode(frame)))

    def _send_rtp(self, packet: RtpPacket) -> None:
        self._send_wire(bytes(packet))

    def _send_wire(self, data: bytes) -> None:
        if self.srtp is not None:
            data = self.srtp.protect(data)
        assert self.remote_rtp is not None
        if _sendto(self._rtp_sock, data, self.remote_rtp):
            self.counters.sent += 1

    def _housekeeping(self, now: float) -> None:
        nm = self.negotiated
        timeout = self.config.no_media_timeout
        # Only a two-way stream must carry RTP: a peer that holds us (sendonly/inactive) may be silent.
        if (
            timeout > 0
            and nm is not None
            and nm.direction == "sendrecv"
            and now - self._last_rx > timeout
        ):
            log.info("call %s: no RTP for %.0f s", self.call_id, timeout)
            self._last_rx = now  # report once per period, not at every tick
            if self.on_timeout is not None:
                self.on_timeout()
            return
        if now >= self._next_rtcp:
            self._send_rtcp(now)
            # §6.3.1: randomise to [0.5, 1.5) of the interval so participants do not synchronise.
            self._next_rtcp = now + _RTCP_INTERVAL * (0.5 + self.rand(1)[0] / 256)

    # -- receiving RTP ----------------------------------------------------------------------------

    def _read_rtp(self) -> None:
        # One datagram per readable event: the loop's readiness is level-triggered (uvloop and
        # the selector loops), so a second datagram wakes us again on the next iteration. Reading
        # on until EAGAIN cost a failed recvfrom and an exception per packet in the usual case of
        # one packet per 20 ms (and a flood still gets one datagram per iteration, not 64).
        try:
            data, addr = self._rtp_sock.recvfrom(_MAX_DATAGRAM)
        except OSError:
            return  # EAGAIN, EINTR, or ICMP port unreachable surfaced as ECONNREFUSED
        self._on_rtp(data, (addr[0], addr[1]), self.loop.time())

    def _source_ok(self, addr: tuple[str, int]) -> bool:
        if self.latched:
            return addr == self.remote_rtp
        expected = self.remote_rtp[0] if self.remote_rtp is not None else None
        return self.config.accept_any_source or addr[0] == expected

    def _on_rtp(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        """One datagram on the RTP port (public for tests: feed bytes as if they arrived)."""
        if not self._source_ok(addr):
            self.counters.dropped_source += 1
            return
        if self._mux and is_rtcp(data):
            self._on_rtcp(data, now)  # RFC 5761 §4: RTCP on the RTP port
            return
        try:
            if self.srtp is not None:
                data = self.srtp.unprotect(data)
            packet = RtpPacket.parse(data)
        except MediaError:
            self.counters.dropped_invalid += 1
            return
        pt = packet.payload_type
        if pt not in self._rx_pts and pt != self._rx_event_pt:
            self.counters.dropped_invalid += 1  # comfort noise, RTCP on a muxed port, garbage
            return
        if not self.latched:
            # RFC 4961 symmetric RTP: answer to where valid media comes from, once it has come.
            self.latched = True
            self.remote_rtp = addr
            if self.remote_rtcp is not None and self.config.accept_any_source:
                self.remote_rtcp = (addr[0], addr[1] + 1)
        self.counters.received += 1
        self._last_rx = now
        self._account(packet, now)
        if pt == self._rx_event_pt:
            self._on_event(packet)
        else:
            self._on_audio(packet, now)

    def _account(self, packet: RtpPacket, now: float) -> None:
        stats = self._stats
        if stats is None or stats.ssrc != packet.ssrc:
            rate = self.codec.rtp_clock_rate if self.codec is not None else 8000
            # The source came through signalling, so no A.1 probation is needed.
            stats = self._stats = ReceiverStats(packet.ssrc, rate, probation=0)
        stats.update(packet.sequence, packet.timestamp, now)

    def _on_event(self, packet: RtpPacket) -> None:
        assert self._dtmf_rx is not None
        for key in self._dtmf_rx.feed(packet):
            self.counters.dtmf += 1
            log.info("call %s: DTMF %s", self.call_id, key.key)
            if self.on_dtmf is not None:
                self.on_dtmf(key.key)

    def _on_audio(self, packet: RtpPacket, now: float) -> None:
        assert self.codec is not None and self._jitter is not None
        try:
            decoded = self.codec.decode(packet.payload)
            # The jitter buffer and the rechunker count in PCM samples; RFC 3551 §4.5.2 G.722's
            # timestamp counts 8 kHz units, half its samples. Scaling modulo 2^32 keeps every
            # timestamp difference (all they use) exact.
            timestamp = packet.timestamp * self._ts_scale % TS_MOD
            frames = decoded
            if len(decoded) % self._jitter.frame_samples:
                # A peer packetizing at another ptime (30 ms from SIPp's pcaps): cut into 20 ms.
                timestamp, frames = self._rechunk.feed(timestamp, decoded)
            if len(frames):
                self._jitter.push(packet.sequence, timestamp, frames, now, ssrc=packet.ssrc)
        except MediaError:
            self.counters.dropped_invalid += 1

    # -- RTCP (RFC 3550 §6) -----------------------------------------------------------------------

    def _read_rtcp(self) -> None:
        for _ in range(_READ_BURST):
            try:
                data, _addr = self._rtcp_sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._on_rtcp(data, self.loop.time())

    def _on_rtcp(self, data: bytes, now: float) -> None:
        try:
            if self.srtp is not None:
                data = self.srtp.unprotect_rtcp(data)
            packets = parse_compound(data)
        except MediaError:
            self.counters.dropped_invalid += 1
            return
        self.counters.rtcp_received += 1
        arrival = ntp_from_unix(time.time())
        for packet in packets:
            stats = self._stats
            if isinstance(packet, SenderReport) and stats is not None and packet.ssrc == stats.ssrc:
                stats.note_sender_report(ntp_middle(packet.ntp_timestamp), now)
            if isinstance(packet, SenderReport | ReceiverReport):
                self._note_blocks(packet.reports, arrival)

    def _note_blocks(self, blocks: Sequence[ReportBlock], arrival: int) -> None:
        ssrc = self._sender.ssrc if self._sender is not None else None
        for block in blocks:
            if block.ssrc == ssrc:
                rtt = round_trip_time(block, arrival)
                if rtt is not None:
                    self.counters.rtt = rtt

    def _report(self, now: float) -> bytes:
        sender = self._sender
        assert sender is not None
        sent_since = sender.packet_count != self._packets_at_report
        self._packets_at_report = sender.packet_count
        sources = [self._stats] if self._stats is not None else []
        return make_report(
            sender.ssrc,
            self._cname,
            sources,
            now,
            sender=sender if sent_since else None,
            ntp_timestamp=ntp_from_unix(time.time()),
        )

    def _send_rtcp(self, now: float, extra: bytes = b"") -> None:
        # RFC 5761: a multiplexed stream sends RTCP from and to the RTP ports.
        sock, dest = (
            (self._rtp_sock, self.remote_rtp) if self._mux else (self._rtcp_sock, self.remote_rtcp)
        )
        nm = self.negotiated
        if dest is None or self._sender is None or (nm is not None and _null(nm.remote_address)):
            return  # RFC 3264 §8.4: to a c=0.0.0.0 peer, neither RTP nor RTCP
        data = self._report(now) + extra
        if self.srtp is not None:
            data = self.srtp.protect_rtcp(data)
        if _sendto(sock, data, dest):
            self.counters.rtcp_sent += 1

    # -- control ----------------------------------------------------------------------------------

    def send_dtmf(self, key: str, duration_ms: int = 100) -> None:
        """Queue an RFC 4733 key press; raises MediaError without negotiated telephone-event."""
        if self._dtmf_tx is None:
            raise MediaError("the peer did not accept telephone-event: cannot send DTMF")
        self._dtmf_tx.press(key, duration_ms)

    def stats(self) -> dict[str, object]:
        """Figures for logs: packets, loss, jitter (ms), RTT (s), jitter-buffer counters."""
        out: dict[str, object] = {
            "port": self.port,
            "codec": self.codec.name if self.codec is not None else None,
            "srtp": self.srtp is not None,
            "sent": self.counters.sent,
            "received": self.counters.received,
            "dropped": self.counters.dropped_source + self.counters.dropped_invalid,
            "dtmf": self.counters.dtmf,
            "rtt": self.counters.rtt,
            "rtcp_mux": self._mux,
            "rtcp_sent": self.counters.rtcp_sent,
            "rtcp_received": self.counters.rtcp_received,
        }
        if self._stats is not None:
            out["lost"] = self._stats.cumulative_lost
            out["jitter_ms"] = round(self._stats.jitter * 1000 / self._stats.clock_rate, 2)
        if self._jitter is not None:
            out["concealed"] = self._jitter.stats.concealed
        return out

    def close(self) -> None:
        """Send RTCP BYE (§6.6), stop the clock and the readers, free the ports (idempotent)."""
        if self.closed:
            return
        if self.started:
            with contextlib.suppress(MediaError):
                assert self._sender is not None
                self._send_rtcp(self.loop.time(), bytes(Bye((self._sender.ssrc,))))
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for sock in (self._rtp_sock, self._rtcp_sock):
            if self.started:
                with contextlib.suppress(ValueError, OSError):
                    self.loop.remove_reader(sock.fileno())
            sock.close()
        self.pool.release(self.port)
        callbacks, self.on_close = self.on_close, []
        for callback in callbacks:
            callback()


def _null(address: str) -> bool:
    """RFC 3264 §8.4: the unspecified address in c= (RFC 2543 hold) says "send me nothing"."""
    return address in ("0.0.0.0", "::")


def _sendto(sock: socket.socket, data: bytes, addr: tuple[str, int]) -> bool:
    """Best effort: a full buffer or an unreachable peer loses this packet, as UDP would."""
    try:
        sock.sendto(data, addr)
    except OSError:
        return False
    return True
