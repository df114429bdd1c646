"""Layer 6 for call-ins: an authenticated expert whom IF.guard's policies deny *now* is refused.

SIPp calls in as the expert (digest MD5 against the registry, source inside their networks) while
an escalation rings them at a silent socket. Between the ladder decision and the call-in, the
operator suspends the expert: the call-in gets ``403 Forbidden - expert-not-suspended`` (the
deciding Cedar policy), witnessed as SECURITY_REJECTED with layer policy and the policy id, and
counted in ``security_rejections_total{layer="policy",reason="expert_not_suspended"}``. Reinstated,
the same SIPp call-in connects (the control: the refusal came from the policy, not the setup).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.peers import SippProcess, free_port

from .conftest import HOST, SCENARIOS, Deployment, ExpertSpec, Service, cli_argv
from .test_escalation_dtmf_peers import PASSWORD, USER, add_digest, silent_port

pytestmark = pytest.mark.interop

__all__ = ["silent_port"]  # the fixture, imported for this module's tests


def sipp_call_in(svc: Service, cwd: Path, messages: Path) -> SippProcess:
    args = [
        "-sf", str(SCENARIOS / "uac_auth.xml"), f"{HOST}:{svc.sip_port}",
        "-s", "ifescalate", "-au", USER, "-ap", PASSWORD,
        "-i", HOST, "-p", str(free_port("udp")), "-m", "1", "-d", "500",
        "-recv_timeout", "10000", "-trace_msg", "-message_file", str(messages),
    ]  # fmt: skip
    return SippProcess(args, cwd=cwd, max_lifetime=30, name="sipp-callin")


def metric(svc: Service, name: str) -> float:
    req = urllib.request.Request(svc.api_url + "/metrics")
    req.add_header("Authorization", f"Bearer {svc.tokens['operator']}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_suspended_expert_calling_in_gets_the_policy_403(
    deploy: Callable[..., Deployment], silent_port: int, tmp_path: Path
) -> None:
    dep = deploy([ExpertSpec(USER, f"sip:{USER}@{HOST}:{silent_port}")], ring_timeout=30.0,
                 deadline=60.0)  # fmt: skip
    add_digest(dep, USER)
    series = 'security_rejections_total{layer="policy",reason="expert_not_suspended"}'
    with dep.service() as svc:
        esc_id = svc.escalate()["id"]
        svc.wait_state(esc_id, "ringing")  # the ladder (Cedar at escalation time) permits erin
        status, _ = svc.request("POST", f"/v1/experts/{USER}/suspend", {}, role="operator")
        assert status == 200
        refused_log = tmp_path / "refused.log"
        with sipp_call_in(svc, tmp_path, refused_log) as sipp:
            sipp.process.wait(20)
        refused = sipp.stop()
        assert svc.escalation(esc_id)["state"] == "ringing"  # nobody joined
        denied = metric(svc, series)
        status, _ = svc.request(
            "POST", f"/v1/experts/{USER}/suspend", {"suspended": False}, role="operator"
        )
        assert status == 200
        with sipp_call_in(svc, tmp_path, tmp_path / "admitted.log") as sipp:
            svc.wait_state(esc_id, "connected", timeout=10)
            sipp.process.wait(20)
        admitted = sipp.stop()
    assert refused.failed == 1 and refused.successful == 0, refused.explain()
    text = refused_log.read_text(errors="replace")
    assert "SIP/2.0 403 Forbidden - expert-not-suspended" in text, text[-3000:]
    assert denied == 1.0
    assert admitted.ok, admitted.explain()
    done = subprocess.run(
        [*cli_argv(), "witness", "export", "--data-dir", str(dep.data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    policy = [
        e["details"]
        for e in events
        if e["type"] == "SECURITY_REJECTED" and e["details"]["layer"] == "policy"
    ]
    assert len(policy) == 1, policy
    assert policy[0]["reason"] == "expert_not_suspended", policy
    assert policy[0]["policy_ids"] == ["expert-not-suspended"], policy
    assert policy[0]["status"] == 403, policy
