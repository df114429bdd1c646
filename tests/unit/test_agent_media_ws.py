"""api/agent_media: the agent media WebSocket end to end on a loopback socket.

The real app (build_app with a real Council, real TokenStore, guard registry and witness) runs on
an aiohttp test server; a RoomClock ticks the room on the same real loop; the expert is a
SipLegParticipant at 8 kHz fed a 440 Hz tone once per tick (as the RTP session would). The agent
client sends 660 Hz and must hear 440 Hz; the expert must hear 660 Hz.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import WSMsgType, test_utils
from tests.unit.test_api_support import FakeService, Readiness

from ifescalate.api import Scope, StoreWitnessReader, TokenStore, build_app
from ifescalate.api.agent_media import CLOSE_KICKED, CLOSE_ROOM_CLOSED
from ifescalate.council import Council, Role, Room, SipLegParticipant
from ifescalate.escalation.model import EscalationRequest
from ifescalate.guard import SqliteRegistry
from ifescalate.media.frames import AudioFrame
from ifescalate.media.g711 import ulaw_decode, ulaw_encode
from ifescalate.net.room_clock import RoomClock
from ifescalate.observability import Metrics
from ifescalate.witness import SqliteStore, Witness, load_or_create_signer

AMPLITUDE = 8000
TIMEOUT = 10.0


def tone(hz: float, rate: int, start: int, count: int) -> AudioFrame:
    t = (start + np.arange(count)) / rate
    return np.rint(AMPLITUDE * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def peak_hz(samples: AudioFrame, rate: int) -> float:
    x = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * rate / x.size)


def level(samples: AudioFrame, rate: int, hz: float) -> float:
    x = samples.astype(np.float64)
    window = np.hanning(x.size)
    t = np.arange(x.size) / rate
    return float(2 * abs(np.sum(x * window * np.exp(-2j * np.pi * hz * t))) / window.sum())


@dataclass
class Env:
    client: test_utils.TestClient[Any, Any]
    service: FakeService
    council: Council
    token: dict[str, str]
    escalation_id: str
    room: Room
    clock: RoomClock
    expert: SipLegParticipant
    expert_heard: list[AudioFrame] = field(default_factory=list)
    expert_speaks: bool = True
    room_events: list[str] = field(default_factory=list)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token[who]}"}

    def url(self, escalation_id: str | None = None) -> str:
        return f"/v1/escalations/{escalation_id or self.escalation_id}/media"


@asynccontextmanager
async def running(tmp_path: Path, *, with_council: bool = True) -> AsyncIterator[Env]:
    registry = SqliteRegistry(tmp_path / "registry.db")
    tokens = TokenStore(tmp_path / "tokens.db")
    witness = Witness(
        SqliteStore(tmp_path / "witness.sqlite3"), load_or_create_signer(tmp_path / "keys")
    )
    await witness.start()
    token = {
        "council": tokens.create("agent-a", [Scope.COUNCIL]),
        "council2": tokens.create("agent-b", [Scope.COUNCIL]),
        "auditor": tokens.create("audit", [Scope.AUDITOR]),
    }
    service = FakeService()
    view = await service.create(
        EscalationRequest(
            hazard="safety", question="Is it safe?", requester="agent-a", trace_id="t-1"
        )
    )
    env_events: list[str] = []
    council = Council(announcement=(), on_event=lambda e: env_events.append(e.type.value))
    room = council.open_room(view.id)
    loop = asyncio.get_running_loop()
    expert = SipLegParticipant("expert", rate=8000, name="Dr. Volt")
    council.join(view.id, expert, loop.time())
    app = build_app(
        service=service,
        registry=registry,
        witness_reader=StoreWitnessReader.of(witness),
        tokens=tokens,
        metrics=Metrics(),
        readiness=Readiness(),
        council=council if with_council else None,
    )
    env: Env
    sent = 0

    def after_tick() -> None:
        # The RTP session's role: one received frame in and one frame out per 20 ms.
        nonlocal sent
        frame = tone(440, 8000, sent, 160)
        sent += 160
        if expert.removed is None:
            expert.sink(frame if env.expert_speaks else np.zeros_like(frame))
            env.expert_heard.append(expert.source())
        council.dispatch(view.id)

    clock = RoomClock(room, loop, after_tick=after_tick)
    try:
        async with test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1")) as client:
            env = Env(client, service, council, token, view.id, room, clock, expert)
            env.room_events = env_events
            clock.start()
            yield env
    finally:
        clock.stop()
        await witness.close()
        registry.close()
        tokens.close()


async def start(
    env: Env, fmt: str = "pcm16-16000", role: str = "agent", **extra: Any
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ws = await env.client.ws_connect(env.url(), headers=env.auth("council"))
    await ws.send_json({"type": "start", "format": fmt, "role": role, "name": "Planner", **extra})
    started = await ws.receive_json(timeout=TIMEOUT)
    return ws, started


async def paced(
    ws: aiohttp.ClientWebSocketResponse, frames: int, make: Callable[[int], bytes]
) -> None:
    """Send one frame per 20 ms on an absolute schedule, as a well-behaved client does."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(frames):
        await ws.send_bytes(make(i))
        await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - loop.time()))


async def converse(
    ws: aiohttp.ClientWebSocketResponse,
    frames: int,
    make: Callable[[int], bytes],
) -> tuple[list[bytes], list[dict[str, Any]]]:
    """Send ``frames`` binary frames at 20 ms, collecting what comes back meanwhile."""
    received: list[bytes] = []
    messages: list[dict[str, Any]] = []

    async def reader() -> None:
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                received.append(msg.data)
            elif msg.type is WSMsgType.TEXT:
                messages.append(json.loads(msg.data))

    task = asyncio.create_task(reader())
    await paced(ws, frames, make)
    task.cancel()
    return received, messages


def test_agent_hears_the_expert_and_the_expert_hears_the_agent(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            ws, started = await start(env)
            assert started == {
                "type": "started",
                "participant": started["participant"],
                "format": "pcm16-16000",
                "frame_bytes": 640,
                "rate": 16000,
            }
            agent_id = started["participant"]

            def pcm(i: int) -> bytes:
                return tone(660, 16000, i * 320, 320).astype("<i2").tobytes()

            first = len(env.expert_heard)
            received, messages = await converse(ws, 50, pcm)
            assert len(received) >= 30 and all(len(b) == 640 for b in received)
            heard = np.frombuffer(b"".join(received[10:40]), dtype="<i2").astype(np.int16)
            assert abs(peak_hz(heard, 16000) - 440) < 10
            assert level(heard, 16000, 440) > AMPLITUDE * 0.7
            assert level(heard, 16000, 660) < AMPLITUDE * 0.01  # never its own voice
            expert = np.concatenate(env.expert_heard[first + 10 : first + 40])
            assert abs(peak_hz(expert, 8000) - 660) < 10
            assert level(expert, 8000, 660) > AMPLITUDE * 0.5
            events = [m["event"] for m in messages if m["type"] == "event"]
            assert any(
                e["type"] == "PARTICIPANT_JOINED" and e["participant"] == agent_id for e in events
            )
            assert any(
                e["type"] == "SPEAKING_STARTED" and e["participant"] == agent_id for e in events
            )
            joined = next(e for e in events if e["type"] == "PARTICIPANT_JOINED")
            assert joined["details"]["name"] == "Planner" and joined["details"]["kind"] == "agent"
            await ws.close()
            for _ in range(100):
                if agent_id not in env.room.participants:
                    break
                await asyncio.sleep(0.01)
            assert agent_id not in env.room.participants
            assert env.room_events.count("PARTICIPANT_LEFT") == 1

    asyncio.run(asyncio.wait_for(body(), 30))


def test_mulaw_agent_muted_is_not_heard_by_the_expert(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            ws, started = await start(env, fmt="mulaw-8000")
            assert started["frame_bytes"] == 160 and started["rate"] == 8000

            def mulaw(i: int) -> bytes:
                return ulaw_encode(tone(660, 8000, i * 160, 160))

            env.expert_heard.clear()
            received, _ = await converse(ws, 30, mulaw)
            assert all(len(b) == 160 for b in received)
            heard = np.concatenate([ulaw_decode(b) for b in received[10:25]])
            assert abs(peak_hz(heard, 8000) - 440) < 10
            assert level(np.concatenate(env.expert_heard[10:25]), 8000, 660) > AMPLITUDE * 0.5

            await ws.send_json({"type": "mute"})
            env.expert_heard.clear()
            _, messages = await converse(ws, 30, mulaw)
            rights = [
                m["event"]["details"]
                for m in messages
                if m["type"] == "event" and m["event"]["type"] == "RIGHTS_CHANGED"
            ]
            assert rights and rights[0]["muted"] is True
            assert level(np.concatenate(env.expert_heard[10:25]), 8000, 660) < AMPLITUDE * 0.01

            await ws.send_json({"type": "unmute"})
            env.expert_heard.clear()
            await converse(ws, 30, mulaw)
            assert level(np.concatenate(env.expert_heard[10:25]), 8000, 660) > AMPLITUDE * 0.5
            await ws.close()

    asyncio.run(asyncio.wait_for(body(), 30))


def test_coaching_chair_is_heard_by_the_expert_but_not_by_another_agent(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            env.expert_speaks = False
            chair, _ = await start(env, role="chair", speak_only_to=["role:expert"])
            other, _ = await start(env, role="agent")

            def chair_voice(i: int) -> bytes:
                return tone(880, 16000, i * 320, 320).astype("<i2").tobytes()

            first = len(env.expert_heard)
            talking = asyncio.create_task(paced(chair, 50, chair_voice))
            received, _ = await converse(other, 50, lambda i: bytes(640))
            await talking
            during = env.expert_heard[first + 10 : first + 40]  # while the chair surely talked
            other_heard = np.frombuffer(b"".join(received[10:40]), dtype="<i2")
            assert level(other_heard.astype(np.int16), 16000, 880) < AMPLITUDE * 0.01
            assert level(np.concatenate(during), 8000, 880) > AMPLITUDE * 0.5
            await chair.close()
            await other.close()

    asyncio.run(asyncio.wait_for(body(), 30))


def test_kick_and_room_close_end_the_socket_with_their_codes(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            ws, started = await start(env)
            loop = asyncio.get_running_loop()
            env.council.kick(env.escalation_id, started["participant"], loop.time(), by="ops")
            msg = await _until_closed(ws)
            assert msg.type is WSMsgType.CLOSE and msg.data == CLOSE_KICKED
            assert msg.extra == "kicked"

            ws2, _ = await start(env)
            env.council.close_room(env.escalation_id, loop.time())
            msg = await _until_closed(ws2)
            assert msg.data == CLOSE_ROOM_CLOSED and msg.extra == "room closed"
            late = await env.client.get(env.url(), headers=env.auth("council"))
            assert late.status == 409

    asyncio.run(asyncio.wait_for(body(), 30))


async def _until_closed(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    while True:
        msg = await ws.receive(timeout=TIMEOUT)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            return msg


def test_auth_and_visibility(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            c = env.client
            assert (await c.get(env.url())).status == 401
            bad = await c.get(env.url(), headers={"Authorization": "Bearer nonsense"})
            assert bad.status == 401
            assert (await c.get(env.url(), headers=env.auth("auditor"))).status == 403
            # Another council principal's escalation does not exist for this caller.
            assert (await c.get(env.url(), headers=env.auth("council2"))).status == 404
            assert (await c.get(env.url("esc-404"), headers=env.auth("council"))).status == 404
            plain = await c.get(env.url(), headers=env.auth("council"))  # no Upgrade
            assert plain.status == 426
            view = await env.service.create(
                EscalationRequest(hazard="safety", question="q?", requester="agent-a")
            )
            no_room = await c.get(env.url(view.id), headers=env.auth("council"))
            assert no_room.status == 409

    asyncio.run(asyncio.wait_for(body(), 30))


def test_without_a_council_the_route_answers_503(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path, with_council=False) as env:
            resp = await env.client.get(env.url(), headers=env.auth("council"))
            assert resp.status == 503
            assert "not configured" in (await resp.json())["error"]

    asyncio.run(asyncio.wait_for(body(), 30))


def test_bad_first_messages_close_with_a_reason(tmp_path: Path) -> None:
    cases: list[tuple[Any, str]] = [
        ("hello", "start message is not JSON"),
        ({"type": "mute"}, 'first message must be {"type": "start", ...}'),
        ({"type": "start", "format": "opus", "role": "agent", "name": "x"}, "format must be"),
        ({"type": "start", "format": "pcm16-16000", "role": "expert", "name": "x"}, "role must"),
        ({"type": "start", "format": "pcm16-16000", "role": "agent", "name": ""}, "name must"),
        (
            {"type": "start", "format": "pcm16-16000", "role": "agent", "name": "x", "y": 1},
            "unknown",
        ),
        (b"\x00" * 640, "first message must be a JSON start"),
    ]

    async def body() -> None:
        async with running(tmp_path) as env:
            before = set(env.room.participants)
            for first, reason in cases:
                ws = await env.client.ws_connect(env.url(), headers=env.auth("council"))
                if isinstance(first, bytes):
                    await ws.send_bytes(first)
                elif isinstance(first, str):
                    await ws.send_str(first)
                else:
                    await ws.send_json(first)
                error = await ws.receive_json(timeout=TIMEOUT)
                assert error["type"] == "error" and error["error"].startswith(reason), first
                msg = await _until_closed(ws)
                assert msg.data == 1008 and msg.extra.startswith(reason), first
            assert set(env.room.participants) == before  # nobody joined

    asyncio.run(asyncio.wait_for(body(), 30))


def test_a_wrong_sized_frame_closes_and_leaves(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            ws, started = await start(env)
            await ws.send_json({"type": "dance"})
            msg = await ws.receive(timeout=TIMEOUT)
            # Mixed audio (binary) and room events (text) may arrive before the error: skip them.
            while msg.type is WSMsgType.BINARY or (
                msg.type is WSMsgType.TEXT and json.loads(msg.data)["type"] != "error"
            ):
                msg = await ws.receive(timeout=TIMEOUT)
            assert msg.type is WSMsgType.TEXT
            assert json.loads(msg.data) == {
                "type": "error",
                "error": "unknown control message 'dance'",
            }
            await ws.send_bytes(b"\x00" * 100)
            msg = await _until_closed(ws)
            assert msg.data == 1007
            assert msg.extra == "pcm16-16000 frames must be 640 bytes (20 ms), got 100"
            for _ in range(100):
                if started["participant"] not in env.room.participants:
                    break
                await asyncio.sleep(0.01)
            assert started["participant"] not in env.room.participants
            assert env.expert.role is Role.EXPERT

    asyncio.run(asyncio.wait_for(body(), 30))
