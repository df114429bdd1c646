"""Matching and ranking: which experts may take this escalation, best first, and why not the rest.

Experts whose specializations do not cover the hazard are not candidates at all (they would only
add noise to the witness); every expert who covers it is put to Cedar in one batch. Permitted
experts are ranked; denied ones come back too, each with the policy ids that denied them.

Ranking of permitted experts, most important first:

1. specialization fit: an exact hazard match before a generalist (``*``);
2. fewer specializations first (more specialized);
3. availability: experts with at least ``min_window_seconds`` left in their window first;
4. recent load: fewer calls in the last minute first;
5. expert id, so equal experts always come out in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .availability import require_aware
from .errors import UnknownHazard
from .model import DEFAULT_HAZARDS, Expert
from .policy import Decision, EscalationFacts, PolicyEngine, RequestFacts
from .registry import Registry

__all__ = ["Candidate", "Guard", "GuardConfig"]


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """``approved_orgs=None`` approves every organisation in the registry."""

    hazards: tuple[str, ...] = DEFAULT_HAZARDS
    approved_orgs: frozenset[str] | None = None
    min_window_seconds: float = 900.0

    def __post_init__(self) -> None:
        if not self.hazards or len(set(self.hazards)) != len(self.hazards):
            raise ValueError("hazards must be a non-empty list without duplicates")
        if self.min_window_seconds < 0:
            raise ValueError("min_window_seconds must be >= 0")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One expert considered for an escalation. ``rank`` is 1-based for permitted experts."""

    expert: Expert
    decision: Decision
    exact_match: bool
    window_remaining: timedelta | None
    recent_calls: int
    rank: int | None = None

    @property
    def permitted(self) -> bool:
        return self.decision.permit

    @property
    def reasons(self) -> tuple[str, ...]:
        return self.decision.policy_ids


@dataclass(slots=True)
class _Snapshot:
    revision: int = -1
    experts: list[Expert] = field(default_factory=list)


class Guard:
    """IF.guard: the registry plus the policy engine."""

    def __init__(
        self,
        registry: Registry,
        engine: PolicyEngine,
        config: GuardConfig | None = None,
    ) -> None:
        self.registry = registry
        self.engine = engine
        self.config = config or GuardConfig()
        self._snapshot = _Snapshot()

    def experts(self) -> list[Expert]:
        """The registry's experts, re-read only when its revision changed."""
        revision = self.registry.revision()
        if revision != self._snapshot.revision:
            self._snapshot = _Snapshot(revision, self.registry.list())
        return self._snapshot.experts

    def facts(
        self,
        expert: Expert,
        now: datetime,
        load: Mapping[str, int],
        orgs: Collection[str] | None = None,
    ) -> RequestFacts:
        """The request-time facts Cedar sees for *expert* (availability, org, rate limit)."""
        recent = load.get(expert.id, 0)
        approved = self.config.approved_orgs
        return RequestFacts(
            available=any(w.contains(now) for w in expert.availability),
            org_approved=(approved is None or expert.org in approved)
            and (orgs is None or expert.org in orgs),
            rate_limited=recent >= expert.calls_per_minute,
            recent_calls=recent,
        )

    def decide(
        self,
        expert: Expert,
        hazard: str,
        sensitivity: int,
        now: datetime,
        load: Mapping[str, int] | None = None,
        *,
        escalation_id: str = "pending",
        orgs: Collection[str] | None = None,
    ) -> Decision:
        """One decision for a known expert (e.g. an expert calling in)."""
        escalation = self._escalation(hazard, sensitivity, escalation_id)
        require_aware(now)
        return self.engine.decide(expert, escalation, self.facts(expert, now, load or {}, orgs))

    def candidates(
        self,
        hazard: str,
        sensitivity: int,
        now: datetime,
        load: Mapping[str, int] | None = None,
        *,
        escalation_id: str = "pending",
        orgs: Collection[str] | None = None,
    ) -> list[Candidate]:
        """Permitted experts ranked best first, then denied ones (by id) with their reasons.

        *load* maps expert id to calls taken in the last 60 s; *orgs*, when given, further
        restricts the approved organisations for this escalation.
        """
        escalation = self._escalation(hazard, sensitivity, escalation_id)
        require_aware(now)
        load = load or {}
        pool = [e for e in self.experts() if e.covers(hazard)]
        subjects = [(e, self.facts(e, now, load, orgs)) for e in pool]
        decisions = self.engine.decide_batch(escalation, subjects)
        found = [
            Candidate(
                expert=e,
                decision=d,
                exact_match=hazard in e.specializations,
                window_remaining=_remaining(e, now),
                recent_calls=f.recent_calls,
            )
            for (e, f), d in zip(subjects, decisions, strict=True)
        ]
        return _ranked(found, self.config.min_window_seconds)

    def _escalation(self, hazard: str, sensitivity: int, escalation_id: str) -> EscalationFacts:
        if hazard not in self.config.hazards:
            raise UnknownHazard(
                f"unknown hazard {hazard!r}; known: {', '.join(self.config.hazards)}"
            )
        return EscalationFacts(hazard, sensitivity, escalation_id)


def _remaining(expert: Expert, now: datetime) -> timedelta | None:
    """Time left before the expert becomes unavailable, following back-to-back windows
    ("daily 00:00-24:00" or "mon 22:00-24:00" + "tue 00:00-06:00") for up to a week."""
    total: timedelta | None = None
    at = now
    for _ in range(8):
        spans = [r for w in expert.availability if (r := w.remaining(at)) is not None]
        step = max(spans, default=timedelta(0))
        if not spans or step <= timedelta(0):
            break
        total = step if total is None else total + step
        at = at + step
    return total


def _rank_key(min_window: float) -> Callable[[Candidate], tuple[int, int, int, int, str]]:
    def key(c: Candidate) -> tuple[int, int, int, int, str]:
        left = c.window_remaining.total_seconds() if c.window_remaining is not None else 0.0
        return (
            0 if c.exact_match else 1,
            len(c.expert.specializations),
            0 if left >= min_window else 1,
            c.recent_calls,
            c.expert.id,
        )

    return key


def _ranked(found: Sequence[Candidate], min_window: float) -> list[Candidate]:
    permitted = sorted((c for c in found if c.permitted), key=_rank_key(min_window))
    denied = sorted((c for c in found if not c.permitted), key=lambda c: c.expert.id)
    ranked = [
        Candidate(c.expert, c.decision, c.exact_match, c.window_remaining, c.recent_calls, i)
        for i, c in enumerate(permitted, start=1)
    ]
    return ranked + denied
