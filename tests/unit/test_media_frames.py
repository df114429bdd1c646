"""The shared 20 ms frame convention (media/frames.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ifescalate.media.frames import FRAME_MS, MediaError, check_frame, samples_per_frame, silence


@pytest.mark.parametrize(("rate", "n"), [(8000, 160), (16000, 320), (48000, 960), (90000, 1800)])
def test_samples_per_frame(rate: int, n: int) -> None:
    assert FRAME_MS == 20
    assert samples_per_frame(rate) == n


@pytest.mark.parametrize("rate", [0, -8000, 8001])
def test_samples_per_frame_rejects_odd_rates(rate: int) -> None:
    with pytest.raises(MediaError, match="whole number of samples"):
        samples_per_frame(rate)


def test_silence_is_fresh_int16_zeros() -> None:
    a = silence(8000)
    b = silence(8000)
    assert a.dtype == np.int16 and a.shape == (160,) and not a.any()
    a[0] = 5
    assert b[0] == 0
    assert isinstance(MediaError("x"), ValueError)


def test_check_frame() -> None:
    frame = silence(16000)
    assert check_frame(frame, 16000) is frame
    with pytest.raises(MediaError, match="must have 160 samples, got 320"):
        check_frame(frame, 8000)
    with pytest.raises(MediaError, match="1-D int16, got 1-D float64"):
        check_frame(np.zeros(160), 8000)
