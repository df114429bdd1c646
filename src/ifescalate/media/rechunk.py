"""Re-cutting decoded RTP payloads of any packet length into 20 ms frames (sans-IO).

A peer may packetize at another ptime than ours (30 ms from SIPp's pcaps, RFC 3551 §4.5 allows
any multiple of the codec's frame): the jitter buffer and the room work in 20 ms frames.
"""

from __future__ import annotations

import numpy as np

from ifescalate.media.frames import AudioFrame, silence
from ifescalate.media.rtp import ts_add

__all__ = ["Rechunker"]


class Rechunker:
    """Cuts decoded audio of any packet length into whole 20 ms frames on the RTP timeline.

    Contiguous packets (each timestamp where the previous one ended) carry their remainder over; a
    gap or reordering drops the partial frame, which the jitter buffer then conceals. Timestamps
    count PCM samples: the session scales G.722's 8 kHz RTP timestamps before feeding them.
    """

    def __init__(self, frame_samples: int) -> None:
        self.frame = frame_samples
        self._pending: AudioFrame = silence(8000)[:0]
        self._start: int | None = None

    def feed(self, timestamp: int, samples: AudioFrame) -> tuple[int, AudioFrame]:
        """``(timestamp of the first whole frame, whole frames concatenated)``; may be empty."""
        if self._start is None or ts_add(self._start, len(self._pending)) != timestamp:
            self._pending, self._start = samples[:0], timestamp
        buffered = np.concatenate((self._pending, samples))
        whole = len(buffered) // self.frame * self.frame
        start = self._start
        self._pending, self._start = buffered[whole:], ts_add(start, whole)
        return start, buffered[:whole]
