"""The media issue's proof, end to end: `ifescalate serve` bridges the expert's call into a council room.

1. The expert is `ifescalate sip answer --play 440Hz.wav --record heard.wav` (a separate process, real RTP
   over loopback). Two AI agents join the room over the agent media WebSocket (aiohttp client,
   pcm16-16000, 20 ms frames paced in real time). Every audio claim is checked by FFT:
   - the chair hears the expert's 440 Hz; the expert hears the chair's 660 Hz after the announcement
     chime (880 Hz then 660 Hz) at the start of the bridge;
   - with the chair coaching (``speak_only_to: ["role:expert"]``) its 1200 Hz reaches the expert but
     not the second agent, who still hears the expert;
   - cancelling closes the agents' sockets with 4002; TERMINATED carries the recording's SHA-256
     (equal to the file on disk, whose room mix holds all three tones) and RTP figures.
2. A DTMF verdict by RFC 4733: the expert is the product's own user agent in this process
   (``start_agent`` with ``MediaConfig``) and presses keys on its RTP session; "5" is no verdict,
   "1" is approve, witnessed and visible in GET /v1/escalations/{id}.

Each run ends with `ifescalate witness verify` on the data dir.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
import yaml

from ifescalate.net.rtp import MediaConfig, MediaSession
from ifescalate.net.runner import AgentOptions, start_agent
from ifescalate.net.transport import ListenSpec
from ifescalate.net.ua import UaConfig, UserAgent
from tests.interop.test_sip_cli import Answerer
from tests.peers import write_tone_wav
from tests.peers.audio import read_wav_samples

from .conftest import HOST, Deployment, ExpertSpec, Service, assert_chain_ok

pytestmark = pytest.mark.interop

Samples = npt.NDArray[np.int16]

RATE = 16000  # pcm16-16000: the agents' format
FRAME = RATE // 50  # samples in 20 ms
AMPLITUDE = 8000
CHAIR_HZ = 660.0
COACH_HZ = 1200.0
EXPERT_HZ = 440.0
WS_TIMEOUT = 10.0


# ------------------------------------------------------------------------------------- analysis


def peak_hz(samples: Samples, rate: int) -> float:
    """The strongest frequency of a Hann-windowed FFT."""
    x = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum) * rate / x.size)


def level(samples: Samples, rate: int, hz: float) -> float:
    """Amplitude of the ``hz`` component (a full-scale sine of amplitude A reads ~A)."""
    x = samples.astype(np.float64)
    window = np.hanning(x.size)
    t = np.arange(x.size) / rate
    return float(2 * abs(np.sum(x * window * np.exp(-2j * np.pi * hz * t))) / window.sum())


def windows_at(samples: Samples, rate: int, hz: float, *, step_s: float = 0.1) -> list[int]:
    """Indices of the ``step_s`` windows whose strongest component is ``hz`` (within 2 FFT bins)."""
    step = int(rate * step_s)
    tolerance = 2 * rate / step
    found = []
    for i in range(len(samples) // step):
        chunk = samples[i * step : (i + 1) * step]
        loud = float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2))) > 300
        if loud and abs(peak_hz(chunk, rate) - hz) <= tolerance:
            found.append(i)
    return found


def onset(samples: Samples, rate: int, threshold: float = 300.0) -> int:
    """The first sample of the first loud 10 ms block (the start of the announcement)."""
    block = rate // 100
    for i in range(len(samples) // block):
        chunk = samples[i * block : (i + 1) * block].astype(np.float64)
        if float(np.sqrt(np.mean(chunk**2))) > threshold:
            return i * block
    raise AssertionError("the recording is silent")


def wav(path: Path) -> tuple[Samples, int]:
    import wave

    with wave.open(str(path), "rb") as f:
        rate = f.getframerate()
    return np.asarray(read_wav_samples(path), dtype=np.int16), rate


# ------------------------------------------------------------------------------- agent clients


def tone_frames(hz: float, seconds: float) -> list[bytes]:
    n = round(seconds * 50)
    t = np.arange(n * FRAME) / RATE
    pcm = np.rint(AMPLITUDE * np.sin(2 * np.pi * hz * t)).astype("<i2")
    return [pcm[i * FRAME : (i + 1) * FRAME].tobytes() for i in range(n)]


@dataclass
class Agent:
    """One agent on the media WebSocket: what it received (frames, JSON) and a paced sender."""

    ws: aiohttp.ClientWebSocketResponse
    participant: str
    frames: list[Samples] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def join(
        cls, http: aiohttp.ClientSession, url: str, token: str, *, role: str, name: str
    ) -> Agent:
        ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
        start = {"type": "start", "format": "pcm16-16000", "role": role, "name": name}
        await ws.send_str(json.dumps(start))
        started = await ws.receive_json(timeout=WS_TIMEOUT)
        assert started["type"] == "started", started
        assert started["frame_bytes"] == 640 and started["rate"] == RATE, started
        agent = cls(ws, started["participant"])
        agent.reader = asyncio.create_task(agent._read())
        return agent

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                assert len(msg.data) == 640
                self.frames.append(np.frombuffer(msg.data, dtype="<i2").astype(np.int16))
            elif msg.type is aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(msg.data))

    def mark(self) -> int:
        return len(self.frames)

    def heard(self, since: int, until: int | None = None) -> Samples:
        chunk = self.frames[since:until]
        return np.concatenate(chunk) if chunk else np.zeros(0, dtype=np.int16)

    async def send_tone(self, hz: float, seconds: float) -> None:
        """20 ms frames on absolute deadlines (the room's input queue holds only 200 ms)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, frame in enumerate(tone_frames(hz, seconds)):
            await asyncio.sleep(max(0.0, start + i * 0.02 - loop.time()))
            await self.ws.send_bytes(frame)

    async def wait_event(self, kind: str, participant: str, timeout: float = WS_TIMEOUT) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not any(
            m.get("type") == "event"
            and m["event"]["type"] == kind
            and m["event"]["participant"] == participant
            for m in self.messages
        ):
            assert asyncio.get_running_loop().time() < deadline, (kind, self.messages[-5:])
            await asyncio.sleep(0.02)

    async def wait_closed(self, timeout: float = WS_TIMEOUT) -> int | None:
        assert self.reader is not None
        await asyncio.wait_for(self.reader, timeout)
        return self.ws.close_code


# ------------------------------------------------------------------------------------- helpers


def enable_recording(dep: Deployment) -> None:
    """conftest's write_config has no `record` knob: add `escalation.record: true` to the YAML."""
    doc = yaml.safe_load(dep.config.read_text())
    doc["escalation"]["record"] = True
    dep.config.write_text(yaml.safe_dump(doc, sort_keys=False))


def wait_until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def terminated(svc: Service, esc_id: str) -> dict[str, Any]:
    svc.wait_witness(esc_id, "TERMINATED")
    entries = [e for e in svc.witness(esc_id) if e["type"] == "TERMINATED"]
    assert len(entries) == 1, entries
    details: dict[str, Any] = entries[0]["details"]
    return details


# --------------------------------------------------------------------------- 1. voice + council


@dataclass
class Heard:
    chair: Samples
    second_during_coaching: Samples
    closed_with: list[int | None]


async def council_session(svc: Service, esc_id: str) -> Heard:
    url = svc.api_url.replace("http://", "ws://") + f"/v1/escalations/{esc_id}/media"
    token = svc.tokens["council"]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        chair = await Agent.join(http, url, token, role="chair", name="chair-agent")
        await chair.wait_event("PARTICIPANT_JOINED", chair.participant)
        # Phase 1: the chair speaks 660 Hz for 2 s and listens.
        mark = chair.mark()
        await chair.send_tone(CHAIR_HZ, 2.0)
        chair_heard = chair.heard(mark)

        # Phase 2: a second agent joins; the chair coaches the expert only, at 1200 Hz.
        second = await Agent.join(http, url, token, role="agent", name="second-agent")
        await chair.ws.send_str(json.dumps({"type": "speak_only_to", "targets": ["role:expert"]}))
        await chair.wait_event("RIGHTS_CHANGED", chair.participant)
        await asyncio.sleep(0.2)  # frames mixed before the change have drained out of the queues
        mark = second.mark()
        await chair.send_tone(COACH_HZ, 2.0)
        await asyncio.sleep(0.3)  # the last coached frames go through the room
        second_heard = second.heard(mark)

        # Cancel while both are in: the room closes and the server closes both sockets with 4002.
        await asyncio.to_thread(svc.cancel, esc_id)
        codes = [await chair.wait_closed(), await second.wait_closed()]
    return Heard(chair_heard, second_heard, codes)


def test_expert_and_agents_hear_each_other_coaching_and_recording(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    tone = write_tone_wav(tmp_path / "440.wav", seconds=10.0, freq=EXPERT_HZ)
    heard_path = tmp_path / "heard.wav"
    extra = ["--play", str(tone), "--record", str(heard_path)]
    with Answerer(f"udp:{HOST}:0", verbose=True, extra=extra) as expert:
        dep = deploy([ExpertSpec("erin", expert.uri("udp", user="erin"))], max_duration=60.0)
        enable_recording(dep)
        with dep.service() as svc:
            esc_id = svc.escalate()["id"]
            svc.wait_state(esc_id, "connected")
            svc.wait_witness(esc_id, "BRIDGE_ESTABLISHED", "ANNOUNCEMENT_PLAYED")
            time.sleep(1.2)  # the announcement (~1 s) is over before the agents talk
            heard = asyncio.run(council_session(svc, esc_id))
            svc.wait_state(esc_id, "ended")
            details = terminated(svc, esc_id)
            events = svc.witness(esc_id)
        wait_until(lambda: "media ended" in expert.output(), "the expert's call never ended")

    # Cancelling closed the agents' sockets with "room closed".
    assert heard.closed_with == [4002, 4002], heard.closed_with

    # The chair heard the expert's 440 Hz (the codec and two resamplings keep it within a bin).
    assert abs(peak_hz(heard.chair, RATE) - EXPERT_HZ) < 5, peak_hz(heard.chair, RATE)
    assert level(heard.chair, RATE, EXPERT_HZ) > AMPLITUDE / 2
    assert level(heard.chair, RATE, CHAIR_HZ) < AMPLITUDE / 100  # mix-minus: not its own voice

    # Coaching: the second agent heard the expert but not the chair's 1200 Hz.
    second = heard.second_during_coaching
    assert len(second) >= RATE, f"the second agent got {len(second) / RATE:.2f} s"
    assert level(second, RATE, EXPERT_HZ) > AMPLITUDE / 2
    assert level(second, RATE, COACH_HZ) < AMPLITUDE / 200, level(second, RATE, COACH_HZ)

    # The expert heard: the chime (880 Hz then 660 Hz) at the bridge, later the chair's 660 Hz,
    # later still the coached 1200 Hz.
    samples, rate = wav(heard_path)
    start = onset(samples, rate)
    note = samples[start + rate // 100 : start + rate * 16 // 100]  # inside the first note
    assert abs(peak_hz(note, rate) - 880) < 15, peak_hz(note, rate)
    second_note = samples[start + rate * 24 // 100 : start + rate * 38 // 100]
    assert abs(peak_hz(second_note, rate) - 660) < 15, peak_hz(second_note, rate)
    after_announcement = samples[start + int(1.1 * rate) :]
    chair_windows = windows_at(after_announcement, rate, CHAIR_HZ)
    coach_windows = windows_at(after_announcement, rate, COACH_HZ)
    assert len(chair_windows) >= 15, f"660 Hz in {len(chair_windows)} of 20 windows"
    assert len(coach_windows) >= 15, f"1200 Hz in {len(coach_windows)} of 20 windows"
    assert max(chair_windows) < min(coach_windows), (chair_windows, coach_windows)
    assert not windows_at(after_announcement, rate, EXPERT_HZ), "the expert heard itself"

    # Witness: the room's story, then TERMINATED with the recording and the RTP figures.
    types = [e["type"] for e in events]
    assert types.index("CONNECTED") < types.index("BRIDGE_ESTABLISHED"), types
    joined = [e["details"] for e in events if e["type"] == "PARTICIPANT_JOINED"]
    assert sorted(d["role"] for d in joined) == ["agent", "chair", "expert"], joined
    assert "ANNOUNCEMENT_PLAYED" in types and "SPEAKING_STARTED" in types, types
    rights = [e["details"] for e in events if e["type"] == "RIGHTS_CHANGED"]
    assert rights and rights[-1]["speak_only_to"] == ["role:expert"], rights
    assert types[-1] == "TERMINATED", types
    # Closing the room is witnessed before TERMINATED: everyone left, the recording stopped.
    left = [e["details"] for e in events if e["type"] == "PARTICIPANT_LEFT"]
    assert sorted(d["reason"] for d in left) == ["room closed"] * 3, left
    stopped = [e["details"] for e in events if e["type"] == "RECORDING_STOPPED"]
    assert len(stopped) == 1 and types.index("RECORDING_STOPPED") < types.index("TERMINATED")

    recording = details["recording"]
    path = dep.data_dir / "recordings" / recording["file"]
    assert recording["file"] == f"{esc_id}.wav"
    assert stopped[0]["sha256"] == recording["sha256"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == recording["sha256"]
    mix, mix_rate = wav(path)
    assert abs(len(mix) / mix_rate - recording["seconds"]) < 0.05
    for hz in (EXPERT_HZ, CHAIR_HZ, COACH_HZ):  # the room mix: everyone not muted, whispers too
        assert windows_at(mix, mix_rate, hz, step_s=0.1) or level(mix, mix_rate, hz) > 500, hz
    media = details["media"]
    assert len(media) == 1 and media[0]["received"] > 100 and media[0]["sent"] > 100, media
    # Both ends are ours and prefer Opus (MediaConfig default opus > G722 > PCMU > PCMA).
    assert media[0]["codec"] == "opus", media

    assert assert_chain_ok(dep.data_dir).startswith("OK: ")


# ------------------------------------------------------------------------- 2. DTMF RFC 4733


@dataclass
class InProcessExpert:
    """The product's own UA as the expert's phone, answering with RTP; keeps its media sessions."""

    ua: UserAgent
    sessions: list[MediaSession]

    @classmethod
    async def start(cls) -> InProcessExpert:
        sessions: list[MediaSession] = []
        config = UaConfig(user="frank", media=MediaConfig(on_start=sessions.append))
        ua = await start_agent(AgentOptions(listen=[ListenSpec("UDP", HOST, 0)], config=config))
        return cls(ua, sessions)

    @property
    def uri(self) -> str:
        assert self.ua.endpoint is not None
        _, port = self.ua.endpoint.local_address("UDP")
        return f"sip:frank@{HOST}:{port}"

    async def close(self) -> None:
        assert self.ua.endpoint is not None
        await self.ua.endpoint.close()


async def dtmf_escalation(
    deploy: Callable[..., Deployment],
) -> tuple[dict[str, Any], list[str], dict[str, Any], InProcessExpert]:
    expert = await InProcessExpert.start()
    try:
        dep = deploy([ExpertSpec("frank", expert.uri)])
        svc = dep.service()
        await asyncio.to_thread(svc.start)
        try:
            esc_id = (await asyncio.to_thread(svc.escalate))["id"]
            await asyncio.to_thread(svc.wait_witness, esc_id, "BRIDGE_ESTABLISHED")
            assert len(expert.ua.calls) == 1 and len(expert.sessions) == 1
            (call,) = expert.ua.calls.values()
            assert call.media is expert.sessions[0] and call.media.started

            # A key that is no verdict: nothing happens.
            call.media.send_dtmf("5")
            await asyncio.sleep(0.6)
            types = await asyncio.to_thread(svc.event_types, esc_id)
            assert "VERDICT" not in types, types
            call.media.send_dtmf("1")
            await asyncio.to_thread(svc.wait_witness, esc_id, "VERDICT")
            view = await asyncio.to_thread(svc.escalation, esc_id)
            await asyncio.to_thread(svc.cancel, esc_id)
            await asyncio.to_thread(svc.wait_state, esc_id, "ended")
            details = await asyncio.to_thread(terminated, svc, esc_id)
            events = await asyncio.to_thread(svc.witness, esc_id)
        finally:
            await asyncio.to_thread(svc.__exit__, None, None, None)
    finally:
        await expert.close()
    verdicts = [e["details"] for e in events if e["type"] == "VERDICT"]
    return view, [e["type"] for e in events], {"terminated": details, "verdicts": verdicts}, expert


def test_dtmf_rfc4733_verdict_from_the_experts_rtp(deploy: Callable[..., Deployment]) -> None:
    view, types, found, expert = asyncio.run(dtmf_escalation(deploy))
    assert view["state"] == "connected" and view["verdict"] == "approve", view
    assert types.count("VERDICT") == 1, types
    assert re.search("approve", json.dumps(found["verdicts"])), found["verdicts"]
    assert types.index("BRIDGE_ESTABLISHED") < types.index("VERDICT") < types.index("TERMINATED")
    # The serve side counted both key presses on the expert's leg (RFC 4733 events, not INFO).
    media = found["terminated"]["media"]
    assert media[0]["dtmf"] == 2, media
    assert expert.sessions[0].counters.sent > 0
