"""Evidence endpoints over a loopback socket: the real app, EvidenceService, store, link signer and
Witness (SQLite); the escalation service is the API tests' in-memory one (a collaborator). The
link clock is virtual, so expiry is exact and instant."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import test_utils
from tests.unit.test_api_support import FakeService, Readiness, role_tokens, started_witness

from ifescalate.api import StoreWitnessReader, TokenStore, build_app
from ifescalate.escalation.model import EscalationRequest, EscalationState
from ifescalate.evidence.links import LinkError, LinkSigner
from ifescalate.evidence.service import EvidenceService, fingerprint
from ifescalate.evidence.store import EvidenceStore
from ifescalate.guard import SqliteRegistry
from ifescalate.observability import Metrics
from ifescalate.witness import Witness

MAX = 4096


@dataclass
class Env:
    client: test_utils.TestClient[Any, Any]
    service: FakeService
    witness: Witness
    token: dict[str, str]
    now: list[float]
    evidence: EvidenceService

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token[who]}"}

    async def escalation(self, requester: str = "agent-a") -> str:
        view = await self.service.create(EscalationRequest("safety", "q?", requester))
        return view.id

    async def witnessed(self) -> list[tuple[str, dict[str, Any]]]:
        events = await StoreWitnessReader.of(self.witness).events(
            trace_id=None, escalation_id=None, after=0, limit=1000
        )
        return [(e.type.value, dict(e.details)) for e in events]


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Env]:
    tokens = TokenStore(tmp_path / "tokens.db")
    registry = SqliteRegistry(tmp_path / "registry.db")
    witness = await started_witness(tmp_path)
    token = role_tokens(tokens)
    now = [1_800_000_000.0]
    service = FakeService()
    evidence = EvidenceService(
        store=EvidenceStore(tmp_path / "evidence", tmp_path / "evidence.db", max_bytes=MAX),
        signer=LinkSigner(bytes(32), default_ttl=60, max_ttl=600),
        escalations=service,
        witness=witness,
        public_url="https://escalate.example.org/",
        wall=lambda: now[0],
    )
    app = build_app(
        service=service,
        registry=registry,
        witness_reader=StoreWitnessReader.of(witness),
        tokens=tokens,
        metrics=Metrics(),
        readiness=Readiness(),
        evidence_service=evidence,
    )
    try:
        async with test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1")) as client:
            yield Env(client, service, witness, token, now, evidence)
    finally:
        await evidence.aclose()
        await witness.close()
        registry.close()
        tokens.close()


def run(tmp_path: Path, test: Any) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            await test(env)

    asyncio.run(body())


def test_upload_raw_and_json_content_addressed(tmp_path: Path) -> None:
    async def test(env: Env) -> None:
        esc = await env.escalation()
        url = f"/v1/escalations/{esc}/evidence"
        raw = bytes(range(256)) * 4
        resp = await env.client.post(
            url + "?name=dump.bin",
            data=raw,
            headers={**env.auth("council"), "Content-Type": "Application/Octet-Stream"},
        )
        assert resp.status == 201, await resp.text()
        item = await resp.json()
        assert item["id"] == hashlib.sha256(raw).hexdigest()
        assert (item["name"], item["media_type"], item["size"]) == (
            "dump.bin",
            "application/octet-stream",
            1024,
        )
        assert resp.headers["Location"] == f"{url}/{item['id']}"
        # The same bytes as base64 JSON from the operator: the existing item, 200.
        again = await env.client.post(
            url,
            json={"name": "x", "content": base64.b64encode(raw).decode(), "encoding": "base64"},
            headers=env.auth("operator"),
        )
        assert again.status == 200 and (await again.json())["id"] == item["id"]
        text = await env.client.post(
            url, json={"name": "note", "content": "héllo"}, headers=env.auth("council")
        )
        assert text.status == 201
        assert (await text.json())["media_type"] == "text/plain; charset=utf-8"
        listed = await env.client.get(url, headers=env.auth("auditor"))
        assert [e["name"] for e in (await listed.json())["evidence"]] == ["dump.bin", "note"]
        # Another council agent's escalation does not exist for this token.
        other = await env.client.get(url, headers=env.auth("council2"))
        assert other.status == 404
        added = [d for t, d in await env.witnessed() if d.get("action") == "added"]
        assert [d["sha256"] for d in added] == [
            item["id"],
            hashlib.sha256("héllo".encode()).hexdigest(),
        ]

    run(tmp_path, test)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content": "x"}, "name"),
        ({"name": "n", "content": "x", "media_type": "text"}, "media_type"),
        ({"name": "n", "content": "%%%", "encoding": "base64"}, "content"),
        ({"name": "n", "content": "x", "encoding": "utf-16"}, "encoding"),
        ({"name": "n", "content": "x", "sensitivity": 3}, "sensitivity"),
        ({"name": "", "content": "x"}, "name"),
    ],
)
def test_bad_uploads_are_422_naming_the_field(
    tmp_path: Path, body: dict[str, Any], field: str
) -> None:
    async def test(env: Env) -> None:
        esc = await env.escalation()
        resp = await env.client.post(
            f"/v1/escalations/{esc}/evidence", json=body, headers=env.auth("council")
        )
        assert resp.status == 422
        assert field in (await resp.json())["errors"]

    run(tmp_path, test)


def test_over_the_limit_is_413_with_or_without_content_length(tmp_path: Path) -> None:
    async def test(env: Env) -> None:
        esc = await env.escalation()
        url = f"/v1/escalations/{esc}/evidence"
        headers = {**env.auth("council"), "Content-Type": "text/plain"}
        exact = await env.client.post(url, data=b"a" * MAX, headers=headers)
        assert exact.status == 201

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"b" * 1000

        for data in (b"a" * (MAX + 1), chunks()):
            resp = await env.client.post(url, data=data, headers=headers)
            assert resp.status == 413
            assert "limit is 4096" in (await resp.json())["error"]
        unknown = await env.client.post("/v1/escalations/nope/evidence", data=b"x", headers=headers)
        assert unknown.status == 404

    run(tmp_path, test)


def test_links_open_expire_and_die_with_the_escalation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ifescalate.api")

    async def test(env: Env) -> None:
        esc = await env.escalation()
        added = await env.client.post(
            f"/v1/escalations/{esc}/evidence",
            data=b"<script>alert(1)</script>",
            headers={**env.auth("council"), "Content-Type": "text/html"},
        )
        eid = (await added.json())["id"]
        links = f"/v1/escalations/{esc}/evidence/{eid}/links"
        assert (
            await env.client.post(links, json={"ttl": 601}, headers=env.auth("council"))
        ).status == 422
        assert (
            await env.client.post(links, json={"tll": 5}, headers=env.auth("council"))
        ).status == 422
        missing = f"/v1/escalations/{esc}/evidence/{'0' * 64}/links"
        assert (await env.client.post(missing, headers=env.auth("council"))).status == 404
        resp = await env.client.post(links, headers=env.auth("council"))
        assert resp.status == 201
        link = await resp.json()
        assert link["expires_at"] == int(env.now[0]) + 60
        assert link["url"] == f"https://escalate.example.org/v1/evidence/{link['token']}"
        path = f"/v1/evidence/{link['token']}"
        got = await env.client.get(path)
        assert got.status == 200
        assert await got.read() == b"<script>alert(1)</script>"
        assert got.headers["Content-Type"] == "text/html"
        assert got.headers["Cache-Control"] == "no-store"
        assert got.headers["Content-Security-Policy"] == (
            "default-src 'none'; sandbox; frame-ancestors 'none'"
        )
        assert got.headers["Content-Disposition"] == "attachment"  # HTML never renders inline
        env.now[0] = link["expires_at"] - 0.001
        assert (await env.client.get(path)).status == 200
        env.now[0] = link["expires_at"]
        expired = await env.client.get(path)
        assert expired.status == 410
        assert (await expired.json())["reason"] == "expired"
        env.now[0] -= 30
        env.service.views[esc] = replace(env.service.views[esc], state=EscalationState.ENDED)
        ended = await env.client.get(path)
        assert (ended.status, (await ended.json())["reason"]) == (410, "escalation_ended")
        assert (await env.client.post(links, headers=env.auth("council"))).status == 409
        kinds = [(t, d.get("action") or d.get("reason")) for t, d in await env.witnessed()]
        assert kinds == [
            ("EVIDENCE_ACCESSED", "added"),
            ("EVIDENCE_ACCESSED", "link_issued"),
            ("EVIDENCE_ACCESSED", "read"),
            ("EVIDENCE_ACCESSED", "read"),
            ("SECURITY_REJECTED", "expired"),
            ("SECURITY_REJECTED", "escalation_ended"),
        ]
        reads = [d for t, d in await env.witnessed() if d.get("action") == "read"]
        assert all(d["peer"] == "127.0.0.1" and d["sha256"] == eid for d in reads)
        assert link["token"] not in caplog.text
        assert "GET /v1/evidence/{token} 200" in caplog.text

    run(tmp_path, test)


def test_refused_links_from_one_address_are_one_entry_and_one_summary(tmp_path: Path) -> None:
    """The link route is unauthenticated: 50 refusals from one address (same reason) are the
    first one witnessed at once, with its link fingerprint, and the 49 others as one summary
    when the window ends (security.audit), not 50 entries. Another reason is its own group."""

    async def test(env: Env) -> None:
        for _ in range(50):
            resp = await env.client.get("/v1/evidence/not-a-token")
            assert resp.status == 400
            assert (await resp.json())["reason"] == "malformed"
        refused = [d for t, d in await env.witnessed() if t == "SECURITY_REJECTED"]
        assert len(refused) == 1, refused
        first = refused[0]
        assert (first["layer"], first["reason"], first["status"]) == (
            "evidence_link",
            "malformed",
            400,
        )
        assert (first["count"], first["summary"], first["source"]) == (1, False, "127.0.0.1")
        assert first["link"] == fingerprint("not-a-token")
        assert first["window_end"] - first["window_start"] == 60.0
        env.now[0] += 59.9
        await env.evidence.flush_refusals()  # what the service's timer calls: not due yet
        assert len([t for t, _ in await env.witnessed() if t == "SECURITY_REJECTED"]) == 1
        env.now[0] += 0.1
        await env.evidence.flush_refusals()
        refused = [d for t, d in await env.witnessed() if t == "SECURITY_REJECTED"]
        assert len(refused) == 2, refused
        summary = refused[1]
        assert (summary["reason"], summary["count"], summary["summary"]) == ("malformed", 49, True)
        assert summary["source"] == "127.0.0.1" and "link" not in summary
        token = await live_token(env)
        flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
        assert (await env.client.get(f"/v1/evidence/{flipped}")).status == 403  # another group
        assert (await env.client.get("/v1/evidence/other")).status == 400  # a new window
        reasons = [
            (d["reason"], d["count"], d["summary"])
            for t, d in await env.witnessed()
            if t == "SECURITY_REJECTED"
        ]
        assert reasons[2:] == [("bad_signature", 1, False), ("malformed", 1, False)], reasons

    run(tmp_path, test)


def test_refusal_summaries_come_from_the_timer_and_at_shutdown(tmp_path: Path) -> None:
    """Real clock: the service's own timer writes a window's summary when it ends, and
    ``aclose`` writes the summaries of windows still open (serve's stop calls it)."""

    async def events(witness: Witness) -> list[dict[str, Any]]:
        got = await StoreWitnessReader.of(witness).events(
            trace_id=None, escalation_id=None, after=0, limit=1000
        )
        return [dict(e.details) for e in got]

    async def refuse(evidence: EvidenceService, n: int, peer: str) -> None:
        for _ in range(n):
            with pytest.raises(LinkError):
                await evidence.open("not-a-token", peer=peer)

    async def body() -> None:
        witness = await started_witness(tmp_path)
        stores = []
        try:
            for window in (0.3, 3600.0):
                store = EvidenceStore(
                    tmp_path / f"ev{window}", tmp_path / f"ev{window}.db", max_bytes=MAX
                )
                stores.append(store)
                evidence = EvidenceService(
                    store=store,
                    signer=LinkSigner(bytes(32), default_ttl=60, max_ttl=600),
                    escalations=FakeService(),
                    witness=witness,
                    public_url="https://escalate.example.org/",
                    audit_window=window,
                )
                peer = "::1" if window > 1 else "127.0.0.1"
                await refuse(evidence, 50, peer)
                if window < 1:
                    deadline = time.monotonic() + 10
                    while len(await events(witness)) < 2:
                        assert time.monotonic() < deadline, await events(witness)
                        await asyncio.sleep(0.05)
                else:
                    await evidence.aclose()
            got = [(d["source"], d["count"], d["summary"]) for d in await events(witness)]
            assert got == [
                ("127.0.0.1", 1, False),
                ("127.0.0.1", 49, True),
                ("::1", 1, False),
                ("::/64", 49, True),  # the group: IPv6 folds to its /64
            ], got
        finally:
            await witness.close()
            for store in stores:
                store.close()

    asyncio.run(body())


def test_evidence_changed_on_disk_is_refused_and_witnessed(tmp_path: Path) -> None:
    async def test(env: Env) -> None:
        esc = await env.escalation()
        added = await env.client.post(
            f"/v1/escalations/{esc}/evidence",
            json={"name": "n", "content": "original"},
            headers=env.auth("council"),
        )
        eid = (await added.json())["id"]
        link = await (
            await env.client.post(
                f"/v1/escalations/{esc}/evidence/{eid}/links", headers=env.auth("operator")
            )
        ).json()
        (tmp_path / "evidence" / "blobs" / eid[:2] / eid).write_bytes(b"tampered")
        resp = await env.client.get(f"/v1/evidence/{link['token']}")
        assert resp.status == 500
        assert resp.headers["Cache-Control"] == "no-store"
        assert b"tampered" not in await resp.read()
        last_type, last = (await env.witnessed())[-1]
        assert last_type == "SECURITY_REJECTED"
        assert (last["layer"], last["reason"], last["sha256"]) == (
            "evidence_store",
            "evidence_corrupt",
            eid,
        )

    run(tmp_path, test)


async def live_token(env: Env) -> str:
    """The token of a fresh link to one item of a new escalation."""
    esc = await env.escalation()
    added = await env.client.post(
        f"/v1/escalations/{esc}/evidence", data=b"x", headers=env.auth("council")
    )
    eid = (await added.json())["id"]
    resp = await env.client.post(
        f"/v1/escalations/{esc}/evidence/{eid}/links", headers=env.auth("council")
    )
    token: str = (await resp.json())["token"]
    return token


def test_a_link_token_never_reaches_the_log_even_off_the_route(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A live link asked for with a trailing slash or an extra segment matches no route (404); its
    path still carries the credential, so the request log names the prefix only, as it names the
    route template for the link route itself."""
    caplog.set_level(logging.INFO, "ifescalate.api")

    async def test(env: Env) -> None:
        token = await live_token(env)
        for path in (f"/v1/evidence/{token}/", f"/v1/evidence/{token}/x"):
            assert (await env.client.get(path)).status == 404, path
        assert (await env.client.get(f"/v1/evidence/{token}")).status == 200  # still live
        assert token not in caplog.text
        assert caplog.text.count("GET /v1/evidence/... 404") == 2, caplog.text
        assert "GET /v1/evidence/{token} 200" in caplog.text

    run(tmp_path, test)


def test_a_witness_failure_tells_the_link_holder_nothing_internal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The link route is unauthenticated: when the witness cannot record the read (here another
    process holds the SQLite write lock past the store's busy timeout), the holder gets 503 and
    nothing served, but not the store's error, which names the database file (or a PostgreSQL
    host); that goes to the log."""
    caplog.set_level(logging.WARNING, "ifescalate.api")

    async def test(env: Env) -> None:
        path = f"/v1/evidence/{await live_token(env)}"
        db = tmp_path / "witness.sqlite3"
        locker = sqlite3.connect(db, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            got = await env.client.get(path)
            body = await got.text()
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert got.status == 503, body
        assert "witness unavailable" in body and "locked" not in body
        assert str(tmp_path) not in body and "sqlite3" not in body, body
        assert "database is locked" in caplog.text  # the operator still learns why
        assert (await env.client.get(path)).status == 200  # control: the lock was the cause

    run(tmp_path, test)


@pytest.mark.parametrize(
    ("media_type", "inline"),
    [
        ("text/plain; charset=utf-8", True),
        ("application/PDF", True),
        ("image/png", True),
        ("text/html", False),
        ("image/svg+xml", False),
        ("application/xhtml+xml", False),
        ("application/octet-stream", False),
    ],
)
def test_only_passive_types_are_served_inline(media_type: str, inline: bool) -> None:
    from ifescalate.api.evidence import _serve_headers

    headers = _serve_headers(media_type)
    assert headers["Content-Type"] == media_type
    assert ("Content-Disposition" not in headers) is inline
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
