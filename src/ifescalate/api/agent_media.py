"""``GET /v1/escalations/{id}/media``: an AI agent's audio in the escalation's room, over a WebSocket.

The protocol follows the media streams of the big voice platforms: JSON text messages for control,
binary messages for audio, 20 ms per binary message both ways.

1. The client's first message is JSON ``{"type": "start", "format": "pcm16-16000" | "mulaw-8000",
   "role": "chair" | "agent", "name": "..."}`` (optional ``"speak_only_to": [ids or
   "role:expert"]`` to coach). Anything else closes the socket with code 1008 and the reason.
2. The server answers ``{"type": "started", "participant": id, "format": ..., "frame_bytes": n,
   "rate": hz}``; from then on each binary message is one frame: 640 bytes of little-endian PCM16
   at 16 kHz or 160 bytes of mu-law at 8 kHz. A frame of another size closes with 1007.
3. Control: ``{"type": "mute"}``, ``{"type": "unmute"}``, ``{"type": "speak_only_to", "targets":
   [...] | null}``. The server sends ``{"type": "event", "event": {...}}`` for every room event
   (joined, left, speaking, rights) and ``{"type": "error", "error": "..."}`` for a bad control.
4. Closing the socket leaves the room. Being kicked closes it with 4001, the room closing with
   4002.

Access: a ``council`` token whose principal requested the escalation (others get 404, as for the
escalation itself); the room must be open (409 otherwise); without a council configured, 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..council import (
    AgentFormat,
    AgentParticipant,
    Council,
    CouncilError,
    FrameFormatError,
    Rights,
    Role,
    RoomEvent,
)
from ..escalation.model import UnknownEscalation
from .auth import Scope
from .common import TRACE_ID, deps, dumps, error_response, principal, requires

__all__ = ["CLOSE_KICKED", "CLOSE_ROOM_CLOSED", "COUNCIL", "START_TIMEOUT", "agent_media"]


COUNCIL = web.AppKey("ifescalate_council", Council)
"""Where ``build_app`` stores the council the route joins agents into."""

START_TIMEOUT = 10.0
"""Seconds a client has, once upgraded, to send its start message."""

# Application close codes (RFC 6455 §7.4.2: 4000-4999 are for applications).
CLOSE_KICKED = 4001
CLOSE_ROOM_CLOSED = 4002
_REMOVED_CLOSE = {"kicked": CLOSE_KICKED, "room closed": CLOSE_ROOM_CLOSED}

_ROLES = {"chair": Role.CHAIR, "agent": Role.AGENT}
_START_FIELDS = {"type", "format", "role", "name", "speak_only_to"}
_MAX_NAME = 64
# RFC 6455 §5.5: a control frame's payload is at most 125 bytes, 2 of them the close code.
_MAX_REASON = 123
_MAX_MESSAGE = 64 * 1024


class StartError(ValueError):
    """A bad start message; the text is the close reason."""


def parse_start(text: str) -> tuple[AgentFormat, Role, str, frozenset[str] | None]:
    """The start message's format, role, name and coaching targets (raises :class:`StartError`)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise StartError("start message is not JSON") from None
    if not isinstance(data, dict) or data.get("type") != "start":
        raise StartError('first message must be {"type": "start", ...}')
    unknown = sorted(set(data) - _START_FIELDS)
    if unknown:
        raise StartError(f"unknown field {unknown[0]}")
    try:
        audio_format = AgentFormat(data.get("format"))
    except ValueError:
        raise StartError("format must be pcm16-16000 or mulaw-8000") from None
    role = _ROLES.get(data.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise StartError("role must be chair or agent")
    name = data.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= _MAX_NAME or not name.isprintable():
        raise StartError(f"name must be 1-{_MAX_NAME} printable characters")
    return audio_format, role, name, _targets(data.get("speak_only_to"), StartError)


def _targets(raw: object, error: type[ValueError]) -> frozenset[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(t, str) and t for t in raw):
        raise error("speak_only_to must be a list of participant ids or role:<role>")
    return frozenset(raw)


def _reason(text: str) -> bytes:
    return text.encode("utf-8")[:_MAX_REASON]


def _visible_escalation(request: web.Request, escalation_id: str) -> None:
    """404 unless the caller requested the escalation (ids of others' escalations do not leak)."""
    view = deps(request).service.get(escalation_id)
    if view.requester != principal(request).name:
        raise UnknownEscalation(escalation_id)
    request[TRACE_ID] = view.trace_id


@requires(Scope.COUNCIL)
async def agent_media(request: web.Request) -> web.StreamResponse:
    council = request.app.get(COUNCIL)
    if council is None:
        return error_response(503, "agent media is not configured on this instance")
    escalation_id = request.match_info["id"]
    _visible_escalation(request, escalation_id)
    if escalation_id not in council:
        return error_response(409, "no media room is open for this escalation")
    ws = web.WebSocketResponse(
        max_msg_size=_MAX_MESSAGE, heartbeat=deps(request).config.heartbeat_seconds
    )
    if not ws.can_prepare(request).ok:
        return error_response(426, "WebSocket upgrade required", headers={"Upgrade": "websocket"})
    await ws.prepare(request)
    session = await _start(ws, council, escalation_id)
    if session is not None:
        await session.run()
    return ws


async def _close(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    """Say why in a JSON error (some client libraries hide close reasons), then close."""
    with contextlib.suppress(ConnectionResetError):
        await ws.send_str(dumps({"type": "error", "error": reason}))
    await ws.close(code=code, message=_reason(reason))


async def _start(
    ws: web.WebSocketResponse, council: Council, escalation_id: str
) -> _Session | None:
    try:
        msg = await ws.receive(timeout=START_TIMEOUT)
    except TimeoutError:
        await _close(ws, WSCloseCode.POLICY_VIOLATION, "no start message in time")
        return None
    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
        return None
    if msg.type is not WSMsgType.TEXT:
        await _close(ws, WSCloseCode.POLICY_VIOLATION, "first message must be a JSON start")
        return None
    try:
        audio_format, role, name, targets = parse_start(msg.data)
    except StartError as exc:
        await _close(ws, WSCloseCode.POLICY_VIOLATION, str(exc))
        return None
    participant = AgentParticipant(
        council.new_participant_id("agent"), role, audio_format, room_rate=council.rate, name=name
    )
    session = _Session(ws, council, escalation_id, participant)
    try:
        session.join(Rights(speak_only_to=targets))
    except CouncilError as exc:
        session.unsubscribe()
        await _close(ws, CLOSE_ROOM_CLOSED, str(exc))
        return None
    return session


class _Session:
    """One agent's socket joined to a room: a reader (this task) and a writer task."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        council: Council,
        escalation_id: str,
        participant: AgentParticipant,
    ) -> None:
        self.ws = ws
        self.council = council
        self.escalation_id = escalation_id
        self.participant = participant
        self.loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        self.events: deque[RoomEvent] = deque()
        participant.on_output = self.wake.set
        self.unsubscribe = council.subscribe(escalation_id, self._on_event)

    def _on_event(self, event: RoomEvent) -> None:
        self.events.append(event)
        self.wake.set()

    def join(self, rights: Rights) -> None:
        self.council.join(self.escalation_id, self.participant, self.loop.time(), rights)

    async def run(self) -> None:
        p = self.participant
        await self.ws.send_str(
            dumps(
                {
                    "type": "started",
                    "participant": p.id,
                    "format": p.format.value,
                    "frame_bytes": p.format.frame_bytes,
                    "rate": p.rate,
                }
            )
        )
        writer = asyncio.create_task(self._write())
        try:
            await self._read()
        finally:
            self.unsubscribe()
            self.council.leave(self.escalation_id, p.id, self.loop.time(), "left")
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
                await writer

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is WSMsgType.BINARY:
                try:
                    self.participant.push_bytes(msg.data)
                except FrameFormatError as exc:
                    await _close(self.ws, WSCloseCode.INVALID_TEXT, str(exc))
                    return
            elif msg.type is WSMsgType.TEXT:
                await self._control(msg.data)

    async def _control(self, text: str) -> None:
        try:
            data: Any = json.loads(text)
        except json.JSONDecodeError:
            data = None
        kind = data.get("type") if isinstance(data, dict) else None
        now = self.loop.time()
        pid = self.participant.id
        try:
            if kind in ("mute", "unmute"):
                self.council.set_muted(self.escalation_id, pid, kind == "mute", now)
            elif kind == "speak_only_to":
                targets = _targets(data.get("targets"), CouncilError)
                self.council.set_speak_only_to(self.escalation_id, pid, targets, now)
            else:
                raise CouncilError(f"unknown control message {kind!r}")
        except CouncilError as exc:
            await self.ws.send_str(dumps({"type": "error", "error": str(exc)}))

    async def _write(self) -> None:
        p = self.participant
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.events:
                event = self.events.popleft()
                await self.ws.send_str(dumps({"type": "event", "event": event.to_dict()}))
            while (data := p.pull_output_bytes()) is not None:
                await self.ws.send_bytes(data)
            if p.removed is not None and p.removed != "left":
                code = _REMOVED_CLOSE.get(p.removed, CLOSE_ROOM_CLOSED)
                await self.ws.close(code=code, message=_reason(p.removed))
                return
