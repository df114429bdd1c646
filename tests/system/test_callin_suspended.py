"""A suspended expert's right password gets no further than 403, whatever they send.

With the security gate a suspended expert's digest passes (so that layer 6 can refuse them by
name instead of with a 401 that looks like a wrong password). That must not let them past the
gate anywhere else: an INVITE when no escalation rings them, or an out-of-dialog MESSAGE, is
refused 403 like the call-in the policy denies (tests/system/test_callin_policy.py). Controls: the
same SIPp runs for the expert reinstated reach the user agent (404 No Pending Escalation for the
INVITE, 200 for the MESSAGE), so the 403s come from the suspension, not the setup.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.peers import SippProcess, free_port

from .conftest import HOST, SCENARIOS, Deployment, ExpertSpec, Service
from .test_escalation_dtmf_peers import PASSWORD, USER, add_digest, silent_port

pytestmark = pytest.mark.interop

__all__ = ["silent_port"]


def sipp_auth(svc: Service, cwd: Path, scenario: str, messages: Path) -> str:
    """One SIPp run of ``scenario`` as the expert; the SIP messages it saw."""
    args = [
        "-sf", str(SCENARIOS / scenario), f"{HOST}:{svc.sip_port}",
        "-s", "ifescalate", "-au", USER, "-ap", PASSWORD,
        "-i", HOST, "-p", str(free_port("udp")), "-m", "1", "-d", "200",
        "-recv_timeout", "5000", "-trace_msg", "-message_file", str(messages),
    ]  # fmt: skip
    with SippProcess(args, cwd=cwd, max_lifetime=20, name="sipp-suspended") as sipp:
        sipp.process.wait(15)
    sipp.stop()
    return messages.read_text(errors="replace")


def final_status(text: str) -> str:
    """The status line answering the authenticated request: the first final response after the
    401 challenge (SIPp's BYE after a refused INVITE gets its own 481, ignored here)."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("SIP/2.0 ")]
    finals = [line for line in lines if not line.startswith(("SIP/2.0 1", "SIP/2.0 401"))]
    assert lines[:1] == ["SIP/2.0 401 Unauthorized"] and finals, text[-2000:]
    return finals[0]


def test_suspended_expert_gets_403_for_invite_without_escalation_and_for_message(
    deploy: Callable[..., Deployment], silent_port: int, tmp_path: Path
) -> None:
    dep = deploy([ExpertSpec(USER, f"sip:{USER}@{HOST}:{silent_port}")])
    add_digest(dep, USER)
    with dep.service() as svc:
        status, _ = svc.request("POST", f"/v1/experts/{USER}/suspend", {}, role="operator")
        assert status == 200
        invite = sipp_auth(svc, tmp_path, "uac_auth.xml", tmp_path / "invite-suspended.log")
        message = sipp_auth(svc, tmp_path, "uac_message_auth.xml", tmp_path / "msg-suspended.log")
        status, _ = svc.request(
            "POST", f"/v1/experts/{USER}/suspend", {"suspended": False}, role="operator"
        )
        assert status == 200
        invite_ok = sipp_auth(svc, tmp_path, "uac_auth.xml", tmp_path / "invite-active.log")
        message_ok = sipp_auth(svc, tmp_path, "uac_message_auth.xml", tmp_path / "msg-active.log")
    assert final_status(invite_ok).startswith("SIP/2.0 404"), invite_ok[-2000:]
    assert final_status(message_ok).startswith("SIP/2.0 200"), message_ok[-2000:]
    assert final_status(invite).startswith("SIP/2.0 403 Forbidden"), invite[-2000:]
    assert final_status(message).startswith("SIP/2.0 403 Forbidden"), message[-2000:]
