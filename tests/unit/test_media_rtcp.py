"""RTCP packets (RFC 3550 §6) byte-exact, compound validity, report blocks, NTP, RTT, interval."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ifescalate.media.frames import MediaError
from ifescalate.media.rtcp import (
    COMPENSATION,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    RtcpPacket,
    SdesChunk,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    make_report,
    ntp_from_unix,
    ntp_middle,
    parse_compound,
    report_block,
    round_trip_time,
    rtcp_interval,
    serialize_compound,
    unix_from_ntp,
)
from ifescalate.media.rtp import ReceiverStats, RtpSender

BLOCK_HEX = "55667788 40 fffffe 00010005 00000009 b7052000 00054000"
BLOCK = ReportBlock(0x55667788, 0x40, -2, 0x00010005, 9, 0xB7052000, 0x00054000)
# V=2 P=0 RC=1 | PT=200 | length 12 | SSRC | NTP | RTP ts | packets | octets | one block
SR_HEX = "81c8000c 11223344 e1b2c3d480000000 00001f40 00000064 00003e80 " + BLOCK_HEX
SR_PACKET = SenderReport(0x11223344, 0xE1B2C3D480000000, 8000, 100, 16000, (BLOCK,))
RR_HEX = "80c90001 11223344"
# chunk: SSRC | CNAME=1 len 9 "user@host" | one null octet ends the list at a 32-bit boundary
SDES_HEX = "81ca0004 11223344 0109 757365724068 6f7374 00"
BYE_HEX = "81cb0002 11223344 03 627965"


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


@pytest.mark.parametrize(
    ("hex_text", "packet"),
    [
        (SR_HEX, SR_PACKET),
        (RR_HEX, ReceiverReport(0x11223344)),
        ("81c90007 11223344 " + BLOCK_HEX, ReceiverReport(0x11223344, (BLOCK,))),
        (SDES_HEX, SourceDescription.cname(0x11223344, "user@host")),
        (BYE_HEX, Bye((0x11223344,), "bye")),
        ("80cb0000", Bye()),
        ("81cb0002 11223344 00000000", Bye((0x11223344,), "")),
        ("83cc0002 61626364 00000001", UnknownRtcp(204, 3, h("61626364 00000001"))),
        ("81ca0002 00000001 00000000", SourceDescription((SdesChunk(1),))),
    ],
)
def test_fixtures_parse_and_serialize(hex_text: str, packet: RtcpPacket) -> None:
    data = h(hex_text)
    assert RtcpPacket.parse(data) == packet
    assert bytes(packet) == data


def test_sdes_chunk_without_items_and_cname() -> None:
    chunk = SdesChunk(1)
    assert bytes(chunk) == h("00000001 00000000")
    assert chunk.cname is None
    sdes = SourceDescription.cname(0x11223344, "user@host")
    assert sdes.chunks[0].cname == "user@host"
    two = SourceDescription((SdesChunk(1, ((1, b"ab"), (6, b"tool"))), SdesChunk(2)))
    assert bytes(two) == h("82ca0006 00000001 01026162 0604746f 6f6c0000 00000002 00000000")
    assert RtcpPacket.parse(bytes(two)) == two


def test_compound_round_trip_and_padding_on_last() -> None:
    data = h(RR_HEX + SDES_HEX)
    packets = parse_compound(data)
    assert packets == [ReceiverReport(0x11223344), SourceDescription.cname(0x11223344, "user@host")]
    assert serialize_compound(packets) == data
    padded_bye = h("a1cb0002 11223344 00000004")  # P=1: 4 padding octets, count in the last one
    assert parse_compound(data + padded_bye)[-1] == Bye((0x11223344,))


@pytest.mark.parametrize(
    ("hex_text", "message"),
    [
        ("", "RTCP compound packet is empty"),
        ("80c9", "RTCP header truncated: 2 bytes at offset 0"),
        ("40c90001 11223344", "RTCP version must be 2, got 1"),
        ("80c90002 11223344", "RTCP length 2 exceeds the 8 bytes left"),
        (SDES_HEX + RR_HEX, "RTCP compound packet must start with SR or RR"),
        ("a0c90002 11223344 00000004" + RR_HEX, "RTCP padding only allowed on the last packet"),
        ("a0c90001 11223300", "RTCP padding count 0 invalid for a 4-byte body"),
        ("a0c90001 11223309", "RTCP padding count 9 invalid for a 4-byte body"),
        ("80c80001 11223344", "RTCP SR too short: 4 bytes of body, need 24"),
        ("80c90000", "RTCP RR too short: 0 bytes of body, need 4"),
        ("81c90001 11223344", "RTCP RR too short for 1 report blocks"),
        ("81ca0002 11223344 01096162", "RTCP SDES item truncated"),
        ("81ca0002 11223344 01026162", "RTCP SDES chunk has no end item"),
        ("82ca0002 11223344 00000000", "RTCP SDES chunk truncated"),
        ("82cb0001 11223344", "RTCP BYE too short for 2 sources"),
        ("81cb0002 11223344 05627965", "RTCP BYE reason truncated"),
    ],
)
def test_compound_errors(hex_text: str, message: str) -> None:
    with pytest.raises(RtcpError) as info:
        parse_compound(h(hex_text))
    assert str(info.value) == message
    assert isinstance(info.value, MediaError)


def test_single_parse_rejects_trailing_bytes_and_reduced_size_allowed() -> None:
    with pytest.raises(RtcpError, match="RTCP packet length 8 does not match the 12 bytes given"):
        RtcpPacket.parse(h(RR_HEX + "00000000"))
    assert parse_compound(h(BYE_HEX), require_report_first=False) == [Bye((0x11223344,), "bye")]


def test_constructors_validate() -> None:
    with pytest.raises(
        RtcpError, match=r"cumulative lost out of range -8388608\.\.8388607: 8388608"
    ):
        ReportBlock(1, 0, 0x800000, 0, 0)
    with pytest.raises(RtcpError, match=r"report count out of range 0\.\.31: 32"):
        ReceiverReport(1, (BLOCK,) * 32)
    with pytest.raises(RtcpError, match="32-bit aligned, got 3 bytes"):
        ReceiverReport(1, (), b"abc")


# --- NTP and RTT --------------------------------------------------------------------------------


def test_ntp_conversion() -> None:
    assert ntp_from_unix(0.0) == 2_208_988_800 << 32
    assert ntp_from_unix(1.5) == ((2_208_988_800 + 1) << 32) | 0x80000000
    assert unix_from_ntp(ntp_from_unix(1_700_000_000.25)) == pytest.approx(1_700_000_000.25)
    assert ntp_middle(0xE1B2C3D4_80000000) == 0xC3D48000


def test_rtt_example_of_rfc3550_section_6_4_1() -> None:
    # A = 0xb710:8000 (46864.500 s), LSR = 0xb705:2000 (46853.125 s), DLSR = 0x0005:4000 (5.250 s),
    # A - LSR - DLSR = 0x0006:2000 (6.125 s)
    arrival = 0xB7108000 << 16
    assert round_trip_time(BLOCK, arrival) == 0x00062000 / 65536 == 6.125
    assert round_trip_time(ReportBlock(1, 0, 0, 0, 0, lsr=0, dlsr=0), arrival) is None
    assert round_trip_time(ReportBlock(1, 0, 0, 0, 0, lsr=0xB7108001), arrival) == 0.0


def test_report_block_from_receiver_stats() -> None:
    stats = ReceiverStats(ssrc=0x55667788, clock_rate=8000, probation=0)
    for seq in (65534, 65535, 2, 3):  # 0 and 1 lost across the wrap: 2 of 6, 85/256
        stats.update(seq, 0, 0.0)
    stats.note_sender_report(0xB7052000, now=10.0)
    block = report_block(stats, now=15.25)
    assert block == ReportBlock(0x55667788, 85, 2, 0x00010003, 0, 0xB7052000, 0x00054000)
    assert report_block(stats, now=16.0).fraction_lost == 0  # new interval
    # The peer's clock: our SR left at 46853.125 s, its report arrives at 46864.5 s.
    assert round_trip_time(block, 0xB7108000 << 16) == 6.125


def test_make_report_sr_then_sdes() -> None:
    sender = RtpSender(0, 8000, rand=lambda n: bytes(n), ssrc=0x11223344)
    for _ in range(100):
        sender.send_frame(bytes(160))
    stats = ReceiverStats(ssrc=0x55667788, clock_rate=8000, probation=0)
    stats.update(5, 0, 0.0)
    data = make_report(0x11223344, "user@host", [stats], 1.0, sender=sender, ntp_timestamp=1 << 32)
    sr, sdes = parse_compound(data)
    assert sr == SenderReport(
        0x11223344, 1 << 32, 16000, 100, 16000, (ReportBlock(0x55667788, 0, 0, 5, 0),)
    )
    assert sdes == SourceDescription.cname(0x11223344, "user@host")
    many = [ReceiverStats(ssrc=i, clock_rate=8000) for i in range(40)]
    rr1, rr2, _ = parse_compound(make_report(7, "x", many, 0.0))
    assert isinstance(rr1, ReceiverReport) and isinstance(rr2, ReceiverReport)
    assert (len(rr1.reports), len(rr2.reports)) == (31, 9)


# --- interval (§6.3.1, A.7) ---------------------------------------------------------------------


def test_rtcp_interval() -> None:
    # Two members: the 5 s minimum wins; rand 0.5 means no randomisation.
    assert rtcp_interval(2, 1, 500.0, True, 100.0, False, rand=lambda: 0.5) == pytest.approx(
        5 / COMPENSATION
    )
    assert rtcp_interval(2, 1, 500.0, True, 100.0, True, rand=lambda: 0.5) == pytest.approx(
        2.5 / COMPENSATION
    )
    assert rtcp_interval(2, 1, 500.0, True, 100.0, False, rand=lambda: 0.0) == pytest.approx(
        2.5 / COMPENSATION
    )
    # 1000 members, 10 senders: receivers share 75% of the bandwidth, senders 25%.
    receiver = rtcp_interval(1000, 10, 500.0, False, 100.0, False, rand=lambda: 0.5)
    assert receiver == pytest.approx(100 * 990 / 375 / COMPENSATION)
    sender = rtcp_interval(1000, 10, 500.0, True, 100.0, False, rand=lambda: 0.5)
    assert sender == pytest.approx(max(5.0, 100 * 10 / 125) / COMPENSATION)


# --- fuzz ---------------------------------------------------------------------------------------


@given(st.binary(max_size=160))
def test_parse_random_bytes_parses_or_raises_media_error(data: bytes) -> None:
    for parse in (RtcpPacket.parse, parse_compound):
        try:
            result = parse(data)
        except MediaError:
            continue
        packets = result if isinstance(result, list) else [result]
        for packet in packets:
            assert RtcpPacket.parse(bytes(packet)) == packet


@given(st.binary(min_size=4, max_size=120).map(lambda b: b[: len(b) // 4 * 4]))
def test_rtcp_shaped_random_bodies(body: bytes) -> None:
    for packet_type in (200, 201, 202, 203):
        for count in (0, 1, 2, 31):
            data = bytes((0x80 | count, packet_type)) + (len(body) // 4).to_bytes(2, "big") + body
            try:
                packet = RtcpPacket.parse(data)
            except MediaError:
                continue
            assert RtcpPacket.parse(bytes(packet)) == packet
