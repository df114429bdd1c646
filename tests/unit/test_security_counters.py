"""Counter-backed security layers in virtual time, each test run against both backends.

The same test body runs on :class:`MemoryCounters` and on :class:`RedisCounters` (the Redis at
127.0.0.1:6379 every machine here runs; a unique key prefix per test, deleted afterwards). If
that Redis is down the Redis variants skip and say so; tests/system/test_security_redis.py
insists on it.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable

import pytest

from ifescalate.security import (
    Allow,
    AuthFacts,
    AuthOutcome,
    Challenge,
    Counters,
    DigestLayer,
    ExpertFacts,
    ExpertLimitConfig,
    ExpertLimitLayer,
    FloodConfig,
    FloodLayer,
    Layer,
    LockoutConfig,
    MemoryCounters,
    Reject,
    RequestFacts,
)
from ifescalate.security.facts import parse_networks

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
T0 = 1_700_000_000.0  # wall-clock-like virtual time, as instances sharing Redis would pass


def _redis_up() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5):
            return True
    except OSError:
        return False


Body = Callable[[Counters], Awaitable[None]]


def run_on(backend: str, body: Body) -> None:
    """Run ``body`` with a fresh backend in its own event loop, cleaning Redis keys after."""

    async def main() -> None:
        if backend == "memory":
            await body(MemoryCounters())
            return
        from ifescalate.security.redis_counters import RedisCounters

        counters = RedisCounters.from_url(
            f"redis://{REDIS_HOST}:{REDIS_PORT}/0", prefix=f"test:sec:{os.urandom(6).hex()}:"
        )
        try:
            await body(counters)
        finally:
            await counters.delete_all()
            await counters.aclose()

    asyncio.run(main())


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "redis" and not _redis_up():
        pytest.fail(
            "no Redis at 127.0.0.1:6379: it runs on every machine of this project, CI included"
        )
    return str(request.param)


def req(
    ip: str = "198.51.100.7", *, in_dialog: bool = False, method: str = "INVITE"
) -> RequestFacts:
    return RequestFacts(ip, "udp", method, in_dialog=in_dialog)


# -- the counters themselves ---------------------------------------------------------------------


def test_window_boundary_is_exact(backend: str) -> None:
    async def body(c: Counters) -> None:
        assert await c.hit("k", T0, 10.0) == 1
        assert await c.hit("k", T0 + 4.0, 10.0) == 2
        # The event at T0 is still inside just before T0 + 10 and gone at exactly T0 + 10.
        assert await c.count("k", T0 + 9.999, 10.0) == 2
        assert await c.count("k", T0 + 10.0, 10.0) == 1
        assert await c.count("k", T0 + 14.0, 10.0) == 0

    run_on(backend, body)


def test_acquire_counts_only_admitted_events(backend: str) -> None:
    async def body(c: Counters) -> None:
        for i in range(3):
            got = await c.acquire("e", T0 + i, 60.0, 3)
            assert got.allowed and got.count == i + 1 and got.oldest == T0
        refused = await c.acquire("e", T0 + 5, 60.0, 3)
        assert (refused.allowed, refused.count, refused.oldest) == (False, 3, T0)
        # Refusals did not add events: the slot frees when the first leaves, not later.
        assert (await c.acquire("e", T0 + 59.5, 60.0, 3)).allowed is False
        again = await c.acquire("e", T0 + 60.0, 60.0, 3)
        assert again.allowed and again.count == 3 and again.oldest == T0 + 1

    run_on(backend, body)


def test_hit_and_block_blocks_then_expires(backend: str) -> None:
    async def body(c: Counters) -> None:
        assert (await c.hit_and_block("b", T0, 10.0, 3, 120.0)).blocked_until is None
        assert (await c.hit_and_block("b", T0 + 1, 10.0, 3, 120.0)).count == 2
        tripped = await c.hit_and_block("b", T0 + 2, 10.0, 3, 120.0)
        assert (tripped.count, tripped.blocked_until) == (3, T0 + 122.0)
        during = await c.hit_and_block("b", T0 + 50, 10.0, 3, 120.0)
        assert (during.count, during.blocked_until) == (0, T0 + 122.0)
        assert await c.blocked_until("b", T0 + 121.9) == T0 + 122.0
        assert await c.blocked_until("b", T0 + 122.0) is None
        # After the block the window starts empty (it was cleared when the block was set).
        assert (await c.hit_and_block("b", T0 + 122.0, 10.0, 3, 120.0)).count == 1

    run_on(backend, body)


def test_clear_and_explicit_block(backend: str) -> None:
    async def body(c: Counters) -> None:
        await c.hit("x", T0, 10.0)
        await c.block("x", T0 + 5, T0)
        assert await c.blocked_until("x", T0 + 1) == T0 + 5
        await c.clear("x")
        assert await c.blocked_until("x", T0 + 1) is None
        assert await c.count("x", T0 + 1, 10.0) == 0

    run_on(backend, body)


def test_keys_are_independent(backend: str) -> None:
    async def body(c: Counters) -> None:
        await c.hit("a", T0, 10.0)
        await c.hit("a", T0, 10.0)
        assert await c.hit("b", T0, 10.0) == 1
        assert await c.count("a", T0, 10.0) == 2

    run_on(backend, body)


def test_memory_backend_sweeps_idle_keys() -> None:
    async def body() -> None:
        c = MemoryCounters(sweep_every=10)
        for i in range(1000):
            await c.hit(f"src{i}", T0 + i, 1.0)
        # Only the keys of the last second or so survive the periodic sweep.
        assert len(c) <= 11
        capped = MemoryCounters(max_keys=50)
        for i in range(500):
            await capped.hit(f"src{i}", T0, 100.0)
        assert len(capped) == 50

    asyncio.run(body())


# -- flood ---------------------------------------------------------------------------------------


def test_flood_30_per_10s_then_503_and_block(backend: str) -> None:
    async def body(c: Counters) -> None:
        flood = FloodLayer(c)
        for i in range(30):
            assert isinstance(await flood.check(req(), T0 + i * 0.1), Allow)
        tripped = await flood.check(req(), T0 + 3.0)
        assert isinstance(tripped, Reject)
        assert (tripped.status, tripped.reason_phrase, tripped.layer, tripped.reason_label) == (
            503,
            "Service Unavailable",
            Layer.FLOOD,
            "rate_exceeded",
        )
        assert tripped.headers == (("Retry-After", "120"),)
        # Blocked for 120 s even though the 10 s window has long passed.
        later = await flood.check(req(), T0 + 60.0)
        assert isinstance(later, Reject) and later.reason_label == "blocked"
        assert later.headers == (("Retry-After", "63"),)
        assert isinstance(await flood.check(req(), T0 + 123.0), Allow)
        # Another source was never affected.
        assert isinstance(await flood.check(req("198.51.100.8"), T0 + 60.0), Allow)

    run_on(backend, body)


def test_flood_sliding_window_lets_a_steady_rate_through(backend: str) -> None:
    async def body(c: Counters) -> None:
        flood = FloodLayer(c, FloodConfig(limit=3, window=1.0, block=5.0))
        # Exactly 3 per second forever: each new request sees the one a second ago gone.
        for i in range(30):
            assert isinstance(await flood.check(req(), T0 + i / 3), Allow), i

    run_on(backend, body)


def test_flood_ipv6_folds_to_64_and_ipv4_mapped_is_ipv4(backend: str) -> None:
    async def body(c: Counters) -> None:
        flood = FloodLayer(c, FloodConfig(limit=2, window=10.0, block=30.0))
        assert isinstance(await flood.check(req("2001:db8:1:2::1"), T0), Allow)
        assert isinstance(await flood.check(req("2001:db8:1:2:ffff::9"), T0), Allow)
        # A third address in the same /64 is the same source.
        assert isinstance(await flood.check(req("2001:db8:1:2::abcd"), T0), Reject)
        assert isinstance(await flood.check(req("2001:db8:1:3::1"), T0), Allow)
        assert isinstance(await flood.check(req("192.0.2.1"), T0), Allow)
        assert isinstance(await flood.check(req("::ffff:192.0.2.1"), T0), Allow)
        assert isinstance(await flood.check(req("192.0.2.1"), T0), Reject)

    run_on(backend, body)


def test_flood_exempts_trusted_networks_and_established_dialogs(backend: str) -> None:
    async def body(c: Counters) -> None:
        cfg = FloodConfig(limit=2, window=10.0, block=30.0, trusted=parse_networks(["10.0.0.0/8"]))
        flood = FloodLayer(c, cfg)
        for i in range(50):
            assert isinstance(await flood.check(req("10.1.2.3"), T0 + i * 0.01), Allow)
        src = "203.0.113.5"
        for _ in range(2):
            assert isinstance(await flood.check(req(src), T0), Allow)
        assert isinstance(await flood.check(req(src), T0), Reject)
        # The BYE of a call in progress from the blocked source still gets through.
        bye = req(src, in_dialog=True, method="BYE")
        assert isinstance(await flood.check(bye, T0 + 1), Allow)
        # ... and in-dialog requests do not count toward the limit either.
        other = "203.0.113.6"
        for _ in range(20):
            await flood.check(req(other, in_dialog=True, method="INFO"), T0)
        assert isinstance(await flood.check(req(other), T0), Allow)

    run_on(backend, body)


# -- digest lockout ------------------------------------------------------------------------------

ALICE = ExpertFacts("alice", "acme", parse_networks(["198.51.100.0/24"]))
OK = AuthFacts(AuthOutcome.OK, "alice", "SHA-256", ALICE)


def bad(user: str = "alice") -> AuthFacts:
    return AuthFacts(AuthOutcome.FAILED, user, "SHA-256")


def test_lockout_after_five_failures_for_300s_even_with_right_password(backend: str) -> None:
    async def body(c: Counters) -> None:
        layer = DigestLayer(c)
        for i in range(4):
            d = await layer.check(req(), bad(), T0 + i)
            assert isinstance(d, Reject)
            assert (d.status, d.reason_label, d.challenge) == (
                401,
                "bad_credentials",
                Challenge.FRESH,
            )
        fifth = await layer.check(req(), bad(), T0 + 4)
        assert isinstance(fifth, Reject)
        assert (fifth.status, fifth.reason_phrase, fifth.reason_label) == (
            403,
            "Forbidden",
            "locked_out",
        )
        assert fifth.challenge is None
        # Right credentials do not help while locked (svcrack cannot keep guessing).
        locked = await layer.check(req(), OK, T0 + 100)
        assert isinstance(locked, Reject) and locked.reason_label == "locked_out"
        # The lock is per (user, address): same user elsewhere, other user here are fine.
        assert isinstance(await layer.check(req("198.51.100.9"), OK, T0 + 100), Allow)
        assert isinstance(await layer.check(req(), bad("bob"), T0 + 100), Reject)
        bob_ok = AuthFacts(AuthOutcome.OK, "bob", "SHA-256", ExpertFacts("bob", "acme"))
        assert isinstance(await layer.check(req(), bob_ok, T0 + 101), Allow)
        # 300 s after the fifth failure the lock is gone.
        assert isinstance(await layer.check(req(), OK, T0 + 303.9), Reject)
        assert await layer.check(req(), OK, T0 + 304) == Allow(ALICE)

    run_on(backend, body)


def test_success_resets_failures(backend: str) -> None:
    async def body(c: Counters) -> None:
        layer = DigestLayer(c)
        for i in range(4):
            await layer.check(req(), bad(), T0 + i)
        assert isinstance(await layer.check(req(), OK, T0 + 5), Allow)
        for i in range(4):
            d = await layer.check(req(), bad(), T0 + 6 + i)
            assert isinstance(d, Reject) and d.status == 401

    run_on(backend, body)


def test_failures_outside_the_window_do_not_add_up(backend: str) -> None:
    async def body(c: Counters) -> None:
        layer = DigestLayer(c, LockoutConfig(failures=3, window=60.0, duration=300.0))
        await layer.check(req(), bad(), T0)
        await layer.check(req(), bad(), T0 + 30)
        d = await layer.check(req(), bad(), T0 + 60)  # the first has left the window
        assert isinstance(d, Reject) and d.status == 401
        d = await layer.check(req(), bad(), T0 + 61)
        assert isinstance(d, Reject) and d.status == 403

    run_on(backend, body)


def test_unknown_user_and_wrong_password_are_indistinguishable(backend: str) -> None:
    async def body(c: Counters) -> None:
        layer = DigestLayer(c)
        for i in range(5):
            known = await layer.check(req("198.51.100.1"), bad("alice"), T0 + i)
            unknown = await layer.check(req("198.51.100.2"), bad("nobody-here"), T0 + i)
            # Same reply, challenge and labels at every step, lockout included.
            assert known == unknown
        assert isinstance(known, Reject) and known.reason_label == "locked_out"

    run_on(backend, body)


def test_missing_and_stale_challenge_without_counting(backend: str) -> None:
    async def body(c: Counters) -> None:
        layer = DigestLayer(c, LockoutConfig(failures=1))
        missing = await layer.check(req(), AuthFacts(AuthOutcome.MISSING), T0)
        assert isinstance(missing, Reject)
        assert (missing.status, missing.challenge, missing.audit) == (401, Challenge.FRESH, False)
        stale = AuthFacts(AuthOutcome.STALE, "alice", "SHA-256")
        for i in range(3):
            d = await layer.check(req(), stale, T0 + i)
            assert isinstance(d, Reject) and d.challenge is Challenge.STALE and not d.audit
        # Neither counted as a failure: one failure locks with failures=1, but OK still passes.
        assert isinstance(await layer.check(req(), OK, T0 + 5), Allow)

    run_on(backend, body)


def test_md5_only_where_the_record_allows(backend: str) -> None:
    async def body(c: Counters) -> None:
        layer = DigestLayer(c)
        md5 = AuthFacts(AuthOutcome.OK, "alice", "MD5", ALICE)
        d = await layer.check(req(), md5, T0)
        assert isinstance(d, Reject)
        assert (d.status, d.reason_label, d.challenge) == (401, "md5_not_allowed", Challenge.FRESH)
        allowed = ExpertFacts("carol", "acme", allow_md5=True)
        carol = AuthFacts(AuthOutcome.OK, "carol", "MD5-sess", allowed)
        assert await layer.check(req(), carol, T0) == Allow(allowed)

    run_on(backend, body)


# -- per-expert limit ----------------------------------------------------------------------------


def test_expert_limit_10_a_minute_with_retry_after(backend: str) -> None:
    async def body(c: Counters) -> None:
        layer = ExpertLimitLayer(c)
        for i in range(10):
            assert isinstance(await layer.check(ALICE, T0 + i * 2.5), Allow)
        d = await layer.check(ALICE, T0 + 30.2)
        assert isinstance(d, Reject)
        assert (d.status, d.reason_phrase, d.layer, d.reason_label) == (
            429,
            "Too Many Requests",
            Layer.EXPERT_LIMIT,
            "expert_rate",
        )
        # The oldest call (T0) leaves at T0 + 60: 29.8 s from now, rounded up.
        assert d.headers == (("Retry-After", "30"),)
        assert isinstance(await layer.check(ALICE, T0 + 59.999), Reject)
        assert isinstance(await layer.check(ALICE, T0 + 60.0), Allow)
        # The next slot is the second call's, at T0 + 62.5.
        late = await layer.check(ALICE, T0 + 61.0)
        assert isinstance(late, Reject) and late.headers == (("Retry-After", "2"),)
        # Other experts have their own window.
        assert isinstance(await layer.check(ExpertFacts("bob", "acme"), T0 + 61.0), Allow)

    run_on(backend, body)


def test_expert_record_limit_overrides_default(backend: str) -> None:
    async def body(c: Counters) -> None:
        layer = ExpertLimitLayer(c, ExpertLimitConfig(calls=10, window=60.0))
        strict = ExpertFacts("dave", "acme", calls_per_minute=2)
        assert isinstance(await layer.check(strict, T0), Allow)
        assert isinstance(await layer.check(strict, T0 + 1), Allow)
        d = await layer.check(strict, T0 + 1.5)
        assert isinstance(d, Reject) and d.headers == (("Retry-After", "59"),)

    run_on(backend, body)
