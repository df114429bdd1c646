"""Conference rooms (the MCU) and their participants: SIP legs, AI agents over a media WebSocket,
later WebRTC. Sans-IO: ``net/room_clock.py`` drives :meth:`Room.tick` every 20 ms.

    council = Council(recording_dir=data_dir / "recordings", on_event=publish)
    room = council.open_room(escalation_id, record=policy_allows_recording)
    clock = RoomClock(room, loop, after_tick=lambda: council.dispatch(escalation_id))
    clock.start()
    council.join(escalation_id, SipLegParticipant("expert-1"), loop.time())
    ...
    recording = council.close_room(escalation_id, loop.time())  # (path, sha256, seconds) or None
"""

from .announcement import default_announcement, frames_from_wav
from .council import Council, EventListener
from .errors import (
    CouncilError,
    DuplicateParticipant,
    FrameFormatError,
    RoomClosed,
    UnknownParticipant,
    UnknownRoom,
)
from .participants import (
    AgentFormat,
    AgentParticipant,
    FrameQueue,
    ParticipantKind,
    Role,
    RoomParticipant,
    SipLegParticipant,
)
from .recording import Recording, WavRecorder
from .room import ROLE_PREFIX, Rights, Room, RoomEvent, RoomEventType

__all__ = [
    "ROLE_PREFIX",
    "AgentFormat",
    "AgentParticipant",
    "Council",
    "CouncilError",
    "DuplicateParticipant",
    "EventListener",
    "FrameFormatError",
    "FrameQueue",
    "ParticipantKind",
    "Recording",
    "Rights",
    "Role",
    "Room",
    "RoomClosed",
    "RoomEvent",
    "RoomEventType",
    "RoomParticipant",
    "SipLegParticipant",
    "UnknownParticipant",
    "UnknownRoom",
    "WavRecorder",
    "default_announcement",
    "frames_from_wav",
]
