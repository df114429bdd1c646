"""The adaptive jitter buffer under reordering, duplicates, loss, jitter and jumps, in virtual time."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ifescalate.media.frames import AudioFrame, MediaError
from ifescalate.media.jitter import JitterBuffer
from ifescalate.media.rtp import seq_add, ts_add

FRAME = 0.020


def tone(i: int) -> AudioFrame:
    """A frame that names its packet: every sample equals ``i``."""
    return np.full(160, i, dtype=np.int16)


def label(frame: AudioFrame | None) -> int | None:
    if frame is None:
        return None
    assert frame.dtype == np.int16 and frame.shape == (160,)
    return int(frame[0]) if (frame == frame[0]).all() else -1


class Run:
    """Drives a buffer: packets i (seq s0+i, ts t0+160 i) arrive at their chosen times, pops every 20 ms."""

    def __init__(self, buffer: JitterBuffer, seq0: int = 1000, ts0: int = 50_000) -> None:
        self.buffer = buffer
        self.seq0 = seq0
        self.ts0 = ts0

    def play(
        self, arrivals: list[tuple[float, int]], until: float, phase: float = 0.005
    ) -> list[int | None]:
        """Feed (arrival time, packet index) pairs in time order; return the labels popped."""
        events = sorted(arrivals)
        out: list[int | None] = []
        tick = 0
        while phase + tick * FRAME <= until:
            now = phase + tick * FRAME
            while events and events[0][0] <= now:
                at, i = events.pop(0)
                self.buffer.push(seq_add(self.seq0, i), ts_add(self.ts0, 160 * i), tone(i + 1), at)
            out.append(label(self.buffer.pop(now)))
            tick += 1
        return out


def played(labels: list[int | None]) -> list[int]:
    return [x for x in labels if x is not None]


def distinct(labels: list[int]) -> list[int]:
    """Labels with consecutive repeats (stretched frames) folded."""
    return [x for k, x in enumerate(labels) if k == 0 or labels[k - 1] != x]


def test_in_order_stream_plays_every_frame_once_after_the_initial_delay() -> None:
    buffer = JitterBuffer(min_delay=0.06, initial_delay=0.06)
    labels = Run(buffer).play([(i * FRAME, i) for i in range(50)], until=1.046)
    assert labels[:3] == [None, None, None]  # first pop at 0.005 + 3 ticks >= 0.06
    assert labels[3:] == list(range(1, 51))
    s = buffer.stats
    assert (s.received, s.played, s.late, s.lost, s.duplicates) == (50, 50, 0, 0, 0)
    assert (s.discarded, s.stretched) == (0, 0)
    assert s.jitter == pytest.approx(0, abs=1e-9)
    assert s.delay == pytest.approx(0.065)


def test_reordering_within_the_buffer_is_repaired() -> None:
    arrivals = [(i * FRAME, i) for i in range(60)]
    for a, b in ((5, 6), (20, 22), (40, 41)):
        arrivals[a], arrivals[b] = (
            (arrivals[a][0], arrivals[b][1]),
            (arrivals[b][0], arrivals[a][1]),
        )
    buffer = JitterBuffer(min_delay=0.06, initial_delay=0.06)
    labels = played(Run(buffer).play(arrivals, until=1.246))
    assert distinct(labels) == list(range(1, 61))
    s = buffer.stats
    assert (s.late, s.lost, s.duplicates, s.received) == (0, 0, 0, 60)
    assert len(labels) == 60 + s.stretched - s.discarded


def test_duplicates_are_dropped_and_counted() -> None:
    arrivals = [(i * FRAME, i) for i in range(30)] + [(0.3, 10), (0.55, 2)]  # 2 already played
    buffer = JitterBuffer(min_delay=0.06, initial_delay=0.06)
    assert distinct(played(Run(buffer).play(arrivals, until=0.646))) == list(range(1, 31))
    s = buffer.stats
    assert (s.duplicates, s.late, s.received, s.lost) == (2, 0, 30, 0)


def test_late_packet_is_dropped_and_its_slot_concealed() -> None:
    arrivals = [(i * FRAME, i) for i in range(30) if i != 10] + [(10 * FRAME + 0.2, 10)]
    buffer = JitterBuffer(min_delay=0.06, initial_delay=0.06)
    labels = played(Run(buffer).play(arrivals, until=0.646))
    # Slot 11 (packet 10) came too late: the previous frame (value 10) is repeated at half gain.
    assert labels[8:12] == [9, 10, 5, 12]
    s = buffer.stats
    assert (s.late, s.lost, s.concealed, s.received) == (1, 1, 1, 29)


def test_loss_run_decays_then_goes_silent_and_recovers() -> None:
    arrivals = [(i * FRAME, i) for i in range(40) if not 10 <= i < 16]
    buffer = JitterBuffer(min_delay=0.06, initial_delay=0.06, decay=0.5)
    labels = played(Run(buffer).play(arrivals, until=0.846))
    # tone(i+1) is i+1, so frame 10 (value 10) then 6 lost slots: 5, 2, 1, 0, 0, 0, then 17.
    assert labels[9:17] == [10, 5, 2, 1, 0, 0, 0, 17]
    assert (buffer.stats.lost, buffer.stats.concealed) == (6, 6)


def test_decayed_concealment_of_a_loud_frame() -> None:
    buffer = JitterBuffer(initial_delay=0.04, min_delay=0.04)
    loud = np.full(160, 1000, dtype=np.int16)
    buffer.push(1, 0, loud, 0.0)
    out = [buffer.pop(0.04 + k * FRAME) for k in range(6)]
    assert [None if f is None else int(f[0]) for f in out] == [1000, 500, 250, 125, 0, 0]


def test_wraparound_of_sequence_and_timestamp() -> None:
    buffer = JitterBuffer(min_delay=0.06, initial_delay=0.06)
    run = Run(buffer, seq0=65530, ts0=0xFFFFFFFF - 800)
    labels = run.play([(i * FRAME, i) for i in range(40)], until=0.846)
    assert played(labels) == list(range(1, 41))
    assert buffer.stats.resyncs == 0 and buffer.stats.late == 0


def simulate_jitter(
    buffer: JitterBuffer, rng: random.Random, spread: float, n: int, start: int = 0
) -> list[int]:
    arrivals = [((start + i) * FRAME + rng.uniform(0, spread), start + i) for i in range(n)]
    return played(
        Run(buffer).play(arrivals, until=(start + n) * FRAME + 0.5, phase=start * FRAME + 0.005)
    )


def test_adapts_to_jitter_with_few_late_packets() -> None:
    rng = random.Random(3550)
    buffer = JitterBuffer(min_delay=0.04, max_delay=0.3, initial_delay=0.04)
    simulate_jitter(buffer, rng, spread=0.08, n=3000)
    s = buffer.stats
    # Uniform 0..80 ms network delay: mean |D| ~ 27 ms, target ~ 20 + 4 * 27 ms.
    assert 0.020 < s.jitter < 0.035
    assert s.target == pytest.approx(0.020 + 4 * s.jitter)
    assert s.late < 0.01 * 3000, s
    assert s.stretched > 0  # started at 40 ms, had to grow
    assert abs(s.delay - s.target) < 0.045


def test_shrinks_delay_when_jitter_goes_away() -> None:
    rng = random.Random(7)
    buffer = JitterBuffer(min_delay=0.04, max_delay=0.3, initial_delay=0.2)
    simulate_jitter(buffer, rng, spread=0.0, n=1500)
    s = buffer.stats
    assert s.target == pytest.approx(0.04)
    assert s.discarded >= 5  # from 200 ms down to about 40 ms, one frame at a time
    assert s.delay < 0.04 + 0.021 + 0.02
    assert s.late == 0


def test_target_is_bounded_by_max_delay() -> None:
    rng = random.Random(1)
    buffer = JitterBuffer(min_delay=0.04, max_delay=0.12, initial_delay=0.06)
    simulate_jitter(buffer, rng, spread=0.4, n=1000)
    assert buffer.stats.target == 0.12
    assert buffer.stats.late > 0  # it cannot absorb 400 ms of jitter inside 120 ms: counted
    assert buffer.stats.resyncs == 0  # heavy jitter is not a timestamp jump


def test_timestamp_jump_resyncs_instead_of_playing_silence() -> None:
    buffer = JitterBuffer(initial_delay=0.06)
    for i in range(20):
        buffer.push(i, 160 * i, tone(i + 1), i * FRAME)
        buffer.pop(i * FRAME + 0.005)
    jump = 160 * 20 + 8000 * 10  # the sender's timestamp leaps 10 s ahead, sequence goes on
    for k in range(20, 40):
        buffer.push(k, jump + 160 * (k - 20), tone(k + 1), k * FRAME)
    assert buffer.stats.resyncs == 1
    out = played([label(buffer.pop(k * FRAME + 0.005)) for k in range(40, 60)])
    assert out[0] == 21 and out[:19] == list(range(21, 40))  # no 10 s of silence in between


def test_old_packet_far_behind_is_late_not_a_resync() -> None:
    buffer = JitterBuffer()
    for i in range(60):
        buffer.push(i, 160 * i, tone(i + 1), i * FRAME)
        buffer.pop(i * FRAME + 0.005)
    buffer.push(1, 160, tone(2), 60 * FRAME)  # a straggler by sequence number: never a jump
    buffer.push(61, 0, tone(2), 60 * FRAME)  # newer sequence, timestamp far behind: a jump back
    assert (buffer.stats.duplicates, buffer.stats.resyncs) == (1, 1)


def test_ssrc_change_resyncs() -> None:
    buffer = JitterBuffer(initial_delay=0.04, min_delay=0.04)
    buffer.push(1, 0, tone(1), 0.0, ssrc=1)
    assert label(buffer.pop(0.04)) == 1
    buffer.push(9000, 123456, tone(7), 0.05, ssrc=2)
    assert buffer.stats.resyncs == 1
    assert buffer.pop(0.06) is None  # buffering the new source
    assert label(buffer.pop(0.09)) == 7


def test_goes_idle_when_the_stream_stops_and_restarts() -> None:
    buffer = JitterBuffer(idle_after=0.2)
    buffer.push(1, 0, tone(1), 0.0)
    outs = [buffer.pop(0.06 + k * FRAME) for k in range(15)]
    assert label(outs[0]) == 1
    assert outs[-1] is None and not buffer.playing
    buffer.push(2, 160 * 500, tone(5), 1.0)  # comes back: a fresh start, not a resync
    assert buffer.pop(1.0) is None and label(buffer.pop(1.07)) == 5
    assert buffer.stats.resyncs == 0


def test_multi_frame_packets_are_split_and_bad_frames_rejected() -> None:
    buffer = JitterBuffer(initial_delay=0.04, min_delay=0.04)
    buffer.push(1, 0, np.concatenate([tone(1), tone(2)]), 0.0)
    assert [label(buffer.pop(0.04 + k * FRAME)) for k in range(2)] == [1, 2]
    with pytest.raises(MediaError, match="whole 160-sample frames, got \\(100,\\)"):
        buffer.push(2, 320, np.zeros(100, dtype=np.int16), 0.1)
    with pytest.raises(MediaError, match="min <= initial <= max"):
        JitterBuffer(min_delay=0.1, initial_delay=0.05)


def test_small_forward_jump_is_absorbed_by_discarding_not_kept_as_delay() -> None:
    buffer = JitterBuffer(min_delay=0.06, initial_delay=0.06)
    for k in range(200):
        jump = 0 if k < 50 else 4000  # half a second ahead from packet 50 on, arriving on time
        buffer.push(k, 160 * k + jump, tone(k + 1), k * FRAME)
        buffer.pop(k * FRAME + 0.005)
    s = buffer.stats
    assert s.resyncs == 0
    assert s.discarded >= 20  # the 500 ms of extra delay was dropped again...
    assert s.delay < s.target + 0.04  # ...so the delay is back near the target
