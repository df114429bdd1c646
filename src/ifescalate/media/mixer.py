"""The conference mixer (MCU core), sans-IO: one call to :meth:`Mixer.mix` per 20 ms tick.

Every participant gets a mix-minus: the sum of everyone it may hear, never itself, so nobody hears
their own echo. Rights decide who hears whom:

- ``muted``: heard by no one (the input still drives speaking detection, so a UI can say "you are
  muted" while they talk).
- ``deaf``: hears nothing (gets silence).
- ``speak_only_to``: a set of participant ids; when set, only those hear this participant. This is
  coaching / whisper: the chair agent speaks to the expert, the other legs do not hear it.

One tick is a handful of numpy calls whatever the rights: the frames are stacked in one
(participants x samples) float64 array and a cached (listeners x speakers) 0/1 "hears" matrix,
rebuilt only when membership or rights change, gives every mix-minus in one matrix product
(numpy's per-call overhead, ~1 us, dominates 20 ms frames). Sums of int16 samples are exact in
float64 and are clipped to int16 once, so loud inputs saturate instead of wrapping around. All frames are at the mixer rate; callers resample
(:mod:`ifescalate.media.resample`). The tick counter is the only clock: events carry the tick.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from ifescalate.media.frames import (
    FRAME_MS,
    AudioFrame,
    MediaError,
    check_frame,
    samples_per_frame,
)

__all__ = [
    "Mixer",
    "MixerError",
    "MixerEvent",
    "Participant",
    "ParticipantKind",
    "SpeakingStarted",
    "SpeakingStopped",
    "saturate",
]

_F64 = npt.NDArray[np.float64]

# -40 dBFS RMS: well above a quiet line's noise floor (~ -60 dBFS), well below speech (~ -20 dBFS).
DEFAULT_SPEECH_RMS = 32768 * 10 ** (-40 / 20)
# 300 ms of hangover bridges the gaps between words so one sentence is one speaking span.
DEFAULT_HANGOVER_MS = 300


class MixerError(MediaError):
    """Bad use of the mixer: unknown or duplicate participant, bad gain, bad frame."""


class ParticipantKind(enum.Enum):
    """Where a participant's audio comes from."""

    SIP = "sip"
    AGENT = "agent"
    WEBRTC = "webrtc"


@dataclass(frozen=True, slots=True)
class SpeakingStarted:
    """``participant`` went above the speech threshold at ``tick``."""

    participant: str
    tick: int


@dataclass(frozen=True, slots=True)
class SpeakingStopped:
    """``participant`` stayed below the threshold for the hangover; ``tick`` is when it ended."""

    participant: str
    tick: int


MixerEvent = SpeakingStarted | SpeakingStopped


@dataclass(slots=True)
class Participant:
    """One leg of the conference and its rights."""

    id: str
    kind: ParticipantKind
    muted: bool = False
    deaf: bool = False
    speak_only_to: frozenset[str] | None = None
    gain: float = 1.0
    speaking: bool = False
    _quiet_frames: int = field(default=0, repr=False)

    def heard_by(self, listener: str) -> bool:
        """Whether ``listener`` hears this participant (rights only; never oneself)."""
        if listener == self.id or self.muted:
            return False
        return self.speak_only_to is None or listener in self.speak_only_to


class Mixer:
    """Mix-minus for every participant, with per-participant rights, gain and speaking events."""

    def __init__(
        self,
        rate: int = 16000,
        *,
        speech_rms: float = DEFAULT_SPEECH_RMS,
        hangover_ms: int = DEFAULT_HANGOVER_MS,
    ) -> None:
        self.rate = rate
        self._samples = samples_per_frame(rate)
        self._speech_rms = speech_rms
        self._hangover = max(1, hangover_ms // FRAME_MS)
        self._participants: dict[str, Participant] = {}
        self._events: list[MixerEvent] = []
        self._plan: _Plan | None = None  # rebuilt on the next tick after any change
        self.tick = 0

    # --- membership and rights -------------------------------------------------------------

    @property
    def participants(self) -> Mapping[str, Participant]:
        """A snapshot of the participants by id (copies: change them through the methods)."""
        return {pid: replace(p) for pid, p in self._participants.items()}

    def add(
        self,
        participant_id: str,
        kind: ParticipantKind | str,
        *,
        muted: bool = False,
        deaf: bool = False,
        speak_only_to: Iterable[str] | None = None,
        gain: float = 1.0,
    ) -> Participant:
        """Join a participant; it is in the next :meth:`mix`. Returns a snapshot of it."""
        _check_gain(gain)
        if participant_id in self._participants:
            raise MixerError(f"participant {participant_id!r} is already in the mix")
        try:
            resolved = ParticipantKind(kind)
        except ValueError:
            raise MixerError(f"unknown participant kind {kind!r}") from None
        participant = Participant(participant_id, resolved, muted, deaf)
        self._participants[participant_id] = participant
        self._plan = None
        self.set_speak_only_to(participant_id, speak_only_to)
        participant.gain = gain
        return replace(participant)

    def remove(self, participant_id: str) -> None:
        """Leave (or kick); a participant that was speaking gets a final :class:`SpeakingStopped`."""
        participant = self._get(participant_id)
        if participant.speaking:
            self._events.append(SpeakingStopped(participant_id, self.tick))
        del self._participants[participant_id]
        self._plan = None

    kick = remove

    def set_muted(self, participant_id: str, muted: bool) -> None:
        """Muted: nobody hears this participant."""
        self._get(participant_id).muted = muted
        self._plan = None

    def set_deaf(self, participant_id: str, deaf: bool) -> None:
        """Deaf: this participant hears silence."""
        self._get(participant_id).deaf = deaf
        self._plan = None

    def set_speak_only_to(self, participant_id: str, listeners: Iterable[str] | None) -> None:
        """Restrict who hears this participant (coaching); None lifts the restriction.

        Ids need not be present yet: a coach may be set up before the expert's leg joins.
        """
        self._get(participant_id).speak_only_to = (
            None if listeners is None else frozenset(listeners)
        )
        self._plan = None

    def set_gain(self, participant_id: str, gain: float) -> None:
        """Linear gain applied to this participant's input before it is mixed (1.0 = unchanged)."""
        _check_gain(gain)
        self._get(participant_id).gain = gain
        self._plan = None

    def set_rate(self, rate: int) -> None:
        """Mix frames at ``rate`` from the next :meth:`mix` on (speaking state is kept)."""
        self._samples = samples_per_frame(rate)
        self.rate = rate
        self._plan = None

    def hears(self, listener: str, speaker: str) -> bool:
        """Whether ``listener`` hears ``speaker`` now (rights of both sides)."""
        return not self._get(listener).deaf and self._get(speaker).heard_by(listener)

    def _get(self, participant_id: str) -> Participant:
        try:
            return self._participants[participant_id]
        except KeyError:
            raise MixerError(f"no participant {participant_id!r}") from None

    # --- the tick ---------------------------------------------------------------------------

    def mix(self, inputs: Mapping[str, AudioFrame | None]) -> dict[str, AudioFrame]:
        """One 20 ms tick: every participant's mix-minus, by id.

        ``inputs`` maps participant ids to this tick's frame; a missing id or None is silence
        (a lost packet the jitter buffer could not conceal, or a participant not sending).
        """
        participants = self._participants
        for pid in inputs:
            if pid not in participants:
                unknown = set(inputs) - set(participants)
                raise MixerError(f"input for unknown participants {sorted(unknown)}")
        order = self.order
        mixed = self.mix_ordered([inputs.get(pid) for pid in order])
        return dict(zip(order, mixed, strict=True))

    @property
    def order(self) -> list[str]:
        """Participant ids in the order :meth:`mix_ordered` takes and returns frames (join
        order; the list changes identity after any change of membership or rights)."""
        plan = self._plan if self._plan is not None else self._make_plan()
        return plan.ids

    def mix_ordered(self, frames: Sequence[AudioFrame | None]) -> list[AudioFrame]:
        """:meth:`mix` by position: ``frames[i]`` is the input of ``order[i]`` (None: silence);
        returns the mix-minus of each in the same order. The room's tick: no dicts per tick."""
        plan = self._plan if self._plan is not None else self._make_plan()
        if len(frames) != len(plan.ids):
            raise MixerError(f"{len(frames)} frames for {len(plan.ids)} participants")
        stacked = plan.stacked
        present: list[bool] = []
        for row, frame in enumerate(frames):
            if frame is None:
                stacked[row] = 0.0
                present.append(False)
            else:
                if frame.dtype != np.int16 or frame.shape != (self._samples,):
                    check_frame(frame, self.rate)  # raises, naming what is wrong
                stacked[row] = frame
                present.append(True)
        # Raw input, before gain and mute: "speaking" describes the person, not what is heard.
        energy: list[float] = np.vecdot(stacked, stacked).tolist()
        self._detect_speaking(plan.order, present, energy)
        for row, gain in plan.gains:
            # Clip after gain so one participant's boost cannot exceed a full-scale input.
            boosted = stacked[row]
            boosted *= gain
            np.rint(boosted, out=boosted)
            saturate(boosted)
        self.tick += 1
        mixed = plan.mixed
        np.matmul(plan.hears, stacked, out=mixed)
        result: AudioFrame = saturate(mixed).astype(np.int16)
        return [result[row] for row in range(len(frames))]  # list(result) is 5x slower

    @property
    def has_events(self) -> bool:
        """Speaking events are waiting for :meth:`pop_events`."""
        return bool(self._events)

    def pop_events(self) -> list[MixerEvent]:
        """Speaking events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def _make_plan(self) -> _Plan:
        """The tick's matrices for the current participants and rights (rebuilt after a change).

        Row ``listener`` of ``hears`` holds 1.0 for every speaker the listener hears (never
        itself, never a muted speaker, nothing for a deaf listener, only the targets of a
        coaching speaker): one matrix product gives every mix-minus at once. Frames are stacked
        as float64 so the product runs in BLAS; sums of int16 samples are exact in float64.
        """
        order = list(self._participants.values())
        hears = np.zeros((len(order), len(order)), dtype=np.float64)
        for row, listener in enumerate(order):
            if listener.deaf:
                continue
            for col, speaker in enumerate(order):
                if speaker.heard_by(listener.id):
                    hears[row, col] = 1.0
        gains = [(row, p.gain) for row, p in enumerate(order) if p.gain != 1.0]
        shape = (len(order), self._samples)
        self._plan = _Plan(
            order=order,
            ids=[p.id for p in order],
            hears=hears,
            gains=gains,
            stacked=np.zeros(shape, dtype=np.float64),
            mixed=np.zeros(shape, dtype=np.float64),
        )
        return self._plan

    def _detect_speaking(
        self, order: list[Participant], present: list[bool], energy: list[float]
    ) -> None:
        threshold, samples = self._speech_rms, self._samples
        for participant, sent, power in zip(order, present, energy, strict=True):
            loud = sent and math.sqrt(power / samples) >= threshold
            if loud:
                participant._quiet_frames = 0
                if not participant.speaking:
                    participant.speaking = True
                    self._events.append(SpeakingStarted(participant.id, self.tick))
            elif participant.speaking:
                participant._quiet_frames += 1
                if participant._quiet_frames >= self._hangover:
                    participant.speaking = False
                    participant._quiet_frames = 0
                    self._events.append(SpeakingStopped(participant.id, self.tick))


@dataclass(slots=True)
class _Plan:
    """What :meth:`Mixer.mix` needs per tick, kept between ticks (see :meth:`Mixer._make_plan`)."""

    order: list[Participant]
    ids: list[str]
    hears: _F64
    gains: list[tuple[int, float]]
    stacked: _F64
    mixed: _F64


def _check_gain(gain: float) -> None:
    if not 0.0 <= gain <= 16.0:
        raise MixerError(f"gain {gain} outside 0..16")


_SaturateT = TypeVar("_SaturateT", npt.NDArray[np.int32], npt.NDArray[np.float64])


def saturate(samples: _SaturateT) -> _SaturateT:
    """Clamp ``samples`` to the int16 range in place and return them.

    Two in-place ufuncs: ``np.clip`` costs several microseconds of Python-level dispatch per
    call, which on 20 ms frames is most of the work (the mixer clips once per listener).
    """
    np.minimum(samples, 32767, out=samples)
    np.maximum(samples, -32768, out=samples)
    return samples
