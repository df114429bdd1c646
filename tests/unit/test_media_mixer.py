"""The conference mixer: mix-minus, rights (mute, deaf, coaching, kick), clipping, speaking events."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from ifescalate.media.frames import MediaError, samples_per_frame, silence
from ifescalate.media.mixer import (
    Mixer,
    MixerError,
    ParticipantKind,
    SpeakingStarted,
    SpeakingStopped,
)

RATE = 16000
N = samples_per_frame(RATE)
# Tones that fall on exact FFT bins of one 20 ms frame (50 Hz resolution): no leakage between them.
FREQS = {"expert": 500.0, "chair": 1000.0, "agent": 1500.0, "web": 2000.0}


def tone(freq: float, amp: float = 3000.0, tick: int = 0) -> npt.NDArray[np.int16]:
    t = (np.arange(N) + tick * N) / RATE
    return np.rint(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def heard(frame: npt.NDArray[np.int16]) -> set[str]:
    """Which participants' tones are present in ``frame`` (by FFT bin magnitude)."""
    spectrum = np.abs(np.fft.rfft(frame.astype(np.float64))) / (N / 2)
    freqs = np.fft.rfftfreq(N, 1 / RATE)
    return {
        name
        for name, f in FREQS.items()
        if spectrum[int(np.argmin(np.abs(freqs - f)))] > 0.5 * 3000.0
    }


def three() -> Mixer:
    mixer = Mixer(RATE)
    mixer.add("expert", "sip")
    mixer.add("chair", ParticipantKind.AGENT)
    mixer.add("agent", "agent")
    return mixer


def inputs(*names: str, tick: int = 0) -> dict[str, npt.NDArray[np.int16] | None]:
    return {name: tone(FREQS[name], tick=tick) for name in names}


def test_mix_minus_each_hears_exactly_the_others() -> None:
    mixer = three()
    out = mixer.mix(inputs("expert", "chair", "agent"))
    assert set(out) == {"expert", "chair", "agent"}
    assert heard(out["expert"]) == {"chair", "agent"}
    assert heard(out["chair"]) == {"expert", "agent"}
    assert heard(out["agent"]) == {"expert", "chair"}
    # The mix is exactly the sum of the others (gain 1, no clipping at this level).
    expected = tone(FREQS["chair"]).astype(np.int32) + tone(FREQS["agent"])
    assert np.array_equal(out["expert"], expected.astype(np.int16))
    assert all(frame.dtype == np.int16 and frame.shape == (N,) for frame in out.values())


def test_muted_is_heard_by_nobody() -> None:
    mixer = three()
    mixer.set_muted("chair", True)
    out = mixer.mix(inputs("expert", "chair", "agent"))
    assert heard(out["expert"]) == {"agent"}
    assert heard(out["agent"]) == {"expert"}
    assert heard(out["chair"]) == {"expert", "agent"}  # muted still hears
    mixer.set_muted("chair", False)
    assert heard(mixer.mix(inputs("expert", "chair", "agent"))["expert"]) == {"chair", "agent"}


def test_deaf_hears_silence_but_is_heard() -> None:
    mixer = three()
    mixer.set_deaf("expert", True)
    out = mixer.mix(inputs("expert", "chair", "agent"))
    assert np.array_equal(out["expert"], silence(RATE))
    assert heard(out["chair"]) == {"expert", "agent"}
    assert not mixer.hears("expert", "chair") and mixer.hears("chair", "expert")


def test_coaching_chair_speaks_only_to_expert() -> None:
    mixer = three()
    mixer.add("web", "webrtc")
    mixer.set_speak_only_to("chair", {"expert"})
    out = mixer.mix(inputs("expert", "chair", "agent", "web"))
    assert heard(out["expert"]) == {"chair", "agent", "web"}
    assert heard(out["agent"]) == {"expert", "web"}
    assert heard(out["web"]) == {"expert", "agent"}
    # The chair still hears everyone else, and never itself.
    assert heard(out["chair"]) == {"expert", "agent", "web"}
    # A coach that is also muted is heard by no one; lifting the restriction makes it public.
    mixer.set_muted("chair", True)
    assert heard(mixer.mix(inputs("chair"))["expert"]) == set()
    mixer.set_muted("chair", False)
    mixer.set_speak_only_to("chair", None)
    out = mixer.mix(inputs("chair"))
    assert heard(out["agent"]) == heard(out["web"]) == heard(out["expert"]) == {"chair"}


def test_coach_targets_need_not_exist_yet_and_empty_set_is_silent() -> None:
    mixer = Mixer(RATE)
    mixer.add("chair", "agent", speak_only_to=["expert"])
    mixer.add("agent", "agent")
    assert heard(mixer.mix(inputs("chair"))["agent"]) == set()
    mixer.add("expert", "sip")
    assert heard(mixer.mix(inputs("chair"))["expert"]) == {"chair"}
    mixer.set_speak_only_to("chair", [])
    assert heard(mixer.mix(inputs("chair"))["expert"]) == set()


def test_loud_inputs_saturate_instead_of_wrapping() -> None:
    mixer = three()
    loud = np.full(N, 30000, dtype=np.int16)
    out = mixer.mix({"expert": loud, "chair": loud, "agent": -loud})
    # expert hears chair + agent = 0; chair hears expert + agent = 0; agent hears 60000 -> 32767.
    assert np.all(out["agent"] == 32767)
    assert np.all(out["expert"] == 0)
    low = np.full(N, -32768, dtype=np.int16)
    out = mixer.mix({"expert": low, "chair": low, "agent": low})
    assert np.all(out["agent"] == -32768)


def test_gain_is_applied_and_clipped() -> None:
    mixer = Mixer(RATE)
    mixer.add("a", "sip", gain=0.5)
    mixer.add("b", "sip")
    out = mixer.mix({"a": np.full(N, 1000, dtype=np.int16)})
    assert np.all(out["b"] == 500)
    mixer.set_gain("a", 4.0)
    out = mixer.mix({"a": np.full(N, 20000, dtype=np.int16)})
    assert np.all(out["b"] == 32767)
    with pytest.raises(MixerError, match="outside"):
        mixer.set_gain("a", -1.0)
    with pytest.raises(MixerError, match="outside"):
        mixer.add("c", "sip", gain=100.0)
    assert "c" not in mixer.participants


def test_missing_or_none_input_is_silence() -> None:
    mixer = three()
    out = mixer.mix({"expert": tone(FREQS["expert"]), "chair": None})
    assert heard(out["agent"]) == {"expert"}
    assert np.array_equal(out["expert"], silence(RATE))


def test_join_and_leave_mid_stream() -> None:
    mixer = three()
    for tick in range(5):
        mixer.mix(inputs("expert", "chair", "agent", tick=tick))
    mixer.add("web", "webrtc")
    out = mixer.mix(inputs("expert", "chair", "agent", "web", tick=5))
    assert heard(out["web"]) == {"expert", "chair", "agent"}
    assert heard(out["expert"]) == {"chair", "agent", "web"}
    mixer.kick("chair")
    out = mixer.mix(inputs("expert", "agent", "web", tick=6))
    assert set(out) == {"expert", "agent", "web"}
    assert heard(out["web"]) == {"expert", "agent"}
    with pytest.raises(MixerError, match=r"unknown participants \['chair'\]"):
        mixer.mix(inputs("chair"))
    with pytest.raises(MixerError, match="no participant 'chair'"):
        mixer.set_muted("chair", True)


def test_bad_use_is_refused() -> None:
    mixer = three()
    with pytest.raises(MixerError, match="already in the mix"):
        mixer.add("expert", "sip")
    with pytest.raises(MixerError, match="unknown participant kind"):
        mixer.add("x", "pstn")
    with pytest.raises(MediaError, match="must have 320 samples"):
        mixer.mix({"expert": np.zeros(160, dtype=np.int16)})
    assert issubclass(MixerError, MediaError)


def test_speaking_events_with_hangover() -> None:
    mixer = Mixer(RATE, hangover_ms=100)  # 5 frames
    mixer.add("expert", "sip")
    mixer.add("chair", "agent")
    quiet = np.rint(tone(500.0, amp=50.0)).astype(np.int16)  # ~ -59 dBFS: below the threshold
    talk = tone(500.0, amp=3000.0)
    assert mixer.pop_events() == []
    mixer.mix({"expert": quiet})
    assert mixer.pop_events() == []
    mixer.mix({"expert": talk})  # tick 1
    assert mixer.pop_events() == [SpeakingStarted("expert", 1)]
    # A short pause (3 frames) inside the hangover does not end the span.
    for _ in range(3):
        mixer.mix({"expert": quiet})
    mixer.mix({"expert": talk})
    assert mixer.pop_events() == []
    for _ in range(4):
        mixer.mix({"expert": None})
    assert mixer.pop_events() == []
    mixer.mix({})  # 5th quiet frame: tick 10
    assert mixer.pop_events() == [SpeakingStopped("expert", 10)]
    assert not mixer.participants["expert"].speaking


def test_muted_speaker_still_reports_speaking_and_kick_stops_it() -> None:
    mixer = three()
    mixer.set_muted("agent", True)
    mixer.mix(inputs("agent"))
    assert mixer.pop_events() == [SpeakingStarted("agent", 0)]
    assert mixer.participants["agent"].speaking
    mixer.remove("agent")
    assert mixer.pop_events() == [SpeakingStopped("agent", 1)]


def test_participants_snapshot_cannot_change_rights() -> None:
    mixer = three()
    snapshot = mixer.participants["chair"]
    snapshot.muted = True
    assert heard(mixer.mix(inputs("chair"))["expert"]) == {"chair"}
