"""One conference room per escalation: the MCU's sans-IO core.

The room owns a :class:`~ifescalate.media.mixer.Mixer` and its participants. Something with a clock
(``net/room_clock.py``) calls :meth:`Room.tick` every 20 ms with the current monotonic time; each
tick pulls one frame from every participant (None = silence), mixes a mix-minus for each under
their rights, overlays the announcement for a newly bridged expert, delivers the outputs, and
appends the room mix to the recording. Nothing here reads a clock or does I/O other than the
recording file.

Mixing rate: the room mixes at the lowest rate that loses nothing anyone could hear, the
second-highest network rate of its participants (capped at :attr:`Room.rate`): the highest
bandwidth any listener shares with any other speaker. A room of G.711 legs and mu-law agents,
or of those and a single 16 kHz agent, mixes at 8 kHz: the one wideband participant hears only
narrowband voices and is heard only by narrowband ears, so a 16 kHz mix would only add two
resamples per narrowband participant per tick (up on the way in, down on the way out). An
announcement playing to a participant counts as a speaker at the room rate, and a recorded room
always mixes at the room rate (the recording is a wideband listener of everyone). The rate is
chosen again at every join, leave and announcement end.

Events (joined, left, speaking, rights) pile up for the owner, who publishes them to the
escalation's event stream and the witness (:meth:`Room.pop_events`).

Rights can name participants that have not joined yet, by id or by role: ``"role:expert"`` in a
speak-only-to set means "whoever has the expert role", resolved again at every join and leave,
so a chair can be set to coach the expert before the expert's leg is bridged.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ifescalate.media.frames import FRAME_SECONDS, AudioFrame, check_frame, samples_per_frame
from ifescalate.media.mixer import Mixer, SpeakingStarted, saturate
from ifescalate.media.resample import Resampler

from .announcement import default_announcement
from .errors import CouncilError, DuplicateParticipant, RoomClosed, UnknownParticipant
from .participants import Role, RoomParticipant
from .recording import Recording, WavRecorder

__all__ = ["ROLE_PREFIX", "Rights", "Room", "RoomEvent", "RoomEventType"]

ROLE_PREFIX = "role:"
"""Prefix of a speak-only-to target naming a role (``"role:expert"``) instead of an id."""


class RoomEventType(enum.Enum):
    """What happened in a room. JOINED/LEFT match the witness event types of the same name."""

    JOINED = "PARTICIPANT_JOINED"
    LEFT = "PARTICIPANT_LEFT"
    SPEAKING_STARTED = "SPEAKING_STARTED"
    SPEAKING_STOPPED = "SPEAKING_STOPPED"
    RIGHTS_CHANGED = "RIGHTS_CHANGED"
    ANNOUNCEMENT_PLAYED = "ANNOUNCEMENT_PLAYED"
    RECORDING_STOPPED = "RECORDING_STOPPED"


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """One room event: ``time`` is the ``now`` of the call that caused it (monotonic seconds)."""

    escalation_id: str
    type: RoomEventType
    participant: str | None
    time: float
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.type, RoomEventType):
            raise TypeError(f"room event type must be a RoomEventType, got {self.type!r}")
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the event stream, the witness details, the agent socket)."""
        return {
            "escalation_id": self.escalation_id,
            "type": self.type.value,
            "participant": self.participant,
            "time": self.time,
            "details": dict(self.details),
        }


@dataclass(frozen=True, slots=True)
class Rights:
    """A participant's rights. ``speak_only_to``: ids or ``"role:<role>"``; None = everyone."""

    muted: bool = False
    deaf: bool = False
    speak_only_to: frozenset[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        targets = None if self.speak_only_to is None else sorted(self.speak_only_to)
        return {"muted": self.muted, "deaf": self.deaf, "speak_only_to": targets}


class Room:
    """The conference of one escalation. See the module docstring for the tick and events.

    ``announcement``: frames at ``rate`` played to each expert when they join; None means the
    generated chime (:func:`~ifescalate.council.announcement.default_announcement`), an empty
    sequence means no announcement. ``record_path``: where the room mix is recorded (None: not
    recorded).
    """

    def __init__(
        self,
        escalation_id: str,
        rate: int = 16000,
        *,
        record_path: Path | None = None,
        announcement: Sequence[AudioFrame] | None = None,
    ) -> None:
        self.escalation_id = escalation_id
        self.rate = rate
        self._mixer = Mixer(rate)
        self._mix_rate = rate
        self._participants: dict[str, RoomParticipant] = {}
        self._rights: dict[str, Rights] = {}
        self._announcement = tuple(
            default_announcement(rate) if announcement is None else announcement
        )
        for frame in self._announcement:
            check_frame(frame, rate)
        self._announcement_at: dict[int, tuple[AudioFrame, ...]] = {rate: self._announcement}
        self._playing: dict[str, int] = {}  # participant -> index of its next announcement frame
        self._recorder = None if record_path is None else WavRecorder(record_path, rate)
        self._events: list[RoomEvent] = []
        # The participants in the mixer's order (Mixer.mix_ordered), for the mixer's id list.
        self._tick_ids: list[str] = []
        self._tick_order: list[RoomParticipant] = []
        self.closed = False
        self.ticks = 0

    # --- membership -------------------------------------------------------------------------

    @property
    def mix_rate(self) -> int:
        """The rate the room mixes at now (see the module docstring)."""
        return self._mix_rate

    @property
    def participants(self) -> Mapping[str, RoomParticipant]:
        """The participants by id (a read-only view)."""
        return MappingProxyType(self._participants)

    def rights(self, participant_id: str) -> Rights:
        """The participant's current rights."""
        self._get(participant_id)
        return self._rights[participant_id]

    def join(self, participant: RoomParticipant, now: float, rights: Rights | None = None) -> None:
        """Add ``participant``; an expert gets the announcement from the next tick on."""
        self._check_open()
        if participant.id in self._participants:
            raise DuplicateParticipant(f"participant {participant.id!r} is already in the room")
        if participant.room_rate != self.rate:
            raise CouncilError(
                f"participant {participant.id!r} mixes at {participant.room_rate} Hz, "
                f"the room at {self.rate} Hz"
            )
        given = rights or Rights()
        self._mixer.add(participant.id, participant.kind, muted=given.muted, deaf=given.deaf)
        self._participants[participant.id] = participant
        self._rights[participant.id] = given
        self._resolve_targets()
        self._emit(
            RoomEventType.JOINED,
            participant.id,
            now,
            kind=participant.kind.value,
            role=participant.role.value,
            name=participant.name,
            rights=given.to_dict(),
        )
        if participant.role is Role.EXPERT and self._announcement:
            self._playing[participant.id] = 0
            seconds = round(len(self._announcement) * FRAME_SECONDS, 3)
            self._emit(RoomEventType.ANNOUNCEMENT_PLAYED, participant.id, now, seconds=seconds)
        self._retune()

    def leave(
        self, participant_id: str, now: float, reason: str = "left", *, by: str | None = None
    ) -> None:
        """Remove a participant; ``reason`` (left, kicked, hangup...) and ``by`` (who removed
        them, if not themselves) go into the LEFT event."""
        participant = self._get(participant_id)
        self._mixer.remove(participant_id)
        self._speaking_events(now)  # the mixer's final SpeakingStopped, if it was speaking
        del self._participants[participant_id]
        del self._rights[participant_id]
        self._playing.pop(participant_id, None)
        self._resolve_targets()
        self._retune()
        participant.mark_removed(reason)
        extra = {} if by is None else {"by": by}
        self._emit(RoomEventType.LEFT, participant_id, now, reason=reason, **extra)

    def kick(self, participant_id: str, now: float, *, by: str | None = None) -> None:
        """Remove a participant against their will; their network side sees ``removed="kicked"``."""
        self.leave(participant_id, now, reason="kicked", by=by)

    # --- rights -----------------------------------------------------------------------------

    def set_muted(self, participant_id: str, muted: bool, now: float) -> None:
        """Muted: nobody hears the participant (speaking is still detected)."""
        self._change(participant_id, now, muted=muted)

    def set_deaf(self, participant_id: str, deaf: bool, now: float) -> None:
        """Deaf: the participant hears silence."""
        self._change(participant_id, now, deaf=deaf)

    def set_speak_only_to(
        self, participant_id: str, targets: Iterable[str] | None, now: float
    ) -> None:
        """Coaching: only ``targets`` (ids or ``"role:expert"``...) hear the participant."""
        self._change(
            participant_id, now, speak_only_to=None if targets is None else frozenset(targets)
        )

    def _change(self, participant_id: str, now: float, **changes: Any) -> None:
        self._check_open()
        old = self.rights(participant_id)
        new = Rights(
            muted=changes.get("muted", old.muted),
            deaf=changes.get("deaf", old.deaf),
            speak_only_to=changes.get("speak_only_to", old.speak_only_to),
        )
        if new == old:
            return
        self._rights[participant_id] = new
        self._mixer.set_muted(participant_id, new.muted)
        self._mixer.set_deaf(participant_id, new.deaf)
        self._resolve_targets()
        self._emit(RoomEventType.RIGHTS_CHANGED, participant_id, now, **new.to_dict())

    def _resolve_targets(self) -> None:
        """Translate role targets into the ids present now (after every membership change)."""
        for pid, rights in self._rights.items():
            if rights.speak_only_to is None:
                self._mixer.set_speak_only_to(pid, None)
                continue
            ids: set[str] = set()
            for target in rights.speak_only_to:
                if target.startswith(ROLE_PREFIX):
                    role = target[len(ROLE_PREFIX) :]
                    ids.update(p.id for p in self._participants.values() if p.role.value == role)
                else:
                    ids.add(target)
            self._mixer.set_speak_only_to(pid, ids)

    # --- the tick ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """One 20 ms step: pull inputs, mix-minus, announcement, deliver, record, events."""
        if self.closed:
            return
        order = self._mixer.order
        if order is not self._tick_ids:  # membership or rights changed: the mixer's new order
            self._tick_ids = order
            self._tick_order = [self._participants[pid] for pid in order]
        listeners = self._tick_order
        frames = [p.pull_input() for p in listeners]
        mixed = self._mixer.mix_ordered(frames)
        if self._playing:
            for participant, frame in zip(listeners, mixed, strict=True):
                participant.deliver(self._overlay(participant.id, frame))
            self._retune()  # an announcement that ended may let the room mix lower
        else:  # the usual tick: no announcement is playing
            for participant, frame in zip(listeners, mixed, strict=True):
                participant.deliver(frame)
        if self._recorder is not None:
            self._recorder.write(self._room_mix(dict(zip(order, frames, strict=True))))
        if self._mixer.has_events:
            self._speaking_events(now)
        self.ticks += 1

    def _overlay(self, participant_id: str, frame: AudioFrame) -> AudioFrame:
        index = self._playing.get(participant_id)
        if index is None:
            return frame
        frames = self._announcement_frames(self._mix_rate)
        chunk = frames[index]
        if index + 1 < len(frames):
            self._playing[participant_id] = index + 1
        else:
            del self._playing[participant_id]
        mixed = frame.astype(np.int32)
        mixed += chunk
        result: AudioFrame = saturate(mixed).astype(np.int16)
        return result

    def _announcement_frames(self, rate: int) -> tuple[AudioFrame, ...]:
        """The announcement at ``rate`` (resampled once, as one continuous signal)."""
        frames = self._announcement_at.get(rate)
        if frames is None:
            resampler = Resampler(self.rate, rate)
            frames = tuple(resampler.process(f) for f in self._announcement)
            self._announcement_at[rate] = frames
        return frames

    def _needed_rate(self) -> int:
        """The mixing rate that loses nothing anyone hears (see the module docstring)."""
        if self._recorder is not None:
            return self.rate
        participants = self._participants
        rates = sorted((p.rate for p in participants.values()), reverse=True)
        best = rates[min(1, len(rates) - 1)] if rates else self.rate
        for pid in self._playing:
            best = max(best, participants[pid].rate)
        return min(best, self.rate)

    def _retune(self) -> None:
        """Mix at :meth:`_needed_rate` from the next tick on; every participant follows."""
        rate = self._needed_rate()
        if rate != self._mix_rate:
            self._mix_rate = rate
            self._mixer.set_rate(rate)
        for participant in self._participants.values():
            participant.tune(rate)

    def _room_mix(self, inputs: Mapping[str, AudioFrame | None]) -> AudioFrame:
        """What the room heard: everyone not muted, whispers included (the expert heard them)."""
        total = np.zeros(samples_per_frame(self._mix_rate), dtype=np.int32)
        for pid, frame in inputs.items():
            if frame is not None and not self._rights[pid].muted:
                total += frame
        result: AudioFrame = saturate(total).astype(np.int16)
        return result

    def _speaking_events(self, now: float) -> None:
        for event in self._mixer.pop_events():
            event_type = (
                RoomEventType.SPEAKING_STARTED
                if isinstance(event, SpeakingStarted)
                else RoomEventType.SPEAKING_STOPPED
            )
            self._emit(event_type, event.participant, now, tick=event.tick)

    # --- events and closing -------------------------------------------------------------------

    @property
    def has_events(self) -> bool:
        """Events are waiting for :meth:`pop_events` (checked by the owner after every tick)."""
        return bool(self._events)

    def pop_events(self) -> list[RoomEvent]:
        """Events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def close(self, now: float) -> Recording | None:
        """Everyone leaves (reason ``room closed``); the recording is finished and hashed.

        Returns ``(path, sha256, seconds)`` when the room was recorded, else None. Idempotent.
        """
        if self.closed:
            return None
        for pid in list(self._participants):
            self.leave(pid, now, reason="room closed")
        self.closed = True
        if self._recorder is None:
            return None
        recording = self._recorder.close()
        self._emit(
            RoomEventType.RECORDING_STOPPED,
            None,
            now,
            path=str(recording.path),
            sha256=recording.sha256,
            seconds=recording.seconds,
        )
        return recording

    def _emit(
        self, event_type: RoomEventType, participant: str | None, now: float, **details: Any
    ) -> None:
        self._events.append(RoomEvent(self.escalation_id, event_type, participant, now, details))

    def _get(self, participant_id: str) -> RoomParticipant:
        try:
            return self._participants[participant_id]
        except KeyError:
            raise UnknownParticipant(f"no participant {participant_id!r} in the room") from None

    def _check_open(self) -> None:
        if self.closed:
            raise RoomClosed(f"the room of escalation {self.escalation_id!r} is closed")
