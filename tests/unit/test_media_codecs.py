"""Codecs through the Codec protocol: G.711 (tables), G.722 and Opus (PyAV)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from ifescalate.media.codecs import (
    G711,
    Codec,
    CodecError,
    G722Codec,
    OpusCodec,
    codec_for,
)
from ifescalate.media.frames import MediaError, samples_per_frame, silence

NAMES = ["PCMU", "PCMA", "G722", "opus"]


def tone(rate: int, frames: int, freq: float = 440.0, amp: float = 8000.0) -> npt.NDArray[np.int16]:
    t = np.arange(samples_per_frame(rate) * frames) / rate
    return np.rint(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def through(codec: Codec, signal: npt.NDArray[np.int16]) -> tuple[npt.NDArray[np.int16], list[int]]:
    n = samples_per_frame(codec.clock_rate)
    sizes: list[int] = []
    out = []
    for k in range(0, signal.size, n):
        payload = codec.encode(signal[k : k + n])
        sizes.append(len(payload))
        out.append(codec.decode(payload))
    return np.concatenate(out), sizes


def rms(x: npt.NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def peak_hz(x: npt.NDArray[np.int16], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1.0 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize("name", NAMES)
def test_tone_keeps_frequency_and_level(name: str) -> None:
    codec = codec_for(name)
    rate = codec.clock_rate
    source = tone(rate, 50)
    decoded, _ = through(codec, source)
    assert decoded.dtype == np.int16 and decoded.size == source.size
    settled = decoded[rate // 10 :]  # skip codec start-up (Opus look-ahead, ADPCM adaptation)
    assert abs(peak_hz(settled, rate) - 440.0) <= rate / settled.size
    assert abs(20 * np.log10(rms(settled) / rms(source[rate // 10 :]))) < 1.0


@pytest.mark.parametrize(
    ("name", "clock", "rtp_clock", "pt", "size"),
    [
        ("PCMU", 8000, 8000, 0, 160),
        ("PCMA", 8000, 8000, 8, 160),
        # RFC 3551 §4.5.2: G.722 samples at 16 kHz but its RTP clock runs at 8000 Hz.
        ("G722", 16000, 8000, 9, 160),
    ],
)
def test_fixed_rate_codecs(name: str, clock: int, rtp_clock: int, pt: int, size: int) -> None:
    codec = codec_for(name.lower())
    assert isinstance(codec, Codec)
    assert (codec.name, codec.clock_rate, codec.rtp_clock_rate, codec.payload_type) == (
        name,
        clock,
        rtp_clock,
        pt,
    )
    _, sizes = through(codec, tone(clock, 5))
    assert sizes == [size] * 5


def test_opus_parameters_and_sizes() -> None:
    codec = codec_for("OPUS", 96)
    assert isinstance(codec, OpusCodec)
    assert (codec.name, codec.clock_rate, codec.rtp_clock_rate, codec.payload_type) == (
        "opus",
        48000,
        48000,
        96,
    )
    _, sizes32 = through(codec, tone(48000, 50))
    _, sizes12 = through(OpusCodec(bitrate=12000, fec=False), tone(48000, 50))
    # ~32 kbit/s is ~80 bytes per 20 ms; the bitrate option must be honoured.
    assert 40 < np.mean(sizes32[5:]) < 130
    assert np.mean(sizes12[5:]) < 0.6 * np.mean(sizes32[5:])


def test_g722_is_wideband() -> None:
    # A 6 kHz tone is above G.711's 4 kHz Nyquist; G.722 at 16 kHz must carry it.
    decoded, _ = through(G722Codec(), tone(16000, 25, freq=6000.0))
    settled = decoded[1600:]
    assert abs(peak_hz(settled, 16000) - 6000.0) <= 16000 / settled.size
    assert rms(settled) > 0.5 * 8000 / np.sqrt(2)


@pytest.mark.parametrize("name", NAMES)
def test_silence_stays_quiet(name: str) -> None:
    codec = codec_for(name)
    out = [codec.decode(codec.encode(silence(codec.clock_rate))) for _ in range(10)]
    assert max(int(np.abs(frame.astype(np.int32)).max()) for frame in out) < 64


@pytest.mark.parametrize("name", NAMES)
def test_wrong_frame_is_refused(name: str) -> None:
    codec = codec_for(name)
    with pytest.raises(MediaError, match="samples"):
        codec.encode(np.zeros(samples_per_frame(codec.clock_rate) + 1, dtype=np.int16))


def test_bad_opus_payload_raises_and_decoder_recovers() -> None:
    codec = OpusCodec()
    good = codec.encode(tone(48000, 1))
    with pytest.raises(CodecError, match="does not decode"):
        codec.decode(b"\x03\x00")  # code 3 packet with zero frames: invalid (RFC 6716 §3.2.5)
    with pytest.raises(CodecError, match="empty"):
        codec.decode(b"")
    assert codec.decode(good).size == 960
    assert issubclass(CodecError, MediaError)


def test_unknown_codec_and_g711_names() -> None:
    with pytest.raises(CodecError, match="no codec called 'speex'"):
        codec_for("speex")
    with pytest.raises(CodecError, match="PCMU and PCMA"):
        G711("G729")
    assert G711("pcma", 101).payload_type == 101
