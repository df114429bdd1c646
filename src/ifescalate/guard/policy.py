"""Cedar policy decisions for IF.guard, fail closed.

The policy set and its schema are parsed and validated once, at start-up: a set that does not
validate against the schema refuses to load with an error naming the offending policy by its
``@id``. Each decision then evaluates against pre-parsed handles.

Cedar semantics (default deny, forbid overrides permit) make the *determining policies* of a
decision its explanation: for a permit, the permits that matched; for a denial, the forbids that
matched. Cedar *skips* a policy whose evaluation errors, so an erroring forbid would otherwise
let a request through. We therefore deny whenever Cedar reports any evaluation error.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import cedarpy

from .errors import PolicyValidationError
from .model import Expert

__all__ = [
    "ACTION",
    "Decision",
    "EscalationFacts",
    "PolicyEngine",
    "RequestFacts",
    "default_policy_text",
    "default_schema_text",
]

ACTION: dict[str, str] = {"type": "Action", "id": "escalate"}
_POLICY_REF = re.compile(r"`(policy\d+)`")


def default_schema_text() -> str:
    return resources.files(__package__).joinpath("policies/schema.cedarschema").read_text("utf-8")


def default_policy_text() -> str:
    return resources.files(__package__).joinpath("policies/default.cedar").read_text("utf-8")


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one authorization, as recorded in the witness (GUARD_DECISION).

    ``policy_ids`` are the ``@id`` values of the determining policies: the matching permits
    for a permit, the matching forbids for a denial (empty when nothing matched at all).
    ``errors`` are evaluation errors; any error makes the decision a denial.
    """

    permit: bool
    policy_ids: tuple[str, ...]
    errors: tuple[str, ...]
    policy_set_hash: str
    eval_seconds: float

    def __post_init__(self) -> None:
        if self.permit and self.errors:
            raise ValueError("a decision with evaluation errors cannot permit (fail closed)")


@dataclass(frozen=True, slots=True)
class EscalationFacts:
    """The resource: what is being escalated and how sensitive its evidence is."""

    hazard: str
    sensitivity: int
    escalation_id: str = "pending"

    def __post_init__(self) -> None:
        if not self.hazard:
            raise ValueError("hazard is empty")
        if isinstance(self.sensitivity, bool) or not isinstance(self.sensitivity, int):
            raise ValueError("sensitivity must be an integer")
        if self.sensitivity < 0:
            raise ValueError("sensitivity must be >= 0")


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """Facts computed at request time for one expert."""

    available: bool
    org_approved: bool
    rate_limited: bool
    recent_calls: int = 0


class PolicyEngine:
    """A validated, pre-parsed Cedar policy set and schema, and the decisions made with them."""

    def __init__(
        self,
        policies: str,
        schema: str,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._clock = clock
        try:
            self._schema = cedarpy.Schema.from_str(schema)
        except ValueError as exc:
            raise PolicyValidationError(f"Cedar schema is invalid: {exc}") from None
        try:
            self._policies = cedarpy.PolicySet.from_str(policies)
            est: dict[str, Any] = json.loads(cedarpy.policies_to_json_str(policies))
        except ValueError as exc:
            raise PolicyValidationError(f"Cedar policies do not parse: {exc}") from None
        self._names = _policy_names(est)
        _validate(policies, self._schema, self._names)
        self.canonical_text = _canonical_text(est, self._names)
        self.policy_set_hash = hashlib.sha256(self.canonical_text.encode("utf-8")).hexdigest()

    @classmethod
    def default(cls, *, clock: Callable[[], float] = time.perf_counter) -> PolicyEngine:
        """The shipped schema and default policies (package data under guard/policies/)."""
        return cls(default_policy_text(), default_schema_text(), clock=clock)

    @classmethod
    def from_files(
        cls,
        policy_files: Sequence[str | Path],
        schema_file: str | Path | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> PolicyEngine:
        """Loads operator policy files (concatenated in the given order) and an optional schema."""
        texts = [Path(p).read_text("utf-8") for p in policy_files]
        schema = Path(schema_file).read_text("utf-8") if schema_file else default_schema_text()
        return cls("\n".join(texts), schema, clock=clock)

    @property
    def policy_ids(self) -> tuple[str, ...]:
        """The ``@id`` of every policy, in source order."""
        return tuple(self._names.values())

    def decide(self, expert: Expert, escalation: EscalationFacts, facts: RequestFacts) -> Decision:
        return self.decide_batch(escalation, [(expert, facts)])[0]

    def decide_batch(
        self, escalation: EscalationFacts, subjects: Sequence[tuple[Expert, RequestFacts]]
    ) -> list[Decision]:
        """One decision per (expert, facts), evaluated in a single Cedar batch.

        Per-decision ``eval_seconds`` is the batch time divided evenly: the batch shares one
        entity parse, so that is the honest per-decision cost.
        """
        if not subjects:
            return []
        started = self._clock()
        entities = [_resource_entity(escalation)]
        entities.extend(_expert_entity(e, f) for e, f in subjects)
        resource = {"type": "Escalation", "id": escalation.escalation_id}
        requests = [
            {
                "principal": {"type": "Expert", "id": e.id},
                "action": ACTION,
                "resource": resource,
                "context": _context(f),
            }
            for e, f in subjects
        ]
        try:
            results = cedarpy.is_authorized_batch(
                requests, self._policies, entities, schema=self._schema
            )
        except (ValueError, TypeError, KeyError, RuntimeError) as exc:
            # The request or entities did not fit the schema: nobody is permitted.
            elapsed = (self._clock() - started) / len(subjects)
            error = f"authorization request rejected: {exc}"
            return [Decision(False, (), (error,), self.policy_set_hash, elapsed) for _ in subjects]
        elapsed = (self._clock() - started) / len(subjects)
        return [self._to_decision(r, elapsed) for r in results]

    def _to_decision(self, result: cedarpy.AuthzResult, elapsed: float) -> Decision:
        diagnostics = result.diagnostics
        errors = tuple(self._rename(str(e)) for e in diagnostics.errors)
        reasons = tuple(self._names.get(str(r), str(r)) for r in diagnostics.reasons)
        permit = result.allowed and not errors  # fail closed
        return Decision(permit, reasons, errors, self.policy_set_hash, elapsed)

    def _rename(self, message: str) -> str:
        """Cedar names policies by position (policy3); operators know them by @id."""
        return _POLICY_REF.sub(lambda m: f"`{self._names.get(m.group(1), m.group(1))}`", message)


def _policy_names(est: dict[str, Any]) -> dict[str, str]:
    """Maps Cedar's positional ids to the mandatory, unique ``@id`` annotations."""
    if est.get("templates"):
        raise PolicyValidationError("policy templates are not supported in the guard policy set")
    names: dict[str, str] = {}
    for cedar_id, policy in est.get("staticPolicies", {}).items():
        name = str(policy.get("annotations", {}).get("id", ""))
        if not name:
            text = cedarpy.policies_from_json_str(
                json.dumps(
                    {"staticPolicies": {cedar_id: policy}, "templates": {}, "templateLinks": []}
                )
            )
            raise PolicyValidationError(
                f"policy {cedar_id} has no @id annotation: {text.strip()[:120]}", (cedar_id,)
            )
        if name in names.values():
            raise PolicyValidationError(f"duplicate policy @id {name!r}", (name,))
        names[cedar_id] = name
    if not names:
        raise PolicyValidationError("the policy set is empty")
    return names


def _validate(policies: str, schema: cedarpy.Schema, names: dict[str, str]) -> None:
    result = cedarpy.validate_policies(policies, schema)
    if result.validation_passed:
        return
    ids = tuple(dict.fromkeys(names.get(e.policy_id, e.policy_id) for e in result.errors))
    details = "; ".join(
        f"[{names.get(e.policy_id, e.policy_id)}] "
        f"{_POLICY_REF.sub(lambda m: '`' + names.get(m.group(1), m.group(1)) + '`', e.error)}"
        for e in result.errors
    )
    raise PolicyValidationError(
        f"Cedar policy set does not validate against the schema; policy {', '.join(ids)}: "
        f"{details}",
        ids,
    )


def _canonical_text(est: dict[str, Any], names: dict[str, str]) -> str:
    """Each policy rendered by Cedar from its parsed form, sorted by @id.

    Comments, whitespace and policy order do not change the hash; any semantic edit does.
    """
    by_name = {names[k]: v for k, v in est["staticPolicies"].items()}
    parts = []
    for name in sorted(by_name):
        doc = {"staticPolicies": {"policy0": by_name[name]}, "templates": {}, "templateLinks": []}
        parts.append(cedarpy.policies_from_json_str(json.dumps(doc)).strip())
    return "\n".join(parts) + "\n"


def _expert_entity(expert: Expert, facts: RequestFacts) -> dict[str, Any]:
    return {
        "uid": {"type": "Expert", "id": expert.id},
        "attrs": {
            "org": expert.org,
            "specializations": sorted(expert.specializations),
            "clearance": expert.clearance,
            "suspended": expert.suspended,
            "available": facts.available,
            "calls_per_minute": expert.calls_per_minute,
        },
        "parents": [],
    }


def _resource_entity(escalation: EscalationFacts) -> dict[str, Any]:
    return {
        "uid": {"type": "Escalation", "id": escalation.escalation_id},
        "attrs": {"hazard": escalation.hazard, "sensitivity": escalation.sensitivity},
        "parents": [],
    }


def _context(facts: RequestFacts) -> dict[str, Any]:
    return {
        "org_approved": facts.org_approved,
        "within_window": facts.available,
        "rate_limited": facts.rate_limited,
        "recent_calls": facts.recent_calls,
    }
