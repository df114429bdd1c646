"""Two ``sip answer`` instances sharing one Redis (127.0.0.1:6379, a unique key prefix per run)
share the flood block and the digest lockout."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from ifescalate.sip.digest import DigestClient

from .sipclient import SipClient, answerer, security_stats

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


def _challenge_at(client: SipClient, call_id: str) -> str:
    """Credentials for alice answering the challenge ``client``'s instance issued."""
    first = client.request("MESSAGE", user="alice", call_id=call_id)
    assert first is not None and first.status == 401
    host, port = client.server
    return DigestClient("alice", "s3cret").answer(
        first.headers.get_lines("WWW-Authenticate"), "MESSAGE", f"sip:alice@{host}:{port}"
    )


def _send_creds(client: SipClient, call_id: str, cseq: int, creds: str) -> int | None:
    # A fresh branch and CSeq each time: a replay is a new request carrying old credentials, not
    # a retransmission the transaction layer would absorb.
    client.send(client.build("MESSAGE", user="alice", call_id=call_id, cseq=cseq,
                             authorization=creds))  # fmt: skip
    resp = client.recv()
    return resp.status if resp is not None else None


def test_nonce_from_one_instance_accepted_once_at_the_other(prefix: str) -> None:
    flags = ("--auth", "alice:s3cret", "--flood", "1000/10", "--counters", URL,
             "--counters-prefix", prefix)  # fmt: skip
    with answerer(*flags) as (pa, out_a), answerer(*flags) as (pb, out_b):
        a = SipClient(("127.0.0.1", pa), source="127.0.0.2")
        b = SipClient(("127.0.0.1", pb), source="127.0.0.2")
        creds = _challenge_at(a, "x1")  # nonce issued by A ...
        assert _send_creds(b, "x1", 2, creds) == 200  # ... answered at B: one shared key
        assert _send_creds(b, "x1", 3, creds) == 401  # the same nonce + nc again at B
        assert _send_creds(a, "x1", 4, creds) == 401  # and at A: one shared count
        fresh = _challenge_at(b, "x2")  # the other way round, a new nonce
        assert _send_creds(a, "x2", 2, fresh) == 200
        assert _send_creds(a, "x2", 3, fresh) == 401
    # Each refusal was a replay (invalid credentials), not a forged nonce or a wrong password.
    assert "'digest:invalid_credentials': 2" in security_stats(out_a), out_a
    assert "'digest:invalid_credentials': 1" in security_stats(out_b), out_b


def test_without_shared_counters_a_foreign_nonce_is_refused() -> None:
    # The control: each instance alone signs with its own key, so the cross-instance answer is
    # refused (this is what the shared key fixes, and proves the test above can fail).
    flags = ("--auth", "alice:s3cret", "--flood", "1000/10")
    with answerer(*flags) as (pa, _), answerer(*flags) as (pb, _):
        a = SipClient(("127.0.0.1", pa), source="127.0.0.2")
        b = SipClient(("127.0.0.1", pb), source="127.0.0.2")
        creds = _challenge_at(a, "y1")
        assert _send_creds(b, "y1", 2, creds) == 401
        assert _send_creds(a, "y1", 3, creds) == 200
