"""The media hot path's shortcuts agree with the direct computations they replace."""

from __future__ import annotations

import numpy as np
import pytest

from ifescalate.media.frames import samples_per_frame
from ifescalate.media.resample import Resampler

PAIRS = [(8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000), (16000, 48000), (48000, 16000)]


@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
def test_polyphase_fast_path_matches_the_general_plan(rate_in: int, rate_out: int) -> None:
    rng = np.random.default_rng(rate_in + rate_out)
    fast, general = Resampler(rate_in, rate_out), Resampler(rate_in, rate_out)
    assert fast._fast is not None
    general._fast = None  # the gather-and-einsum plan
    n = samples_per_frame(rate_in)
    for k in range(12):
        frame = np.clip(rng.standard_normal(n) * 12000, -32768, 32767).astype(np.int16)
        if k == 4:
            frame[:] = 32767  # full scale: the sinc overshoot must saturate, not wrap
        if k == 5:
            frame[:] = -32768
        if k == 8:
            fast.reset()
            general.reset()
        np.testing.assert_array_equal(fast.process(frame), general.process(frame))
