"""Bridging an expert's call into the escalation's council room (ARCHITECTURE.md step 4).

The expert's RTP session is wired to a ``SipLegParticipant``: what the expert says goes into the room,
the expert's mix-minus comes back out. A ``RoomClock`` ticks the room every 20 ms, and the bridged
sessions' send and receive ticks with it (the sessions resume their own clocks when it stops); room events
(joins, speaking, rights, the announcement) are handed to ``on_event`` for the witness and the
event stream. Closing returns the recording (SHA-256 for the TERMINATED entry) and the RTP figures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

from ..council import Council, Role, RoomEvent, SipLegParticipant
from ..net.room_clock import RoomClock
from ..net.rtp import MediaSession


class Bridge:
    """One expert leg in one room, from bridging to close."""

    def __init__(
        self,
        council: Council,
        escalation_id: str,
        *,
        record: bool,
        on_event: Callable[[RoomEvent], None],
    ) -> None:
        self.council = council
        self.escalation_id = escalation_id
        self.room = council.find(escalation_id) or council.open_room(escalation_id, record=record)
        self._unsubscribe = council.subscribe(escalation_id, on_event)
        self._clock: RoomClock | None = None
        self._sessions: list[MediaSession] = []
        self.closed = False

    def add_expert(self, expert_id: str, session: MediaSession) -> None:
        """Join the expert's RTP session to the room and start the room's 20 ms clock."""
        loop = asyncio.get_running_loop()
        leg = SipLegParticipant(f"expert-{expert_id}", rate=session.sample_rate, role=Role.EXPERT)
        session.sink = leg.sink
        session.source = leg.pull_output
        self._sessions.append(session)
        self.council.join(self.escalation_id, leg, loop.time())
        if self._clock is None:
            self._clock = RoomClock(self.room, loop, after_tick=self._dispatch)
            self._clock.start()
        # The session's 20 ms ticks run inside the room's: one clock per call, and the expert's
        # frame is mixed and the mix-minus sent in one tick (net/room_clock.py).
        clock = self._clock
        clock.drive(session)
        session.on_close.append(lambda: clock.release(session))

    def _dispatch(self) -> None:
        self.council.dispatch(self.escalation_id)

    def close(self) -> dict[str, Any]:
        """Stop the clock, close the room; details for the TERMINATED witness entry."""
        if self.closed:
            return {}
        self.closed = True
        details: dict[str, Any] = {}
        if self._clock is not None:
            self._clock.stop()
            details["room_clock"] = _json_safe(dataclasses.asdict(self._clock.stats))
        recording = self.council.close_room(self.escalation_id, asyncio.get_running_loop().time())
        self.council.dispatch(self.escalation_id)
        self._unsubscribe()
        if recording is not None:
            details["recording"] = {
                "file": recording.path.name,
                "sha256": recording.sha256,
                "seconds": round(recording.seconds, 3),
            }
        if self._sessions:
            details["media"] = [_json_safe(s.stats()) for s in self._sessions]
        return details


def _json_safe(value: Any) -> Any:
    """Figures for a canonical-JSON witness entry: no NaN/inf, no non-JSON types."""
    text = json.dumps(value, default=str)
    loaded = json.loads(text)
    return _finite(loaded)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
