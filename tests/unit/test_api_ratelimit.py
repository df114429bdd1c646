"""API request rate limit: per client address, sliding window, 429 with Retry-After, /health exempt."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.unit.test_api_support import running

from ifescalate.api import ApiConfig
from ifescalate.api.ratelimit import RateLimiter, client_key


def test_sliding_window_is_exact() -> None:
    rl = RateLimiter(3, 10.0)
    assert [rl.allow("a", t) for t in (0.0, 1.0, 2.0)] == [0.0, 0.0, 0.0]
    assert rl.allow("a", 5.0) == 5.0  # the oldest (t=0) leaves the window at t=10
    assert rl.allow("b", 5.0) == 0.0  # another client is not affected
    assert rl.allow("a", 10.0) == 0.0
    assert rl.allow("a", 10.5) == 0.5


def test_ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() -> None:
    a, b = client_key("2001:db8:1:2::1"), client_key("2001:db8:1:2:ffff::9")
    assert a == b == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != a
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key(None) == "?"
    rl = RateLimiter(2, 10.0)
    assert [rl.allow(client_key(f"2001:db8::{i}"), 0.0) for i in range(3)] == [0.0, 0.0, 10.0]


def test_memory_is_bounded() -> None:
    rl = RateLimiter(1, 10.0, max_clients=100)
    for i in range(1000):
        rl.allow(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(rl._seen) == 100


def test_api_answers_429_with_retry_after_and_health_stays_open(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path, ApiConfig(rate_limit=5, rate_window=60.0)) as env:
            codes = []
            for _ in range(7):
                resp = await env.client.get("/v1/escalations", headers=env.auth("auditor"))
                codes.append(resp.status)
            assert codes == [200] * 5 + [429, 429]
            limited = await env.client.get("/v1/escalations", headers=env.auth("auditor"))
            assert limited.status == 429
            assert int(limited.headers["Retry-After"]) in range(1, 61)
            assert "too many requests" in (await limited.json())["error"]
            # Unauthenticated guesses count too (the limit runs before authentication).
            assert (await env.client.get("/v1/escalations")).status == 429
            assert (await env.client.get("/health")).status == 200

    asyncio.run(body())
