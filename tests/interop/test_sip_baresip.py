"""baresip (headless, a real softphone on libre's SIP stack) and the product calling each other.

Both directions must establish a call (baresip logs "Call established") and end it cleanly (baresip logs
"Call with ... terminated", our side prints how it ended or counts the ended call).
"""

from __future__ import annotations

import re

import pytest

from tests.interop.test_sip_cli import HOST, Answerer, sip_call
from tests.peers import Baresip
from tests.peers.baresip import TERMINATED

pytestmark = pytest.mark.interop


def test_baresip_calls_sip_answer() -> None:
    with Answerer(f"udp:{HOST}:0", verbose=True) as answerer:
        # baresip dials at start and quits (hanging up, BYE) after `duration` seconds.
        with Baresip("alice", dial=answerer.uri("udp"), duration=3) as alice:
            remote = alice.wait_established(timeout=10)
            assert remote.startswith(f"sip:bob@{HOST}:{answerer.port('udp')}"), remote
            alice.wait_for(TERMINATED, timeout=15)
            code = alice.wait_exit(timeout=15)
            log = alice.log()
        during = answerer.output()
    assert code == 0, log
    assert re.search(r"^incoming call \S+ from .*alice", during, re.MULTILINE), during
    # baresip's BYE reached us: the call ended on our side too (not by a timeout).
    stats = answerer.output().rsplit("stopping; stats", 1)[-1]
    assert "'answered': 1" in stats and "'ended': 1" in stats, answerer.output()
    assert "SIP/2.0 4" not in log and "SIP/2.0 5" not in log


def test_sip_call_to_baresip() -> None:
    with Baresip("bob", answer=True, duration=20) as bob:
        run = sip_call(bob.uri, hangup_after=1.0)
        bob.wait_established(timeout=5)
        found = bob.wait_for(TERMINATED, timeout=10)
        log = bob.log()
    assert run.returncode == 0, run.explain()
    lines = run.output.splitlines()
    assert any(re.fullmatch(r"answered 200 call-id \S+", line) for line in lines), run.explain()
    assert lines[-1] == "ended: bye", run.explain()
    # Our BYE ended the call after about a second (libre reports a BYE received as the session
    # "closed: Connection reset by peer"), long before baresip's own 20 s limit would have.
    assert found.group(1).startswith("sip:ifescalate@"), log
    assert int(found.group(2)) <= 3, log
    assert "session closed: Connection reset by peer" in log, log
