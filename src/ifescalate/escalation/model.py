"""The escalation vocabulary shared by the state machine, the service, the store and the HTTP API.

An escalation (ARCHITECTURE.md, "An escalation, step by step"): a council agent asks for a human expert
on a hazard; IF.guard decides who may be called; the ladder rings approved experts in rank order
until one answers; the call is bridged; the expert gives a verdict; the call ends. Every step is an
``EscalationEvent`` (on the API's event stream) and a witness entry.
"""

from __future__ import annotations

import enum
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Hazards the council may escalate (configurable; these are the defaults of the first design).
DEFAULT_HAZARDS = ("safety", "alignment", "ethics", "bias", "security", "privacy")

_TRACE_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}\Z")


class Urgency(enum.Enum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"


class EscalationState(enum.Enum):
    """Where an escalation is (the machine's states, escalation/machine.py)."""

    REQUESTED = "requested"  # accepted by the API, guard not yet asked
    APPROVED = "approved"  # guard permitted at least one expert
    RINGING = "ringing"  # an INVITE to ladder step n is outstanding
    CONNECTED = "connected"  # an expert answered; the call is up
    ENDED = "ended"  # final; ``outcome`` says how


class Outcome(enum.Enum):
    """How an escalation ended (``escalations_total{outcome}``)."""

    COMPLETED = "completed"  # an expert was connected and the call ended normally
    REJECTED = "rejected"  # guard permitted nobody
    NO_ANSWER = "no_answer"  # every approved expert was tried; none answered
    CANCELLED = "cancelled"  # the council cancelled it
    TIMED_OUT = "timed_out"  # the overall deadline passed before anyone answered
    FAILED = "failed"  # an internal failure (e.g. the process died mid-escalation)


class Verdict(enum.Enum):
    """The expert's verdict by DTMF (1, 2, 3)."""

    APPROVE = "approve"
    REJECT = "reject"
    NEED_MORE_INFO = "need_more_info"


class InvalidRequest(ValueError):
    """An escalation request that cannot be accepted; ``errors`` lists field -> reason (API 422)."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    """One piece of evidence the expert may see (served later through signed links)."""

    name: str
    sensitivity: int = 0
    content_type: str = "text/plain"
    content: str = ""

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 200:
            raise InvalidRequest({"evidence.name": "must be 1-200 characters"})
        if not 0 <= self.sensitivity <= 10:
            raise InvalidRequest({"evidence.sensitivity": "must be 0-10"})


@dataclass(frozen=True, slots=True)
class EscalationRequest:
    """What a council agent posts. ``requester`` comes from the API token, never from the body."""

    hazard: str
    question: str
    requester: str
    urgency: Urgency = Urgency.NORMAL
    evidence: tuple[EvidenceItem, ...] = ()
    trace_id: str | None = None
    hazards: tuple[str, ...] = field(default=DEFAULT_HAZARDS, compare=False, repr=False)

    def __post_init__(self) -> None:
        errors: dict[str, str] = {}
        if self.hazard not in self.hazards:
            errors["hazard"] = f"must be one of {', '.join(self.hazards)}"
        if not self.question.strip() or len(self.question) > 4000:
            errors["question"] = "must be 1-4000 characters"
        if not self.requester:
            errors["requester"] = "missing"
        if self.trace_id is not None and not _TRACE_RE.match(self.trace_id):
            errors["trace_id"] = "must be 1-128 characters of A-Z a-z 0-9 . _ : -"
        if errors:
            raise InvalidRequest(errors)

    @property
    def sensitivity(self) -> int:
        """The most sensitive evidence decides the clearance an expert needs."""
        return max((e.sensitivity for e in self.evidence), default=0)


@dataclass(frozen=True, slots=True)
class EscalationEvent:
    """One step of an escalation, as the council sees it on the event stream."""

    escalation_id: str
    seq: int  # per escalation, from 1
    type: str  # the witness event type name, e.g. "RINGING"
    time: float  # wall-clock seconds
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "escalation_id": self.escalation_id,
            "seq": self.seq,
            "type": self.type,
            "time": self.time,
            "details": dict(self.details),
        }


@dataclass(frozen=True, slots=True)
class LadderStep:
    """One approved expert on the ladder and what happened when we rang them."""

    expert_id: str
    sip_uri: str
    rank: int
    result: str | None = None  # None while untried/ringing; "answered", "busy", "declined", ...


@dataclass(frozen=True, slots=True)
class EscalationView:
    """A snapshot of an escalation for the API (``GET /v1/escalations/{id}``)."""

    id: str
    trace_id: str
    state: EscalationState
    outcome: Outcome | None
    hazard: str
    question: str
    requester: str
    urgency: Urgency
    created_at: float
    updated_at: float
    ladder: tuple[LadderStep, ...] = ()
    connected_expert: str | None = None
    verdict: Verdict | None = None
    guard_policy_ids: tuple[str, ...] = ()
    end_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "trace_id": self.trace_id,
            "state": self.state.value,
            "outcome": self.outcome.value if self.outcome else None,
            "hazard": self.hazard,
            "question": self.question,
            "requester": self.requester,
            "urgency": self.urgency.value,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "ladder": [
                {"expert_id": s.expert_id, "sip_uri": s.sip_uri, "rank": s.rank, "result": s.result}
                for s in self.ladder
            ],
            "connected_expert": self.connected_expert,
            "verdict": self.verdict.value if self.verdict else None,
            "guard_policy_ids": list(self.guard_policy_ids),
            "end_reason": self.end_reason,
        }


class ServiceUnavailable(RuntimeError):
    """The service cannot take escalations now (e.g. the witness chain is broken): API 503."""


class UnknownEscalation(KeyError):
    """No escalation with that id (API 404)."""


class EscalationService(Protocol):
    """What the HTTP API needs from the escalation service (escalation/service.py implements it)."""

    async def create(
        self, request: EscalationRequest, *, idempotency_key: str | None = None
    ) -> EscalationView:
        """Accept a request (returns at once; the ladder runs in the background). The same
        idempotency key from the same requester returns the first escalation, not a new one."""
        ...

    def get(self, escalation_id: str) -> EscalationView:
        """Raises UnknownEscalation."""
        ...

    def list(self, *, limit: int = 100) -> list[EscalationView]: ...

    async def cancel(self, escalation_id: str, *, by: str) -> EscalationView:
        """Cancel (CANCEL a ringing INVITE, BYE a connected call). Raises UnknownEscalation."""
        ...

    def events(self, escalation_id: str, *, after: int = 0) -> AsyncIterator[EscalationEvent]:
        """Past events after ``after``, then live ones until the escalation ends."""
        ...
