"""/v1/escalations: 422 reasons, requester from the token, idempotency passthrough, visibility,
cancel, and the server-sent event stream (framing, Last-Event-ID resume, heartbeats, end)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from tests.unit.test_api_support import Env, running

from ifescalate.api import ApiConfig
from ifescalate.escalation.model import Urgency

GOOD: dict[str, Any] = {"hazard": "safety", "question": "Is this plan safe?"}


async def post(env: Env, body: object, *, who: str = "council", **headers: str) -> Any:
    return await env.client.post(
        "/v1/escalations", data=json.dumps(body), headers={**env.auth(who), **headers}
    )


def test_create_takes_requester_from_token_and_returns_view(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            payload = {
                **GOOD,
                "urgency": "high",
                "trace_id": "tr-1",
                "evidence": [{"name": "log.txt", "sensitivity": 3, "content": "x"}],
            }
            resp = await post(env, payload)
            assert resp.status == 201
            view = await resp.json()
            assert view["requester"] == "agent-a"
            assert resp.headers["Location"] == f"/v1/escalations/{view['id']}"
            req = env.service.requests[view["id"]]
            assert req.requester == "agent-a" and req.urgency is Urgency.HIGH
            assert req.trace_id == "tr-1" and req.sensitivity == 3
            assert req.evidence[0].content_type == "text/plain"

    asyncio.run(body())


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        ({"question": "q"}, {"hazard": "required"}),
        (
            {"hazard": 3, "question": ["q"]},
            {"hazard": "must be a string", "question": "must be a string"},
        ),
        (
            {**GOOD, "requester": "someone-else"},
            {"requester": "set from the API token; do not send it"},
        ),
        ({**GOOD, "colour": "red"}, {"colour": "unknown field"}),
        ({**GOOD, "urgency": "asap"}, {"urgency": "must be one of low, normal, high, critical"}),
        ({**GOOD, "evidence": {"name": "x"}}, {"evidence": "must be a list"}),
        (
            {**GOOD, "evidence": [{"name": "a"}, "b", {"sensitivity": True, "x": 1}]},
            {
                "evidence[1]": "must be an object",
                "evidence[2].name": "required",
                "evidence[2].sensitivity": "must be an integer",
                "evidence[2].x": "unknown field",
            },
        ),
        (
            {**GOOD, "evidence": [{"name": "a", "sensitivity": 11}]},
            {"evidence[0].sensitivity": "must be 0-10"},
        ),
        (
            {**GOOD, "hazard": "weather"},
            {"hazard": "must be one of safety, alignment, ethics, bias, security, privacy"},
        ),
        ({**GOOD, "question": "   "}, {"question": "must be 1-4000 characters"}),
        (
            {**GOOD, "trace_id": "has space"},
            {"trace_id": "must be 1-128 characters of A-Z a-z 0-9 . _ : -"},
        ),
        ([GOOD], {"body": "must be a JSON object"}),
    ],
)
def test_bad_input_is_422_with_reasons(
    tmp_path: Path, payload: object, errors: dict[str, str]
) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            resp = await post(env, payload)
            assert resp.status == 422
            assert (await resp.json()) == {"errors": errors}
            assert env.service.requests == {}

    asyncio.run(body())


def test_malformed_json_and_empty_body(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            resp = await env.client.post(
                "/v1/escalations", data=b"{nope", headers=env.auth("council")
            )
            assert resp.status == 422
            assert (await resp.json())["errors"]["body"].startswith("not valid JSON")
            resp = await env.client.post("/v1/escalations", headers=env.auth("council"))
            assert (await resp.json()) == {"errors": {"body": "a JSON object is required"}}

    asyncio.run(body())


def test_body_over_limit_is_413_json(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path, ApiConfig(max_body_bytes=1000)) as env:
            resp = await post(env, {**GOOD, "question": "q" * 2000})
            assert resp.status == 413
            assert "error" in await resp.json()
            assert (await post(env, GOOD)).status == 201

    asyncio.run(body())


def test_idempotency_key_is_passed_through(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            first = await (await post(env, GOOD, **{"Idempotency-Key": "k-1"})).json()
            again = await (await post(env, GOOD, **{"Idempotency-Key": "k-1"})).json()
            other = await (await post(env, GOOD)).json()
            assert first["id"] == again["id"] != other["id"]
            assert env.service.idempotency_keys == ["k-1", "k-1", None]
            resp = await post(env, GOOD, **{"Idempotency-Key": "has space"})
            assert resp.status == 422
            assert "Idempotency-Key" in (await resp.json())["errors"]

    asyncio.run(body())


def test_council_sees_and_cancels_only_its_own(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            c = env.client
            mine = (await (await post(env, GOOD)).json())["id"]
            theirs = (await (await post(env, GOOD, who="council2")).json())["id"]
            assert (
                await c.get(f"/v1/escalations/{mine}", headers=env.auth("council"))
            ).status == 200
            assert (
                await c.get(f"/v1/escalations/{theirs}", headers=env.auth("council"))
            ).status == 404
            listed = await (await c.get("/v1/escalations", headers=env.auth("council"))).json()
            assert [v["id"] for v in listed["escalations"]] == [mine]
            everything = await (await c.get("/v1/escalations", headers=env.auth("auditor"))).json()
            assert {v["id"] for v in everything["escalations"]} == {mine, theirs}
            assert (
                await c.delete(f"/v1/escalations/{theirs}", headers=env.auth("council"))
            ).status == 404
            resp = await c.delete(f"/v1/escalations/{theirs}", headers=env.auth("operator"))
            assert resp.status == 200 and (await resp.json())["outcome"] == "cancelled"
            assert env.service.cancelled_by == [(theirs, "ops")]
            unknown = await c.delete("/v1/escalations/esc-99", headers=env.auth("operator"))
            assert unknown.status == 404 and "esc-99" in (await unknown.json())["error"]
            bad = await c.get("/v1/escalations?limit=0", headers=env.auth("auditor"))
            assert (await bad.json()) == {"errors": {"limit": "must be 1-1000"}}

    asyncio.run(body())


async def _create_with_events(env: Env, n: int, *, end: bool) -> str:
    esc = (await (await post(env, GOOD)).json())["id"]
    for i in range(1, n + 1):
        await env.service.emit(esc, f"STEP{i}", {"i": i, "text": "two\nlines"}, end=end and i == n)
    return esc


def test_sse_framing_is_exact_and_stream_ends_with_escalation(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            esc = await _create_with_events(env, 2, end=True)
            resp = await env.client.get(
                f"/v1/escalations/{esc}/events", headers=env.auth("council")
            )
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/event-stream"
            assert resp.headers["Cache-Control"] == "no-cache"
            text = await asyncio.wait_for(resp.text(), 5)
            data = [
                f'{{"escalation_id":"{esc}","seq":{i},"type":"STEP{i}","time":{1999 + i}.0,'
                f'"details":{{"i":{i},"text":"two\\nlines"}}}}'
                for i in (1, 2)
            ]
            assert text == (
                f"id: 1\nevent: STEP1\ndata: {data[0]}\n\nid: 2\nevent: STEP2\ndata: {data[1]}\n\n"
            )

    asyncio.run(body())


def test_sse_resumes_after_last_event_id(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            esc = await _create_with_events(env, 3, end=True)
            url = f"/v1/escalations/{esc}/events"
            resp = await env.client.get(url, headers={**env.auth("auditor"), "Last-Event-ID": "2"})
            text = await asyncio.wait_for(resp.text(), 5)
            assert text.startswith("id: 3\nevent: STEP3\n") and text.count("id: ") == 1
            resp = await env.client.get(url + "?after=1", headers=env.auth("auditor"))
            assert (await asyncio.wait_for(resp.text(), 5)).count("id: ") == 2
            bad = await env.client.get(url, headers={**env.auth("auditor"), "Last-Event-ID": "x"})
            assert bad.status == 422 and "Last-Event-ID" in (await bad.json())["errors"]
            missing = await env.client.get(
                "/v1/escalations/esc-404/events", headers=env.auth("auditor")
            )
            assert missing.status == 404

    asyncio.run(body())


def test_sse_live_events_and_heartbeats(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path, ApiConfig(heartbeat_seconds=0.05)) as env:
            esc = await _create_with_events(env, 1, end=False)
            resp = await env.client.get(
                f"/v1/escalations/{esc}/events", headers=env.auth("council")
            )
            first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
            assert first.startswith(b"id: 1\nevent: STEP1\n")
            beat = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
            assert beat == b": heartbeat\n\n"
            await env.service.emit(esc, "TERMINATED", end=True)
            rest = await asyncio.wait_for(resp.content.read(), 5)
            frames = [f for f in rest.split(b"\n\n") if f and f != b": heartbeat"]
            assert frames == [
                b"id: 2\nevent: TERMINATED\ndata: "
                + json.dumps(
                    {
                        "escalation_id": esc,
                        "seq": 2,
                        "type": "TERMINATED",
                        "time": 2001.0,
                        "details": {},
                    },
                    separators=(",", ":"),
                ).encode()
            ]

    asyncio.run(body())


def test_sse_client_disconnect_closes_the_event_iterator(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path, ApiConfig(heartbeat_seconds=0.02)) as env:
            esc = await _create_with_events(env, 1, end=False)
            resp = await env.client.get(
                f"/v1/escalations/{esc}/events", headers=env.auth("council")
            )
            await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
            assert env.service.open_streams == 1
            resp.close()
            await asyncio.sleep(0.2)  # heartbeats hit the closed socket; the handler must finish
            ok = await env.client.get("/health")
            assert ok.status == 200
            samples = env.metrics.render().decode()
            assert env.service.open_streams == 0
            route = 'route="/v1/escalations/{id}/events",status="499"'
            assert f'http_requests_total{{method="GET",{route}}} 1.0' in samples

    asyncio.run(body())


def test_service_unavailable_is_503_with_reason(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            env.service.unavailable = "witness unavailable: chain broken at sequence 3"
            resp = await post(env, GOOD)
            assert resp.status == 503
            assert "chain broken at sequence 3" in (await resp.json())["error"]

    asyncio.run(body())
