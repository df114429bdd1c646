"""Two ``sip answer`` instances sharing one Redis (127.0.0.1:6379, a unique key prefix per run)
share the flood block and the digest lockout."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from .sipclient import SipClient, answerer

URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> Iterator[str]:
    p = f"test:gate:{os.urandom(6).hex()}:"
    yield p

    async def clean() -> None:
        r = aioredis.Redis.from_url(URL)
        async for key in r.scan_iter(match=f"{p}*"):
            await r.delete(key)
        await r.aclose()

    asyncio.run(clean())


def test_two_instances_share_the_flood_block(prefix: str) -> None:
    flags = ("--flood", "6/10", "--counters", URL, "--counters-prefix", prefix)
    with answerer(*flags) as (pa, _), answerer(*flags) as (pb, _):
        a = SipClient(("127.0.0.1", pa), source="127.0.0.2")
        b = SipClient(("127.0.0.1", pb), source="127.0.0.2")
        statuses = []
        for i in range(6):
            resp = (a if i % 2 else b).request("OPTIONS")
            statuses.append(resp.status if resp else None)
        assert statuses == [200] * 6  # each instance alone has seen only 3
        tripped = a.request("OPTIONS")
        assert tripped is not None and tripped.status == 503
        blocked = b.request("OPTIONS")  # the block set through A holds at B
        assert blocked is not None and blocked.status == 503
        assert blocked.headers.get("Retry-After") is not None
        other = SipClient(("127.0.0.1", pb), source="127.0.0.3")
        resp = other.request("OPTIONS")
        assert resp is not None and resp.status == 200


def test_two_instances_share_the_lockout(prefix: str) -> None:
    flags = ("--auth", "alice:s3cret", "--lockout", "5/300", "--flood", "1000/10",
             "--counters", URL, "--counters-prefix", prefix)  # fmt: skip
    with answerer(*flags) as (pa, _), answerer(*flags) as (pb, _):
        a = SipClient(("127.0.0.1", pa), source="127.0.0.2")
        b = SipClient(("127.0.0.1", pb), source="127.0.0.2")
        got = []
        for i in range(5):
            resp, _ = (a if i % 2 else b).authed("MESSAGE", "alice", "wrong")
            got.append(resp.status if resp else None)
        assert got == [401, 401, 401, 401, 403]
        for c in (a, b):
            resp, _ = c.authed("MESSAGE", "alice", "s3cret")
            assert resp is not None and resp.status == 403
        elsewhere = SipClient(("127.0.0.1", pa), source="127.0.0.3")
        resp, _ = elsewhere.authed("MESSAGE", "alice", "s3cret")
        assert resp is not None and resp.status == 200
