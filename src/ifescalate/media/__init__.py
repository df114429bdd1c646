"""Sans-IO media core: RTP/RTCP (RFC 3550), G.711, DTMF (RFC 4733), jitter buffer, media clock.

Like ``sip/``, nothing here imports asyncio, socket, time, threading or ssl: every entry point that
needs time takes ``now`` (seconds, monotonic) and randomness is injected. ``net/`` owns the sockets
and the real 20 ms timer.

The shared frame convention lives in :mod:`ifescalate.media.frames`.
"""

from __future__ import annotations

from ifescalate.media.frames import (
    FRAME_MS,
    AudioFrame,
    MediaError,
    samples_per_frame,
    silence,
)

__all__ = ["FRAME_MS", "AudioFrame", "MediaError", "samples_per_frame", "silence"]
