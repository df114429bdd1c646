"""The council: every open room, by escalation id, and the one door to change them.

Changes go through the council rather than the room so that their events are dispatched at once:
to ``on_event`` (the owner's publisher: the escalation's event stream and the witness) and to the
room's subscribers (each agent media socket forwards its room's events to its agent). Speaking
events come out of :meth:`Room.tick`; whoever ticks the room calls :meth:`Council.dispatch`
after it (``RoomClock(..., after_tick=...)``).

Still sans-IO: every call that makes events takes ``now``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from ifescalate.media.frames import AudioFrame

from .errors import CouncilError, UnknownRoom
from .participants import RoomParticipant
from .recording import Recording
from .room import Rights, Room, RoomEvent

__all__ = ["Council", "EventListener"]

EventListener = Callable[[RoomEvent], None]

# Escalation ids become file names of recordings: no separators, no leading dot.
_SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}\Z")


class Council:
    """Rooms by escalation id. ``recording_dir``: where recorded rooms write ``<id>.wav``."""

    def __init__(
        self,
        rate: int = 16000,
        *,
        recording_dir: Path | None = None,
        announcement: Sequence[AudioFrame] | None = None,
        on_event: EventListener | None = None,
    ) -> None:
        self.rate = rate
        self.recording_dir = recording_dir
        self._announcement = announcement
        self._on_event = on_event
        self._rooms: dict[str, Room] = {}
        self._listeners: dict[str, list[EventListener]] = {}
        self._ids = itertools.count(1)

    # --- rooms ----------------------------------------------------------------------------------

    def open_room(self, escalation_id: str, *, record: bool = False) -> Room:
        """Open the escalation's room; ``record`` when policy allows recording it."""
        if not _SAFE_ID.match(escalation_id):
            raise CouncilError(f"escalation id {escalation_id!r} cannot name a room")
        if escalation_id in self._rooms:
            raise CouncilError(f"a room is already open for escalation {escalation_id!r}")
        path = None
        if record:
            if self.recording_dir is None:
                raise CouncilError("recording asked for but the council has no recording_dir")
            path = self.recording_dir / f"{escalation_id}.wav"
        room = Room(escalation_id, self.rate, record_path=path, announcement=self._announcement)
        self._rooms[escalation_id] = room
        self._listeners[escalation_id] = []
        return room

    def get(self, escalation_id: str) -> Room:
        """The open room of the escalation (raises :class:`UnknownRoom`)."""
        try:
            return self._rooms[escalation_id]
        except KeyError:
            raise UnknownRoom(f"no room open for escalation {escalation_id!r}") from None

    def find(self, escalation_id: str) -> Room | None:
        """The open room of the escalation, or None."""
        return self._rooms.get(escalation_id)

    def __contains__(self, escalation_id: object) -> bool:
        return escalation_id in self._rooms

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._rooms))

    def __len__(self) -> int:
        return len(self._rooms)

    def close_room(self, escalation_id: str, now: float) -> Recording | None:
        """Close the room: everyone leaves, the recording (if any) is finished and hashed.

        The last events (LEFT for each, RECORDING_STOPPED) are dispatched before the room's
        subscribers are dropped.
        """
        room = self.get(escalation_id)
        recording = room.close(now)
        self.dispatch(escalation_id)
        del self._rooms[escalation_id]
        del self._listeners[escalation_id]
        return recording

    def new_participant_id(self, prefix: str) -> str:
        """A participant id unique in this council (``agent-1``, ``sip-2``...)."""
        return f"{prefix}-{next(self._ids)}"

    # --- membership and rights ------------------------------------------------------------------

    def join(
        self,
        escalation_id: str,
        participant: RoomParticipant,
        now: float,
        rights: Rights | None = None,
    ) -> Room:
        """Add a participant to the escalation's room; returns the room."""
        room = self.get(escalation_id)
        room.join(participant, now, rights)
        self.dispatch(escalation_id)
        return room

    def leave(
        self, escalation_id: str, participant_id: str, now: float, reason: str = "left"
    ) -> None:
        """A participant goes (hung up, socket closed). Unknown room or id: nothing to do."""
        room = self.find(escalation_id)
        if room is None or participant_id not in room.participants:
            return
        room.leave(participant_id, now, reason)
        self.dispatch(escalation_id)

    def kick(
        self, escalation_id: str, participant_id: str, now: float, *, by: str | None = None
    ) -> None:
        """Remove a participant against their will."""
        self.get(escalation_id).kick(participant_id, now, by=by)
        self.dispatch(escalation_id)

    def set_muted(self, escalation_id: str, participant_id: str, muted: bool, now: float) -> None:
        self.get(escalation_id).set_muted(participant_id, muted, now)
        self.dispatch(escalation_id)

    def set_deaf(self, escalation_id: str, participant_id: str, deaf: bool, now: float) -> None:
        self.get(escalation_id).set_deaf(participant_id, deaf, now)
        self.dispatch(escalation_id)

    def set_speak_only_to(
        self,
        escalation_id: str,
        participant_id: str,
        targets: Iterable[str] | None,
        now: float,
    ) -> None:
        """Coaching: only ``targets`` (ids or ``"role:expert"``) hear ``participant_id``."""
        self.get(escalation_id).set_speak_only_to(participant_id, targets, now)
        self.dispatch(escalation_id)

    # --- events ---------------------------------------------------------------------------------

    def subscribe(self, escalation_id: str, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` with each later event of the room; returns the unsubscribe call."""
        listeners = self._listeners.get(escalation_id)
        if listeners is None:
            raise UnknownRoom(f"no room open for escalation {escalation_id!r}")
        listeners.append(listener)

        def unsubscribe() -> None:
            if listener in listeners:
                listeners.remove(listener)

        return unsubscribe

    def dispatch(self, escalation_id: str) -> list[RoomEvent]:
        """Hand the room's pending events to ``on_event`` and the subscribers; returns them."""
        room = self.find(escalation_id)
        if room is None or not room.has_events:  # the usual tick: nothing happened
            return []
        events = room.pop_events()
        for event in events:
            if self._on_event is not None:
                self._on_event(event)
            for listener in list(self._listeners[escalation_id]):
                listener(event)
        return events
