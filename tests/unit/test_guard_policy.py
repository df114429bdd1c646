"""IF.guard Cedar decisions: each default policy's reason, permit, fail closed, start-up refusal."""

from __future__ import annotations

import hashlib
import json

import cedarpy
import pytest

from ifescalate.guard import (
    Decision,
    EscalationFacts,
    Expert,
    PolicyEngine,
    PolicyValidationError,
    RequestFacts,
)
from ifescalate.guard.policy import default_policy_text, default_schema_text

DEFAULT_IDS = (
    "escalate-allowed",
    "specialization-covers-hazard",
    "org-approved",
    "expert-not-suspended",
    "within-availability-window",
    "clearance-covers-sensitivity",
    "not-rate-limited",
)

OK = RequestFacts(available=True, org_approved=True, rate_limited=False, recent_calls=0)


def expert(**kw: object) -> Expert:
    data: dict[str, object] = {
        "id": "alice",
        "name": "Alice",
        "sip_uri": "sip:alice@example.org",
        "org": "lab",
        "specializations": ["safety"],
        "clearance": 3,
        "availability": ["always"],
    }
    data.update(kw)
    return Expert.from_dict(data)


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine.default()


def test_default_policy_ids_in_order(engine: PolicyEngine) -> None:
    assert engine.policy_ids == DEFAULT_IDS


def test_permit_names_the_permit_policy(engine: PolicyEngine) -> None:
    d = engine.decide(expert(), EscalationFacts("safety", 3), OK)
    assert d.permit
    assert d.policy_ids == ("escalate-allowed",)
    assert d.errors == ()
    assert d.policy_set_hash == engine.policy_set_hash
    assert d.eval_seconds > 0


@pytest.mark.parametrize(
    ("who", "escalation", "facts", "reason"),
    [
        (
            expert(specializations=["bias"]),
            EscalationFacts("safety", 1),
            OK,
            "specialization-covers-hazard",
        ),
        (
            expert(),
            EscalationFacts("safety", 1),
            RequestFacts(available=True, org_approved=False, rate_limited=False),
            "org-approved",
        ),
        (expert(suspended=True), EscalationFacts("safety", 1), OK, "expert-not-suspended"),
        (
            expert(),
            EscalationFacts("safety", 1),
            RequestFacts(available=False, org_approved=True, rate_limited=False),
            "within-availability-window",
        ),
        (expert(clearance=2), EscalationFacts("safety", 3), OK, "clearance-covers-sensitivity"),
        (
            expert(),
            EscalationFacts("safety", 1),
            RequestFacts(available=True, org_approved=True, rate_limited=True, recent_calls=10),
            "not-rate-limited",
        ),
    ],
)
def test_each_default_forbid_is_the_reason(
    engine: PolicyEngine, who: Expert, escalation: EscalationFacts, facts: RequestFacts, reason: str
) -> None:
    d = engine.decide(who, escalation, facts)
    assert not d.permit
    assert d.policy_ids == (reason,)
    assert d.errors == ()


def test_several_reasons_are_all_reported(engine: PolicyEngine) -> None:
    d = engine.decide(
        expert(suspended=True, clearance=0),
        EscalationFacts("safety", 2),
        RequestFacts(available=False, org_approved=True, rate_limited=False),
    )
    assert not d.permit
    assert set(d.policy_ids) == {
        "expert-not-suspended",
        "within-availability-window",
        "clearance-covers-sensitivity",
    }


def test_wildcard_specialization_covers_any_hazard(engine: PolicyEngine) -> None:
    d = engine.decide(expert(specializations=["*"]), EscalationFacts("privacy", 0), OK)
    assert d.permit


def test_sensitivity_equal_to_clearance_is_allowed(engine: PolicyEngine) -> None:
    assert engine.decide(expert(clearance=2), EscalationFacts("safety", 2), OK).permit
    assert not engine.decide(expert(clearance=2), EscalationFacts("safety", 3), OK).permit


# --- fail closed -------------------------------------------------------------------------------

# Validates against the schema (Long + Long is well typed) but overflows at run time whenever the
# expert has taken at least one call. Cedar *skips* an erroring policy, so on its own this forbid
# would let the request through.
OVERFLOW_TRAP = """
@id("overflow-trap")
forbid (principal is Expert, action == Action::"escalate", resource is Escalation)
when { context.recent_calls + 9223372036854775807 < 0 };
"""


def test_runtime_error_denies_and_is_reported() -> None:
    engine = PolicyEngine(default_policy_text() + OVERFLOW_TRAP, default_schema_text())
    facts = RequestFacts(available=True, org_approved=True, rate_limited=False, recent_calls=1)
    d = engine.decide(expert(), EscalationFacts("safety", 1), facts)
    assert not d.permit
    assert len(d.errors) == 1
    assert "overflow-trap" in d.errors[0]
    assert "overflow" in d.errors[0]
    # Without the error (recent_calls=0) the same engine permits: the error alone denied.
    assert engine.decide(expert(), EscalationFacts("safety", 1), OK).permit


def test_raw_cedar_would_have_allowed_the_erroring_request() -> None:
    """Documents why fail-closed is ours to do: Cedar says Allow with an error diagnostic."""
    policies = default_policy_text() + OVERFLOW_TRAP
    entities = [
        {
            "uid": {"type": "Expert", "id": "alice"},
            "attrs": {
                "org": "lab",
                "specializations": ["safety"],
                "clearance": 3,
                "suspended": False,
                "available": True,
                "calls_per_minute": 10,
            },
            "parents": [],
        },
        {
            "uid": {"type": "Escalation", "id": "e"},
            "attrs": {"hazard": "safety", "sensitivity": 1},
            "parents": [],
        },
    ]
    request = {
        "principal": {"type": "Expert", "id": "alice"},
        "action": {"type": "Action", "id": "escalate"},
        "resource": {"type": "Escalation", "id": "e"},
        "context": {
            "org_approved": True,
            "within_window": True,
            "rate_limited": False,
            "recent_calls": 1,
        },
    }
    raw = cedarpy.is_authorized(request, policies, entities, schema=default_schema_text())
    assert raw.allowed
    assert raw.diagnostics.errors


def test_request_not_matching_schema_denies_every_subject() -> None:
    # A schema that wants an attribute the guard does not send: entity validation fails.
    schema = default_schema_text().replace("available: Bool,", "available: Bool,\n  badge: String,")
    engine = PolicyEngine(default_policy_text(), schema)
    decisions = engine.decide_batch(
        EscalationFacts("safety", 1), [(expert(), OK), (expert(id="bob"), OK)]
    )
    assert [d.permit for d in decisions] == [False, False]
    assert all("badge" in d.errors[0] for d in decisions)


def test_decision_refuses_permit_with_errors() -> None:
    with pytest.raises(ValueError, match="fail closed"):
        Decision(True, ("escalate-allowed",), ("boom",), "0" * 64, 0.0)


# --- start-up validation -----------------------------------------------------------------------


def test_invalid_policy_refuses_to_start_naming_the_policy() -> None:
    bad = default_policy_text() + (
        '\n@id("nickname-check")\n'
        'forbid (principal is Expert, action == Action::"escalate", resource is Escalation)\n'
        'when { principal.nickname == "x" };\n'
    )
    with pytest.raises(PolicyValidationError) as info:
        PolicyEngine(bad, default_schema_text())
    assert info.value.policy_ids == ("nickname-check",)
    assert "nickname-check" in str(info.value)
    assert "nickname" in str(info.value)


def test_type_error_names_the_policy() -> None:
    bad = default_policy_text().replace(
        "when { resource.sensitivity > principal.clearance }",
        "when { resource.sensitivity > principal.org }",
    )
    with pytest.raises(PolicyValidationError) as info:
        PolicyEngine(bad, default_schema_text())
    assert info.value.policy_ids == ("clearance-covers-sensitivity",)


def test_unknown_action_is_refused() -> None:
    bad = default_policy_text() + (
        '\n@id("wrong-action")\npermit (principal, action == Action::"escalte", resource);\n'
    )
    with pytest.raises(PolicyValidationError) as info:
        PolicyEngine(bad, default_schema_text())
    assert "wrong-action" in info.value.policy_ids


def test_policy_without_id_is_refused() -> None:
    with pytest.raises(PolicyValidationError, match="no @id"):
        PolicyEngine(
            default_policy_text() + "\nforbid (principal, action, resource);\n",
            default_schema_text(),
        )


def test_duplicate_id_is_refused() -> None:
    dup = default_policy_text() + '\n@id("org-approved")\nforbid (principal, action, resource);\n'
    with pytest.raises(PolicyValidationError, match="duplicate") as info:
        PolicyEngine(dup, default_schema_text())
    assert info.value.policy_ids == ("org-approved",)


def test_parse_error_is_refused() -> None:
    with pytest.raises(PolicyValidationError, match="do not parse"):
        PolicyEngine('@id("x")\npermit (principal, action, resource', default_schema_text())


def test_bad_schema_is_refused() -> None:
    with pytest.raises(PolicyValidationError, match="schema"):
        PolicyEngine(default_policy_text(), "entity Expert = { clearance: Lng };")


def test_templates_are_refused() -> None:
    text = '@id("t")\npermit (principal == ?principal, action, resource);\n'
    with pytest.raises(PolicyValidationError, match="template"):
        PolicyEngine(text, default_schema_text())


# --- policy set hash ---------------------------------------------------------------------------


def test_hash_is_sha256_of_canonical_text(engine: PolicyEngine) -> None:
    assert engine.policy_set_hash == hashlib.sha256(engine.canonical_text.encode()).hexdigest()
    assert '@id("org-approved")' in engine.canonical_text
    assert "//" not in engine.canonical_text


def test_hash_ignores_comments_whitespace_and_order(engine: PolicyEngine) -> None:
    chunks = default_policy_text().split("\n\n")
    reordered = "\n\n".join(reversed(chunks)).replace("forbid (", "forbid  (") + "\n// trailing\n"
    assert PolicyEngine(reordered, default_schema_text()).policy_set_hash == engine.policy_set_hash


def test_hash_changes_on_a_semantic_edit(engine: PolicyEngine) -> None:
    edited = default_policy_text().replace(
        "resource.sensitivity > principal.clearance",
        "resource.sensitivity > principal.clearance + 1",
    )
    assert PolicyEngine(edited, default_schema_text()).policy_set_hash != engine.policy_set_hash


def test_from_files(tmp_path: object) -> None:
    from pathlib import Path

    base = Path(str(tmp_path))
    (base / "a.cedar").write_text(default_policy_text())
    (base / "b.cedar").write_text(OVERFLOW_TRAP)
    engine = PolicyEngine.from_files([base / "a.cedar", base / "b.cedar"])
    assert engine.policy_ids[-1] == "overflow-trap"


def test_batch_matches_single_decisions(engine: PolicyEngine) -> None:
    subjects = [
        (expert(id="a"), OK),
        (expert(id="b", suspended=True), OK),
        (expert(id="c", clearance=0), OK),
    ]
    esc = EscalationFacts("safety", 1)
    batch = engine.decide_batch(esc, subjects)
    single = [engine.decide(e, esc, f) for e, f in subjects]
    assert [(d.permit, d.policy_ids) for d in batch] == [(d.permit, d.policy_ids) for d in single]
    assert engine.decide_batch(esc, []) == []


def test_escalation_facts_validate() -> None:
    with pytest.raises(ValueError):
        EscalationFacts("safety", -1)
    with pytest.raises(ValueError):
        EscalationFacts("", 1)
    with pytest.raises(ValueError):
        EscalationFacts("safety", True)


def test_canonical_text_round_trips_through_cedar(engine: PolicyEngine) -> None:
    again = PolicyEngine(engine.canonical_text, default_schema_text())
    assert again.policy_set_hash == engine.policy_set_hash
    assert json.loads(cedarpy.policies_to_json_str(engine.canonical_text))["staticPolicies"]
