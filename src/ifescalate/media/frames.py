"""The audio frame convention shared by every media module, and the media error base.

Convention: an audio frame is a 1-D ``numpy`` array of dtype ``int16`` holding :data:`FRAME_MS`
(20) milliseconds of mono linear PCM at the stream's clock rate: 160 samples at 8 kHz, 320 at
16 kHz, 960 at 48 kHz. 20 ms is the default packetization time for G.711/G.722/Opus in SDP
(RFC 3551 §4.5 "ptime" default for these codecs), so one frame is one RTP packet and one tick of
the media clock (:mod:`ifescalate.media.clock`).
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

FRAME_MS = 20
"""Duration of one audio frame in milliseconds."""

FRAME_SECONDS = FRAME_MS / 1000.0
"""Duration of one audio frame in seconds (the media clock period)."""

AudioFrame: TypeAlias = npt.NDArray[np.int16]
"""One 20 ms frame: 1-D int16 mono PCM at the stream's clock rate."""

PCM_DTYPE = np.int16


class MediaError(ValueError):
    """Base of every error the media core raises on bad input (invariant of the fuzz targets).

    A ``ValueError`` so callers that only know "bad value" still catch it; the message says exactly
    what was wrong.
    """


def samples_per_frame(rate: int) -> int:
    """Number of samples in one 20 ms frame at ``rate`` Hz (160 at 8000, 960 at 48000)."""
    if rate <= 0 or (rate * FRAME_MS) % 1000:
        raise MediaError(f"clock rate {rate} does not give a whole number of samples per frame")
    return rate * FRAME_MS // 1000


def silence(rate: int) -> AudioFrame:
    """A fresh all-zero 20 ms frame at ``rate`` Hz (a new array: callers may write into it)."""
    return np.zeros(samples_per_frame(rate), dtype=PCM_DTYPE)


_SAMPLES = {rate: rate * FRAME_MS // 1000 for rate in (8000, 16000, 24000, 48000)}
"""Frame sizes of the usual rates (check_frame runs several times per call per 20 ms)."""


def check_frame(frame: AudioFrame, rate: int) -> AudioFrame:
    """Return ``frame`` if it follows the convention at ``rate``, else raise :class:`MediaError`."""
    if frame.dtype != PCM_DTYPE or frame.ndim != 1:
        raise MediaError(f"audio frame must be 1-D int16, got {frame.ndim}-D {frame.dtype}")
    expected = _SAMPLES.get(rate) or samples_per_frame(rate)
    if frame.shape[0] != expected:
        raise MediaError(
            f"audio frame at {rate} Hz must have {expected} samples, got {frame.shape[0]}"
        )
    return frame
