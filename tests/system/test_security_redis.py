"""Security counters shared through the real Redis at 127.0.0.1:6379 by several instances.

Each test uses its own key prefix and deletes its keys afterwards. Two ``RedisCounters`` objects
(two client connection pools, as two processes would have) stand for two instances; they must see
one count, one block and one per-expert window, and concurrent requests must not overshoot a limit
(the Lua scripts are atomic).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis

from ifescalate.security import (
    Allow,
    AuthFacts,
    AuthOutcome,
    ExpertFacts,
    FloodConfig,
    Layer,
    LockoutConfig,
    Pipeline,
    Reject,
    RequestFacts,
    SecurityConfig,
)
from ifescalate.security.facts import parse_networks
from ifescalate.security.redis_counters import RedisCounters

URL = "redis://127.0.0.1:6379/0"
T0 = 1_700_000_000.0


@asynccontextmanager
async def instances(n: int = 2) -> AsyncIterator[tuple[str, list[RedisCounters]]]:
    prefix = f"test:secsys:{os.urandom(6).hex()}:"
    backends = [RedisCounters.from_url(URL, prefix=prefix) for _ in range(n)]
    try:
        yield prefix, backends
    finally:
        await backends[0].delete_all()
        for b in backends:
            await b.aclose()


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def _config() -> SecurityConfig:
    return SecurityConfig(
        flood=FloodConfig(limit=10, window=10.0, block=120.0),
        lockout=LockoutConfig(failures=4, window=300.0, duration=300.0),
    )


ALICE = ExpertFacts("alice", "acme", parse_networks(["127.0.0.0/8"]), calls_per_minute=5)


def test_two_instances_share_flood_counts_and_the_block() -> None:
    async def body() -> None:
        async with instances() as (_, (a, b)):
            pa, pb = Pipeline(_config(), a), Pipeline(_config(), b)
            facts = RequestFacts("198.51.100.7", "udp", "OPTIONS")
            for i in range(10):
                # Alternate instances: together they see 10, each alone only 5.
                p = pa if i % 2 else pb
                d = await p.check_request(facts, T0 + i * 0.1)
                assert not (isinstance(d, Reject) and d.layer is Layer.FLOOD)
            tripped = await pa.check_request(facts, T0 + 1.5)
            assert isinstance(tripped, Reject) and tripped.reason_label == "rate_exceeded"
            # The block set through instance A stops the source at instance B.
            blocked = await pb.check_request(facts, T0 + 60.0)
            assert isinstance(blocked, Reject) and blocked.reason_label == "blocked"
            assert blocked.headers == (("Retry-After", "62"),)
            assert await b.blocked_until("flood:198.51.100.7", T0 + 60.0) == T0 + 121.5
            # Block expiry is the same for both.
            for p in (pa, pb):
                d = await p.check_request(facts, T0 + 121.5)
                assert not (isinstance(d, Reject) and d.layer is Layer.FLOOD)

    run(body)


def test_two_instances_share_the_lockout() -> None:
    async def body() -> None:
        async with instances() as (_, (a, b)):
            pa, pb = Pipeline(_config(), a), Pipeline(_config(), b)
            facts = RequestFacts("127.0.0.1", "udp", "INVITE")
            failed = AuthFacts(AuthOutcome.FAILED, "alice", "SHA-256")
            ok = AuthFacts(AuthOutcome.OK, "alice", "SHA-256", ALICE)
            for i in range(3):
                d = await (pa if i % 2 else pb).check_identity(facts, failed, T0 + i)
                assert isinstance(d, Reject) and d.status == 401
            d = await pa.check_identity(facts, failed, T0 + 3)
            assert isinstance(d, Reject) and d.reason_label == "locked_out"
            d = await pb.check_identity(facts, ok, T0 + 10)
            assert isinstance(d, Reject) and d.reason_label == "locked_out"
            assert isinstance(await pb.check_identity(facts, ok, T0 + 303), Allow)

    run(body)


def test_concurrent_calls_never_overshoot_the_expert_limit() -> None:
    async def body() -> None:
        async with instances(3) as (_, backends):
            pipelines = [Pipeline(_config(), c) for c in backends]
            facts = RequestFacts("127.0.0.1", "udp", "INVITE")
            ok = AuthFacts(AuthOutcome.OK, "alice", "SHA-256", ALICE)
            decisions = await asyncio.gather(
                *(pipelines[i % 3].check_identity(facts, ok, T0 + i * 0.001) for i in range(60))
            )
            admitted = [d for d in decisions if isinstance(d, Allow)]
            refused = [d for d in decisions if isinstance(d, Reject)]
            assert len(admitted) == 5  # calls_per_minute of the record, across all instances
            assert all(d.layer is Layer.EXPERT_LIMIT and d.status == 429 for d in refused)

    run(body)


def test_keys_are_prefixed_hash_tagged_and_expire() -> None:
    async def body() -> None:
        async with instances(1) as (prefix, (c,)):
            await c.hit("flood:198.51.100.1", T0, 10.0)
            await c.hit_and_block("lockout:x", T0, 300.0, 1, 300.0)
            raw = aioredis.Redis.from_url(URL)
            try:
                names = sorted([k.decode() async for k in raw.scan_iter(match=f"{prefix}*")])
                assert names == [
                    f"{prefix}{{flood:198.51.100.1}}:w",
                    f"{prefix}{{lockout:x}}:b",
                ]
                # Redis collects what nobody touches: window TTL ~ window, block TTL ~ duration
                # (plus one second of slack for clock differences between instances).
                window_ttl = await raw.pttl(names[0])
                block_ttl = await raw.pttl(names[1])
                assert 10_000 < window_ttl <= 11_000
                assert 300_000 < block_ttl <= 301_000
            finally:
                await raw.aclose()
            assert await c.delete_all() == 2
            assert await c.count("flood:198.51.100.1", T0, 10.0) == 0

    run(body)


def test_prefixes_isolate_deployments() -> None:
    async def body() -> None:
        async with instances(1) as (_, (a,)), instances(1) as (_, (b,)):
            await a.hit("k", T0, 10.0)
            assert await b.count("k", T0, 10.0) == 0
            assert await a.count("k", T0, 10.0) == 1

    run(body)


def test_nonce_counts_are_shared_atomic_and_expire() -> None:
    async def body() -> None:
        async with instances(3) as (prefix, backends):
            nonce, expires = "bm9uY2U=", T0 + 300.0
            # Ten concurrent answers with the same (nonce, nc) at three instances: one wins.
            results = await asyncio.gather(
                *(backends[i % 3].nonce_count(nonce, 1, expires, T0) for i in range(10))
            )
            assert sorted(results) == [False] * 9 + [True]
            assert await backends[1].nonce_count(nonce, 2, expires, T0 + 1)  # higher count: ok
            assert not await backends[2].nonce_count(nonce, 2, expires, T0 + 2)  # replay
            assert not await backends[0].nonce_count(nonce, 1, expires, T0 + 2)  # older count
            assert not await backends[0].nonce_count("other", 1, T0, T0 + 1)  # expired nonce
            raw = aioredis.Redis.from_url(URL)
            try:
                ttl = await raw.pttl(f"{prefix}nc:{nonce}")
                # Last set at T0 + 1: the nonce's remaining 299 s plus the second every key gets
                # for clock skew between instances.
                assert 299_000 < ttl <= 300_000
            finally:
                await raw.aclose()
            a = await backends[0].shared_secret("digest-nonce-key", 32)
            b = await backends[2].shared_secret("digest-nonce-key", 32)
            assert a is not None and len(a) == 32 and a == b

    run(body)


def test_a_nonce_count_outlives_clock_skew_between_instances() -> None:
    """Instance clocks differ a little. A nonce-count kept only for the nonce's remaining lifetime
    on the recording instance's clock is gone while an instance whose clock runs behind still takes
    the nonce as fresh, so a captured answer replays there once more. Kept a second beyond (as every
    other key: ``_ms``), the replay is refused at the instance that is behind."""

    async def body() -> None:
        async with instances(2) as (_, (ahead, behind)):
            nonce, expires = "c2tldw==", T0 + 0.2  # the nonce's end as its issuer signed it
            assert await ahead.nonce_count(nonce, 1, expires, T0)
            await asyncio.sleep(0.4)  # on the recording instance's clock the nonce is dead
            now_behind = T0 + 0.4 - 0.5  # an instance 0.5 s behind: the nonce is still alive
            assert now_behind < expires
            assert not await behind.nonce_count(nonce, 1, expires, now_behind)
            assert await behind.nonce_count(nonce, 2, expires, now_behind)  # control: nc + 1

    run(body)
