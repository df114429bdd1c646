"""net/rtp over loopback: re-offers reach a running MediaSession (hold/resume, RFC 3264 §8.4) and
RTP/RTCP multiplexing on one port (RFC 5761), including the §4 demultiplexing rule."""

from __future__ import annotations

import asyncio
import socket

import pytest
from tests.unit.test_net_rtp import CODECS, HOST, in_loop, pair, tone_source

from ifescalate.media.mux import is_rtcp
from ifescalate.media.rtcp import Bye, ReceiverReport, SenderReport, parse_compound
from ifescalate.media.rtp import RtpPacket, RtpSender
from ifescalate.net.rtp import MediaConfig, MediaSession, RtpPortPool
from ifescalate.sip.sdp import NotAcceptableHere, next_version, parse_sdp, with_direction


def _offer(port: int, direction: str = "sendrecv", *, host: str = HOST, version: int = 1,
           mux: bool = False, codecs: str = "0 101") -> bytes:  # fmt: skip
    return (
        f"v=0\r\no=- 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {codecs}\r\na=rtpmap:101 telephone-event/8000\r\n"
        f"a={direction}\r\n" + ("a=rtcp-mux\r\n" if mux else "")
    ).encode()


def _drain(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            return count
        count += 1


def _udp(host: str = HOST) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


# -- the RFC 5761 §4 rule ----------------------------------------------------------------------------


def test_demux_rule_tells_rtcp_from_rtp_by_the_second_octet() -> None:
    sender = RtpSender(0, 8000)
    report = SenderReport(1, 2, 3, 4, 5, ())
    for rtcp in (bytes(report), bytes(ReceiverReport(1, ())), bytes(Bye((1,)))):
        assert is_rtcp(rtcp)
    for pt in (0, 8, 9, 96, 101, 111, 127):
        packet = RtpSender(pt, 8000).send_frame(bytes(160))  # first packet: marker bit set
        assert not is_rtcp(bytes(packet)), pt
    assert not is_rtcp(bytes(sender.send_frame(bytes(160))))  # marker clear
    # Why 64-95 is forbidden on a muxed port: PT 72 with the marker bit reads as an SR (200).
    assert is_rtcp(bytes(RtpSender(72, 8000).send_frame(bytes(160))))
    assert not is_rtcp(b"\x80")


# -- hold and resume ---------------------------------------------------------------------------------


@in_loop
async def test_hold_stops_our_rtp_and_resume_restarts_it() -> None:
    pool = RtpPortPool(41720, 41729)
    loop = asyncio.get_running_loop()
    peer = _udp()
    session = MediaSession(loop, pool, HOST, config=MediaConfig(no_media_timeout=0))
    port = peer.getsockname()[1]
    session.answer(_offer(port), address=HOST, codecs=CODECS, session_id=5)
    seen: list[str] = []
    session.on_direction = seen.append
    session.source = tone_source(440)
    try:
        session.start()
        await asyncio.sleep(0.2)
        assert _drain(peer) >= 5
        answer = parse_sdp(session.update(_offer(port, "sendonly", version=2)))
        assert answer.media[0].direction == "recvonly" and answer.origin.session_version == 6
        _drain(peer)  # what was in flight before the answer
        sent = session.counters.sent
        await asyncio.sleep(0.3)
        assert session.counters.sent == sent and _drain(peer) == 0  # nothing toward the holder
        answer = parse_sdp(session.update(_offer(port, "sendrecv", version=3)))
        assert answer.media[0].direction == "sendrecv" and answer.origin.session_version == 7
        await asyncio.sleep(0.2)
        assert _drain(peer) >= 5
        assert seen == ["recvonly", "sendrecv"]
    finally:
        session.close()
        peer.close()


@in_loop
async def test_no_media_timeout_is_suspended_while_held_and_restarts_at_resume() -> None:
    pool = RtpPortPool(41730, 41739)
    loop = asyncio.get_running_loop()
    peer = _udp()
    session = MediaSession(loop, pool, HOST, config=MediaConfig(no_media_timeout=0.3))
    fired: list[float] = []
    session.on_timeout = lambda: fired.append(loop.time())
    port = peer.getsockname()[1]
    session.answer(_offer(port), address=HOST, codecs=CODECS, session_id=5)
    try:
        session.start()
        await asyncio.sleep(0.1)
        session.update(_offer(port, "inactive", version=2))
        await asyncio.sleep(0.6)  # twice the timeout, held and silent
        assert fired == []
        resumed = loop.time()
        session.update(_offer(port, "sendrecv", version=3))
        await asyncio.sleep(0.5)
        # A fresh period from the resume, not from the last packet before the hold.
        assert len(fired) == 1 and 0.3 <= fired[0] - resumed < 0.45, [f - resumed for f in fired]
    finally:
        session.close()
        peer.close()


@in_loop
async def test_rfc2543_hold_sends_neither_rtp_nor_rtcp() -> None:
    pool = RtpPortPool(41740, 41749)
    loop = asyncio.get_running_loop()
    peer, peer_rtcp = _udp(), _udp()
    session = MediaSession(loop, pool, HOST, config=MediaConfig(no_media_timeout=0))
    port = peer.getsockname()[1]
    session.answer(_offer(port), address=HOST, codecs=CODECS, session_id=5)
    try:
        session.start()
        await asyncio.sleep(0.1)
        answer = parse_sdp(session.update(_offer(port, host="0.0.0.0", version=2)))
        assert answer.media[0].direction == "recvonly"
        _drain(peer)
        sent, rtcp = session.counters.sent, session.counters.rtcp_sent
        session.close()  # would send an RTCP BYE to a peer that did not say c=0.0.0.0
        await asyncio.sleep(0.1)
        assert session.counters.sent == sent and session.counters.rtcp_sent == rtcp
        assert _drain(peer) == 0
    finally:
        session.close()
        peer.close()
        peer_rtcp.close()


@in_loop
async def test_reoffer_without_the_running_codec_is_488_and_changes_nothing() -> None:
    pool = RtpPortPool(41750, 41759)
    loop = asyncio.get_running_loop()
    session = MediaSession(loop, pool, HOST)
    session.answer(_offer(30000), address=HOST, codecs=CODECS, session_id=5)
    before = session.negotiated
    with pytest.raises(NotAcceptableHere, match="drops the running codec"):
        session.update(_offer(30000, "sendonly", version=2, codecs="8 101"))
    assert session.negotiated is before
    session.close()


# -- rtcp-mux ------------------------------------------------------------------------------------------


@in_loop
async def test_two_sessions_mux_rtcp_on_the_rtp_port() -> None:
    pool = RtpPortPool(41760, 41769)
    a, b = pair(pool)  # MediaConfig.rtcp_mux is on by default on both sides
    try:
        assert a.negotiated is not None and a.negotiated.rtcp_mux
        assert b.negotiated is not None and b.negotiated.rtcp_mux
        a.source, b.source = tone_source(440), tone_source(1000)
        a.start()
        b.start()
        await asyncio.sleep(0.3)
        a.close()  # its RTCP BYE goes to b's RTP port, where the §4 rule sends it to RTCP
        await asyncio.sleep(0.1)
        assert b.counters.rtcp_received == 1 and b.counters.dropped_invalid == 0
        assert b.stats()["rtcp_mux"] is True
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("mux", [True, False])
@in_loop
async def test_rtcp_goes_to_the_rtp_port_only_when_the_peer_accepted_mux(mux: bool) -> None:
    pool = RtpPortPool(41770, 41779)
    loop = asyncio.get_running_loop()
    rtp = _udp()
    port = rtp.getsockname()[1]
    rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtcp.setblocking(False)
    try:
        rtcp.bind((HOST, port + 1))
    except OSError:
        pytest.fail(f"port {port + 1} is taken; RFC 3550 §11 pairs need it free")
    session = MediaSession(loop, pool, HOST)
    offer = parse_sdp(session.offer(address=HOST, codecs=CODECS, session_id=3, secure=False))
    assert offer.media[0].rtcp_mux  # offered by default (RFC 5761 §5.1.1)
    answer = _offer(port, mux=mux).replace(b"o=- 1 1", b"o=- 2 2")
    session.accept_answer(answer)
    try:
        session.start()
        await asyncio.sleep(0.1)
        session.close()  # sends RTCP (SR/RR + BYE)
        await asyncio.sleep(0.1)
        on_rtp = []
        while True:
            try:
                on_rtp.append(rtp.recv(2048))
            except BlockingIOError:
                break
        muxed = [d for d in on_rtp if is_rtcp(d)]
        assert all(RtpPacket.parse(d).payload_type == 0 for d in on_rtp if not is_rtcp(d))
        if mux:
            assert len(muxed) == 1 and _drain(rtcp) == 0
            assert any(isinstance(p, Bye) for p in parse_compound(muxed[0]))
        else:
            assert muxed == [] and _drain(rtcp) == 1
    finally:
        session.close()
        rtp.close()
        rtcp.close()


@in_loop
async def test_the_answerer_can_hold_the_offerer() -> None:
    # Our session made the offer (we called); the peer's hold re-offer is answered from that offer:
    # one codec now, same port, o= version + 1 (RFC 3264 §8).
    pool = RtpPortPool(41780, 41789)
    a, b = pair(pool)
    try:
        a.start()
        b.start()
        await asyncio.sleep(0.1)
        first = a._offer
        assert first is not None
        # b's current SDP (its answer to a's unchanged offer, version unchanged), now on hold.
        their = parse_sdp(b.update(first.to_bytes()))
        hold = with_direction(next_version(their), "sendonly").to_bytes()
        answer = parse_sdp(a.update(hold))
        media = answer.media[0]
        assert media.direction == "recvonly" and media.port == a.port
        assert [c.name for c in media.codecs] == ["PCMU", "telephone-event"]
        assert answer.origin.session_version == first.origin.session_version + 1
        assert a.negotiated is not None and not a.negotiated.sends
        sent = a.counters.sent
        await asyncio.sleep(0.2)
        assert a.counters.sent == sent
    finally:
        a.close()
        b.close()
