"""Escalations end to end with SIPp as the expert's phone: connect, signed INVITE headers, cancel, hang-up.

Each test runs `ifescalate serve` as a subprocess (own data dir, registry and short timers) and drives it
over the HTTP API as a council agent would; SIPp on a free loopback port plays the expert.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ifescalate.escalation.signing import verify_invite_headers
from tests.peers import SippProcess, free_port

from .conftest import HOST, SCENARIOS, Deployment, ExpertSpec, parse_sipp_messages

pytestmark = pytest.mark.interop


def sipp_expert(
    scenario: str, port: int, *, message_file: Path | None = None, name: str = "sipp"
) -> SippProcess:
    args = ["-sf", str(SCENARIOS / scenario), "-i", HOST, "-p", str(port), "-m", "50"]
    if message_file is not None:
        args += ["-trace_msg", "-message_file", str(message_file)]
    return SippProcess(args, listen=(HOST, port, "udp"), max_lifetime=60, name=name)


def wait_sipp(sipp: SippProcess, counter: str, at_least: int, timeout: float = 10.0) -> int:
    """Poll SIPp's per-second CSV until `counter` (e.g. SuccessfulCall(C)) reaches `at_least`."""
    deadline = time.monotonic() + timeout
    while True:
        value = int(sipp.stats().get(counter, "0") or 0)
        if value >= at_least or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_sipp_expert_answers_signed_invite_then_cancel_sends_bye(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    port = free_port("udp")
    uri = f"sip:carol@{HOST}:{port}"
    dep = deploy([ExpertSpec("carol", uri)])
    messages = tmp_path / "carol-messages.log"
    with (
        sipp_expert("esc_uas_answer.xml", port, message_file=messages) as sipp,
        dep.service() as svc,
    ):
        created = svc.escalate(trace_id="trace-sys-1", urgency="high")
        assert created["trace_id"] == "trace-sys-1"
        esc_id = created["id"]
        view = svc.wait_state(esc_id, "connected")
        assert view["connected_expert"] == "carol"
        assert [s["result"] for s in view["ladder"]] == ["answered"]
        types = svc.wait_witness(esc_id, "CONNECTED")
        assert types[:3] == ["ESCALATION_REQUESTED", "GUARD_DECISION", "INVITE"]
        assert "RINGING" in types  # the scenario sends 180 before 200
        assert types.index("INVITE") < types.index("RINGING") < types.index("CONNECTED")
        assert not {"NO_ANSWER", "FAILED", "TERMINATED"} & set(types), types

        # The INVITE the expert's phone received: every IF header, and a signature that verifies with
        # the service's published key for this expert and URI (escalation/signing.py).
        invites = parse_sipp_messages(messages, "INVITE")
        assert len(invites) >= 1, messages.read_text() if messages.exists() else "no message log"
        headers = invites[0]
        assert headers["X-IF-Trace-ID"] == "trace-sys-1"
        assert headers["X-IF-Hazard"] == "safety"
        assert headers["X-IF-Escalation-ID"] == esc_id
        assert headers["Subject"] == "IF.ESCALATE: safety - Case trace-sys-1"
        key = svc.public_key()
        assert verify_invite_headers(
            key, headers, expert_id="carol", expert_uri=uri, now=time.time()
        )
        # The same headers must not verify for another expert, nor with a flipped byte.
        assert not verify_invite_headers(
            key, headers, expert_id="mallory", expert_uri=uri, now=time.time()
        )
        tampered = {**headers, "X-IF-Hazard": "privacy"}
        assert not verify_invite_headers(
            key, tampered, expert_id="carol", expert_uri=uri, now=time.time()
        )

        cancelled = svc.cancel(esc_id)
        assert cancelled["id"] == esc_id
        ended = svc.wait_state(esc_id, "ended")
        assert ended["outcome"] == "cancelled"
        svc.wait_witness(esc_id, "TERMINATED")
        # The BYE reached SIPp: its scenario (INVITE/180/200/ACK/BYE/200) completed.
        assert wait_sipp(sipp, "SuccessfulCall(C)", 1) == 1, sipp.stats()
        types = svc.event_types(esc_id)
        assert types[-1] == "TERMINATED", types
        assert "FAILED" not in types
        # Cancelling again is idempotent: the ended view comes back.
        assert svc.cancel(esc_id)["outcome"] == "cancelled"
        byes = [line for line in messages.read_text().splitlines() if line.startswith("BYE sip:")]
        assert len(byes) >= 1
    result = sipp.stop()
    assert result.failed == 0, result.explain()


def test_sipp_expert_hangs_up_completes(deploy: Callable[..., Deployment]) -> None:
    port = free_port("udp")
    dep = deploy([ExpertSpec("dave", f"sip:dave@{HOST}:{port}")])
    with sipp_expert("esc_uas_hangup.xml", port) as sipp, dep.service() as svc:
        esc_id = svc.escalate()["id"]
        svc.wait_state(esc_id, "connected", timeout=10)
        # The scenario sends BYE one second after the ACK; the service answers 200 and ends it.
        ended = svc.wait_state(esc_id, "ended", timeout=10)
        assert ended["outcome"] == "completed", ended
        assert ended["connected_expert"] == "dave"
        assert wait_sipp(sipp, "SuccessfulCall(C)", 1) == 1, sipp.stats()
        types = svc.wait_witness(esc_id, "TERMINATED")
        assert types[0] == "ESCALATION_REQUESTED"
        assert "CONNECTED" in types
        assert types[-1] == "TERMINATED", types
        terminated = svc.witness(esc_id)[-1]
        assert "expert" in str(terminated["details"]), terminated
    result = sipp.stop()
    assert result.failed == 0, result.explain()
