"""The escalation state machine, sans-IO (ARCHITECTURE.md, "An escalation, step by step").

One ``EscalationMachine`` per escalation: guard decision -> ring the ladder in rank order -> an
expert answers -> bridge -> verdicts -> end. It performs no IO and reads no clock: every input takes
``now`` (monotonic seconds) and returns the ``Action`` list to carry out, in order; ``get_timer()``
gives the next absolute deadline and ``handle_timer(now)`` fires what is due (the aioquic shape,
ARCHITECTURE.md convention 1).

The transitions are a table ``{(state, input): handler}`` over Enums (convention 3). An input the
table does not hold raises :class:`EscalationProtocolError`: the caller (escalation/service.py)
has a bug or fed a response the SIP layer should have absorbed. The one deliberate exception is a
leg we already gave up on (cancelled after a ring timeout, deadline or cancel, or failed): its
provisional and final responses are *late* and ignored, because a CANCEL and a final response
routinely cross on the wire (RFC 3261 §9.1: the INVITE still gets its 487). A late 200 OK is not
ignored: the callee is now on a live call nobody hears, so we hang it up (RFC 3261 §15: a UAC
that does not want a call it got must ACK and then BYE).

Witness records: every step after the guard decision yields ``Record(type, details)`` with
``type`` an ``ifescalate.witness.EventType`` name (``ESCALATION_REQUESTED`` and ``GUARD_DECISION``
are the service's to record: it holds the request and the guard's full per-candidate decisions). Exactly one terminal record precedes the one ``Finished``:
``REJECTED`` (guard permitted nobody), ``CANCELLED`` (cancelled before anyone answered) or
``TERMINATED`` (every other end; its details carry ``outcome``). A late answer after the end yields a
leg-level ``TERMINATED`` whose details carry ``index`` and no ``outcome``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeAlias

from ifescalate.witness.core import EventType
from ifescalate.witness.jcs import JsonValue

from .model import (
    EscalationRequest,
    EscalationState,
    EscalationView,
    LadderStep,
    Outcome,
    Verdict,
)

__all__ = [
    "Action",
    "CancelRing",
    "EscalationInput",
    "EscalationMachine",
    "EscalationProtocolError",
    "Finished",
    "Hangup",
    "Record",
    "Ring",
]

_S = EscalationState

#: Who may end a connected call (``hangup(by=...)``).
HANGUP_PARTIES = frozenset({"expert", "council", "system"})
_EVENT_TYPES = frozenset(t.value for t in EventType)


class EscalationProtocolError(Exception):
    """An input the machine does not accept in its current state (a bug of the caller)."""

    def __init__(self, message: str, *, state: EscalationState | None = None) -> None:
        super().__init__(message)
        self.state = state


class EscalationInput(enum.Enum):
    """What can happen to an escalation; the table's second key."""

    GUARD_DECIDED = "guard_decided"
    RINGING = "ringing"  # a 180/183 for the leg being rung
    ANSWERED = "answered"  # a 2xx for the leg being rung
    BRIDGED = "bridged"  # the answered leg joined the council room
    CALL_FAILED = "call_failed"  # a 3xx-6xx for the leg being rung
    RING_TIMEOUT = "ring_timeout"
    DEADLINE = "deadline"
    MAX_DURATION = "max_duration"
    VERDICT = "verdict"
    HANGUP = "hangup"  # the connected call ended (BYE either way)
    CANCEL = "cancel"  # the council or an operator cancels
    LATE_ANSWER = "late_answer"  # a 2xx for a leg we gave up on: hang it up
    STALE = "stale"  # anything else from a leg we gave up on: ignore


_I = EscalationInput


# ---------------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Ring:
    """Send an INVITE to ladder step ``index``."""

    index: int
    expert_id: str
    sip_uri: str


@dataclass(frozen=True, slots=True)
class CancelRing:
    """CANCEL the outstanding INVITE of step ``index`` (RFC 3261 §9.1)."""

    index: int


@dataclass(frozen=True, slots=True)
class Hangup:
    """BYE the answered leg of step ``index`` (RFC 3261 §15.1.1)."""

    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class Record:
    """Witness this step and publish it on the event stream; ``type`` is a witness EventType name."""

    type: str
    details: dict[str, JsonValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in _EVENT_TYPES:
            raise ValueError(f"unknown witness event type {self.type!r}")


@dataclass(frozen=True, slots=True)
class Finished:
    """The escalation ended; emitted exactly once, after its terminal ``Record``."""

    outcome: Outcome
    reason: str


Action: TypeAlias = Ring | CancelRing | Hangup | Record | Finished
_Handler: TypeAlias = Callable[..., list[Action]]

# Ring outcomes by final status (RFC 3261 §21.4.24 486 Busy Here, §21.6.1 600 Busy Everywhere,
# §21.6.2 603 Decline). Everything else (408, 480, 487, 5xx, ...) counts as no answer.
_FAILURE_KIND: dict[int, tuple[str, str]] = {
    486: ("BUSY", "busy"),
    600: ("BUSY", "busy"),
    603: ("DECLINED", "declined"),
}


# ---------------------------------------------------------------------------------------- machine


class EscalationMachine:
    """One escalation's life, as a transition table; see the module docstring."""

    TABLE: ClassVar[dict[tuple[EscalationState, EscalationInput], _Handler]]

    def __init__(
        self,
        escalation_id: str,
        request: EscalationRequest,
        *,
        trace_id: str,
        now: float,
        ring_timeout: float = 30.0,
        deadline: float = 300.0,
        max_duration: float = 3600.0,
    ) -> None:
        for name, value in (
            ("ring_timeout", ring_timeout),
            ("deadline", deadline),
            ("max_duration", max_duration),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, not {value}")
        self.escalation_id = escalation_id
        self.request = request
        self.trace_id = trace_id
        self.created = now
        self.ring_timeout = ring_timeout
        self.max_duration = max_duration
        self._state = _S.REQUESTED
        self._ladder: list[LadderStep] = []
        self._current: int | None = None
        self._given_up: set[int] = set()  # legs cancelled or failed: their responses are late
        self._late_hung_up: set[int] = set()
        self._rang: set[int] = set()  # legs that reported 180/183 (witnessed once each)
        self._guard_policy_ids: tuple[str, ...] = ()
        self._connected_at: float | None = None
        self._bridged = False
        self._hung_up_by_us = False
        self._verdict: Verdict | None = None
        self._outcome: Outcome | None = None
        self._end_reason: str | None = None
        # Timer slots: the overall deadline runs until someone answers; the ring timer while
        # RINGING; the max-duration timer while CONNECTED.
        self._deadline_at: float | None = now + deadline
        self._ring_at: float | None = None
        self._max_at: float | None = None

    # ----------------------------------------------------------------------------- properties

    @property
    def state(self) -> EscalationState:
        return self._state

    @property
    def outcome(self) -> Outcome | None:
        return self._outcome

    @property
    def ladder(self) -> tuple[LadderStep, ...]:
        """Approved experts in rank order, ``result`` filled in as each is tried."""
        return tuple(self._ladder)

    @property
    def current_index(self) -> int | None:
        """The step being rung or connected (the last one tried once ended); None before."""
        return self._current

    @property
    def connected_expert(self) -> str | None:
        if self._connected_at is None or self._current is None:
            return None
        return self._ladder[self._current].expert_id

    @property
    def connected_at(self) -> float | None:
        return self._connected_at

    @property
    def is_bridged(self) -> bool:
        return self._bridged

    @property
    def current_verdict(self) -> Verdict | None:
        """The expert's latest verdict (``verdict(v, now)`` is the input that sets it)."""
        return self._verdict

    @property
    def end_reason(self) -> str | None:
        return self._end_reason

    @property
    def guard_policy_ids(self) -> tuple[str, ...]:
        """Policy ids that decided a denial (sorted, unique); permits carry none here."""
        return self._guard_policy_ids

    @property
    def finished(self) -> bool:
        return self._state is _S.ENDED

    def view(self, *, created_at: float, updated_at: float) -> EscalationView:
        """The API snapshot; the wall-clock times come from the caller (we hold no clock)."""
        r = self.request
        return EscalationView(
            id=self.escalation_id,
            trace_id=self.trace_id,
            state=self._state,
            outcome=self._outcome,
            hazard=r.hazard,
            question=r.question,
            requester=r.requester,
            urgency=r.urgency,
            created_at=created_at,
            updated_at=updated_at,
            ladder=self.ladder,
            connected_expert=self.connected_expert,
            verdict=self._verdict,
            guard_policy_ids=self._guard_policy_ids,
            end_reason=self._end_reason,
        )

    # ----------------------------------------------------------------------------- inputs

    def guard_decided(
        self,
        permitted: Sequence[LadderStep],
        denied: Mapping[str, tuple[str, ...]],
        policy_set_hash: str,
        now: float,
    ) -> list[Action]:
        """IF.guard's answer: ``permitted`` in rank order (ARCHITECTURE.md step 2)."""
        return self._dispatch(_I.GUARD_DECIDED)(
            self, permitted=permitted, denied=denied, policy_set_hash=policy_set_hash, now=now
        )

    def ringing(self, index: int, now: float) -> list[Action]:
        """A 180/183 arrived for step ``index``."""
        return self._dispatch(self._leg_input(index, _I.RINGING, _I.STALE))(
            self, index=index, now=now
        )

    def answered(self, index: int, now: float) -> list[Action]:
        """A 2xx arrived for step ``index`` (the service ACKs it, RFC 3261 §13.2.2.4)."""
        return self._dispatch(self._leg_input(index, _I.ANSWERED, _I.LATE_ANSWER))(
            self, index=index, now=now
        )

    def call_failed(self, index: int, status: int, now: float) -> list[Action]:
        """A final 3xx-6xx (or a transaction timeout as 408) for step ``index``."""
        if not 300 <= status <= 699:
            raise EscalationProtocolError(f"call_failed with non-failure status {status}")
        return self._dispatch(self._leg_input(index, _I.CALL_FAILED, _I.STALE))(
            self, index=index, status=status, now=now
        )

    def bridged(self, now: float) -> list[Action]:
        """The connected leg joined the council room (ARCHITECTURE.md step 4)."""
        return self._dispatch(self._after_release(_I.BRIDGED))(self, now=now)

    def verdict(self, v: Verdict, now: float) -> list[Action]:
        """The expert pressed a DTMF verdict key; a later verdict replaces an earlier one."""
        return self._dispatch(_I.VERDICT)(self, v=v, now=now)

    def hangup(self, by: str, now: float) -> list[Action]:
        """The connected call ended: ``by`` is "expert", "council" or "system"."""
        if by not in HANGUP_PARTIES:
            raise EscalationProtocolError(f"hangup by unknown party {by!r}", state=self._state)
        return self._dispatch(self._after_release(_I.HANGUP))(self, by=by, now=now)

    def cancel(self, by: str, now: float) -> list[Action]:
        """Cancel: CANCEL a ringing INVITE, BYE a connected call; a no-op once ended."""
        return self._dispatch(_I.CANCEL)(self, by=by, now=now)

    # ----------------------------------------------------------------------------- timers

    def get_timer(self) -> float | None:
        """The next absolute deadline (monotonic seconds), or None when nothing runs."""
        slots = [t for t in (self._deadline_at, self._ring_at, self._max_at) if t is not None]
        return min(slots, default=None)

    def handle_timer(self, now: float) -> list[Action]:
        """Fire every timer due at ``now``; the overall deadline wins over a ring timeout."""
        actions: list[Action] = []
        while (due := self._due(now)) is not None:
            actions += self._dispatch(due)(self, now=now)
        return actions

    def _due(self, now: float) -> EscalationInput | None:
        if self._deadline_at is not None and now >= self._deadline_at:
            return _I.DEADLINE
        if self._ring_at is not None and now >= self._ring_at:
            return _I.RING_TIMEOUT
        if self._max_at is not None and now >= self._max_at:
            return _I.MAX_DURATION
        return None

    # ----------------------------------------------------------------------------- dispatch

    def _dispatch(self, what: EscalationInput) -> _Handler:
        handler = self.TABLE.get((self._state, what))
        if handler is None:
            raise EscalationProtocolError(
                f"{what.value} is not allowed in state {self._state.value}", state=self._state
            )
        return handler

    def _leg_input(
        self, index: int, normal: EscalationInput, late: EscalationInput
    ) -> EscalationInput:
        """Classify a response for leg ``index``: current, late (given up on) or impossible."""
        if self._current is None or not 0 <= index <= self._current:
            raise EscalationProtocolError(f"no INVITE was sent for step {index}", state=self._state)
        if index in self._given_up:
            if late is _I.LATE_ANSWER and index in self._late_hung_up:
                return _I.STALE  # a second 2xx: the dialog layer's business, not ours
            return late
        return normal

    def _after_release(self, what: EscalationInput) -> EscalationInput:
        # We BYE'd the connected leg (cancel, max duration); its BYE's completion or a crossing
        # BYE from the expert, or a bridge finishing just then, is news about a released call.
        if self._state is _S.ENDED and self._hung_up_by_us:
            return _I.STALE
        return what

    # ----------------------------------------------------------------------------- handlers

    def _on_guard(
        self,
        *,
        permitted: Sequence[LadderStep],
        denied: Mapping[str, tuple[str, ...]],
        policy_set_hash: str,
        now: float,
    ) -> list[Action]:
        # The GUARD_DECISION record itself is the service's: it holds the full per-candidate
        # decisions (errors, reasons) that this machine never sees.
        self._guard_policy_ids = tuple(sorted({p for ids in denied.values() for p in ids}))
        if not permitted:
            reason = "guard permitted no expert"
            details: dict[str, JsonValue] = {
                "reason": reason,
                "denied": {expert: list(ids) for expert, ids in denied.items()},
                "policy_set_hash": policy_set_hash,
            }
            rejected = Record(EventType.REJECTED.value, details)
            return [rejected, *self._finish(Outcome.REJECTED, reason)]
        self._ladder = [replace(s, result=None) for s in permitted]
        self._state = _S.APPROVED
        return self._ring(0, now)

    def _on_ringing(self, *, index: int, now: float) -> list[Action]:
        if index in self._rang:
            return []  # 180 then 183, or a repeated 180: witnessed once per leg
        self._rang.add(index)
        return [Record(EventType.RINGING.value, self._leg(index))]

    def _on_answered(self, *, index: int, now: float) -> list[Action]:
        self._set_result(index, "answered")
        self._state = _S.CONNECTED
        self._connected_at = now
        self._deadline_at = self._ring_at = None
        self._max_at = now + self.max_duration
        return [
            Record(EventType.CONNECTED.value, {**self._leg(index), "sip_uri": self._uri(index)})
        ]

    def _on_failed(self, *, index: int, status: int, now: float) -> list[Action]:
        kind, result = _FAILURE_KIND.get(status, ("NO_ANSWER", "no_answer"))
        self._give_up(index, result)
        record = Record(kind, {**self._leg(index), "status": status})
        return [record, *self._next_step(now)]

    def _on_ring_timeout(self, *, now: float) -> list[Action]:
        index = self._require_current()
        self._give_up(index, "timeout")
        record = Record(EventType.NO_ANSWER.value, {**self._leg(index), "reason": "ring timeout"})
        return [CancelRing(index), record, *self._next_step(now)]

    def _on_deadline(self, *, now: float) -> list[Action]:
        actions: list[Action] = []
        if self._state is _S.RINGING:
            index = self._require_current()
            self._give_up(index, "cancelled")
            details = {**self._leg(index), "reason": "deadline"}
            actions += [CancelRing(index), Record(EventType.NO_ANSWER.value, details)]
        reason = "deadline passed before any expert answered"
        return actions + self._terminate(Outcome.TIMED_OUT, reason, {})

    def _on_bridged(self, *, now: float) -> list[Action]:
        if self._bridged:
            raise EscalationProtocolError("the call is already bridged", state=self._state)
        self._bridged = True
        return [Record(EventType.BRIDGE_ESTABLISHED.value, self._leg(self._require_current()))]

    def _on_verdict(self, *, v: Verdict, now: float) -> list[Action]:
        previous = self._verdict
        self._verdict = v
        details: dict[str, JsonValue] = {
            **self._leg(self._require_current()),
            "verdict": v.value,
            "replaces": previous.value if previous else None,
        }
        return [Record(EventType.VERDICT.value, details)]

    def _on_hangup(self, *, by: str, now: float) -> list[Action]:
        return self._terminate(Outcome.COMPLETED, f"hangup by {by}", {"by": by}, now=now)

    def _on_max_duration(self, *, now: float) -> list[Action]:
        index = self._require_current()
        self._hung_up_by_us = True
        reason = "max duration"
        return [Hangup(index, reason), *self._terminate(Outcome.COMPLETED, reason, {}, now=now)]

    def _on_cancel_unrung(self, *, by: str, now: float) -> list[Action]:
        reason = f"cancelled by {by}"
        record = Record(EventType.CANCELLED.value, {"by": by, "reason": reason})
        return [record, *self._finish(Outcome.CANCELLED, reason)]

    def _on_cancel_ringing(self, *, by: str, now: float) -> list[Action]:
        index = self._require_current()
        self._give_up(index, "cancelled")
        reason = f"cancelled by {by}"
        details = {**self._leg(index), "by": by, "reason": reason}
        record = Record(EventType.CANCELLED.value, details)
        return [CancelRing(index), record, *self._finish(Outcome.CANCELLED, reason)]

    def _on_cancel_connected(self, *, by: str, now: float) -> list[Action]:
        index = self._require_current()
        self._hung_up_by_us = True
        reason = f"cancelled by {by}"
        ended = self._terminate(Outcome.CANCELLED, reason, {"by": by}, now=now)
        return [Hangup(index, reason), *ended]

    def _on_late_answer(self, *, index: int, now: float) -> list[Action]:
        self._late_hung_up.add(index)
        cancelled = self._ladder[index].result in {"timeout", "cancelled"}
        reason = "late answer after cancel" if cancelled else "late answer after failure"
        details = {**self._leg(index), "reason": reason}
        return [Hangup(index, reason), Record(EventType.TERMINATED.value, details)]

    def _ignore(self, **_: Any) -> list[Action]:
        return []

    # ----------------------------------------------------------------------------- helpers

    def _ring(self, index: int, now: float) -> list[Action]:
        self._current = index
        self._state = _S.RINGING
        self._ring_at = now + self.ring_timeout
        step = self._ladder[index]
        details = {**self._leg(index), "sip_uri": step.sip_uri, "rank": step.rank}
        return [Ring(index, step.expert_id, step.sip_uri), Record(EventType.INVITE.value, details)]

    def _next_step(self, now: float) -> list[Action]:
        index = self._require_current() + 1
        if index < len(self._ladder):
            return self._ring(index, now)
        reason = f"none of {len(self._ladder)} approved experts answered"
        return self._terminate(Outcome.NO_ANSWER, reason, {})

    def _terminate(
        self,
        outcome: Outcome,
        reason: str,
        extra: dict[str, JsonValue],
        *,
        now: float | None = None,
    ) -> list[Action]:
        details: dict[str, JsonValue] = {"outcome": outcome.value, "reason": reason, **extra}
        if now is not None and self._connected_at is not None:
            details["expert_id"] = self.connected_expert
            details["duration"] = round(now - self._connected_at, 3)
        return [Record(EventType.TERMINATED.value, details), *self._finish(outcome, reason)]

    def _finish(self, outcome: Outcome, reason: str) -> list[Action]:
        self._state = _S.ENDED
        self._outcome = outcome
        self._end_reason = reason
        self._deadline_at = self._ring_at = self._max_at = None
        return [Finished(outcome, reason)]

    def _give_up(self, index: int, result: str) -> None:
        self._set_result(index, result)
        self._given_up.add(index)
        self._ring_at = None

    def _set_result(self, index: int, result: str) -> None:
        self._ladder[index] = replace(self._ladder[index], result=result)

    def _require_current(self) -> int:
        if self._current is None:  # unreachable through the table; guards the invariant
            raise EscalationProtocolError("no ladder step is active", state=self._state)
        return self._current

    def _leg(self, index: int) -> dict[str, JsonValue]:
        return {"index": index, "expert_id": self._ladder[index].expert_id}

    def _uri(self, index: int) -> str:
        return self._ladder[index].sip_uri


_M = EscalationMachine
EscalationMachine.TABLE = {
    (_S.REQUESTED, _I.GUARD_DECIDED): _M._on_guard,
    (_S.REQUESTED, _I.DEADLINE): _M._on_deadline,
    (_S.REQUESTED, _I.CANCEL): _M._on_cancel_unrung,
    (_S.RINGING, _I.RINGING): _M._on_ringing,
    (_S.RINGING, _I.ANSWERED): _M._on_answered,
    (_S.RINGING, _I.CALL_FAILED): _M._on_failed,
    (_S.RINGING, _I.RING_TIMEOUT): _M._on_ring_timeout,
    (_S.RINGING, _I.DEADLINE): _M._on_deadline,
    (_S.RINGING, _I.CANCEL): _M._on_cancel_ringing,
    (_S.RINGING, _I.LATE_ANSWER): _M._on_late_answer,
    (_S.RINGING, _I.STALE): _M._ignore,
    (_S.CONNECTED, _I.BRIDGED): _M._on_bridged,
    (_S.CONNECTED, _I.VERDICT): _M._on_verdict,
    (_S.CONNECTED, _I.HANGUP): _M._on_hangup,
    (_S.CONNECTED, _I.MAX_DURATION): _M._on_max_duration,
    (_S.CONNECTED, _I.CANCEL): _M._on_cancel_connected,
    (_S.CONNECTED, _I.LATE_ANSWER): _M._on_late_answer,
    (_S.CONNECTED, _I.STALE): _M._ignore,
    (_S.ENDED, _I.CANCEL): _M._ignore,
    (_S.ENDED, _I.LATE_ANSWER): _M._on_late_answer,
    (_S.ENDED, _I.STALE): _M._ignore,
}
