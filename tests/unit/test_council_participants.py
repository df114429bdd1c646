"""council/participants, council/council and the announcement WAV loader: queues, formats, the
registry of rooms and its event dispatch."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from ifescalate.council import (
    AgentFormat,
    AgentParticipant,
    Council,
    CouncilError,
    FrameFormatError,
    FrameQueue,
    RoomEvent,
    RoomEventType,
    SipLegParticipant,
    UnknownRoom,
    frames_from_wav,
)
from ifescalate.council.participants import Role
from ifescalate.media.frames import AudioFrame, MediaError
from ifescalate.media.g711 import ulaw_encode


def frame(value: int, size: int = 320) -> AudioFrame:
    return np.full(size, value, dtype=np.int16)


def test_frame_queue_drops_the_oldest_and_counts() -> None:
    q = FrameQueue(3)
    for v in range(5):
        q.push(frame(v))
    assert (len(q), q.pushed, q.dropped) == (3, 5, 2)
    popped = [q.pop() for _ in range(4)]
    assert [int(f[0]) for f in popped if f is not None] == [2, 3, 4]
    assert popped[3] is None
    with pytest.raises(CouncilError):
        FrameQueue(0)


def test_agent_formats_frame_sizes_and_round_trip() -> None:
    assert (AgentFormat.PCM16_16000.frame_bytes, AgentFormat.MULAW_8000.frame_bytes) == (640, 160)
    pcm = np.arange(-160, 160, dtype=np.int16) * 50
    data = AgentFormat.PCM16_16000.encode(pcm)
    assert data[:2] == (-8000).to_bytes(2, "little", signed=True)  # little-endian on the wire
    assert np.array_equal(AgentFormat.PCM16_16000.decode(data), pcm)
    coded = ulaw_encode(pcm[:160])
    assert AgentFormat.MULAW_8000.encode(AgentFormat.MULAW_8000.decode(coded)) == coded
    with pytest.raises(FrameFormatError, match="must be 160 bytes"):
        AgentFormat.MULAW_8000.decode(b"\xff" * 161)
    assert issubclass(FrameFormatError, MediaError)


def test_agent_participant_resamples_mulaw_8k_to_the_room_and_back() -> None:
    agent = AgentParticipant("a", Role.AGENT, AgentFormat.MULAW_8000)
    t = np.arange(160 * 20) / 8000
    tone = np.rint(6000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)
    for i in range(20):
        agent.push_bytes(ulaw_encode(tone[i * 160 : (i + 1) * 160]))
    assert agent.input.dropped == 10  # 20 pushed in a burst, 10 kept
    room_side = [agent.pull_input() for _ in range(10)]
    assert all(f is not None and f.size == 320 for f in room_side)
    for f in room_side:
        assert f is not None
        agent.deliver(f)
    out = [agent.pull_output_bytes() for _ in range(11)]
    assert out[10] is None and all(b is not None and len(b) == 160 for b in out[:10])
    assert agent.stats() == {
        "input_frames": 20,
        "input_dropped": 10,
        "output_frames": 10,
        "output_dropped": 0,
    }


def test_sip_leg_source_sends_silence_when_nothing_is_mixed() -> None:
    leg = SipLegParticipant("e", rate=8000)
    assert leg.kind.value == "sip" and leg.role is Role.EXPERT
    assert not leg.source().any() and leg.source().size == 160
    woken: list[int] = []
    leg.on_output = lambda: woken.append(1)
    leg.deliver(frame(1000))
    assert woken == [1]
    assert int(np.abs(leg.source()).max()) > 0
    with pytest.raises(MediaError):
        leg.sink(frame(0, 320))  # 16 kHz frame into an 8 kHz leg


def test_council_rooms_and_dispatch(tmp_path: Path) -> None:
    seen: list[RoomEvent] = []
    council = Council(recording_dir=tmp_path, announcement=(), on_event=seen.append)
    room = council.open_room("esc-1", record=True)
    assert council.get("esc-1") is room and "esc-1" in council and len(council) == 1
    with pytest.raises(CouncilError, match="already open"):
        council.open_room("esc-1")
    for bad in ("../etc", ".hidden", "a/b", ""):
        with pytest.raises(CouncilError, match="cannot name a room"):
            council.open_room(bad)
    with pytest.raises(UnknownRoom):
        council.get("esc-2")
    with pytest.raises(UnknownRoom):
        council.subscribe("esc-2", seen.append)
    mine: list[RoomEvent] = []
    unsubscribe = council.subscribe("esc-1", mine.append)
    expert = SipLegParticipant(council.new_participant_id("sip"))
    council.join("esc-1", expert, 5.0)
    council.set_muted("esc-1", expert.id, True, 6.0)
    council.set_deaf("esc-1", expert.id, True, 6.5)
    council.set_speak_only_to("esc-1", expert.id, ["nobody"], 6.7)
    assert [e.type for e in mine] == [
        RoomEventType.JOINED,
        RoomEventType.RIGHTS_CHANGED,
        RoomEventType.RIGHTS_CHANGED,
        RoomEventType.RIGHTS_CHANGED,
    ]
    assert seen == mine
    unsubscribe()
    council.leave("esc-1", "ghost", 7.0)  # unknown participant: nothing happens
    council.kick("esc-1", expert.id, 7.0, by="ops")
    assert len(mine) == 4 and seen[-1].details == {"reason": "kicked", "by": "ops"}
    room.tick(7.0)
    recording = council.close_room("esc-1", 8.0)
    assert recording is not None and recording.path == tmp_path / "esc-1.wav"
    assert recording.seconds == 0.02
    assert seen[-1].type is RoomEventType.RECORDING_STOPPED
    assert "esc-1" not in council
    council.leave("esc-1", expert.id, 9.0)  # room gone: nothing happens
    assert council.dispatch("esc-1") == []


def test_recording_needs_a_directory() -> None:
    with pytest.raises(CouncilError, match="recording_dir"):
        Council().open_room("esc-1", record=True)


def test_announcement_from_a_wav_file_is_resampled_to_the_room(tmp_path: Path) -> None:
    path = tmp_path / "hello.wav"
    t = np.arange(8000 // 2) / 8000  # 0.5 s at 8 kHz
    pcm = np.rint(5000 * np.sin(2 * np.pi * 300 * t)).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(pcm.tobytes())
    frames = frames_from_wav(path, 16000)
    assert len(frames) == 25 and all(f.size == 320 for f in frames)
    samples = np.concatenate(frames[5:20]).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(np.argmax(spectrum) * 16000 / samples.size - 300) < 10
    stereo = tmp_path / "stereo.wav"
    with wave.open(str(stereo), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x00" * 640)
    with pytest.raises(CouncilError, match="mono 16-bit"):
        frames_from_wav(stereo, 16000)
