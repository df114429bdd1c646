"""net/rtp: RTP port pairs and MediaSession over real loopback sockets (short, bounded runs).

Two sessions negotiate with their own SDP, then exchange tones; frequencies are checked by FFT peak
and levels by RMS, so a wrong codec, byte order, resampling or SRTP key would fail.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest

from ifescalate.media.frames import AudioFrame
from ifescalate.media.rtcp import Bye, parse_compound
from ifescalate.media.rtp import RtpPacket, RtpSender
from ifescalate.net.rtp import MediaConfig, MediaSession, Rechunker, RtpPortError, RtpPortPool
from ifescalate.sip.sdp import PCMA, PCMU, TELEPHONE_EVENT, NotAcceptableHere

HOST = "127.0.0.1"
CODECS = (PCMU, PCMA, TELEPHONE_EVENT)


def tone_source(freq: float, rate: int = 8000, amplitude: int = 8000) -> Callable[[], AudioFrame]:
    state = {"n": 0}

    def source() -> AudioFrame:
        n = state["n"]
        t = (np.arange(n, n + rate // 50)) / rate
        state["n"] = n + rate // 50
        return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)

    return source


def peak_hz(samples: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def in_loop(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in its own event loop, bounded in time (no pytest-asyncio here)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 10.0))

    return run


def pair(
    pool: RtpPortPool, *, secure: bool = False, config: MediaConfig | None = None
) -> tuple[MediaSession, MediaSession]:
    loop = asyncio.get_running_loop()
    a = MediaSession(loop, pool, HOST, config=config, call_id="a")
    b = MediaSession(loop, pool, HOST, config=config, call_id="b")
    offer = a.offer(address=HOST, codecs=CODECS, session_id=1, secure=secure)
    answer = b.answer(offer, address=HOST, codecs=CODECS, session_id=2)
    a.accept_answer(answer)
    return a, b


# -- the port pool -------------------------------------------------------------------------------


def test_pool_hands_out_even_rtp_ports_with_rtcp_next_and_skips_a_taken_pair() -> None:
    pool = RtpPortPool(41001, 41011)  # an odd start is rounded up to the next even port
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind((HOST, 41003))  # the RTCP half of the first pair is taken
    try:
        port, rtp, rtcp = pool.bind(HOST)
        assert port == 41004
        assert rtp.getsockname() == (HOST, 41004) and rtcp.getsockname() == (HOST, 41005)
        assert pool.in_use == {41004}
        rtp.close()
        rtcp.close()
        pool.release(41004)
        assert pool.in_use == set()
    finally:
        blocker.close()


def test_pool_exhausted_raises() -> None:
    pool = RtpPortPool(41020, 41023)
    held = [pool.bind(HOST) for _ in range(2)]
    with pytest.raises(RtpPortError):
        pool.bind(HOST)
    for _, rtp, rtcp in held:
        rtp.close()
        rtcp.close()


# -- sessions ------------------------------------------------------------------------------------


async def exchange(a: MediaSession, b: MediaSession, seconds: float = 0.8) -> tuple[list, list]:
    heard_a: list[AudioFrame] = []
    heard_b: list[AudioFrame] = []
    a.source, b.source = tone_source(440), tone_source(1000)
    a.sink, b.sink = heard_a.append, heard_b.append
    a.start()
    b.start()
    await asyncio.sleep(seconds)
    return heard_a, heard_b


@in_loop
async def test_two_sessions_exchange_tones_both_ways() -> None:
    pool = RtpPortPool(41100, 41199)
    a, b = pair(pool)
    try:
        assert a.codec is not None and a.codec.name == "PCMU" and a.srtp is None
        heard_a, heard_b = await exchange(a, b)
        # 0.8 s of 20 ms ticks, minus the jitter buffer's initial 60 ms.
        assert len(heard_b) >= 25 and len(heard_a) >= 25
        got_b = np.concatenate(heard_b[10:])
        got_a = np.concatenate(heard_a[10:])
        assert abs(peak_hz(got_b) - 440) < 10
        assert abs(peak_hz(got_a) - 1000) < 10
        # 8000 peak amplitude -> RMS 5657; G.711 keeps it within a few percent.
        assert 5000 < rms(got_b) < 6300 and 5000 < rms(got_a) < 6300
        assert a.latched and b.latched
        assert b.counters.received >= 30 and b.counters.dropped_invalid == 0
    finally:
        a.close()
        b.close()


@in_loop
async def test_srtp_round_trip_and_plain_rtp_into_srtp_is_dropped() -> None:
    pool = RtpPortPool(41200, 41299)
    loop = asyncio.get_running_loop()
    a = MediaSession(loop, pool, HOST)
    b = MediaSession(loop, pool, HOST)
    offer = a.offer(address=HOST, codecs=CODECS, session_id=1, secure=True)
    assert b"RTP/SAVP" in offer and b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in offer
    answer = b.answer(offer, address=HOST, codecs=CODECS, session_id=2)
    assert b"RTP/SAVP" in answer and b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in answer
    a.accept_answer(answer)
    try:
        assert a.srtp is not None and b.srtp is not None
        heard_a, heard_b = await exchange(a, b)
        assert abs(peak_hz(np.concatenate(heard_b[10:])) - 440) < 10
        assert abs(peak_hz(np.concatenate(heard_a[10:])) - 1000) < 10
        # A plain RTP packet from the right address fails SRTP authentication.
        before = b.counters.received
        plain = bytes(RtpSender(0, 8000).send_frame(bytes(160)))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(plain, (HOST, b.port))
            await asyncio.sleep(0.1)
        assert b.counters.dropped_invalid + b.counters.dropped_source >= 1
        assert b.counters.received >= before
    finally:
        a.close()
        b.close()


@in_loop
async def test_srtp_answer_without_usable_crypto_is_488() -> None:
    pool = RtpPortPool(41300, 41309)
    loop = asyncio.get_running_loop()
    a = MediaSession(loop, pool, HOST)
    b = MediaSession(loop, pool, HOST)
    offer = a.offer(address=HOST, codecs=CODECS, session_id=1, secure=True)
    bad = offer.replace(b"AES_CM_128_HMAC_SHA1_80", b"F8_128_HMAC_SHA1_80")
    try:
        with pytest.raises(NotAcceptableHere):
            b.answer(bad, address=HOST, codecs=CODECS, session_id=2)
    finally:
        a.close()
        b.close()


def _offer_to(port: int, direction: str = "sendrecv") -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        f"a={direction}\r\n"
    ).encode()


@in_loop
async def test_latches_to_the_first_valid_sender_and_ignores_other_hosts() -> None:
    pool = RtpPortPool(41400, 41409)
    loop = asyncio.get_running_loop()
    advertised = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    advertised.bind((HOST, 0))
    actual = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    actual.bind((HOST, 0))
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.2", 0))
    for s in (advertised, actual, other):
        s.setblocking(False)
    session = MediaSession(loop, pool, HOST)
    session.answer(
        _offer_to(advertised.getsockname()[1]), address=HOST, codecs=CODECS, session_id=2
    )
    try:
        session.start()
        await asyncio.sleep(0.1)
        assert not session.latched
        assert advertised.recv(2048)  # before latching we send to the SDP address
        sender = RtpSender(0, 8000)
        other.sendto(bytes(sender.send_frame(bytes(160))), (HOST, session.port))
        await asyncio.sleep(0.05)
        assert not session.latched and session.counters.dropped_source == 1
        actual.sendto(bytes(sender.send_frame(bytes(160))), (HOST, session.port))
        await asyncio.sleep(0.1)
        assert session.latched and session.remote_rtp == actual.getsockname()
        packet = RtpPacket.parse(actual.recv(2048))
        assert packet.payload_type == 0 and len(packet.payload) == 160
        # Once latched, even the SDP address is not accepted any more.
        advertised.sendto(bytes(sender.send_frame(bytes(160))), (HOST, session.port))
        await asyncio.sleep(0.05)
        assert session.counters.dropped_source == 2
    finally:
        session.close()
        for s in (advertised, actual, other):
            s.close()


@pytest.mark.parametrize(("direction", "fires"), [("sendrecv", True), ("sendonly", False)])
@in_loop
async def test_no_media_timeout(direction: str, fires: bool) -> None:
    pool = RtpPortPool(41500, 41509)
    loop = asyncio.get_running_loop()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((HOST, 0))
    session = MediaSession(loop, pool, HOST, config=MediaConfig(no_media_timeout=0.3))
    fired: list[float] = []
    session.on_timeout = lambda: fired.append(loop.time())
    session.answer(
        _offer_to(silent.getsockname()[1], direction), address=HOST, codecs=CODECS, session_id=2
    )
    try:
        started = loop.time()
        session.start()
        await asyncio.sleep(0.5)
        if fires:
            assert len(fired) == 1 and 0.3 <= fired[0] - started < 0.45
        else:
            # The peer holds the call (sendonly: it may send music or nothing): no timeout.
            assert fired == []
    finally:
        session.close()
        silent.close()


@in_loop
async def test_dtmf_both_ways() -> None:
    pool = RtpPortPool(41600, 41699)
    a, b = pair(pool)
    got_a: list[str] = []
    got_b: list[str] = []
    a.on_dtmf, b.on_dtmf = got_a.append, got_b.append
    try:
        a.start()
        b.start()
        a.send_dtmf("5")
        a.send_dtmf("#")
        b.send_dtmf("1")
        await asyncio.sleep(0.6)
        assert got_b == ["5", "#"]
        assert got_a == ["1"]
        assert b.counters.dtmf == 2
    finally:
        a.close()
        b.close()


@in_loop
async def test_close_frees_ports_and_stops_sending() -> None:
    pool = RtpPortPool(41700, 41709)
    loop = asyncio.get_running_loop()
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind((HOST, 0))
    listener.setblocking(False)
    rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtcp.bind((HOST, listener.getsockname()[1] + 1))
    rtcp.setblocking(False)
    session = MediaSession(loop, pool, HOST)
    closed: list[bool] = []
    session.on_close.append(lambda: closed.append(True))
    port = session.port
    session.answer(_offer_to(listener.getsockname()[1]), address=HOST, codecs=CODECS, session_id=2)
    session.start()
    await asyncio.sleep(0.1)
    session.close()
    session.close()  # idempotent
    assert closed == [True] and pool.in_use == set()
    # RTCP BYE went out on close (RFC 3550 §6.6): the compound's last packet type is 203.
    packets = parse_compound(rtcp.recv(2048))
    assert isinstance(packets[-1], Bye) and packets[-1].sources == (session.ssrc,)
    while True:
        try:
            listener.recv(2048)
        except BlockingIOError:
            break
    await asyncio.sleep(0.1)
    with pytest.raises(BlockingIOError):
        listener.recv(2048)  # the clock is stopped: nothing more is sent
    for p in (port, port + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind((HOST, p))  # the sockets are closed
    listener.close()
    rtcp.close()


def test_rechunker_cuts_30_ms_packets_into_20_ms_frames_on_the_timeline() -> None:
    chunker = Rechunker(160)
    ramp = np.arange(720, dtype=np.int16)
    ts0 = 0xFFFFFF00  # the timestamp wraps inside the run
    out = [
        chunker.feed((ts0 + i * 240) % (1 << 32), ramp[i * 240 : (i + 1) * 240]) for i in range(3)
    ]
    assert [(ts, len(f)) for ts, f in out] == [
        (ts0, 160),
        ((ts0 + 160) % (1 << 32), 320),
        ((ts0 + 480) % (1 << 32), 160),
    ]
    # 80 samples wait for the next packet.
    assert np.array_equal(np.concatenate([f for _, f in out]), ramp[:640])
    # A gap: the partial frame is dropped and the new packet starts the timeline again.
    chunker.feed(0, ramp[:240])  # 80 samples left over at ts 160
    ts, frames = chunker.feed(1000, ramp[:240])
    assert ts == 1000 and np.array_equal(frames, ramp[:160])


@in_loop
async def test_send_clock_counts_frames_sent_late_when_the_loop_stalls() -> None:
    import time

    pool = RtpPortPool(41780, 41789)
    a, b = pair(pool)
    try:
        await exchange(a, b, seconds=0.2)
        on_time = a.clock_stats.ticks
        assert on_time >= 5 and a.clock_stats.skipped == 0
        time.sleep(0.05)  # the loop stalls: the next frames are due 30-50 ms ago
        await asyncio.sleep(0.1)
        stats = a.clock_stats
        assert stats.late >= 2 and stats.max_lateness >= 0.03
        assert stats.ticks + stats.skipped >= on_time + 6  # 150 ms: none lost from the schedule
    finally:
        a.close()
        b.close()
