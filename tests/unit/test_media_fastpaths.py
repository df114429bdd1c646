"""The media hot path's shortcuts agree with the direct computations they replace."""

from __future__ import annotations

import numpy as np
import pytest

from ifescalate.media.frames import samples_per_frame
from ifescalate.media.resample import Resampler

PAIRS = [(8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000), (16000, 48000), (48000, 16000)]


@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
def test_polyphase_fast_path_matches_the_general_plan(rate_in: int, rate_out: int) -> None:
    rng = np.random.default_rng(rate_in + rate_out)
    fast, general = Resampler(rate_in, rate_out), Resampler(rate_in, rate_out)
    assert fast._fast is not None
    general._fast = None  # the gather-and-einsum plan
    n = samples_per_frame(rate_in)
    for k in range(12):
        frame = np.clip(rng.standard_normal(n) * 12000, -32768, 32767).astype(np.int16)
        if k == 4:
            frame[:] = 32767  # full scale: the sinc overshoot must saturate, not wrap
        if k == 5:
            frame[:] = -32768
        if k == 8:
            fast.reset()
            general.reset()
        np.testing.assert_array_equal(fast.process(frame), general.process(frame))


def test_plain_rtp_packet_fast_paths_are_byte_exact_and_still_validate() -> None:
    from ifescalate.media.rtp import RtpError, RtpPacket

    wire = bytes.fromhex("80e0 1234 0000abcd 0102 0304") + b"\xff" * 4
    packet = RtpPacket.parse(wire)
    assert packet == RtpPacket(96, 0x1234, 0xABCD, 0x01020304, b"\xff" * 4, marker=True)
    assert bytes(packet) == wire
    # The general path (a CSRC) and the fast one agree on the shared fields.
    with_csrc = RtpPacket(96, 0x1234, 0xABCD, 0x01020304, b"\xff" * 4, True, (7,))
    assert RtpPacket.parse(bytes(with_csrc)) == with_csrc
    with pytest.raises(RtpError, match="sequence number out of range"):
        RtpPacket(0, 0x10000, 0, 0)
    with pytest.raises(RtpError, match="CSRC out of range"):
        RtpPacket(0, 0, 0, 0, csrcs=(-1,))


def test_sender_wire_bytes_equal_the_packet_path() -> None:
    from ifescalate.media.rtp import RtpSender

    def fixed(n: int) -> bytes:
        return b"\xff" * n  # sequence 0xFFFF and timestamp 0xFFFFFFFF: both wrap at once

    via_packet, via_bytes = RtpSender(0, 8000, rand=fixed), RtpSender(0, 8000, rand=fixed)
    for k in range(4):
        payload = bytes([k]) * 160
        if k == 2:
            via_packet.skip()
            via_bytes.skip()  # a new talkspurt: the marker bit again
        assert via_bytes.send_frame_bytes(payload) == bytes(via_packet.send_frame(payload))
    assert (via_bytes.sequence, via_bytes.timestamp) == (via_packet.sequence, via_packet.timestamp)
    assert (via_bytes.packet_count, via_bytes.octet_count) == (4, 640)
    assert via_bytes.octet_count == via_packet.octet_count
