"""security.availability in virtual time: the breaker opens on the first backend failure, refuses
at once while open (the backend is not called), closes only on a successful probe, and the
pipeline turns an outage into a 503 with Retry-After under the failing layer."""

from __future__ import annotations

import asyncio

import pytest

from ifescalate.security import (
    AuthFacts,
    AuthOutcome,
    Layer,
    MemoryCounters,
    Pipeline,
    Reject,
    RequestFacts,
    SecurityConfig,
)
from ifescalate.security.availability import (
    COUNTERS_UNAVAILABLE,
    UNAVAILABLE_PHRASE,
    CountersUnavailable,
    GuardedCounters,
)
from ifescalate.security.counters import Hit


class Switchable(MemoryCounters):
    """The in-memory backend with a switch that makes every call fail as a dead Redis does (the
    real fault is caused in tests/security/test_counters_outage.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    async def hit_and_block(
        self, key: str, now: float, window: float, threshold: int, block_for: float
    ) -> Hit:
        self.calls += 1
        if self.down:
            raise CountersUnavailable("redis: ConnectionError: refused")
        return await super().hit_and_block(key, now, window, threshold, block_for)

    async def blocked_until(self, key: str, now: float) -> float | None:
        self.calls += 1
        if self.down:
            raise CountersUnavailable("redis: ConnectionError: refused")
        return await super().blocked_until(key, now)

    async def ping(self) -> None:
        if self.down:
            raise CountersUnavailable("redis: ConnectionError: refused")


def test_breaker_opens_once_refuses_without_io_and_closes_on_probe() -> None:
    now = [100.0]
    inner = Switchable()
    guarded = GuardedCounters(inner, lambda: now[0])
    outages: list[str] = []
    guarded.on_down = outages.append

    async def run() -> None:
        await guarded.hit_and_block("k", now[0], 10, 5, 60)
        inner.down = True
        for _ in range(3):
            with pytest.raises(CountersUnavailable):
                await guarded.hit_and_block("k", now[0], 10, 5, 60)
        assert inner.calls == 2  # one real try, then refused without touching the backend
        assert outages == ["redis: ConnectionError: refused"]
        now[0] = 104.0
        assert guarded.health.problem(now[0]) == (
            "security counters unreachable for 4.0 s: redis: ConnectionError: refused"
        )
        with pytest.raises(CountersUnavailable):
            await guarded.probe()
        inner.down = False
        await guarded.probe()
        assert guarded.health.refused == 3
        assert guarded.health.recovered(now[0]) == 4.0
        assert guarded.health.up and guarded.health.problem(now[0]) is None
        await guarded.hit_and_block("k", now[0], 10, 5, 60)

    asyncio.run(run())


def test_pipeline_answers_503_under_the_failing_layer() -> None:
    inner = Switchable()
    config = SecurityConfig(counters_probe=1.0)
    pipeline = Pipeline(config, GuardedCounters(inner, lambda: 0.0))
    inner.down = True
    invite = RequestFacts("127.0.0.2", "udp", "INVITE")

    async def run() -> None:
        decision = await pipeline.check_request(invite, 0.0)
        assert isinstance(decision, Reject)
        assert (decision.status, decision.reason_phrase) == (503, UNAVAILABLE_PHRASE)
        assert (decision.layer, decision.reason_label) == (Layer.FLOOD, COUNTERS_UNAVAILABLE)
        assert dict(decision.headers) == {"Retry-After": "5"}
        # In-dialog requests need no counter: they pass during the outage.
        bye = RequestFacts("127.0.0.2", "udp", "BYE", in_dialog=True)
        assert (await pipeline.check_request(bye, 0.0)).allowed
        # The lockout check of a credentialed request is the digest layer's.
        auth = AuthFacts(AuthOutcome.FAILED, "erin")
        decision = await pipeline.check_identity(invite, auth, 0.0)
        assert isinstance(decision, Reject) and decision.layer is Layer.DIGEST
        assert decision.reason_label == COUNTERS_UNAVAILABLE

    asyncio.run(run())
