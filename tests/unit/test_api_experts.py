"""/v1/experts over the real SqliteRegistry: passwords become HA1 and are never stored or served."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.unit.test_api_support import running

from ifescalate.guard import provision_digest

EXPERT: dict[str, Any] = {
    "id": "alice",
    "name": "Alice Safety",
    "sip_uri": "sip:alice@127.0.0.1",
    "org": "acme",
    "networks": ["127.0.0.0/8"],
    "specializations": ["safety"],
    "clearance": 5,
    "digest": {"username": "alice", "realm": "ifescalate", "password": "s3cret-pw"},
}


def test_create_hashes_password_and_never_serves_ha1(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            ops = env.auth("operator")
            resp = await env.client.post("/v1/experts", data=json.dumps(EXPERT), headers=ops)
            assert resp.status == 201, await resp.text()
            assert resp.headers["Location"] == "/v1/experts/alice"
            served = await resp.json()
            assert served["digest"] == {
                "username": "alice",
                "realm": "ifescalate",
                "algorithms": ["SHA-256"],
            }
            stored = env.registry.get("alice")
            assert stored.digest == provision_digest("alice", "ifescalate", "s3cret-pw")
            read = await env.client.get("/v1/experts/alice", headers=env.auth("auditor"))
            assert await read.json() == served
            listed = await env.client.get("/v1/experts", headers=env.auth("auditor"))
            text = await listed.text()
            assert "s3cret-pw" not in text and stored.digest.ha1_sha256 not in text
            dup = await env.client.post("/v1/experts", data=json.dumps(EXPERT), headers=ops)
            assert dup.status == 409 and "already exists" in (await dup.json())["error"]
        raw = sqlite3.connect(tmp_path / "registry.db").execute("SELECT doc FROM guard_experts")
        assert "s3cret-pw" not in repr(raw.fetchall())

    asyncio.run(body())


def test_put_keeps_credentials_unless_replaced_and_checks_id(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            ops = env.auth("operator")
            await env.client.post("/v1/experts", data=json.dumps(EXPERT), headers=ops)
            before = env.registry.get("alice").digest
            edited = {k: v for k, v in EXPERT.items() if k != "digest"} | {"clearance": 7}
            resp = await env.client.put("/v1/experts/alice", data=json.dumps(edited), headers=ops)
            assert resp.status == 200 and (await resp.json())["clearance"] == 7
            assert env.registry.get("alice").digest == before
            md5 = {"username": "al", "realm": "r", "password": "p2", "allow_md5": True}
            resp = await env.client.put(
                "/v1/experts/alice", data=json.dumps(edited | {"digest": md5}), headers=ops
            )
            assert (await resp.json())["digest"]["algorithms"] == ["SHA-256", "MD5"]
            assert env.registry.get("alice").digest == provision_digest(
                "al", "r", "p2", allow_md5=True
            )
            resp = await env.client.put(
                "/v1/experts/alice", data=json.dumps(edited | {"digest": None}), headers=ops
            )
            assert "digest" not in await resp.json() and env.registry.get("alice").digest is None
            wrong = await env.client.put(
                "/v1/experts/alice", data=json.dumps(edited | {"id": "bob"}), headers=ops
            )
            assert (await wrong.json()) == {"errors": {"id": "must match the id in the path"}}
            missing = await env.client.put(
                "/v1/experts/bob", data=json.dumps(edited | {"id": "bob"}), headers=ops
            )
            assert missing.status == 404

    asyncio.run(body())


def test_suspend_reinstate_delete(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            ops = env.auth("operator")
            await env.client.post("/v1/experts", data=json.dumps(EXPERT), headers=ops)
            resp = await env.client.post("/v1/experts/alice/suspend", headers=ops)
            assert (await resp.json())["suspended"] is True and env.registry.get("alice").suspended
            resp = await env.client.post(
                "/v1/experts/alice/suspend", data=json.dumps({"suspended": False}), headers=ops
            )
            assert (await resp.json())["suspended"] is False
            bad = await env.client.post(
                "/v1/experts/alice/suspend", data=json.dumps({"suspended": "no"}), headers=ops
            )
            assert (await bad.json()) == {"errors": {"suspended": "must be a boolean"}}
            assert (await env.client.delete("/v1/experts/alice", headers=ops)).status == 204
            assert env.registry.list() == []
            gone = await env.client.delete("/v1/experts/alice", headers=ops)
            assert gone.status == 404 and "alice" in (await gone.json())["error"]
            gone = await env.client.post("/v1/experts/alice/suspend", headers=ops)
            assert gone.status == 404

    asyncio.run(body())


def test_invalid_experts_are_422_with_reasons(tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        (EXPERT | {"sip_uri": "mailto:x@y"}, "expert", "sip_uri"),
        (EXPERT | {"specializations": ["weather"]}, "specializations", "weather"),
        (EXPERT | {"shoe_size": 9}, "expert", "shoe_size"),
        (
            EXPERT | {"digest": {"username": "a", "realm": "r", "password": ""}},
            "digest.password",
            "non-empty",
        ),
        (
            EXPERT | {"digest": {"username": "a", "realm": "r", "password": "p", "x": 1}},
            "digest.x",
            "unknown",
        ),
    ]

    async def body() -> None:
        async with running(tmp_path) as env:
            for payload, field, words in cases:
                resp = await env.client.post(
                    "/v1/experts", data=json.dumps(payload), headers=env.auth("operator")
                )
                assert resp.status == 422, payload
                errors = (await resp.json())["errors"]
                assert words in errors[field], errors
            assert env.registry.list() == []

    asyncio.run(body())
