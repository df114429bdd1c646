"""Matching and ranking: who is a candidate, in what order, and why the others were denied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ifescalate.guard import (
    Expert,
    Guard,
    GuardConfig,
    PolicyEngine,
    SqliteRegistry,
    UnknownHazard,
)

# Wednesday 2025-06-04 10:00Z = 12:00 in Berlin (CEST).
NOW = datetime(2025, 6, 4, 10, 0, tzinfo=UTC)


def make(expert_id: str, **kw: object) -> Expert:
    data: dict[str, object] = {
        "id": expert_id,
        "name": expert_id,
        "sip_uri": f"sip:{expert_id}@example.org",
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


def guard_with(engine: PolicyEngine, *experts: Expert, config: GuardConfig | None = None) -> Guard:
    registry = SqliteRegistry(":memory:")
    for e in experts:
        registry.add(e)
    return Guard(registry, engine, config)


def ids(candidates: list) -> list[str]:  # type: ignore[type-arg]
    return [c.expert.id for c in candidates]


def test_ranking_order(engine: PolicyEngine) -> None:
    guard = guard_with(
        engine,
        make("generalist", specializations=["*"]),  # wildcard: after every exact match
        make("broad", specializations=["safety", "bias", "ethics"]),
        make("narrow-busy", specializations=["safety"]),
        make("narrow-idle", specializations=["safety"]),
        make("narrow-b", specializations=["safety"]),
        make("narrow-a", specializations=["safety"]),
        make("pair", specializations=["safety", "alignment"]),
        # Exact and narrow, but only 10 minutes left in its window: after narrow experts with time.
        make("closing", specializations=["safety"], availability=["wed 08:00-10:10 UTC"]),
    )
    load = {"narrow-busy": 3, "narrow-idle": 0, "narrow-a": 1, "narrow-b": 1}
    ranked = guard.candidates("safety", 2, NOW, load)
    assert ids(ranked) == [
        "narrow-idle",  # exact, 1 specialization, plenty of window, load 0
        "narrow-a",  # load 1, id tie-break a < b
        "narrow-b",
        "narrow-busy",  # load 3
        "closing",  # 10 min left < 15 min threshold
        "pair",  # 2 specializations
        "broad",  # 3 specializations
        "generalist",  # wildcard
    ]
    assert [c.rank for c in ranked] == list(range(1, 9))
    assert all(c.permitted for c in ranked)
    assert ranked[-1].exact_match is False and ranked[0].exact_match is True
    assert ranked[4].window_remaining == timedelta(minutes=10)


def test_ranking_is_stable_regardless_of_insertion_order(engine: PolicyEngine) -> None:
    experts = [make(f"e{i:02d}") for i in range(12)]
    forward = ids(guard_with(engine, *experts).candidates("safety", 1, NOW))
    backward = ids(guard_with(engine, *reversed(experts)).candidates("safety", 1, NOW))
    assert forward == backward == sorted(forward)


def test_denied_are_returned_after_permitted_with_reasons(engine: PolicyEngine) -> None:
    guard = guard_with(
        engine,
        make("ok"),
        make("low", clearance=1),
        make("off", availability=["sat 00:00-24:00 UTC"]),
        make("gone", suspended=True),
        make("busy", calls_per_minute=2),
        make("other-hazard", specializations=["bias"]),
    )
    result = guard.candidates("safety", 2, NOW, {"busy": 2})
    assert ids(result) == ["ok", "busy", "gone", "low", "off"]  # denied sorted by id
    assert "other-hazard" not in ids(result)  # not covering the hazard: not a candidate
    reasons = {c.expert.id: c.reasons for c in result}
    assert reasons == {
        "ok": ("escalate-allowed",),
        "busy": ("not-rate-limited",),
        "gone": ("expert-not-suspended",),
        "low": ("clearance-covers-sensitivity",),
        "off": ("within-availability-window",),
    }
    assert [c.rank for c in result] == [1, None, None, None, None]
    assert result[0].decision.policy_set_hash == engine.policy_set_hash


def test_window_evaluated_in_expert_zone(engine: PolicyEngine) -> None:
    guard = guard_with(
        engine,
        make("berlin", availability=["weekdays 08:00-18:00 Europe/Berlin"]),
        make("tokyo", availability=["weekdays 08:00-18:00 Asia/Tokyo"]),
    )
    # 10:00Z: 12:00 Berlin (open), 19:00 Tokyo (closed).
    result = {c.expert.id: c for c in guard.candidates("safety", 1, NOW)}
    assert result["berlin"].permitted and result["berlin"].window_remaining == timedelta(hours=6)
    assert result["tokyo"].reasons == ("within-availability-window",)
    assert result["tokyo"].window_remaining is None


def test_org_approval(engine: PolicyEngine) -> None:
    experts = (make("a", org="lab"), make("b", org="vendor"))
    config = GuardConfig(approved_orgs=frozenset({"lab"}))
    result = guard_with(engine, *experts, config=config).candidates("safety", 1, NOW)
    assert [(c.expert.id, c.permitted) for c in result] == [("a", True), ("b", False)]
    assert result[1].reasons == ("org-approved",)
    # A per-escalation restriction narrows further.
    open_guard = guard_with(engine, *experts)
    narrowed = open_guard.candidates("safety", 1, NOW, orgs={"vendor"})
    assert [(c.expert.id, c.permitted) for c in narrowed] == [("b", True), ("a", False)]


def test_unknown_hazard_and_naive_time(engine: PolicyEngine) -> None:
    guard = guard_with(engine, make("a"))
    with pytest.raises(UnknownHazard, match="weather"):
        guard.candidates("weather", 1, NOW)
    with pytest.raises(ValueError, match="aware"):
        guard.candidates("safety", 1, NOW.replace(tzinfo=None))
    custom = guard_with(
        engine, make("a", specializations=["*"]), config=GuardConfig(hazards=("weather",))
    )
    assert custom.candidates("weather", 1, NOW)[0].permitted


def test_registry_changes_are_seen(engine: PolicyEngine) -> None:
    guard = guard_with(engine, make("a"))
    assert guard.candidates("safety", 1, NOW)[0].permitted
    guard.registry.suspend("a")
    assert guard.candidates("safety", 1, NOW)[0].reasons == ("expert-not-suspended",)
    guard.registry.add(make("b"))
    assert ids(guard.candidates("safety", 1, NOW)) == ["b", "a"]


def test_decide_for_a_known_expert(engine: PolicyEngine) -> None:
    guard = guard_with(engine)
    bias_only = make("x", specializations=["bias"])
    d = guard.decide(bias_only, "safety", 1, NOW)
    assert not d.permit and d.policy_ids == ("specialization-covers-hazard",)
    assert guard.decide(make("y"), "safety", 1, NOW).permit


def test_contiguous_windows_count_as_one_span(engine: PolicyEngine) -> None:
    late = datetime(2025, 6, 4, 23, 55, tzinfo=UTC)
    guard = guard_with(
        engine,
        make("always"),
        make("split", availability=["wed 20:00-24:00 UTC", "thu 00:00-02:00 UTC"]),
    )
    result = {c.expert.id: c for c in guard.candidates("safety", 1, late)}
    assert result["split"].window_remaining == timedelta(hours=2, minutes=5)
    assert result["always"].window_remaining is not None
    assert result["always"].window_remaining > timedelta(days=6)


def test_empty_registry(engine: PolicyEngine) -> None:
    assert guard_with(engine).candidates("safety", 1, NOW) == []


def test_config_validates() -> None:
    with pytest.raises(ValueError):
        GuardConfig(hazards=())
    with pytest.raises(ValueError):
        GuardConfig(hazards=("a", "a"))
