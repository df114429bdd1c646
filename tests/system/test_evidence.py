"""Evidence end to end: `ifescalate serve`, SIPp as the expert's phone, links fetched over real HTTP.

The council agent raises two escalations (both answered by the SIPp expert), adds evidence, gets
links and fetches them as the expert's browser would: the exact bytes with their media type and no
caching; then the refusals, each with its own status and reason: an expired link (410), a tampered
one (403), a link naming another escalation (404), a link bound to another expert (403), and a link
whose escalation has ended (410). SIPp checks that the INVITE carried a Call-Info link and that a
MESSAGE with a link arrived after answering. The witness records every access and refusal, and
`ifescalate witness verify` passes on the data dir.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.peers import SippProcess, free_port

from .conftest import (
    HOST,
    SCENARIOS,
    Deployment,
    ExpertSpec,
    HttpError,
    Service,
    assert_chain_ok,
    parse_sipp_messages,
)

pytestmark = pytest.mark.interop

LINK_TTL = 30


def fetch(url: str, *, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """GET without any credentials: the link is the credential."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def upload(svc: Service, esc_id: str, data: bytes, media_type: str, name: str) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"{svc.api_url}/v1/escalations/{esc_id}/evidence?name={name}", data=data, method="POST"
    )
    req.add_header("Authorization", f"Bearer {svc.tokens['council']}")
    req.add_header("Content-Type", media_type)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def link(svc: Service, esc_id: str, eid: str, **body: Any) -> dict[str, Any]:
    status, issued = svc.request("POST", f"/v1/escalations/{esc_id}/evidence/{eid}/links", body)
    assert status == 201, issued
    assert isinstance(issued, dict)
    return issued


def forge(data_dir: Path, escalation_id: str, evidence_id: str, expires: int) -> str:
    """A token signed with the service's own key (as only someone holding the data dir could):
    the signature is good, so what refuses it is the scope check behind the signature."""
    key = (data_dir / "evidence_link.key").read_bytes()
    esc = escalation_id.encode()
    payload = (
        struct.pack(">BBQ", 1, 1, expires)
        + bytes((len(esc),))
        + esc
        + bytes.fromhex(evidence_id)
        + b"\x00"
    )
    tag = hmac.new(key, b"ifescalate/evidence-link/v1\x00" + payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(payload + tag).rstrip(b"=").decode()


def refusal(url: str) -> tuple[int, str, str]:
    status, headers, body = fetch(url)
    assert headers.get("Cache-Control") == "no-store", headers
    parsed = json.loads(body)
    return status, parsed["reason"], parsed["error"]


def all_witness(svc: Service) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        _, page = svc.request("GET", f"/v1/witness?after={after}&limit=500", role="auditor")
        events += page["events"]
        if page["next_after"] is None:
            return events
        after = page["next_after"]


def test_evidence_links_over_http_and_sip(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    port = free_port("udp")
    dep = deploy([ExpertSpec("carol", f"sip:carol@{HOST}:{port}")], ring_timeout=5.0)
    config = yaml.safe_load(dep.config.read_text())
    config["evidence"] = {"link_ttl": LINK_TTL, "max_bytes": 300_000}
    dep.config.write_text(yaml.safe_dump(config))
    messages = tmp_path / "carol-messages.log"
    sipp_args = ["-sf", str(SCENARIOS / "esc_uas_evidence.xml"), "-i", HOST, "-p", str(port)]
    sipp_args += ["-m", "2", "-trace_msg", "-message_file", str(messages)]
    plan = "step 1: disable the rate limiter\nstep 2: deploy\n"
    with (
        SippProcess(sipp_args, listen=(HOST, port, "udp"), max_lifetime=60, name="carol") as sipp,
        dep.service() as svc,
    ):
        inline = [{"name": "plan.txt", "content_type": "text/plain", "content": plan}]
        esc_a = svc.escalate(evidence=inline)["id"]
        svc.wait_state(esc_a, "connected")
        esc_b = svc.escalate(evidence=[{"name": "b.txt", "content": "other case"}])["id"]
        svc.wait_state(esc_b, "connected")

        # Evidence added over the API: bytes with their media type, content-addressed.
        blob = os.urandom(200_000)
        status, item = upload(svc, esc_a, blob, "application/octet-stream", "trace.bin")
        assert status == 201, item
        assert item["sha256"] == item["id"] == hashlib.sha256(blob).hexdigest()
        assert (item["size"], item["media_type"], item["name"]) == (
            200_000,
            "application/octet-stream",
            "trace.bin",
        )
        assert upload(svc, esc_a, blob, "application/octet-stream", "trace.bin")[0] == 200
        assert upload(svc, esc_a, os.urandom(300_001), "application/octet-stream", "big")[0] == 413
        assert upload(svc, esc_a, b"x", "not a type", "bad")[0] == 422
        assert upload(svc, "f" * 32, b"x", "text/plain", "nowhere")[0] == 404
        _, listed = svc.request("GET", f"/v1/escalations/{esc_a}/evidence", role="auditor")
        plan_sha = hashlib.sha256(plan.encode()).hexdigest()
        assert {e["sha256"] for e in listed["evidence"]} == {plan_sha, item["sha256"]}

        # A link opens over plain HTTP without a bearer token: exact bytes, type, no caching.
        issued = link(svc, esc_a, item["id"], ttl=120)
        assert issued["url"].startswith(svc.api_url + "/v1/evidence/")
        assert issued["expires_at"] - time.time() <= 120
        status, headers, body = fetch(issued["url"])
        assert status == 200
        assert body == blob
        assert headers["Content-Type"] == "application/octet-stream"
        assert headers["Cache-Control"] == "no-store"
        assert headers["X-Content-Type-Options"] == "nosniff"

        # Expired (a one-second link, fetched after its expiry second).
        short = link(svc, esc_a, item["id"], ttl=1)
        time.sleep(max(0.0, short["expires_at"] - time.time()) + 0.2)
        assert refusal(short["url"])[:2] == (410, "expired")

        # Tampered: one character of the signed payload changed.
        token = issued["token"]
        i = 20
        flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        assert refusal(f"{svc.api_url}/v1/evidence/{flipped}")[:2] == (403, "bad_signature")
        assert refusal(f"{svc.api_url}/v1/evidence/not-a-token")[:2] == (400, "malformed")

        # Another escalation: the API will not issue it, and a link signed with the right key that
        # names escalation B with A's evidence is refused by the scope check.
        with pytest.raises(AssertionError, match="404"):
            link(svc, esc_b, item["id"])
        forged = forge(dep.data_dir, esc_b, item["id"], int(time.time()) + 60)
        assert refusal(f"{svc.api_url}/v1/evidence/{forged}")[:2] == (404, "not_in_escalation")

        # Bound to an expert the escalation is not with.
        dave = link(svc, esc_a, item["id"], expert_id="dave")
        assert refusal(dave["url"])[:2] == (403, "out_of_scope")

        # SIP delivery: the INVITE's Call-Info and the in-dialog MESSAGE carried links for carol.
        invites = parse_sipp_messages(messages, "INVITE")
        assert len(invites) == 2, invites
        call_info = invites[0]["Call-Info"]
        assert call_info.endswith(";purpose=info") and "/v1/evidence/" in call_info, call_info
        status, _, body = fetch(call_info[1 : call_info.index(">")])
        assert (status, body) == (200, plan.encode())
        deadline = time.monotonic() + 10
        while "MESSAGE sip:" not in (messages.read_text() if messages.exists() else ""):
            assert time.monotonic() < deadline, "no MESSAGE reached SIPp"
            time.sleep(0.1)
        text = messages.read_text()
        msg_links = re.findall(r"plan\.txt: (http://\S+/v1/evidence/[A-Za-z0-9_-]+)", text)
        assert msg_links, text[-3000:]
        status, _, body = fetch(msg_links[0])
        assert (status, body) == (200, plan.encode())

        # Links die with their escalation.
        svc.cancel(esc_a)
        svc.wait_state(esc_a, "ended")
        status, reason, _ = refusal(issued["url"])
        assert (status, reason) == (410, "escalation_ended")
        for method, path, body in (
            ("POST", f"/v1/escalations/{esc_a}/evidence/{item['id']}/links", {}),
            ("POST", f"/v1/escalations/{esc_a}/evidence", {"name": "late", "content": "x"}),
        ):
            with pytest.raises(HttpError) as ended:
                svc.request(method, path, body)
            assert ended.value.status == 409, ended.value
        svc.cancel(esc_b)
        svc.wait_state(esc_b, "ended")

        # The witness: every read with the transport's peer address and the bytes' SHA-256, every
        # refusal as SECURITY_REJECTED naming the layer and reason.
        events = all_witness(svc)
        reads = [
            e
            for e in events
            if e["type"] == "EVIDENCE_ACCESSED" and e["details"]["action"] == "read"
        ]
        assert len(reads) == 3, reads
        assert {r["details"]["sha256"] for r in reads} == {item["sha256"], plan_sha}
        assert all(r["details"]["peer"] == HOST and r["escalation_id"] == esc_a for r in reads)
        added = [
            e["details"]["sha256"]
            for e in events
            if e["type"] == "EVIDENCE_ACCESSED" and e["details"]["action"] == "added"
        ]
        assert added == [item["sha256"]]
        # Links sent over SIP are witnessed in the escalation's own order (its event stream).
        issued = [
            (e["escalation_id"], e["details"]["by"], e["details"]["expert_id"])
            for e in events
            if e["type"] == "EVIDENCE_ACCESSED" and e["details"]["action"] == "link_issued"
        ]
        for esc in (esc_a, esc_b):
            assert (esc, "sip-invite", "carol") in issued, issued
            assert (esc, "sip-message", "carol") in issued, issued
        _, stream = svc.request("GET", f"/v1/escalations/{esc_a}", role="council")
        assert stream["state"] == "ended"
        # Inline evidence entered the chain with the request itself.
        requested = next(
            e for e in events if e["type"] == "ESCALATION_REQUESTED" and e["escalation_id"] == esc_a
        )
        assert requested["details"]["evidence"] == [
            {"name": "plan.txt", "sensitivity": 0, "sha256": plan_sha}
        ]
        refused = {
            e["details"]["reason"]: e
            for e in events
            if e["type"] == "SECURITY_REJECTED" and e["details"].get("layer") == "evidence_link"
        }
        assert sorted(refused) == sorted(
            [
                "expired",
                "bad_signature",
                "malformed",
                "not_in_escalation",
                "out_of_scope",
                "escalation_ended",
            ]
        ), refused
        assert all(e["details"]["source"] == HOST for e in refused.values())
        # Named under its escalation only when our signature vouches for it.
        assert {r: e["escalation_id"] for r, e in refused.items()} == {
            "expired": esc_a,
            "out_of_scope": esc_a,
            "escalation_ended": esc_a,
            "not_in_escalation": esc_b,
            "bad_signature": None,
            "malformed": None,
        }
        # No token in the service's log lines (the path is the credential).
        assert token not in svc.output()
    result = sipp.stop()
    assert result.failed == 0 and result.successful == 2, result.explain()
    assert "OK: " in assert_chain_ok(dep.data_dir)


def test_a_link_sent_to_an_expert_who_declined_stops_working(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """The ladder moves on from a busy expert: the link in the INVITE they got is bound to them
    and refused (403 out_of_scope) once the escalation is with the next expert, whose own link
    opens."""
    busy_port, answer_port = free_port("udp"), free_port("udp")
    dep = deploy(
        [
            ExpertSpec("a-busy", f"sip:a@{HOST}:{busy_port}"),
            ExpertSpec("b-answers", f"sip:b@{HOST}:{answer_port}"),
        ]
    )
    busy_log, answer_log = tmp_path / "busy.log", tmp_path / "answer.log"

    def sipp(scenario: str, port: int, log: Path, name: str) -> SippProcess:
        args = ["-sf", str(SCENARIOS / scenario), "-i", HOST, "-p", str(port), "-m", "1"]
        args += ["-trace_msg", "-message_file", str(log)]
        return SippProcess(args, listen=(HOST, port, "udp"), max_lifetime=60, name=name)

    with (
        sipp("esc_uas_busy.xml", busy_port, busy_log, "sipp-busy") as busy,
        sipp("esc_uas_evidence.xml", answer_port, answer_log, "sipp-answer") as answer,
        dep.service() as svc,
    ):
        evidence = [{"name": "plan.txt", "content": "the plan"}]
        esc_id = svc.escalate(evidence=evidence)["id"]
        view = svc.wait_state(esc_id, "connected")
        assert view["connected_expert"] == "b-answers"

        def call_info(log: Path) -> str:
            (invite,) = parse_sipp_messages(log, "INVITE")
            value = invite["Call-Info"]
            return value[1 : value.index(">")]

        declined, answered = call_info(busy_log), call_info(answer_log)
        assert declined != answered
        status, reason, error = refusal(declined)
        assert (status, reason) == (403, "out_of_scope"), error
        assert "no longer with" in error
        assert fetch(answered)[0::2] == (200, b"the plan")
        svc.cancel(esc_id)
        svc.wait_state(esc_id, "ended")
        svc.wait_witness(esc_id, "TERMINATED")
        events = svc.witness(esc_id)
        refused = [e for e in events if e["type"] == "SECURITY_REJECTED"]
        assert [e["details"]["reason"] for e in refused] == ["out_of_scope"]
        issued = [
            e["details"]["expert_id"]
            for e in events
            if e["type"] == "EVIDENCE_ACCESSED" and e["details"].get("by") == "sip-invite"
        ]
        assert issued == ["a-busy", "b-answers"]
    assert busy.stop().failed == 0
    result = answer.stop()
    assert result.failed == 0 and result.successful == 1, result.explain()
