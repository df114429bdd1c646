"""G.711 tables, bit-exact against the classic scalar reference (Sun Microsystems' g711.c).

The reference below is written out independently of the module, in plain Python, from the public
domain g711.c (linear2ulaw / ulaw2linear / linear2alaw / alaw2linear); the tables are checked on
all 65536 int16 inputs and all 256 codes.
"""

from __future__ import annotations

import numpy as np
import pytest

from ifescalate.media.frames import MediaError
from ifescalate.media.g711 import (
    ALAW_DECODE,
    ALAW_ENCODE,
    ALAW_SILENCE,
    PCMA,
    PCMU,
    ULAW_DECODE,
    ULAW_ENCODE,
    ULAW_SILENCE,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)

SEG_AEND = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]
SEG_UEND = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]
BIAS = 0x84
CLIP = 8159


def search(val: int, table: list[int]) -> int:
    for i, end in enumerate(table):
        if val <= end:
            return i
    return len(table)


def ref_linear2alaw(pcm_val: int) -> int:
    pcm_val = pcm_val >> 3
    if pcm_val >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm_val = -pcm_val - 1
    seg = search(pcm_val, SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (pcm_val >> 1) & 0x0F if seg < 2 else (pcm_val >> seg) & 0x0F
    return aval ^ mask


def ref_alaw2linear(a_val: int) -> int:
    a_val ^= 0x55
    t = (a_val & 0x0F) << 4
    seg = (a_val & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t += 0x108
        t <<= seg - 1
    return t if a_val & 0x80 else -t


def ref_linear2ulaw(pcm_val: int) -> int:
    pcm_val = pcm_val >> 2
    if pcm_val < 0:
        pcm_val = -pcm_val
        mask = 0x7F
    else:
        mask = 0xFF
    pcm_val = min(pcm_val, CLIP)
    pcm_val += BIAS >> 2
    seg = search(pcm_val, SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    uval = (seg << 4) | ((pcm_val >> (seg + 1)) & 0x0F)
    return uval ^ mask


def ref_ulaw2linear(u_val: int) -> int:
    u_val = ~u_val & 0xFF
    t = ((u_val & 0x0F) << 3) + BIAS
    t <<= (u_val & 0x70) >> 4
    return BIAS - t if u_val & 0x80 else t - BIAS


ALL = np.arange(-32768, 32768, dtype=np.int64)


def test_ulaw_encode_all_65536_inputs() -> None:
    expected = bytes(ref_linear2ulaw(int(x)) for x in ALL)
    assert ulaw_encode(ALL.astype(np.int16)) == expected


def test_alaw_encode_all_65536_inputs() -> None:
    expected = bytes(ref_linear2alaw(int(x)) for x in ALL)
    assert alaw_encode(ALL.astype(np.int16)) == expected


def test_decode_all_256_codes() -> None:
    assert [int(v) for v in ULAW_DECODE] == [ref_ulaw2linear(c) for c in range(256)]
    assert [int(v) for v in ALAW_DECODE] == [ref_alaw2linear(c) for c in range(256)]
    codes = bytes(range(256))
    assert ulaw_decode(codes).tolist() == [ref_ulaw2linear(c) for c in range(256)]
    assert alaw_decode(codes).tolist() == [ref_alaw2linear(c) for c in range(256)]


def test_known_points() -> None:
    # G.711 landmarks: zero, full scale, and the silence codes of RFC 3551 practice.
    assert ulaw_encode(np.array([0, 32767, -32768], dtype=np.int16)) == bytes([0xFF, 0x80, 0x00])
    assert alaw_encode(np.array([0, 32767, -32768], dtype=np.int16)) == bytes([0xD5, 0xAA, 0x2A])
    assert ULAW_DECODE[0xFF] == 0 and ULAW_DECODE[0x80] == 32124 and ULAW_DECODE[0x00] == -32124
    assert ALAW_DECODE[0xD5] == 8 and ALAW_DECODE[0xAA] == 32256 and ALAW_DECODE[0x2A] == -32256
    assert (ULAW_SILENCE, ALAW_SILENCE) == (PCMU.silence_byte, PCMA.silence_byte) == (0xFF, 0xD5)


def test_decode_then_encode_is_identity_on_codes() -> None:
    # Every code's decoded value encodes back to the same code (mu-law 0x7F, negative zero, excepted).
    ucodes = ULAW_ENCODE[ULAW_DECODE.view(np.uint16)]
    assert [c for c in range(256) if ucodes[c] != c] == [0x7F]
    assert (ALAW_ENCODE[ALAW_DECODE.view(np.uint16)] == np.arange(256)).all()


def test_codec_objects_round_trip_a_frame() -> None:
    rng = np.random.default_rng(7)
    frame = rng.integers(-20000, 20000, 160).astype(np.int16)
    for codec in (PCMU, PCMA):
        payload = codec.encode(frame)
        assert len(payload) == 160 and codec.clock_rate == 8000
        decoded = codec.decode(payload)
        assert decoded.dtype == np.int16 and decoded.shape == (160,)
        # G.711 keeps about 3% relative error at this level (8-bit log companding).
        assert np.max(np.abs(decoded.astype(int) - frame.astype(int))) <= 1024
    assert (PCMU.payload_type, PCMA.payload_type) == (0, 8)


def test_tables_are_read_only_and_input_checked() -> None:
    with pytest.raises(ValueError):
        ULAW_ENCODE[0] = 1
    with pytest.raises(MediaError, match="1-D int16 PCM, got 1-D float64"):
        ulaw_encode(np.zeros(160))  # type: ignore[arg-type]
    with pytest.raises(MediaError, match="got 2-D int16"):
        alaw_encode(np.zeros((2, 80), dtype=np.int16))
