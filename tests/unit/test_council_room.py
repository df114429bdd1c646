"""council/room: who hears whom, measured on the audio itself (tones and their spectral level).

The expert (a SIP leg at 8 kHz) sends 440 Hz, the agent (pcm16 at 16 kHz) 660 Hz, the chair
(mu-law at 8 kHz) 880 Hz; after a few ticks for the resamplers to settle, each output is tested for
the level of each tone. Heard: the tone is near its sent amplitude; not heard: hundreds of times
lower.
"""

from __future__ import annotations

import hashlib
import wave
from pathlib import Path

import numpy as np
import pytest

from ifescalate.council import (
    AgentFormat,
    AgentParticipant,
    CouncilError,
    DuplicateParticipant,
    Rights,
    Role,
    Room,
    RoomClosed,
    RoomEventType,
    SipLegParticipant,
    UnknownParticipant,
    default_announcement,
)
from ifescalate.council.announcement import CHIME_HZ
from ifescalate.media.frames import AudioFrame, samples_per_frame

AMPLITUDE = 8000
HEARD = AMPLITUDE * 0.7
NOT_HEARD = AMPLITUDE * 0.01
SETTLE = 5  # ticks for the resamplers' history to fill


class Tone:
    """A continuous sine, one 20 ms frame at a time (phase carries across frames)."""

    def __init__(self, hz: float, rate: int, amplitude: int = AMPLITUDE) -> None:
        self.hz, self.rate, self.amplitude, self.n = hz, rate, amplitude, 0

    def frame(self) -> AudioFrame:
        size = samples_per_frame(self.rate)
        t = (self.n + np.arange(size)) / self.rate
        self.n += size
        return np.rint(self.amplitude * np.sin(2 * np.pi * self.hz * t)).astype(np.int16)


def level(samples: AudioFrame, rate: int, hz: float) -> float:
    """Amplitude of the ``hz`` component (single-bin DFT over whole periods of a Hann window)."""
    x = samples.astype(np.float64)
    window = np.hanning(x.size)
    t = np.arange(x.size) / rate
    return float(2 * abs(np.sum(x * window * np.exp(-2j * np.pi * hz * t))) / window.sum())


class Harness:
    """A room with expert, agent and chair, each fed its tone; collects each one's output."""

    def __init__(self, room: Room, *, join_all: bool = True) -> None:
        self.room = room
        self.expert = SipLegParticipant("expert", rate=8000)
        self.agent = AgentParticipant("agent", Role.AGENT, AgentFormat.PCM16_16000)
        self.chair = AgentParticipant("chair", Role.CHAIR, AgentFormat.MULAW_8000)
        self.tones = {
            "expert": Tone(440, 8000),
            "agent": Tone(660, 16000),
            "chair": Tone(880, 8000),
        }
        self.heard: dict[str, list[AudioFrame]] = {"expert": [], "agent": [], "chair": []}
        self.now = 100.0
        self.speaking = {"expert": True, "agent": True, "chair": True}
        if join_all:
            for p in (self.expert, self.agent, self.chair):
                room.join(p, self.now)

    @property
    def legs(self) -> dict[str, SipLegParticipant | AgentParticipant]:
        return {"expert": self.expert, "agent": self.agent, "chair": self.chair}

    def run(self, ticks: int) -> None:
        for name in self.heard:
            self.heard[name] = []
        for _ in range(ticks):
            for name, leg in self.legs.items():
                if leg.removed is None and name in self.room.participants:
                    tone = self.tones[name].frame()
                    leg.push_input(tone if self.speaking[name] else np.zeros_like(tone))
            self.room.tick(self.now)
            self.now += 0.02
            for name, leg in self.legs.items():
                frame = leg.pull_output()
                if frame is not None:
                    self.heard[name].append(frame)

    def levels(self, name: str) -> dict[int, float]:
        rate = self.legs[name].rate
        samples = np.concatenate(self.heard[name][SETTLE:])
        return {hz: level(samples, rate, hz) for hz in (440, 660, 880)}


def quiet_room(**kwargs: object) -> Room:
    return Room("esc-1", announcement=(), **kwargs)  # type: ignore[arg-type]


def test_mix_minus_everyone_hears_the_others_never_themselves() -> None:
    h = Harness(quiet_room())
    h.run(30)
    expert, agent, chair = h.levels("expert"), h.levels("agent"), h.levels("chair")
    assert expert[660] > HEARD and expert[880] > HEARD and expert[440] < NOT_HEARD
    assert agent[440] > HEARD and agent[880] > HEARD and agent[660] < NOT_HEARD
    assert chair[440] > HEARD and chair[660] > HEARD and chair[880] < NOT_HEARD


def test_coaching_chair_speaks_only_to_the_expert_even_set_before_the_expert_joins() -> None:
    room = quiet_room()
    h = Harness(room, join_all=False)
    room.join(h.agent, h.now)
    room.join(h.chair, h.now, Rights(speak_only_to=frozenset({"role:expert"})))
    room.join(h.expert, h.now)
    h.run(30)
    assert h.levels("expert")[880] > HEARD
    assert h.levels("agent")[880] < NOT_HEARD
    # The chair still hears everyone, and the coaching does not stop the expert hearing the agent.
    assert h.levels("chair")[440] > HEARD and h.levels("chair")[660] > HEARD
    assert h.levels("expert")[660] > HEARD
    room.set_speak_only_to("chair", None, h.now)
    h.run(30)
    assert h.levels("agent")[880] > HEARD


def test_coaching_by_id_and_the_rights_event() -> None:
    h = Harness(quiet_room())
    h.room.pop_events()
    h.room.set_speak_only_to("chair", ["expert"], h.now)
    (event,) = h.room.pop_events()
    assert event.type is RoomEventType.RIGHTS_CHANGED and event.participant == "chair"
    assert event.details["speak_only_to"] == ["expert"]
    h.run(30)
    assert h.levels("expert")[880] > HEARD and h.levels("agent")[880] < NOT_HEARD


def test_mute_silences_the_participant_for_all_but_still_reports_speaking() -> None:
    h = Harness(quiet_room())
    h.room.pop_events()
    h.room.set_muted("agent", True, h.now)
    h.room.set_muted("agent", True, h.now)  # no change: no second event
    events = h.room.pop_events()
    assert [(e.type, e.details["muted"]) for e in events] == [(RoomEventType.RIGHTS_CHANGED, True)]
    h.run(30)
    assert h.levels("expert")[660] < NOT_HEARD and h.levels("chair")[660] < NOT_HEARD
    assert h.levels("agent")[440] > HEARD  # muted is not deaf
    started = [
        e.participant for e in h.room.pop_events() if e.type is RoomEventType.SPEAKING_STARTED
    ]
    assert "agent" in started
    h.room.set_muted("agent", False, h.now)
    h.run(30)
    assert h.levels("expert")[660] > HEARD


def test_deaf_hears_silence_and_is_still_heard() -> None:
    h = Harness(quiet_room())
    h.room.set_deaf("expert", True, h.now)
    h.run(30)
    assert all(not frame.any() for frame in h.heard["expert"])
    assert h.levels("agent")[440] > HEARD


def test_kick_removes_from_the_mix_and_tells_the_network_side() -> None:
    h = Harness(quiet_room())
    h.room.pop_events()
    h.room.kick("chair", h.now, by="operator:ops")
    events = h.room.pop_events()
    left = [e for e in events if e.type is RoomEventType.LEFT]
    assert len(left) == 1 and left[0].details == {"reason": "kicked", "by": "operator:ops"}
    assert h.chair.removed == "kicked"
    assert "chair" not in h.room.participants
    h.run(30)
    assert h.levels("expert")[880] < NOT_HEARD and h.levels("agent")[880] < NOT_HEARD
    with pytest.raises(UnknownParticipant):
        h.room.set_muted("chair", True, h.now)


def test_speaking_events_start_and_stop_with_the_talk_spurt() -> None:
    h = Harness(quiet_room())
    h.speaking.update(expert=False, chair=False)
    h.room.pop_events()
    h.run(10)
    h.speaking["agent"] = False
    h.run(30)
    events = [
        (e.type, e.participant)
        for e in h.room.pop_events()
        if e.type in (RoomEventType.SPEAKING_STARTED, RoomEventType.SPEAKING_STOPPED)
    ]
    assert events == [
        (RoomEventType.SPEAKING_STARTED, "agent"),
        (RoomEventType.SPEAKING_STOPPED, "agent"),
    ]


def test_leaving_while_speaking_ends_the_speaking_span() -> None:
    h = Harness(quiet_room())
    h.run(5)
    h.room.pop_events()
    h.room.leave("agent", h.now)
    types = [(e.type, e.participant) for e in h.room.pop_events()]
    assert types == [(RoomEventType.SPEAKING_STOPPED, "agent"), (RoomEventType.LEFT, "agent")]


def test_join_events_and_bad_joins() -> None:
    room = quiet_room()
    expert = SipLegParticipant("expert", name="Dr. Volt")
    room.join(expert, 1.0)
    (joined,) = room.pop_events()
    assert joined.to_dict() == {
        "escalation_id": "esc-1",
        "type": "PARTICIPANT_JOINED",
        "participant": "expert",
        "time": 1.0,
        "details": {
            "kind": "sip",
            "role": "expert",
            "name": "Dr. Volt",
            "rights": {"muted": False, "deaf": False, "speak_only_to": None},
        },
    }
    with pytest.raises(DuplicateParticipant):
        room.join(SipLegParticipant("expert"), 1.0)
    with pytest.raises(CouncilError, match="48000 Hz"):
        room.join(SipLegParticipant("x", room_rate=48000), 1.0)


def test_recording_holds_the_room_mix_and_its_sha256(tmp_path: Path) -> None:
    path = tmp_path / "rec" / "esc-1.wav"
    h = Harness(quiet_room(record_path=path))
    h.run(50)
    h.room.set_muted("chair", True, h.now)
    h.run(50)
    recording = h.room.close(h.now)
    assert recording is not None
    assert recording.path == path and recording.seconds == 2.0
    assert recording.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert pcm.size == 100 * 320
    first, second = pcm[10 * 320 : 50 * 320], pcm[60 * 320 :]
    for hz in (440, 660, 880):
        assert level(first, 16000, hz) > HEARD, hz
    assert level(second, 16000, 880) < NOT_HEARD  # muted: nobody heard it, so not recorded
    assert level(second, 16000, 440) > HEARD
    closing = h.room.pop_events()
    assert closing[-1].type is RoomEventType.RECORDING_STOPPED
    assert closing[-1].details["sha256"] == recording.sha256
    assert {e.participant for e in closing if e.type is RoomEventType.LEFT} == {
        "expert",
        "agent",
        "chair",
    }
    assert h.expert.removed == "room closed"
    assert h.room.close(h.now) is None
    with pytest.raises(RoomClosed):
        h.room.join(SipLegParticipant("late"), h.now)


def test_unrecorded_room_closes_without_a_file() -> None:
    room = quiet_room()
    assert room.close(0.0) is None


def test_announcement_is_played_to_the_expert_only() -> None:
    room = Room("esc-1")
    h = Harness(room)
    h.speaking = {"expert": False, "agent": False, "chair": False}
    events = room.pop_events()
    played = [e for e in events if e.type is RoomEventType.ANNOUNCEMENT_PLAYED]
    assert [e.participant for e in played] == ["expert"]
    length = len(default_announcement(16000))
    assert 0.5 <= played[0].details["seconds"] == length * 0.02 <= 2.0
    h.run(length + 10)
    expert = np.concatenate(h.heard["expert"])
    chime = expert[: int(0.18 * 8000)]
    assert level(chime, 8000, CHIME_HZ[0]) > 1000
    assert np.abs(expert).max() > 3000
    assert not np.concatenate(h.heard["agent"]).any()
    assert not np.concatenate(h.heard["chair"]).any()
    # It plays once: after its length the expert hears silence again.
    assert not np.concatenate(h.heard["expert"][length + 2 :]).any()


def test_agent_cannot_be_the_expert() -> None:
    with pytest.raises(CouncilError, match="expert"):
        AgentParticipant("a", Role.EXPERT, AgentFormat.PCM16_16000)


def test_mixes_at_8k_while_at_most_one_participant_is_wideband_and_never_loses_wideband() -> None:
    room = quiet_room()
    h = Harness(room)  # expert and chair at 8 kHz, one agent at 16 kHz
    assert room.mix_rate == 8000
    h.run(30)  # every tone still reaches everyone else at its level (8 kHz mix, 2 resamples)
    assert h.levels("agent")[440] > HEARD and h.levels("expert")[660] > HEARD
    # A second 16 kHz agent: the two agents hear each other, so the room mixes wideband and a
    # 6 kHz tone (above any narrowband leg's band) goes from one agent to the other.
    second = AgentParticipant("second", Role.AGENT, AgentFormat.PCM16_16000)
    room.join(second, h.now)
    assert room.mix_rate == 16000
    high = Tone(6000, 16000)
    received = []
    for _ in range(30):
        second.push_input(high.frame())
        h.run(1)
        received.append(h.heard["agent"][0])
        second.pull_output()
    assert level(np.concatenate(received[SETTLE:]), 16000, 6000) > HEARD
    room.leave("second", h.now)
    assert room.mix_rate == 8000
    h.run(30)  # back at 8 kHz, after the switch the resamplers settle again
    assert h.levels("chair")[660] > HEARD and h.levels("chair")[440] > HEARD


def test_recorded_room_and_announcement_keep_the_room_rate(tmp_path: Path) -> None:
    recorded = Harness(quiet_room(record_path=tmp_path / "r.wav")).room
    assert recorded.mix_rate == 16000  # the recording is a wideband listener of everyone
    recorded.close(0.0)
    room = Room("esc-1")  # with the announcement, for a wideband (48 kHz) expert
    expert = SipLegParticipant("expert", rate=48000)
    room.join(expert, 0.0)
    room.join(AgentParticipant("chair", Role.CHAIR, AgentFormat.MULAW_8000), 0.0)
    assert room.mix_rate == 16000  # the announcement is a 16 kHz source the expert hears
    for _ in range(len(default_announcement(16000))):
        room.tick(0.0)
    assert room.mix_rate == 8000  # played out: the expert now hears only the 8 kHz chair
