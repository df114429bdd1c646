"""Digest authentication (RFC 3261 section 22, RFC 7616) between `sip answer --auth` and real callers.

SIPp 3.6 computes MD5 only and takes the first WWW-Authenticate it sees, while we offer SHA-256 first
(RFC 8760 section 2.4): against SIPp the answerer offers MD5 alone (`--auth-algorithm MD5`). Our own
caller is checked against the default challenge set (SHA-256 first).
"""

from __future__ import annotations

import re

import pytest

from tests.interop.test_sip_cli import HOST, Answerer, sip_call
from tests.peers import SCENARIOS, free_port, run_sipp

pytestmark = pytest.mark.interop

CALLS = 10


def _uac_auth(port: int, password: str) -> list[str]:
    return [
        "-sf", str(SCENARIOS / "uac_auth.xml"), f"{HOST}:{port}", "-s", "bob",
        "-au", "user", "-ap", password, "-i", HOST, "-p", str(free_port("both")),
        "-m", str(CALLS), "-r", "20", "-d", "100", "-recv_timeout", "10000",
    ]  # fmt: skip


def _stats(output: str) -> str:
    return output.rsplit("stopping; stats", 1)[-1]


def test_sipp_with_the_right_password_gets_through() -> None:
    with Answerer(f"udp:{HOST}:0", auth="user:right", extra=["--auth-algorithm", "MD5"]) as ans:
        result = run_sipp(_uac_auth(ans.port(), "right"), timeout=60)
    assert result.ok, result.explain()
    assert (result.successful, result.failed) == (CALLS, 0), result.explain()
    # One challenge and one answer per call: 10 x 401 then 10 x 200 (INVITE) + 10 x 200 (BYE).
    stats = _stats(ans.output())
    assert f"'answered': {CALLS}" in stats, ans.output()
    assert f"'responses_sent_4xx': {CALLS}" in stats, ans.output()


def test_sipp_with_a_wrong_password_never_gets_a_call_through() -> None:
    with Answerer(f"udp:{HOST}:0", auth="user:right", extra=["--auth-algorithm", "MD5"]) as ans:
        # -bye off: SIPp would otherwise send a BYE for each failed call (and get a 481 for it).
        args = [*_uac_auth(ans.port(), "wrong"), "-default_behaviors", "all,-bye"]
        result = run_sipp(args, timeout=60)
    assert result.successful == 0, result.explain()
    assert result.failed == CALLS, result.explain()
    # Each call: a challenge for the bare INVITE, a refusal for the wrong credentials; nothing else.
    stats = _stats(ans.output())
    assert "'answered': 0" in stats, ans.output()
    assert f"'responses_sent_4xx': {2 * CALLS}" in stats, ans.output()
    assert "responses_sent_2xx" not in stats, ans.output()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_our_caller_answers_our_challenge(transport: str) -> None:
    with Answerer(f"{transport}:{HOST}:0", auth="user:right") as ans:
        good = sip_call(ans.uri(transport), "--auth", "user:right", hangup_after=0.3)
        bad = sip_call(ans.uri(transport), "--auth", "user:wrong", hangup_after=0.3)
        none = sip_call(ans.uri(transport), hangup_after=0.3)
    assert good.returncode == 0, good.explain()
    assert re.search(r"^answered 200 call-id \S+$", good.output, re.MULTILINE), good.explain()
    assert good.output.splitlines()[-1] == "ended: bye", good.explain()
    for refused in (bad, none):
        assert refused.returncode == 1, refused.explain()
        assert refused.output.splitlines()[-1] in (
            "call failed: 401 Unauthorized",
            "call failed: 403 Forbidden",
        ), refused.explain()
        assert "answered" not in refused.output
    assert "'answered': 1" in _stats(ans.output()), ans.output()
