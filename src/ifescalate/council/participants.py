"""Room participants: where a leg's audio comes from and goes to, at its own rate and format.

Each participant has two bounded queues of 20 ms frames:

- input, filled by the network side (an RTP session's sink, a WebSocket reader) and drained by the
  room, one frame per tick. A producer faster than the 20 ms tick (a WebSocket client sending in
  bursts, a clock slightly faster than ours) would grow the queue, and the latency, without
  limit: the oldest frame is dropped instead, and counted.
- output, filled by the room with this participant's mix-minus and drained by the network side.
  A network side that stalls loses the oldest audio, never blocks the room.

Both queues hold frames at the network side's own rate (8 kHz for a G.711 leg or a mu-law
agent); frames cross the room boundary resampled, when the room takes them and when it delivers
them. The room mixes at its rate (16 kHz by default) or lower when nobody could hear the
difference (:meth:`RoomParticipant.tune`, ``Room`` docs): queued input is at the network rate, so
a change of the mixing rate never meets a frame at the old one.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from ifescalate.media.frames import AudioFrame, check_frame, samples_per_frame, silence
from ifescalate.media.g711 import ulaw_decode, ulaw_encode
from ifescalate.media.mixer import ParticipantKind
from ifescalate.media.resample import Resampler

from .errors import CouncilError, FrameFormatError

__all__ = [
    "DEFAULT_QUEUE_FRAMES",
    "AgentFormat",
    "AgentParticipant",
    "FrameQueue",
    "ParticipantKind",
    "Role",
    "RoomParticipant",
    "SipLegParticipant",
]

_LE_I16 = np.dtype("<i2")  # made once: a dtype string is parsed again on every use

DEFAULT_QUEUE_FRAMES = 10
"""Queue depth in frames: 200 ms, enough for a TCP (WebSocket) burst, short enough for talk."""


class Role(enum.Enum):
    """What a participant is in the escalation (decides the announcement and usual rights)."""

    EXPERT = "expert"
    CHAIR = "chair"
    AGENT = "agent"
    GUARDIAN = "guardian"


class FrameQueue:
    """A bounded FIFO of frames that drops its oldest frame when full (and counts it)."""

    def __init__(self, capacity: int = DEFAULT_QUEUE_FRAMES) -> None:
        if capacity < 1:
            raise CouncilError(f"queue capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._frames: deque[AudioFrame] = deque()
        self.pushed = 0
        self.dropped = 0

    def push(self, frame: AudioFrame) -> None:
        """Append ``frame``; a full queue first drops its oldest frame."""
        if len(self._frames) >= self.capacity:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(frame)
        self.pushed += 1

    def pop(self) -> AudioFrame | None:
        """The oldest frame, or None when empty."""
        return self._frames.popleft() if self._frames else None

    def clear(self) -> None:
        self._frames.clear()

    def __len__(self) -> int:
        return len(self._frames)


class RoomParticipant:
    """One leg of a room: its identity, role, network rate and the two queues.

    The network side calls :meth:`push_input` and :meth:`pull_output` (frames at :attr:`rate`);
    the room calls :meth:`pull_input` and :meth:`deliver` (frames at :attr:`room_rate`).
    ``on_output`` (if set) is called after each delivered frame so an asyncio writer can wake up;
    ``removed`` says why the room let the participant go (``"left"``, ``"kicked"``,
    ``"room closed"``), None while it is in a room or not yet joined.
    """

    kind: ClassVar[ParticipantKind]

    def __init__(
        self,
        participant_id: str,
        role: Role,
        *,
        rate: int,
        room_rate: int = 16000,
        name: str | None = None,
        queue_frames: int = DEFAULT_QUEUE_FRAMES,
    ) -> None:
        if not participant_id:
            raise CouncilError("participant id must not be empty")
        samples_per_frame(rate)  # validates both rates early
        samples_per_frame(room_rate)
        self.id = participant_id
        self.role = role
        self.rate = rate
        self.room_rate = room_rate
        self.name = name or participant_id
        self.input = FrameQueue(queue_frames)
        self.output = FrameQueue(queue_frames)
        self.mix_rate = room_rate
        """The rate the room mixes at now (:attr:`room_rate` or lower, see :meth:`tune`)."""
        self._up = Resampler(rate, room_rate)
        self._down = Resampler(room_rate, rate)
        # Same rate both sides (a 16 kHz agent in a 16 kHz room): frames cross as they are,
        # without going through a pass-through resampler on every 20 ms frame.
        self._same_rate = rate == room_rate
        self.on_output: Callable[[], None] | None = None
        self.removed: str | None = None

    def tune(self, mix_rate: int) -> None:
        """The room mixes at ``mix_rate`` from the next tick on (called by the room).

        The resamplers start afresh (their few milliseconds of history were at the old rate);
        queued frames are at :attr:`rate` and stay valid.
        """
        if mix_rate == self.mix_rate:
            return
        samples_per_frame(mix_rate)
        self.mix_rate = mix_rate
        self._up = Resampler(self.rate, mix_rate)
        self._down = Resampler(mix_rate, self.rate)
        self._same_rate = self.rate == mix_rate

    # --- network side (frames at self.rate) ------------------------------------------------

    def push_input(self, frame: AudioFrame) -> None:
        """One received 20 ms frame at :attr:`rate`, queued (a copy: the caller keeps its array)."""
        check_frame(frame, self.rate)
        self.input.push(frame.copy())

    def _push_decoded(self, frame: AudioFrame) -> None:
        """:meth:`push_input` for a frame this object just decoded (checked, owned: no copy)."""
        self.input.push(frame)

    def pull_output(self) -> AudioFrame | None:
        """The oldest 20 ms frame of this participant's mix at :attr:`rate`, None when empty."""
        return self.output.pop()

    # --- room side (frames at self.room_rate) ----------------------------------------------

    def pull_input(self) -> AudioFrame | None:
        """The next input frame at :attr:`mix_rate`; None (silence) when the producer is behind."""
        frame = self.input.pop()
        if frame is None or self._same_rate:
            return frame
        return self._up.process_checked(frame)

    def deliver(self, frame: AudioFrame) -> None:
        """This tick's mix-minus at :attr:`mix_rate`: resampled to :attr:`rate` and queued.

        ``frame`` is kept as it is at the same rate: the room hands over a fresh array each tick
        and nobody writes into queued frames (the network side encodes them).
        """
        # The room's own frames (checked by the mixer): resampled without a second check.
        self.output.push(frame if self._same_rate else self._down.process_checked(frame))
        if self.on_output is not None:
            self.on_output()

    def mark_removed(self, reason: str) -> None:
        """Called by the room when the participant leaves or is kicked; wakes the writer."""
        self.removed = reason
        if self.on_output is not None:
            self.on_output()

    def stats(self) -> dict[str, int]:
        """Queue counters for metrics: frames in, frames dropped each way."""
        return {
            "input_frames": self.input.pushed,
            "input_dropped": self.input.dropped,
            "output_frames": self.output.pushed,
            "output_dropped": self.output.dropped,
        }


class AgentFormat(enum.Enum):
    """Audio formats of the agent media WebSocket (one binary message = 20 ms)."""

    PCM16_16000 = "pcm16-16000"
    MULAW_8000 = "mulaw-8000"

    @property
    def rate(self) -> int:
        return 16000 if self is AgentFormat.PCM16_16000 else 8000

    @property
    def frame_bytes(self) -> int:
        """Bytes in one 20 ms binary message: 640 for pcm16@16k, 160 for mu-law@8k."""
        samples = samples_per_frame(self.rate)
        return samples * 2 if self is AgentFormat.PCM16_16000 else samples

    def decode(self, data: bytes) -> AudioFrame:
        """One binary message as an int16 frame at :attr:`rate`."""
        if len(data) != self.frame_bytes:
            raise FrameFormatError(
                f"{self.value} frames must be {self.frame_bytes} bytes (20 ms), got {len(data)}"
            )
        if self is AgentFormat.MULAW_8000:
            return ulaw_decode(data)
        frame: AudioFrame = np.frombuffer(data, dtype=_LE_I16).astype(np.int16)
        return frame

    def encode(self, frame: AudioFrame) -> bytes:
        """An int16 frame at :attr:`rate` as one binary message (little-endian PCM or mu-law)."""
        if self is AgentFormat.MULAW_8000:
            return ulaw_encode(frame)
        return frame.astype(_LE_I16, copy=False).tobytes()


class AgentParticipant(RoomParticipant):
    """An AI agent on the media WebSocket: binary frames in :class:`AgentFormat` both ways."""

    kind = ParticipantKind.AGENT

    def __init__(
        self,
        participant_id: str,
        role: Role,
        audio_format: AgentFormat,
        *,
        room_rate: int = 16000,
        name: str | None = None,
        queue_frames: int = DEFAULT_QUEUE_FRAMES,
    ) -> None:
        if role is Role.EXPERT:
            raise CouncilError("an agent cannot take the expert role")
        super().__init__(
            participant_id,
            role,
            rate=audio_format.rate,
            room_rate=room_rate,
            name=name,
            queue_frames=queue_frames,
        )
        self.format = audio_format

    def push_bytes(self, data: bytes) -> None:
        """One binary WebSocket message from the agent (raises :class:`FrameFormatError`)."""
        # decode() returns a new array of the right size and rate: no second check or copy.
        self._push_decoded(self.format.decode(data))

    def pull_output_bytes(self) -> bytes | None:
        """The next binary message for the agent, None when nothing is queued."""
        frame = self.pull_output()
        return None if frame is None else self.format.encode(frame)


class SipLegParticipant(RoomParticipant):
    """A SIP call's audio, plugged into an RTP media session at the codec rate.

    The RTP layer calls :meth:`sink` with each decoded (jitter-buffered) frame and :meth:`source`
    each 20 ms for the frame to encode and send: ``MediaSession(source=leg.source,
    sink=leg.sink)``.
    """

    kind = ParticipantKind.SIP

    def __init__(
        self,
        participant_id: str,
        *,
        rate: int = 8000,
        role: Role = Role.EXPERT,
        room_rate: int = 16000,
        name: str | None = None,
        queue_frames: int = DEFAULT_QUEUE_FRAMES,
    ) -> None:
        super().__init__(
            participant_id,
            role,
            rate=rate,
            room_rate=room_rate,
            name=name,
            queue_frames=queue_frames,
        )

    def sink(self, frame: AudioFrame) -> None:
        """RTP receive side: :meth:`push_input` without the copy (the session hands over a frame
        its jitter buffer no longer writes; the room only reads input frames)."""
        check_frame(frame, self.rate)
        self.input.push(frame)

    def source(self) -> AudioFrame:
        """RTP send side: the next mixed frame, or silence so the far end keeps getting packets."""
        frame = self.pull_output()
        return silence(self.rate) if frame is None else frame
