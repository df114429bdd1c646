"""Adaptive playout jitter buffer with packet-loss concealment, in virtual time.

Packets go in with :meth:`JitterBuffer.push` as they arrive (any order); the 20 ms media clock
takes one frame out with :meth:`JitterBuffer.pop`. Frames are slotted by RTP timestamp, so
reordering and duplicates are free; a frame that arrives after its slot was played is late
(dropped, counted). A missing slot is concealed: the last frame repeated with decaying gain for a
few frames, then silence (the classic G.711 Appendix I idea, minus pitch search).

Adaptation: the target delay follows the RFC 3550 A.8 interarrival jitter estimate (in seconds),
``target = frame + jitter_factor * J`` clamped to ``[min_delay, max_delay]``. The measured playout
delay (``pop`` time minus arrival time of the frames played, smoothed) is steered towards the
target one frame at a time: a frame is discarded when the delay is too high, one frame is
stretched (repeated) when it is too low.

Resynchronisation: a new SSRC, or a newer packet (by sequence number) whose timestamp is far from
the playout point, restarts the buffer on the new timeline instead of playing seconds of silence
or dropping everything as late.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ifescalate.media.frames import (
    FRAME_SECONDS,
    AudioFrame,
    MediaError,
    samples_per_frame,
    silence,
)
from ifescalate.media.rtp import seq_diff, ts_diff

_JUMP_TOLERANCE = 0.1  # a jump must exceed max_delay by at least this much (seconds)
_ADAPT_EVERY = 25  # pops between two adaptation steps (0.5 s): let the smoothed delay settle


@dataclass(slots=True)
class JitterStats:
    """Counters and current figures of a :class:`JitterBuffer` (all frames are 20 ms)."""

    received: int = 0
    played: int = 0
    late: int = 0
    """Frames that arrived after their slot was played (dropped)."""
    duplicates: int = 0
    lost: int = 0
    """Slots that had no frame when their turn came."""
    concealed: int = 0
    """Frames made up for lost slots (decayed repeats, then silence)."""
    discarded: int = 0
    """Frames dropped to shrink the delay."""
    stretched: int = 0
    """Frames repeated to grow the delay."""
    resyncs: int = 0
    delay: float = 0.0
    """Smoothed playout delay in seconds (pop time minus arrival time)."""
    target: float = 0.0
    """Target playout delay in seconds."""
    jitter: float = 0.0
    """RFC 3550 A.8 interarrival jitter estimate in seconds."""


class JitterBuffer:
    """Adaptive jitter buffer for one audio stream at ``clock_rate``; see the module docstring."""

    def __init__(
        self,
        clock_rate: int = 8000,
        *,
        min_delay: float = 0.04,
        max_delay: float = 0.3,
        initial_delay: float = 0.06,
        jitter_factor: float = 4.0,
        conceal_frames: int = 3,
        decay: float = 0.5,
        idle_after: float = 1.0,
        jump: float = 1.0,
    ) -> None:
        if not 0 <= min_delay <= initial_delay <= max_delay:
            raise MediaError("jitter buffer delays must satisfy 0 <= min <= initial <= max")
        self.clock_rate = clock_rate
        self.frame_samples = samples_per_frame(clock_rate)
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.initial_delay = initial_delay
        self.jitter_factor = jitter_factor
        self.conceal_frames = conceal_frames
        self.decay = decay
        self.idle_frames = round(idle_after / FRAME_SECONDS)
        self.jump = max(jump, max_delay + _JUMP_TOLERANCE)
        self.stats = JitterStats(target=initial_delay)
        self._ssrc: int | None = None
        self._reset()

    def _reset(self) -> None:
        """Forget the timeline: the next packet starts a new one (counters are kept)."""
        self._frames: dict[int, tuple[AudioFrame, float]] = {}
        self._next: int | None = None  # extended timestamp of the next slot to play
        self._playing = False
        self._start_at = 0.0
        self._raw_ref = 0
        self._ext_ref = 0
        self._highest_seq = 0
        self._last_frame: AudioFrame | None = None
        self._loss_run = 0
        self._pops = 0
        self._played_recent: deque[int] = deque(maxlen=64)
        self._last_arrival: float | None = None
        self._last_ext = 0
        self._delay_samples = 0

    # --- input ----------------------------------------------------------------------------------

    def push(
        self, seq: int, timestamp: int, frame: AudioFrame, now: float, *, ssrc: int | None = None
    ) -> None:
        """Add a decoded packet (one or more whole 20 ms frames) that arrived at ``now``."""
        if frame.ndim != 1 or len(frame) == 0 or len(frame) % self.frame_samples:
            raise MediaError(
                f"jitter buffer takes whole {self.frame_samples}-sample frames, got {frame.shape}"
            )
        if ssrc is not None and self._ssrc is not None and ssrc != self._ssrc:
            self._resync()  # a new source is a new timeline (RFC 3550 §8.2 SSRC change)
        self._ssrc = ssrc if ssrc is not None else self._ssrc
        if self._next is None:
            self._start(seq, timestamp, now)
        ext = self._unwrap(timestamp)
        newer = seq_diff(seq, self._highest_seq) > 0
        if newer:
            self._highest_seq = seq
        if newer and self._is_jump(ext):
            self._resync()
            self._start(seq, timestamp, now)
            ext = self._unwrap(timestamp)
        self._update_jitter(ext, now)
        size = self.frame_samples
        if len(frame) == size:  # the usual packet: one 20 ms frame, no slicing
            self._store(ext, frame, now)
            return
        for i in range(len(frame) // size):
            self._store(ext + i * size, frame[i * size : (i + 1) * size], now)

    def _start(self, seq: int, timestamp: int, now: float) -> None:
        self._raw_ref = timestamp
        self._ext_ref = timestamp
        self._next = timestamp
        self._highest_seq = seq
        self._start_at = now + self.stats.target
        self._playing = False

    def _unwrap(self, timestamp: int) -> int:
        """Extended timestamp: continuous across the 2^32 wrap (relative to the newest seen)."""
        ext = self._ext_ref + ts_diff(timestamp, self._raw_ref)
        if ext > self._ext_ref:
            self._raw_ref, self._ext_ref = timestamp, ext
        return ext

    def _is_jump(self, ext: int) -> bool:
        """A newer packet far from the playout point: the sender's timeline moved.

        The playout point is anchored on the first packet, which may itself have been delayed,
        so under heavy jitter newer packets land ahead of or behind it by up to the jitter plus
        the delay; only a distance beyond ``jump`` seconds counts as a timestamp jump.
        """
        assert self._next is not None
        return abs(ext - self._next) / self.clock_rate > self.jump

    def _resync(self) -> None:
        self.stats.resyncs += 1
        self._reset()

    def _store(self, ext: int, frame: AudioFrame, now: float) -> None:
        assert self._next is not None
        if ext in self._frames or ext in self._played_recent:
            self.stats.duplicates += 1
            return
        if ext < self._next:
            if self._playing:
                self.stats.late += 1
                return
            self._next = ext  # still buffering: an earlier frame simply starts the stream earlier
        self.stats.received += 1
        self._frames[ext] = (frame.astype(np.int16, copy=True), now)

    def _update_jitter(self, ext: int, now: float) -> None:
        """RFC 3550 A.8 on the arrival clock, kept in seconds."""
        if self._last_arrival is not None:
            d = (now - self._last_arrival) - (ext - self._last_ext) / self.clock_rate
            self.stats.jitter += (abs(d) - self.stats.jitter) / 16
            frame = self.frame_samples / self.clock_rate
            target = frame + self.jitter_factor * self.stats.jitter
            self.stats.target = min(self.max_delay, max(self.min_delay, target))
        self._last_arrival = now
        self._last_ext = ext

    # --- output ---------------------------------------------------------------------------------

    def pop(self, now: float) -> AudioFrame | None:
        """The frame to play for this 20 ms tick, or None when there is nothing to play yet
        (before the first packet, while buffering after a (re)start, or after going idle)."""
        if self._next is None:
            return None
        if not self._playing:
            if now < self._start_at:
                return None
            self._playing = True
        self._pops += 1
        if self._pops % _ADAPT_EVERY == 0:
            stretched = self._adapt()
            if stretched is not None:
                return stretched
        slot = self._next
        self._next += self.frame_samples
        entry = self._frames.pop(slot, None)
        if entry is None:
            return self._conceal()
        frame, arrival = entry
        self._played_recent.append(slot)
        self._note_delay(now - arrival)
        self.stats.played += 1
        self._last_frame = frame
        self._loss_run = 0
        return frame

    def _note_delay(self, delay: float) -> None:
        self._delay_samples += 1
        if self._delay_samples == 1:
            self.stats.delay = delay
        else:
            self.stats.delay += (delay - self.stats.delay) / 16

    def _conceal(self) -> AudioFrame | None:
        self.stats.lost += 1
        self._loss_run += 1
        if self._loss_run >= self.idle_frames and not self._frames:
            self._reset()  # the stream stopped: go idle, the next packet starts afresh
            return None
        self.stats.concealed += 1
        if self._last_frame is None or self._loss_run > self.conceal_frames:
            return silence(self.clock_rate)
        gain = self.decay**self._loss_run
        return (self._last_frame.astype(np.float32) * gain).astype(np.int16)

    def _adapt(self) -> AudioFrame | None:
        """One step towards the target delay; returns a stretched frame to play, if any."""
        assert self._next is not None
        frame_seconds = self.frame_samples / self.clock_rate
        if self._delay_samples == 0:
            return None
        excess = int((self.stats.delay - self.stats.target) / frame_seconds)
        if excess >= 1:
            # Too much delay: skip buffered frames (at most the excess; the next one plays now).
            while excess and self._next in self._frames:
                del self._frames[self._next]
                self._played_recent.append(self._next)
                self._next += self.frame_samples
                self.stats.discarded += 1
                self.stats.delay -= frame_seconds
                excess -= 1
            return None
        if self.stats.delay < self.stats.target - frame_seconds and self._last_frame is not None:
            # Too little delay: play the last frame once more and hold the playout point.
            self.stats.stretched += 1
            self.stats.delay += frame_seconds
            return self._last_frame.copy()
        return None

    # --- introspection --------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Frames waiting to be played."""
        return len(self._frames)

    @property
    def playing(self) -> bool:
        return self._playing
