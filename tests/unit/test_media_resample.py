"""Stateful polyphase resampling of 20 ms frames: frequency, level, continuity, lengths."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from ifescalate.media.frames import MediaError, samples_per_frame
from ifescalate.media.resample import Resampler, design_lowpass

RATES = [8000, 16000, 48000]
PAIRS = [(a, b) for a in RATES for b in RATES if a != b]


def tone(rate: int, frames: int, freq: float = 440.0, amp: float = 8000.0) -> npt.NDArray[np.int16]:
    t = np.arange(samples_per_frame(rate) * frames) / rate
    return np.rint(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def stream(resampler: Resampler, signal: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    n = samples_per_frame(resampler.rate_in)
    chunks = [resampler.process(signal[k : k + n]) for k in range(0, signal.size, n)]
    return np.concatenate(chunks)


def rms(x: npt.NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def peak_hz(x: npt.NDArray[np.int16], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1.0 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
def test_exact_lengths_and_dtype(rate_in: int, rate_out: int) -> None:
    resampler = Resampler(rate_in, rate_out)
    for frame in np.split(tone(rate_in, 3), 3):
        out = resampler.process(frame)
        assert out.dtype == np.int16 and out.ndim == 1
        assert out.size == samples_per_frame(rate_out)


@pytest.mark.parametrize("mid", [16000, 48000])
def test_round_trip_keeps_frequency_and_level(mid: int) -> None:
    source = tone(8000, 50)
    up = stream(Resampler(8000, mid), source)
    back = stream(Resampler(mid, 8000), up)
    settled = back[800:]  # skip the filters' start-up (a few ms)
    assert abs(peak_hz(settled, 8000) - 440.0) < 8000 / settled.size * 1.5
    assert abs(peak_hz(up[mid // 10 :], mid) - 440.0) < mid / up[mid // 10 :].size * 1.5
    level_db = 20 * np.log10(rms(settled) / rms(source))
    assert abs(level_db) < 1.0
    assert abs(20 * np.log10(rms(up[mid // 10 :]) / rms(source))) < 1.0


@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
def test_matches_ideal_delayed_tone_across_frame_edges(rate_in: int, rate_out: int) -> None:
    # A continuous tone must come out as the same tone, delayed by the filter, with no spike
    # anywhere, in particular not at the 20 ms frame edges.
    amp = 8000.0
    resampler = Resampler(rate_in, rate_out)
    out = stream(resampler, tone(rate_in, 20, amp=amp)).astype(np.float64)
    n = np.arange(out.size)
    ideal = amp * np.sin(2 * np.pi * 440.0 * (n / rate_out - resampler.delay))
    settled = slice(samples_per_frame(rate_out) * 2, None)
    error = np.abs(out - ideal)[settled]
    assert error.max() < 0.002 * amp  # 2 LSB-ish of a -12 dBFS tone: quantisation and ripple only


def test_stateless_processing_would_click() -> None:
    # The same check fails when the history is thrown away each frame (what the state is for).
    amp = 8000.0
    resampler = Resampler(8000, 16000)
    frames = np.split(tone(8000, 10, amp=amp), 10)
    chunks = []
    for frame in frames:
        resampler.reset()
        chunks.append(resampler.process(frame))
    out = np.concatenate(chunks).astype(np.float64)
    ideal = amp * np.sin(2 * np.pi * 440.0 * (np.arange(out.size) / 16000 - resampler.delay))
    assert np.abs(out - ideal)[640:].max() > 0.1 * amp


def test_continuity_second_difference_has_no_spikes() -> None:
    out = stream(Resampler(8000, 48000), tone(8000, 20)).astype(np.float64)[960 * 2 :]
    curvature = np.abs(np.diff(out, 2))
    # A 440 Hz sine at 48 kHz bends at most amp*(2*pi*440/48000)^2 ~= 26.5 per sample.
    assert curvature.max() < 8000 * (2 * np.pi * 440 / 48000) ** 2 * 1.2 + 2


def test_images_and_aliases_are_suppressed() -> None:
    # 8 -> 48 kHz: a 3 kHz tone must not leave images above 4 kHz (> 70 dB down).
    out = stream(Resampler(8000, 48000), tone(8000, 50, freq=3000.0))[960 * 5 :]
    spectrum = np.abs(np.fft.rfft(out.astype(np.float64) * np.hanning(out.size)))
    freqs = np.fft.rfftfreq(out.size, 1 / 48000)
    assert 20 * np.log10(spectrum[freqs > 4300].max() / spectrum.max()) < -70
    # 48 -> 8 kHz: a 10 kHz tone (above the 4 kHz Nyquist) must be removed, not aliased to 2 kHz.
    down = stream(Resampler(48000, 8000), tone(48000, 50, freq=10000.0))[800:]
    assert rms(down) < 8000 / np.sqrt(2) * 10 ** (-60 / 20)


def test_clipping_is_saturating() -> None:
    # A full-scale square wave overshoots after filtering (Gibbs): clip, never wrap around.
    square = np.tile(np.array([32767] * 20 + [-32768] * 20, dtype=np.int16), 4)
    out = Resampler(8000, 16000).process(square)
    assert out.max() == 32767 and out.min() == -32768
    assert np.all(np.abs(np.diff(out.astype(np.int32))) < 40000)


def test_identity_and_bad_input() -> None:
    same = Resampler(16000, 16000)
    frame = tone(16000, 1)
    out = same.process(frame)
    assert np.array_equal(out, frame) and out is not frame
    assert same.delay == 0.0
    with pytest.raises(MediaError, match="must have 160 samples"):
        Resampler(8000, 16000).process(np.zeros(161, dtype=np.int16))
    with pytest.raises(MediaError, match="1-D int16"):
        Resampler(8000, 16000).process(np.zeros(160, dtype=np.float32))
    with pytest.raises(MediaError):
        Resampler(8000, 44100)


def test_lowpass_has_unity_dc_gain_per_branch() -> None:
    taps = design_lowpass(6, 1)
    assert taps.size % 6 == 0
    # Each polyphase branch sums to 1: a constant input gives the same constant out.
    assert np.allclose(taps.reshape(-1, 6).sum(axis=0), 1.0, atol=1e-3)
    dc = np.full(160, 1000, dtype=np.int16)
    resampler = Resampler(8000, 48000)
    resampler.process(dc)
    assert np.all(np.abs(resampler.process(dc).astype(int) - 1000) <= 1)
