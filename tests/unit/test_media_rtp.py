"""RTP packets, sequence arithmetic, sender stamping and RFC 3550 A.1/A.3/A.8 receiver statistics."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ifescalate.media.frames import MediaError
from ifescalate.media.rtp import (
    ReceiverStats,
    RtpError,
    RtpExtension,
    RtpPacket,
    RtpSender,
    seq_add,
    seq_diff,
    seq_lt,
    ts_add,
    ts_diff,
)

# RFC 3550 §5.1 layout written out by hand: V=2 P=0 X=0 CC=0 | M=1 PT=0 | seq | ts | SSRC | payload
SIMPLE = bytes.fromhex("8080 1234 deadbeef 01020304 fffe")
# V=2 P=1 X=1 CC=2 | M=0 PT=96 | seq 0xffff | ts 0 | SSRC | 2 CSRCs | ext 0xBEDE len 1 | "hi" | pad 4
FULL = bytes.fromhex(
    "b2 60 ffff 00000000 cafebabe 11111111 22222222 bede0001 10aa0000 6869 000000 04".replace(
        " ", ""
    )
)


def test_parse_simple_fixture() -> None:
    pkt = RtpPacket.parse(SIMPLE)
    assert pkt == RtpPacket(
        payload_type=0,
        sequence=0x1234,
        timestamp=0xDEADBEEF,
        ssrc=0x01020304,
        payload=b"\xff\xfe",
        marker=True,
    )
    assert pkt.version == 2
    assert bytes(pkt) == SIMPLE


def test_parse_full_fixture() -> None:
    pkt = RtpPacket.parse(FULL)
    assert pkt.payload_type == 96 and not pkt.marker
    assert (pkt.sequence, pkt.timestamp, pkt.ssrc) == (0xFFFF, 0, 0xCAFEBABE)
    assert pkt.csrcs == (0x11111111, 0x22222222)
    assert pkt.extension == RtpExtension(0xBEDE, bytes.fromhex("10aa0000"))
    assert pkt.payload == b"hi"
    assert pkt.padding == 4
    assert bytes(pkt) == FULL


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "RTP packet too short: 0 bytes, need at least 12"),
        (SIMPLE[:11], "RTP packet too short: 11 bytes, need at least 12"),
        (b"\x40" + SIMPLE[1:], "RTP version must be 2, got 1"),
        (b"\xc0" + SIMPLE[1:], "RTP version must be 2, got 3"),
        (b"\xa0" + SIMPLE[1:-1] + b"\x00", "RTP padding count must not be 0"),
        (
            b"\xa0" + SIMPLE[1:-1] + b"\x03",
            "RTP padding count 3 exceeds the 2 bytes after the header",
        ),
        (b"\x81" + SIMPLE[1:12], "RTP packet too short for 1 CSRCs"),
        (b"\x90" + SIMPLE[1:12] + b"\xbe\xde", "RTP header extension truncated"),
        (
            b"\x90" + SIMPLE[1:12] + b"\xbe\xde\x00\x02abcd",
            "RTP header extension of 2 words exceeds the packet",
        ),
    ],
)
def test_parse_errors(data: bytes, message: str) -> None:
    with pytest.raises(RtpError) as info:
        RtpPacket.parse(data)
    assert str(info.value) == message
    assert isinstance(info.value, MediaError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"payload_type": 128}, "RTP payload type out of range 0..127: 128"),
        ({"sequence": 65536}, "RTP sequence number out of range 0..65535: 65536"),
        ({"timestamp": -1}, "RTP timestamp out of range 0..4294967295: -1"),
        ({"csrcs": tuple(range(16))}, "RTP packet can carry at most 15 CSRCs, got 16"),
        ({"padding": 256}, "RTP padding out of range 0..255: 256"),
    ],
)
def test_constructor_validates(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"payload_type": 0, "sequence": 0, "timestamp": 0, "ssrc": 0}
    base.update(kwargs)
    with pytest.raises(RtpError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RtpPacket(**base)  # type: ignore[arg-type]
    with pytest.raises(RtpError, match="multiple of 4 bytes, got 3"):
        RtpExtension(1, b"abc")


def test_sequence_and_timestamp_wraparound() -> None:
    assert seq_add(65535, 1) == 0
    assert seq_add(0, -1) == 65535
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(100, 40000) == 100 - 40000 + 65536
    assert seq_lt(65535, 0) and not seq_lt(0, 65535) and not seq_lt(7, 7)
    assert ts_add(0xFFFFFFFF, 161) == 160
    assert ts_diff(0, 0xFFFFFF60) == 160
    assert ts_diff(0xFFFFFF60, 0) == -160


def feed(data: bytes) -> Callable[[int], bytes]:
    buffer = bytearray(data)

    def rand(n: int) -> bytes:
        out = bytes(buffer[:n])
        del buffer[:n]
        assert len(out) == n, "test randomness exhausted"
        return out

    return rand


def test_sender_stamps_from_injected_randomness_and_wraps() -> None:
    sender = RtpSender(0, 8000, rand=feed(bytes.fromhex("11223344 fffe ffffff60")))
    packets = [sender.send_frame(b"\xff" * 160) for _ in range(3)]
    assert [p.ssrc for p in packets] == [0x11223344] * 3
    assert [p.sequence for p in packets] == [0xFFFE, 0xFFFF, 0]
    assert [p.timestamp for p in packets] == [0xFFFFFF60, 0, 160]
    assert [p.marker for p in packets] == [True, False, False]
    sender.skip()
    after_silence = sender.send_frame(b"\xff" * 160)
    assert (after_silence.sequence, after_silence.timestamp, after_silence.marker) == (1, 480, True)
    event = sender.stamp(b"\x01\x0a\x00\xa0", payload_type=101, timestamp=480)
    assert (event.payload_type, event.sequence, event.timestamp) == (101, 2, 480)
    assert sender.packet_count == 5 and sender.octet_count == 4 * 160 + 4
    assert RtpSender(8, 8000, rand=feed(bytes(6)), ssrc=7).ssrc == 7


# --- RFC 3550 A.1 / A.3 / A.8 --------------------------------------------------------------------


def test_a1_probation_needs_two_sequential_packets() -> None:
    stats = ReceiverStats(ssrc=1, clock_rate=8000)
    assert stats.update(100, 0, 0.0) is False
    assert stats.update(101, 160, 0.02) is True
    assert stats.update(102, 320, 0.04) is True
    assert (stats.base_seq, stats.received, stats.expected, stats.cumulative_lost) == (101, 2, 2, 0)


def test_a1_probation_restarts_on_a_gap() -> None:
    stats = ReceiverStats(ssrc=1, clock_rate=8000)
    assert [stats.update(seq, 0, 0.0) for seq in (100, 105, 106)] == [False, False, True]
    assert stats.base_seq == 106 and stats.received == 1


def test_a3_loss_across_the_wrap() -> None:
    stats = ReceiverStats(ssrc=1, clock_rate=8000, probation=0)
    arrived = [s for s in [*range(65530, 65536), *range(6)] if s not in (65534, 2, 3)]
    for seq in arrived:
        assert stats.update(seq, 0, 0.0)
    assert stats.extended_max_seq == 65536 + 5
    assert (stats.expected, stats.received, stats.cumulative_lost) == (12, 9, 3)
    assert stats.fraction_lost() == (3 << 8) // 12 == 64
    assert stats.fraction_lost() == 0  # nothing new in this interval
    for seq in (6, 7, 7):  # a duplicate makes the interval's loss negative: reported as 0
        stats.update(seq, 0, 0.0)
    assert stats.fraction_lost() == 0
    assert stats.cumulative_lost == 14 - 12


def test_a1_reordered_and_resync_after_big_jump() -> None:
    stats = ReceiverStats(ssrc=1, clock_rate=8000, probation=0)
    for seq in range(11):
        stats.update(seq, 0, 0.0)
    assert stats.update(5, 0, 0.0) is True  # late packet: counted, max unchanged
    assert stats.max_seq == 10 and stats.received == 12
    assert stats.update(20000, 0, 0.0) is False  # a very large jump is not trusted alone
    assert stats.max_seq == 10
    assert stats.update(20001, 0, 0.0) is True  # ...but two in a row mean the sender restarted
    assert (stats.base_seq, stats.max_seq, stats.received, stats.cycles) == (20001, 20001, 1, 0)


def test_cumulative_lost_is_clamped_to_24_bits() -> None:
    stats = ReceiverStats(ssrc=1, clock_rate=8000, probation=0)
    stats.update(0, 0, 0.0)
    stats.cycles = 65536 * 200  # 13 million expected, 1 received
    assert stats.cumulative_lost == 0x7FFFFF
    stats.cycles = 0
    stats.received = 0x900000
    assert stats.cumulative_lost == -0x800000


def test_a8_jitter_on_crafted_arrivals() -> None:
    stats = ReceiverStats(ssrc=1, clock_rate=8000, probation=0)
    for seq, now in enumerate([0.0, 0.020, 0.050, 0.060]):
        stats.update(seq, seq * 160, now)
    # D = 0, then |240-160| = 80, then |80-160| = 80: J = 0 -> 5 -> 5 + 75/16
    assert stats.jitter == pytest.approx(5 + 75 / 16)
    assert stats.interarrival_jitter == 9


def test_a8_jitter_is_zero_for_perfect_timing_across_timestamp_wrap() -> None:
    stats = ReceiverStats(ssrc=1, clock_rate=8000, probation=0)
    for i in range(100):
        stats.update(i, ts_add(0xFFFFF000, 160 * i), 1000.0 + 0.02 * i)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


# --- fuzz ---------------------------------------------------------------------------------------


@given(st.binary(max_size=200))
def test_parse_random_bytes_parses_or_raises_media_error(data: bytes) -> None:
    try:
        pkt = RtpPacket.parse(data)
    except MediaError:
        return
    again = RtpPacket.parse(bytes(pkt))
    assert again == pkt
    if not pkt.padding:
        assert bytes(pkt) == data


packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=64),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.builds(RtpExtension, st.integers(0, 0xFFFF), st.binary(max_size=5).map(lambda b: b * 4)),
    padding=st.integers(0, 255),
)


@given(packets)
def test_round_trip(pkt: RtpPacket) -> None:
    assert RtpPacket.parse(bytes(pkt)) == pkt
