"""Codec choice (net/codec_prefs) and MediaSession carrying Opus, G.722, PCMU and PCMA end to end.

Offer/answer choice is checked on the SDP we produce; media over real loopback sockets: two sessions
negotiate each codec and exchange tones (FFT peak within 10 Hz, RMS near the level sent), and the RTP
timestamps on the wire advance in the codec's RTP clock (G.722: 160 per 20 ms for 320 samples).
"""

from __future__ import annotations

import asyncio
import itertools
import socket

import numpy as np
import pytest
from tests.unit.test_net_rtp import HOST, in_loop, peak_hz, rms, tone_source

from ifescalate.media.frames import MediaError, samples_per_frame
from ifescalate.media.rtp import RtpPacket, ts_diff
from ifescalate.net.codec_prefs import (
    TELEPHONE_EVENT_48K,
    check_preference,
    offer_codecs,
)
from ifescalate.net.rtp import MediaConfig, MediaSession, RtpPortPool
from ifescalate.sip.sdp import TELEPHONE_EVENT, NotAcceptableHere, parse_sdp

ALL = ("opus", "G722", "PCMU", "PCMA")
#: Sample rate and RTP timestamp step per 20 ms packet (RFC 3551 §4.5.2, RFC 7587 §4.1).
RATES = {"opus": (48000, 960), "G722": (16000, 160), "PCMU": (8000, 160), "PCMA": (8000, 160)}


def offer_sdp(port: int, *rtpmaps: str, direction: str = "sendrecv") -> bytes:
    """An offer listing ``rtpmaps`` ("96 opus/48000/2", ...) in that order."""
    pts = " ".join(m.split()[0] for m in rtpmaps)
    lines = "".join(f"a=rtpmap:{m}\r\n" for m in rtpmaps)
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {pts}\r\n{lines}a={direction}\r\n"
    ).encode()


def rtpmaps(sdp: bytes) -> list[str]:
    return [c.rtpmap for c in parse_sdp(sdp).media[0].codecs]


# -- what we offer -------------------------------------------------------------------------------


def test_default_offer_is_opus_g722_pcmu_pcma_with_an_event_per_rtp_clock() -> None:
    assert [c.rtpmap for c in offer_codecs()] == [
        "111 opus/48000/2",
        "9 G722/8000",
        "0 PCMU/8000",
        "8 PCMA/8000",
        "110 telephone-event/48000",
        "101 telephone-event/8000",
    ]
    assert offer_codecs(("pcma", "PCMU")) == (*offer_codecs(("PCMA", "PCMU"))[:2], TELEPHONE_EVENT)
    assert offer_codecs(("opus",))[-1] == TELEPHONE_EVENT_48K
    assert MediaConfig().sdp_codecs() == offer_codecs()


@pytest.mark.parametrize(
    ("names", "message"),
    [(("G729",), "unknown audio codec"), ((), "non-empty"), (("PCMU", "pcmu"), "repeats")],
)
def test_bad_preferences_are_refused(names: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_preference(names)
    with pytest.raises(ValueError, match=message):
        MediaConfig(codecs=names)


# -- what we answer ------------------------------------------------------------------------------

CHROME_LIKE = (
    "8 PCMA/8000",
    "96 opus/48000/2",
    "0 PCMU/8000",
    "9 G722/8000",
    "126 telephone-event/8000",
    "97 telephone-event/48000",
)


@pytest.mark.parametrize(
    ("offered", "config", "expected"),
    [
        # RFC 3264 §6.1: the first offered codec we support, with the offer's numbers, and the
        # telephone-event at its RTP clock only.
        (CHROME_LIKE, MediaConfig(), ["8 PCMA/8000", "126 telephone-event/8000"]),
        (
            CHROME_LIKE,
            MediaConfig(prefer_own_order=True),
            ["96 opus/48000/2", "97 telephone-event/48000"],
        ),
        (
            CHROME_LIKE,
            MediaConfig(codecs=("G722", "PCMU"), prefer_own_order=True),
            ["9 G722/8000", "126 telephone-event/8000"],
        ),
        (
            CHROME_LIKE,
            MediaConfig(codecs=("PCMU", "G722")),
            ["0 PCMU/8000", "126 telephone-event/8000"],
        ),
        # Events only at 8000 next to Opus would run on the wrong clock: answered without events.
        (("96 opus/48000/2", "101 telephone-event/8000"), MediaConfig(), ["96 opus/48000/2"]),
        (("18 G729/8000", "9 G722/8000"), MediaConfig(), ["9 G722/8000"]),
    ],
)
@in_loop
async def test_answer_carries_one_codec(
    offered: tuple[str, ...], config: MediaConfig, expected: list[str]
) -> None:
    session = MediaSession(
        asyncio.get_running_loop(), RtpPortPool(43000, 43009), HOST, config=config
    )
    try:
        answer = session.answer(
            offer_sdp(43500, *offered), address=HOST, codecs=config.sdp_codecs(), session_id=2
        )
        assert rtpmaps(answer) == expected
        assert session.negotiated is not None and session.codec is not None
        assert session.negotiated.codec.rtpmap == expected[0]
        has_events = len(expected) == 2
        assert (session.negotiated.telephone_event is not None) == has_events
    finally:
        session.close()


@in_loop
async def test_opus_with_events_only_at_8000_cannot_send_dtmf() -> None:
    session = MediaSession(asyncio.get_running_loop(), RtpPortPool(43010, 43019), HOST)
    offer = offer_sdp(43500, "111 opus/48000/2", "101 telephone-event/8000")
    try:
        session.answer(offer, address=HOST, codecs=offer_codecs(), session_id=2)
        session.start()
        with pytest.raises(MediaError, match="telephone-event"):
            session.send_dtmf("1")
    finally:
        session.close()


@in_loop
async def test_nothing_in_common_is_488() -> None:
    session = MediaSession(asyncio.get_running_loop(), RtpPortPool(43020, 43029), HOST)
    try:
        with pytest.raises(NotAcceptableHere, match="no common audio codec"):
            session.answer(
                offer_sdp(43500, "18 G729/8000", "3 GSM/8000"),
                address=HOST,
                codecs=offer_codecs(),
                session_id=2,
            )
    finally:
        session.close()


@in_loop
async def test_offerer_takes_the_codec_the_answer_chose() -> None:
    loop = asyncio.get_running_loop()
    pool = RtpPortPool(43030, 43039)
    a = MediaSession(loop, pool, HOST)
    try:
        offer = a.offer(address=HOST, codecs=offer_codecs(), session_id=1, secure=False)
        assert rtpmaps(offer)[:4] == [
            "111 opus/48000/2",
            "9 G722/8000",
            "0 PCMU/8000",
            "8 PCMA/8000",
        ]
        a.accept_answer(offer_sdp(43500, "9 G722/8000", "101 telephone-event/8000"))
        assert a.codec is not None and a.codec.name == "G722"
        assert (a.sample_rate, a.rtp_clock_rate, a.clock_rate) == (16000, 8000, 16000)
        assert a.negotiated is not None and a.negotiated.telephone_event == 101
    finally:
        a.close()


# -- media end to end ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
@in_loop
async def test_two_sessions_negotiate_and_exchange_tones(name: str) -> None:
    loop = asyncio.get_running_loop()
    pool = RtpPortPool(43100, 43199)
    # The offerer offers everything (Opus first); the answerer only supports ``name``.
    a = MediaSession(loop, pool, HOST, call_id="a")
    b = MediaSession(loop, pool, HOST, config=MediaConfig(codecs=(name,)), call_id="b")
    offer = a.offer(address=HOST, codecs=offer_codecs(), session_id=1, secure=False)
    a.accept_answer(b.answer(offer, address=HOST, codecs=b.config.sdp_codecs(), session_id=2))
    rate, _ = RATES[name]
    heard_a: list[np.ndarray] = []
    heard_b: list[np.ndarray] = []
    try:
        assert a.codec is not None and b.codec is not None
        assert a.codec.name == b.codec.name == name
        assert a.sample_rate == b.sample_rate == rate
        a.source, b.source = tone_source(440, rate), tone_source(1000, rate)
        a.sink, b.sink = heard_a.append, heard_b.append
        a.start()
        b.start()
        await asyncio.sleep(0.8)
        assert len(heard_a) >= 25 and len(heard_b) >= 25
        assert {len(f) for f in heard_a + heard_b} == {samples_per_frame(rate)}
        got_b, got_a = np.concatenate(heard_b[10:]), np.concatenate(heard_a[10:])
        assert abs(peak_hz(got_b, rate) - 440) < 10
        assert abs(peak_hz(got_a, rate) - 1000) < 10
        # Amplitude 8000 -> RMS 5657; every codec here keeps a steady sine within ~1 dB.
        assert 4800 < rms(got_b) < 6500 and 4800 < rms(got_a) < 6500
        # Timestamps fed in the wrong clock would leave every other slot empty (half concealed).
        for session, heard in ((a, heard_a), (b, heard_b)):
            concealed = session.stats()["concealed"]
            assert isinstance(concealed, int) and concealed * 5 < len(heard)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("name", ALL)
@in_loop
async def test_rtp_timestamps_advance_in_the_rtp_clock(name: str) -> None:
    loop = asyncio.get_running_loop()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind((HOST, 0))
    session = MediaSession(loop, RtpPortPool(43200, 43209), HOST)
    rtpmap = {"opus": "111 opus/48000/2", "G722": "9 G722/8000"}.get(
        name, f"{0 if name == 'PCMU' else 8} {name}/8000"
    )
    session.answer(
        offer_sdp(peer.getsockname()[1], rtpmap), address=HOST, codecs=offer_codecs(), session_id=2
    )
    try:
        session.start()
        await asyncio.sleep(0.15)
        peer.setblocking(False)
        packets = [RtpPacket.parse(peer.recv(2048)) for _ in range(3)]
        _, step = RATES[name]
        assert [ts_diff(q.timestamp, p.timestamp) for p, q in itertools.pairwise(packets)] == [
            step
        ] * 2
        assert {p.payload_type for p in packets} == {int(rtpmap.split()[0])}
        if name != "opus":
            assert {len(p.payload) for p in packets} == {160}  # 64 kbit/s for 20 ms
    finally:
        session.close()
        peer.close()


@in_loop
async def test_dtmf_over_opus_uses_telephone_event_at_48000() -> None:
    loop = asyncio.get_running_loop()
    pool = RtpPortPool(43300, 43399)
    a = MediaSession(loop, pool, HOST)
    b = MediaSession(loop, pool, HOST)
    offer = a.offer(address=HOST, codecs=offer_codecs(), session_id=1, secure=False)
    answer = b.answer(offer, address=HOST, codecs=offer_codecs(), session_id=2)
    a.accept_answer(answer)
    assert rtpmaps(answer) == ["111 opus/48000/2", "110 telephone-event/48000"]
    got: list[str] = []
    b.on_dtmf = got.append
    try:
        a.start()
        b.start()
        a.send_dtmf("7")
        await asyncio.sleep(0.5)
        assert got == ["7"]
    finally:
        a.close()
        b.close()
