"""Small WAV helpers for media tests: a known tone in, a measurable level out."""

from __future__ import annotations

import array
import math
import sys
import wave
from pathlib import Path


def write_tone_wav(
    path: Path | str,
    *,
    seconds: float = 10.0,
    freq: float = 440.0,
    rate: int = 8000,
    amplitude: int = 8000,
) -> Path:
    """Write a mono 16-bit PCM sine tone (baresip's `aufile` source wants 8 kHz mono s16 for G.711)."""
    count = int(seconds * rate)
    samples = array.array(
        "h", (int(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(count))
    )
    if sys.byteorder == "big":
        samples.byteswap()  # WAV data is little-endian
    out = Path(path)
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return out


def read_wav_samples(path: Path | str) -> array.array[int]:
    """The 16-bit samples of a WAV file (all channels interleaved)."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: {wav.getsampwidth() * 8}-bit samples, expected 16-bit")
        data = wav.readframes(wav.getnframes())
    samples = array.array("h")
    samples.frombytes(data)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def rms(samples: array.array[int]) -> float:
    """Root mean square level (0 for silence, ~amplitude/sqrt(2) for a full sine)."""
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples))
