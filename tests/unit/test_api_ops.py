"""/health, /ready, /metrics, /openapi.json (covers exactly the app's routes), /v1/witness over a real
Witness on SQLite, router errors as JSON, and the per-request JSON log line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from tests.unit.test_api_support import running

from ifescalate.api import ApiConfig, openapi_document
from ifescalate.observability import JsonFormatter
from ifescalate.witness import EventType, public_key_hex

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def test_openapi_lists_exactly_the_app_routes(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            served = await (
                await env.client.get("/openapi.json", headers=env.auth("auditor"))
            ).json()
            assert served == openapi_document()
            assert served["openapi"].startswith("3.1")
            documented = {
                (method.upper(), path)
                for path, item in served["paths"].items()
                for method in item
                if method in METHODS
            }
            in_app = {
                (r.method, r.resource.canonical) for r in env.client.server.app.router.routes()
            }
            assert documented == in_app

    asyncio.run(body())


def test_openapi_security_matches_access_rules(tmp_path: Path) -> None:
    """An operation documented as public (``security: []``) is exactly one that needs no token."""

    async def body() -> None:
        async with running(tmp_path) as env:
            doc = openapi_document()
            for path, item in doc["paths"].items():
                for method, op in item.items():
                    if method not in METHODS:
                        continue
                    url = path.replace("{id}", "x")
                    resp = await env.client.request(method.upper(), url)
                    documented_public = op.get("security") == []
                    assert (resp.status != 401) == documented_public, (method, path)
                    if not documented_public:
                        assert "401" in op["responses"] and "403" in op["responses"], (method, path)

    asyncio.run(body())


def test_health_and_ready(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path, ApiConfig(readiness_timeout=0.1)) as env:
            assert await (await env.client.get("/health")).json() == {"status": "ok"}
            ok = await env.client.get("/ready", headers=env.auth("auditor"))
            assert ok.status == 200
            assert await ok.json() == {
                "status": "ready",
                "checks": {"witness": "ok", "sip": "ok"},
                "failed": [],
            }
            env.readiness.checks["sip"] = "no listener on udp:127.0.0.1:5060"
            bad = await env.client.get("/ready", headers=env.auth("auditor"))
            assert bad.status == 503
            assert await bad.json() == {
                "status": "not_ready",
                "checks": {"witness": "ok", "sip": "no listener on udp:127.0.0.1:5060"},
                "failed": ["sip"],
            }
            env.readiness.delay = 1.0
            slow = await env.client.get("/ready", headers=env.auth("auditor"))
            assert slow.status == 503 and (await slow.json())["failed"] == ["readiness"]

    asyncio.run(body())


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_metrics_counts_requests_by_route_template(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            await env.client.get("/v1/escalations/esc-1", headers=env.auth("auditor"))
            await env.client.get("/v1/escalations/esc-2", headers=env.auth("auditor"))
            await env.client.get("/v1/experts")
            await env.client.get("/no/such/thing")
            resp = await env.client.get("/metrics", headers=env.auth("auditor"))
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            s = _samples(await resp.text())
            key = "http_requests_total"
            assert (
                s[(key, (("method", "GET"), ("route", "/v1/escalations/{id}"), ("status", "404")))]
                == 2
            )
            assert s[(key, (("method", "GET"), ("route", "/v1/experts"), ("status", "401")))] == 1
            assert s[(key, (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1
            assert ("sip_active_calls", ()) in s
            denied = await env.client.get("/metrics", headers=env.auth("council"))
            assert denied.status == 403

    asyncio.run(body())


def test_metrics_open_on_loopback_only_when_configured(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            assert (await env.client.get("/metrics")).status == 401
        async with running(tmp_path, ApiConfig(metrics_open_on_loopback=True)) as env:
            resp = await env.client.get("/metrics")  # the test client connects from 127.0.0.1
            assert resp.status == 200 and b"http_requests_total" in await resp.read()
            # Only /metrics is opened, nothing else.
            assert (await env.client.get("/v1/witness")).status == 401

    asyncio.run(body())


def test_router_errors_are_json(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            missing = await env.client.get("/v2/nothing")
            assert missing.status == 404 and await missing.json() == {"error": "Not Found"}
            wrong = await env.client.patch("/v1/experts", headers=env.auth("operator"))
            assert wrong.status == 405
            assert set(wrong.headers["Allow"].split(",")) == {"GET", "POST"}
            assert "error" in await wrong.json()

    asyncio.run(body())


def test_witness_query_and_public_key(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            w = env.witness
            for i, (esc, trace) in enumerate(
                [("e1", "t1"), ("e2", "t2"), ("e1", "t1"), ("e1", "t9")]
            ):
                await w.append(
                    EventType.RINGING,
                    trace_id=trace,
                    escalation_id=esc,
                    actor="ladder",
                    details={"i": i},
                )
            auth = env.auth("auditor")
            got = await (await env.client.get("/v1/witness?escalation_id=e1", headers=auth)).json()
            assert [e["seq"] for e in got["events"]] == [1, 3, 4] and got["next_after"] is None
            assert (
                got["events"][0]["details"] == {"i": 0}
                and len(got["events"][0]["signature"]) == 128
            )
            both = await (
                await env.client.get("/v1/witness?escalation_id=e1&trace_id=t1", headers=auth)
            ).json()
            assert [e["seq"] for e in both["events"]] == [1, 3]
            page = await (await env.client.get("/v1/witness?limit=2", headers=auth)).json()
            assert [e["seq"] for e in page["events"]] == [1, 2] and page["next_after"] == 2
            page = await (
                await env.client.get("/v1/witness?limit=2&after=2", headers=env.auth("operator"))
            ).json()
            assert [e["seq"] for e in page["events"]] == [3, 4]
            bad = await env.client.get("/v1/witness?after=-1", headers=auth)
            assert bad.status == 422 and "after" in (await bad.json())["errors"]
            key = await (
                await env.client.get("/v1/witness/public-key", headers=env.auth("auditor"))
            ).json()
            assert key["algorithm"] == "Ed25519"
            assert key["public_key_hex"] == public_key_hex(w.signer.public_key())
            assert key["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")

    asyncio.run(body())


def test_each_request_logs_one_json_line_with_trace_id(tmp_path: Path) -> None:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("ifescalate.api")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    async def body() -> None:
        async with running(tmp_path) as env:
            payload = {"hazard": "safety", "question": "q", "trace_id": "trace-from-body"}
            await env.client.post(
                "/v1/escalations", data=json.dumps(payload), headers=env.auth("council")
            )
            await env.client.get("/health", headers={"X-IF-Trace-ID": "hdr-7"})

    try:
        asyncio.run(body())
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert len(lines) == 2
    created, health = lines
    assert created["route"] == "/v1/escalations" and created["status"] == 201
    assert created["trace_id"] == "trace-from-body" and created["principal"] == "agent-a"
    assert health["trace_id"] == "hdr-7" and health["message"] == "GET /health 200"
    assert health["principal"] is None and isinstance(health["duration_ms"], float)
