"""Stateful rational resampling of 20 ms int16 frames (8 <-> 16 <-> 48 kHz), numpy only.

A polyphase windowed-sinc FIR: conceptually the input is zero-stuffed by L, low-pass filtered at the
lower of the two Nyquist frequencies, and decimated by M (out/in = L/M). Only the taps that meet a
non-zero input sample are computed. The last input samples of each frame are kept so the filter runs
across frame edges exactly as over one continuous signal: no clicks at 20 ms boundaries.

Because every supported rate gives a whole number of samples per 20 ms frame, frame k's first output
sample always falls on input sample k * in_len exactly, so the only state is the input history.

Speed (the room runs four resamples per call per 20 ms): the pairs we use are pure interpolation
(8 -> 16, 8/16 -> 48: M = 1) or pure decimation (16 -> 8, 48 -> 8/16: L = 1). For those the
polyphase sum is one correlation per branch (``np.correlate`` with reversed taps) over one float
buffer holding history + frame: no gather, no per-frame allocation but the result. Other ratios
keep the general gather-and-sum plan. Same taps, same sums, only the order of additions differs.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt

from ifescalate.media.frames import AudioFrame, MediaError, check_frame, samples_per_frame

__all__ = ["Resampler", "design_lowpass"]

# Zero crossings of the sinc on each side of its centre, at the lower rate. 16 gives a transition
# band of a few hundred Hz at 8 kHz and > 80 dB stop band with the Kaiser window below.
DEFAULT_ZERO_CROSSINGS = 16
KAISER_BETA = 8.6
# Passband edge as a fraction of the lower Nyquist frequency: 0.9 keeps 3.6 kHz of an 8 kHz stream.
CUTOFF = 0.9


def design_lowpass(
    up: int, down: int, zero_crossings: int = DEFAULT_ZERO_CROSSINGS
) -> npt.NDArray[np.float64]:
    """Kaiser-windowed sinc low-pass for a resampler L=up, M=down, at the up-sampled rate.

    Gain ``up`` so zero-stuffing by ``up`` keeps the level; length a multiple of ``up``.
    """
    factor = max(up, down)
    # Cut-off in cycles per up-sampled sample: the lower Nyquist (1/(2*factor)) times CUTOFF.
    cutoff = CUTOFF / (2.0 * factor)
    half = zero_crossings * factor
    length = 2 * half + 1
    length += (-length) % up  # pad so every polyphase branch has the same number of taps
    n = np.arange(length, dtype=np.float64) - half
    taps = 2.0 * cutoff * np.sinc(2.0 * cutoff * n) * np.kaiser(length, KAISER_BETA)
    # Pad taps past the window (from rounding the length up) are outside the Kaiser support: zero.
    taps[2 * half + 1 :] = 0.0
    taps *= up / taps.sum()
    return taps


@functools.lru_cache(maxsize=64)
def _shared_taps(up: int, down: int, zero_crossings: int) -> npt.NDArray[np.float64]:
    """:func:`design_lowpass`, designed once per ratio and shared read-only: a room retunes its
    participants' resamplers at every join and leave, on the event loop (~0.2 ms per design)."""
    taps = design_lowpass(up, down, zero_crossings)
    taps.flags.writeable = False
    return taps


class Resampler:
    """One stream's resampler from ``rate_in`` to ``rate_out``; feed it consecutive frames.

    ``process`` takes exactly one 20 ms frame at ``rate_in`` and returns exactly one at ``rate_out``.
    The filter delays the signal by :attr:`delay` seconds (half its length), constant per pair.
    """

    def __init__(
        self, rate_in: int, rate_out: int, *, zero_crossings: int = DEFAULT_ZERO_CROSSINGS
    ) -> None:
        self.rate_in = rate_in
        self.rate_out = rate_out
        self._in_len = samples_per_frame(rate_in)
        self._out_len = samples_per_frame(rate_out)
        g = math.gcd(rate_in, rate_out)
        self._up, self._down = rate_out // g, rate_in // g
        if self._up > 64 or self._down > 64:
            raise MediaError(f"resampling {rate_in} -> {rate_out} Hz needs a ratio too large")
        taps = _shared_taps(self._up, self._down, zero_crossings)
        self._delay = (2 * zero_crossings * max(self._up, self._down)) / 2 / (rate_in * self._up)
        self._branch = taps.size // self._up  # taps per polyphase branch
        self._history = np.zeros(self._branch - 1, dtype=np.float64)
        self._index, self._coef = self._plan(taps)
        self._fast = self._plan_fast(taps)

    def _plan(
        self, taps: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        # Output n sits at up-sampled time t = n*M: input sample i = t // L, branch p = t % L.
        # y[n] = sum_j h[p + j*L] * x[i - j], with x indexed into history + frame.
        t = np.arange(self._out_len) * self._down
        base, phase = t // self._up, t % self._up
        j = np.arange(self._branch)
        index = (self._branch - 1) + base[:, None] - j[None, :]
        coef = taps[phase[:, None] + j[None, :] * self._up]
        return index.astype(np.intp), coef

    def _plan_fast(self, taps: npt.NDArray[np.float64]) -> _FastPlan | None:
        if self._up == self._down or (self._up > 1 and self._down > 1):
            return None
        if self._down == 1:
            # Interpolation: output n = k*L + p is branch p (taps[p::L]) over input k.
            return _FastPlan.interpolator(taps, self._up, self._in_len)
        return _FastPlan.decimator(taps, self._down, self._in_len)

    @property
    def delay(self) -> float:
        """Group delay of the filter, in seconds."""
        return 0.0 if self._up == self._down else self._delay

    def reset(self) -> None:
        """Forget the history (a new talk spurt after a gap, or a new stream)."""
        self._history[:] = 0.0
        if self._fast is not None:
            self._fast.buffer[:] = 0.0

    def process(self, frame: AudioFrame) -> AudioFrame:
        """Resample one 20 ms frame; the history carries over to the next call."""
        check_frame(frame, self.rate_in)
        return self.process_checked(frame)

    def process_checked(self, frame: AudioFrame) -> AudioFrame:
        """:meth:`process` for a frame already known to be a 20 ms int16 frame at ``rate_in``
        (one the caller checked or made itself): the hot path skips the second check."""
        if self._up == self._down:
            return frame.copy()
        if self._fast is not None:
            return self._fast.run(frame)
        signal = np.concatenate((self._history, frame.astype(np.float64)))
        out: npt.NDArray[np.float64] = np.einsum("nj,nj->n", self._coef, signal[self._index])
        if self._history.size:
            self._history = signal[-self._history.size :].copy()
        result: AudioFrame = np.clip(np.rint(out), -32768, 32767).astype(np.int16)
        return result


class _FastPlan:
    """Polyphase by convolution for M = 1 (interpolate by L) or L = 1 (decimate by M).

    ``buffer`` is history + the current frame as float64; after each frame the newest
    ``hist`` samples move to its front (the filter's memory across 20 ms edges). ``branches``
    hold each branch's taps reversed: a convolution is then ``np.correlate``, which skips
    ``np.convolve``'s reversal and copy on every call.
    """

    def __init__(
        self,
        branches: list[npt.NDArray[np.float64]],
        hist: int,
        in_len: int,
        out_len: int,
        step: int,
        interpolate: bool,
    ) -> None:
        self.branches = branches
        self.hist = hist
        self.in_len = in_len
        self.out_len = out_len
        self.step = step
        self.interpolate = interpolate
        self.buffer = np.zeros(hist + in_len, dtype=np.float64)
        self.out = np.empty(out_len, dtype=np.float64)
        self.full: npt.NDArray[np.float64] | None = None  # by 2: see interpolator/decimator
        self.stuffed = self.buffer  # interpolation by 2: the zero-stuffed signal (interpolator)
        self.part = np.empty(out_len, dtype=np.float64)

    @classmethod
    def interpolator(cls, taps: npt.NDArray[np.float64], up: int, in_len: int) -> _FastPlan:
        # y[k*L + p] = sum_j taps[p + j*L] * x[k - j]: a 'valid' convolution per branch p.
        branches = [np.ascontiguousarray(taps[p::up][::-1]) for p in range(up)]
        width = branches[0].size
        plan = cls(branches, width - 1, in_len, in_len * up, up, True)
        if up == 2:
            # By 2 (8 -> 16 kHz): one correlation over the zero-stuffed input (a zero before
            # each sample) with the whole filter reversed gives both branches interleaved:
            # y[2k + p] = sum_i taps[2i + 1 - p] * s[k + W - 1 - i]. Zero terms add exactly 0.
            plan.full = np.ascontiguousarray(taps[::-1])
            plan.stuffed = np.zeros(1 + 2 * (width - 1 + in_len), dtype=np.float64)
            plan.buffer = plan.stuffed[1::2]  # the samples' slots: history, then the frame
        return plan

    @classmethod
    def decimator(cls, taps: npt.NDArray[np.float64], down: int, in_len: int) -> _FastPlan:
        # y[n] = sum_j h[j] * s[H + M*n - j]; with j = M*i + r this is, per r, a convolution of
        # g_r = h[r::M] with the every-M-th samples v_r = s[M-1-r::M]. Taps are zero-padded to a
        # multiple of M (zero terms only) and the history is I*M - 1 samples so v_r starts >= 0.
        width = -(-taps.size // down)
        padded = np.zeros(width * down, dtype=np.float64)
        padded[: taps.size] = taps
        branches = [np.ascontiguousarray(padded[r::down][::-1]) for r in range(down)]
        plan = cls(branches, width * down - 1, in_len, in_len // down, down, False)
        if down == 2:
            # By 2 (16 -> 8 kHz, every wideband agent in a narrowband room): one correlation at
            # the input rate, every other output kept, c[m] = sum_j h[j] * s[m + H - j], y[n] =
            # c[2n]. Twice the products, half the calls: numpy's per-output dot overhead
            # dominates 33-tap sums (4.1 -> 3.4 us). Same taps, same sums in another order.
            plan.full = np.ascontiguousarray(padded[::-1])
        return plan

    def run(self, frame: AudioFrame) -> AudioFrame:
        buffer, out = self.buffer, self.out
        buffer[self.hist :] = frame
        if self.full is not None and self.interpolate:
            out = np.correlate(self.stuffed, self.full, "valid")
        elif self.full is not None:
            out = np.correlate(buffer, self.full, "valid")[::2]
        elif self.interpolate:
            step = self.step
            for p, branch in enumerate(self.branches):
                out[p::step] = np.correlate(buffer, branch, "valid")
        else:
            step, count = self.step, self.out_len + self.branches[0].size - 1
            for r, branch in enumerate(self.branches):
                start = step - 1 - r
                part = np.correlate(buffer[start : start + step * count : step], branch, "valid")
                if r:
                    out += part
                else:
                    out[:] = part
        if self.hist:
            buffer[: self.hist] = buffer[-self.hist :]
        # Round, then saturate: the sinc's overshoot can pass full scale on a full-scale input.
        np.rint(out, out=out)
        np.minimum(out, 32767.0, out=out)
        np.maximum(out, -32768.0, out=out)
        result: AudioFrame = out.astype(np.int16)
        return result
