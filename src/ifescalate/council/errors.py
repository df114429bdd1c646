"""Errors of the conference layer. They are :class:`~ifescalate.media.frames.MediaError` (a
``ValueError``) so a caller that handles bad media input handles these too."""

from __future__ import annotations

from ifescalate.media.frames import MediaError

__all__ = [
    "CouncilError",
    "DuplicateParticipant",
    "FrameFormatError",
    "RoomClosed",
    "UnknownParticipant",
    "UnknownRoom",
]


class CouncilError(MediaError):
    """Bad use of a room or the council; the message says what was wrong."""


class UnknownRoom(CouncilError):
    """No room is open for that escalation."""


class RoomClosed(CouncilError):
    """The room was closed; nobody can join it or change it any more."""


class UnknownParticipant(CouncilError):
    """No participant with that id is in the room."""


class DuplicateParticipant(CouncilError):
    """A participant with that id is already in the room."""


class FrameFormatError(CouncilError):
    """A network frame is not 20 ms of the negotiated format (wrong byte count)."""
