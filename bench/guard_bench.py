"""IF.guard decision latency for a 50-expert registry: p50/p99, target p99 < 2 ms per decision.

Runs in one invocation, each figure next to its reference:

* ``decide``       one expert, one Cedar decision through PolicyEngine (pre-parsed policies, schema)
* ``raw cedarpy``  the same request straight through cedarpy.is_authorized with policy and schema
                   *text* (parsed on every call): what the pre-parsed handles save
* ``candidates``   Guard.candidates over the whole registry (SQLite revision check, availability
                   windows, one Cedar batch, ranking), and that time divided per expert

Usage: python bench/guard_bench.py [--experts 50] [--rounds 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import cedarpy

from ifescalate.guard import (
    DEFAULT_HAZARDS,
    EscalationFacts,
    Expert,
    Guard,
    PolicyEngine,
    RequestFacts,
    SqliteRegistry,
)
from ifescalate.guard.policy import default_policy_text, default_schema_text

NOW = datetime(2025, 6, 4, 10, 0, tzinfo=UTC)  # a Wednesday; Berlin office hours are open
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC", "Australia/Sydney")


def registry_of(n: int) -> SqliteRegistry:
    registry = SqliteRegistry(":memory:")
    for i in range(n):
        hazards = [DEFAULT_HAZARDS[i % 6], DEFAULT_HAZARDS[(i * 5 + 1) % 6]]
        registry.add(
            Expert.from_dict(
                {
                    "id": f"expert-{i:03d}",
                    "name": f"Expert {i}",
                    "sip_uri": f"sips:e{i}@experts.example.org",
                    "org": f"org{i % 4}",
                    "networks": [f"10.{i}.0.0/16"],
                    "specializations": sorted(set(hazards)),
                    "clearance": i % 5,
                    "availability": [f"weekdays 08:00-18:00 {ZONES[i % len(ZONES)]}"],
                    "suspended": i % 17 == 0,
                }
            )
        )
    return registry


def measure(fn: Callable[[], object], rounds: int) -> list[float]:
    for _ in range(min(50, rounds)):  # warm caches and the allocator
        fn()
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return samples


def row(name: str, samples: list[float], per: int = 1) -> str:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return (
        f"{name:<34} p50 {q[49] / per:7.3f} ms   p99 {q[98] / per:7.3f} ms   "
        f"max {max(samples) / per:7.3f} ms   n={len(samples)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()

    t0 = time.perf_counter()
    engine = PolicyEngine.default()
    startup_ms = (time.perf_counter() - t0) * 1e3
    registry = registry_of(args.experts)
    guard = Guard(registry, engine)
    experts = registry.list()
    expert = next(e for e in experts if e.covers("safety") and not e.suspended)
    escalation = EscalationFacts("safety", 1)
    facts = RequestFacts(available=True, org_approved=True, rate_limited=False, recent_calls=0)

    single = measure(lambda: engine.decide(expert, escalation, facts), args.rounds)

    policies, schema = default_policy_text(), default_schema_text()
    entities = [
        {
            "uid": {"type": "Expert", "id": expert.id},
            "attrs": {
                "org": expert.org,
                "specializations": sorted(expert.specializations),
                "clearance": expert.clearance,
                "suspended": expert.suspended,
                "available": True,
                "calls_per_minute": expert.calls_per_minute,
            },
            "parents": [],
        },
        {
            "uid": {"type": "Escalation", "id": "pending"},
            "attrs": {"hazard": "safety", "sensitivity": 1},
            "parents": [],
        },
    ]
    request = {
        "principal": {"type": "Expert", "id": expert.id},
        "action": {"type": "Action", "id": "escalate"},
        "resource": {"type": "Escalation", "id": "pending"},
        "context": {
            "org_approved": True,
            "within_window": True,
            "rate_limited": False,
            "recent_calls": 0,
        },
    }
    raw = measure(
        lambda: cedarpy.is_authorized(request, policies, entities, schema=schema), args.rounds
    )

    load = {e.id: i % 4 for i, e in enumerate(experts)}
    found = guard.candidates("safety", 1, NOW, load)
    pool = len(found)
    full = measure(lambda: guard.candidates("safety", 1, NOW, load), max(200, args.rounds // 4))

    permitted = sum(c.permitted for c in found)
    print(
        f"IF.guard bench: {args.experts} experts, default policy set {engine.policy_set_hash[:16]}"
    )
    print(f"policy set load + validation at start-up: {startup_ms:.1f} ms")
    print(row("decide (1 expert, pre-parsed)", single))
    print(row("reference: raw cedarpy, text args", raw))
    print(row(f"candidates ({pool} covering 'safety')", full))
    print(row("candidates per expert decision", full, per=max(pool, 1)))
    print(f"candidates: {permitted} permitted, {pool - permitted} denied with reasons")
    p99 = statistics.quantiles(single, n=100, method="inclusive")[98]
    verdict = "PASS" if p99 < 2.0 else "FAIL"
    print(f"target: decision p99 < 2 ms -> {verdict} ({p99:.3f} ms)")


if __name__ == "__main__":
    main()
