"""The announcement the expert hears when bridged into a room, generated with numpy.

A two-tone chime (a falling 880 -> 660 Hz "ding-dong", the usual "you are connected" cue) and then
a short speech-like burst: a harmonic voice source on a gliding pitch contour, shaped by three
formant peaks and modulated at a syllable rate of ~4 Hz. It tells the expert "someone is about to
talk to you" without shipping a recording; a WAV from package data can replace it
(:func:`frames_from_wav`).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ifescalate.media.frames import AudioFrame, samples_per_frame
from ifescalate.media.resample import Resampler

from .errors import CouncilError

__all__ = ["CHIME_HZ", "chime", "default_announcement", "frames_from_wav", "speech_like"]

_F64 = npt.NDArray[np.float64]

CHIME_HZ = (880.0, 660.0)
"""Frequencies of the chime's two notes, in order."""

# -12 dBFS peak: clearly audible, leaves headroom for the mix it is laid over.
_PEAK = 32767 * 10 ** (-12 / 20)
_NOTE_S = 0.18
_GAP_S = 0.04
_SPEECH_S = 0.6
# Formant centre frequencies and bandwidths of an open vowel (roughly /a/), Hz.
_FORMANTS = ((730.0, 90.0), (1090.0, 110.0), (2440.0, 170.0))


def _envelope(n: int, rate: int, attack_s: float = 0.005) -> _F64:
    # Short linear attack and an exponential decay: a bell-like note without a click at the start.
    t = np.arange(n) / rate
    attack = np.minimum(1.0, t / attack_s)
    decay: _F64 = attack * np.exp(-t / (n / rate / 3.0))
    return decay


def chime(rate: int) -> _F64:
    """The two-note chime at ``rate`` Hz as float samples in [-1, 1]."""
    n = round(_NOTE_S * rate)
    t = np.arange(n) / rate
    gap = np.zeros(round(_GAP_S * rate))
    notes = [np.sin(2 * np.pi * hz * t) * _envelope(n, rate) for hz in CHIME_HZ]
    result: _F64 = np.concatenate((notes[0], gap, notes[1], gap))
    return result


def speech_like(rate: int, seconds: float = _SPEECH_S) -> _F64:
    """A voiced, speech-like burst: harmonics of a 120-180 Hz glide weighted by formant peaks."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    pitch = 150.0 + 30.0 * np.sin(2 * np.pi * 1.3 * t)  # intonation contour
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    out = np.zeros(n)
    nyquist = rate / 2
    # Harmonics up to the highest pitch stay below Nyquist: no aliasing at 8 kHz.
    for k in range(1, int(nyquist // 180.0)):
        hz = k * 150.0
        weight = sum(1.0 / (1.0 + ((hz - fc) / bw) ** 2) for fc, bw in _FORMANTS) / k**0.5
        out += weight * np.sin(k * phase)
    syllables = 0.5 * (1 - np.cos(2 * np.pi * 4.0 * t))  # ~4 syllables per second
    burst: _F64 = out * syllables * _envelope(n, rate, attack_s=0.02) ** 0.3
    peak = float(np.abs(burst).max()) or 1.0
    scaled: _F64 = burst / peak
    return scaled


def _to_frames(samples: _F64, rate: int) -> tuple[AudioFrame, ...]:
    size = samples_per_frame(rate)
    padded = np.concatenate((samples, np.zeros(-samples.size % size)))
    pcm = np.clip(np.rint(padded * _PEAK), -32768, 32767).astype(np.int16)
    return tuple(pcm[i : i + size].copy() for i in range(0, pcm.size, size))


def default_announcement(rate: int) -> tuple[AudioFrame, ...]:
    """Chime then speech-like burst, as 20 ms frames at ``rate`` Hz (about 1 s)."""
    return _to_frames(np.concatenate((chime(rate), speech_like(rate))), rate)


def frames_from_wav(path: Path, rate: int) -> tuple[AudioFrame, ...]:
    """A mono 16-bit WAV file as 20 ms frames at ``rate`` Hz (resampled if its rate differs)."""
    with wave.open(str(path), "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise CouncilError(f"{path}: announcement must be mono 16-bit PCM")
        source_rate = wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    pcm = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    size = samples_per_frame(source_rate)
    pcm = np.concatenate((pcm, np.zeros(-pcm.size % size, dtype=np.int16)))
    frames = [pcm[i : i + size].copy() for i in range(0, pcm.size, size)]
    if source_rate == rate:
        return tuple(frames)
    resampler = Resampler(source_rate, rate)
    return tuple(resampler.process(f) for f in frames)
