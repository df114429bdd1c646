"""API auth: every route's access rule (401 without/with a bad token, 403 with the wrong scope), and
the TokenStore (hashed at rest, constant-time check, revocation)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from tests.unit.test_api_support import running

from ifescalate.api import Scope, TokenError, TokenStore

CO, OP, AU = "council", "operator", "auditor"
# (method, route template) -> the scopes allowed; None = public. Must list every route of the app.
ACCESS: dict[tuple[str, str], set[str] | None] = {
    ("GET", "/health"): None,
    ("GET", "/ready"): {CO, OP, AU},
    ("GET", "/openapi.json"): {CO, OP, AU},
    ("GET", "/metrics"): {AU, OP},
    ("POST", "/v1/escalations"): {CO},
    ("GET", "/v1/escalations"): {CO, OP, AU},
    ("GET", "/v1/escalations/{id}"): {CO, OP, AU},
    ("DELETE", "/v1/escalations/{id}"): {CO, OP},
    ("GET", "/v1/escalations/{id}/events"): {CO, OP, AU},
    ("GET", "/v1/escalations/{id}/media"): {CO},
    ("POST", "/v1/escalations/{id}/evidence"): {CO, OP},
    ("GET", "/v1/escalations/{id}/evidence"): {CO, OP, AU},
    ("POST", "/v1/escalations/{id}/evidence/{eid}/links"): {CO, OP},
    ("GET", "/v1/evidence/{token}"): None,
    ("GET", "/v1/experts"): {AU, OP},
    ("POST", "/v1/experts"): {OP},
    ("GET", "/v1/experts/{id}"): {AU, OP},
    ("PUT", "/v1/experts/{id}"): {OP},
    ("DELETE", "/v1/experts/{id}"): {OP},
    ("POST", "/v1/experts/{id}/suspend"): {OP},
    ("GET", "/v1/witness"): {AU, OP},
    ("GET", "/v1/witness/public-key"): {CO, OP, AU},
}


def app_routes(app: object) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():  # type: ignore[attr-defined]
        routes.add((route.method, route.resource.canonical))
    return routes


def test_access_table_covers_every_route(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            assert app_routes(env.client.server.app) == set(ACCESS)

    asyncio.run(body())


@pytest.mark.parametrize(("method", "template"), sorted(ACCESS))
def test_route_auth(tmp_path: Path, method: str, template: str) -> None:
    allowed = ACCESS[(method, template)]
    path = template.replace("{id}", "nobody")

    async def body() -> None:
        async with running(tmp_path) as env:
            c = env.client
            anonymous = await c.request(method, path)
            if allowed is None:
                assert anonymous.status not in (401, 403)
                return
            assert anonymous.status == 401
            assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="ifescalate"'
            assert "error" in await anonymous.json()
            forged = env.token[OP][:-4] + "AAAA"
            for bad in (f"Bearer {forged}", "Bearer nonsense", f"Basic {env.token[OP]}"):
                resp = await c.request(method, path, headers={"Authorization": bad})
                assert resp.status == 401, bad
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            for scope in (CO, OP, AU):
                resp = await c.request(method, path, headers=env.auth(scope))
                if scope in allowed:
                    assert resp.status not in (401, 403), scope
                else:
                    assert resp.status == 403, scope
                    assert "insufficient_scope" in resp.headers["WWW-Authenticate"]
                    assert "needs scope" in (await resp.json())["error"]

    asyncio.run(body())


def test_revoked_token_is_refused(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            url = "/v1/experts"
            assert (await env.client.get(url, headers=env.auth(AU))).status == 200
            (info,) = [t for t in env.tokens.list() if t.principal == "audit"]
            assert env.tokens.revoke(info.id)
            resp = await env.client.get(url, headers=env.auth(AU))
            assert resp.status == 401
            assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]

    asyncio.run(body())


def test_token_store_keeps_only_hashes(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = TokenStore(db)
    token = store.create("agent", ["council", Scope.AUDITOR])
    who = store.verify(token)
    assert who is not None and who.name == "agent"
    assert who.scopes == frozenset({Scope.COUNCIL, Scope.AUDITOR})
    store.close()
    secret = token.split("_", 2)[2]
    rows = sqlite3.connect(db).execute("SELECT * FROM api_tokens").fetchall()
    assert len(rows) == 1 and secret not in repr(rows)
    again = TokenStore(db)  # persisted
    assert again.verify(token) == who
    assert again.verify(token + "x") is None
    assert again.verify(token.replace("ife_", "xyz_")) is None
    assert again.verify("") is None
    assert not again.revoke("000000000000")
    again.close()


def test_token_secret_may_contain_underscores(tmp_path: Path) -> None:
    # 0xff bytes encode to "_" in base64url: the secret must survive the id split.
    store = TokenStore(":memory:", token_bytes=lambda n: b"\xff" * n)
    token = store.create("agent", ["operator"])
    assert "_" in token.split("_", 2)[2]
    assert store.verify(token) is not None


@pytest.mark.parametrize(
    ("principal", "scopes", "message"),
    [("", ["council"], "principal"), ("a", [], "at least one"), ("a", ["root"], "unknown scope")],
)
def test_token_store_refuses_bad_arguments(principal: str, scopes: list[str], message: str) -> None:
    store = TokenStore(":memory:")
    with pytest.raises(TokenError, match=message):
        store.create(principal, scopes)
