"""RFC 4733 telephone events: payload bytes, the sender's packet sequence, the receiver under loss."""

from __future__ import annotations

import random

import pytest

from ifescalate.media.dtmf import (
    DtmfError,
    DtmfKey,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
    event_to_key,
    key_press_packets,
    key_to_event,
)
from ifescalate.media.frames import MediaError
from ifescalate.media.rtp import RtpPacket, RtpSender


def sender(ts: int = 1000, seq: int = 7) -> RtpSender:
    return RtpSender(
        0, 8000, rand=lambda n: (seq if n == 2 else ts).to_bytes(n, "big"), ssrc=0xABCD
    )


def test_payload_bytes() -> None:
    # event 5, E=0 R=0 volume 10, duration 160: RFC 4733 §2.3 layout
    assert bytes(TelephoneEvent(5, volume=10, duration=160)) == bytes.fromhex("050a00a0")
    assert bytes(TelephoneEvent(11, end=True, volume=10, duration=800)) == bytes.fromhex("0b8a0320")
    assert TelephoneEvent.parse(bytes.fromhex("0bca0320")) == TelephoneEvent(
        11, True, 10, 800
    )  # R ignored
    assert TelephoneEvent.parse(bytes.fromhex("0b8a0320 0c8a0320")).key == "#"
    with pytest.raises(DtmfError, match="payload too short: 3 bytes, need 4") as info:
        TelephoneEvent.parse(b"\x01\x02\x03")
    assert isinstance(info.value, MediaError)
    with pytest.raises(DtmfError, match=r"volume out of range 0\.\.63: 64"):
        TelephoneEvent(1, volume=64)


def test_keys() -> None:
    assert [key_to_event(k) for k in "0123456789*#ABCDabcd"] == [*range(16), 12, 13, 14, 15]
    assert (
        key_to_event("flash") == 16
        and event_to_key(16) == "flash"
        and event_to_key(42) == "event-42"
    )
    for bad in ("E", "", "11"):
        with pytest.raises(DtmfError, match="not a DTMF key"):
            key_to_event(bad)


def test_sender_sequence_for_a_100_ms_press() -> None:
    rtp = sender()
    packets = key_press_packets(rtp, "5", duration_ms=100)
    assert len(packets) == 7  # 5 updates (the 5th is the first end packet), 2 more end packets
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert {p.timestamp for p in packets} == {1000}
    assert [p.sequence for p in packets] == list(range(7, 14))
    assert {p.payload_type for p in packets} == {101}
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert bytes(packets[0]) == bytes.fromhex("80e5 0007 000003e8 0000abcd 050a00a0")
    assert bytes(packets[-1]) == bytes.fromhex("8065 000d 000003e8 0000abcd 058a0320")
    # Media time went on during the press: the next audio frame is stamped 7 ticks later.
    audio = rtp.send_frame(bytes(160))
    assert (audio.timestamp, audio.sequence) == (1000 + 7 * 160, 14)


def test_sender_partial_last_frame_and_queue() -> None:
    dtmf = DtmfSender(sender(), payload_type=96)
    dtmf.press("1", duration_ms=50)  # 400 samples: 160, 320, 400(end) x3
    dtmf.press("#", duration_ms=40)
    assert dtmf.busy
    out = []
    while (p := dtmf.tick()) is not None:
        out.append((p.timestamp, TelephoneEvent.parse(p.payload)))
    assert not dtmf.busy
    assert [(ts, e.key, e.duration, e.end) for ts, e in out] == [
        (1000, "1", 160, False),
        (1000, "1", 320, False),
        (1000, "1", 400, True),
        (1000, "1", 400, True),
        (1000, "1", 400, True),
        (1800, "#", 160, False),
        (1800, "#", 320, True),
        (1800, "#", 320, True),
        (1800, "#", 320, True),
    ]
    with pytest.raises(DtmfError, match="duration 9000 ms out of range"):
        dtmf.press("1", duration_ms=9000)
    with pytest.raises(DtmfError, match="not a DTMF key"):
        dtmf.press("X")


def receive(packets: list[RtpPacket]) -> list[DtmfKey]:
    receiver = DtmfReceiver()
    keys = [key for packet in packets for key in receiver.feed(packet)]
    return keys + receiver.flush()


def test_receiver_reports_each_press_once() -> None:
    packets = key_press_packets(sender(), "5")
    assert receive(packets) == [DtmfKey("5", 5, 1000, 800, True)]


def test_receiver_survives_loss_of_the_first_packets() -> None:
    packets = key_press_packets(sender(), "9")
    assert receive(packets[2:]) == [DtmfKey("9", 9, 1000, 800, True)]
    assert receive(packets[4:5]) == [DtmfKey("9", 9, 1000, 800, True)]


def test_receiver_closes_an_event_whose_end_packets_were_lost() -> None:
    rtp = sender()
    first = key_press_packets(rtp, "1")[:3]  # durations up to 480, no end packet arrives
    second = key_press_packets(rtp, "2")
    assert receive(first + second) == [
        DtmfKey("1", 1, 1000, 480, False),
        DtmfKey("2", 2, 2120, 800, True),
    ]
    assert receive(first) == [DtmfKey("1", 1, 1000, 480, False)]  # closed by flush


def test_receiver_ignores_retransmitted_and_reordered_stragglers() -> None:
    rtp = sender()
    a = key_press_packets(rtp, "1")
    b = key_press_packets(rtp, "1")  # same key again: a new event because the timestamp changed
    stream = [*a[:5], *b[:2], a[5], a[6], *b[2:], a[6], b[6]]
    keys = receive(stream)
    assert [(k.key, k.timestamp, k.ended) for k in keys] == [("1", 1000, True), ("1", 2120, True)]


def test_receiver_ignores_audio_and_counts_malformed() -> None:
    receiver = DtmfReceiver(payload_type=101)
    audio = RtpPacket(0, 1, 0, 1, payload=bytes(160))
    assert receiver.feed(audio) == []
    assert receiver.feed(RtpPacket(101, 2, 0, 1, payload=b"\x01")) == []
    assert receiver.malformed == 1


def test_digit_string_with_audio_between_and_random_loss() -> None:
    rng = random.Random(4733)
    rtp = sender()
    dtmf = DtmfSender(rtp)
    stream: list[RtpPacket] = []
    for key in "123#":
        dtmf.press(key, duration_ms=120)
        while (packet := dtmf.tick()) is not None:
            stream.append(packet)
        stream.extend(rtp.send_frame(bytes(160)) for _ in range(5))
    for _ in range(20):
        # Any loss pattern that leaves at least one packet of each event still gives every key once.
        kept = [p for p in stream if p.payload_type != 101 or rng.random() > 0.5]
        keys = receive(kept)
        survivors = sorted({p.timestamp for p in kept if p.payload_type == 101})
        assert [k.timestamp for k in keys] == survivors
        assert "".join(k.key for k in keys) == "".join(
            key
            for key, ts in zip(
                "123#",
                sorted({p.timestamp for p in stream if p.payload_type == 101}),
                strict=True,
            )
            if ts in survivors
        )
    assert "".join(k.key for k in receive(stream)) == "123#"
