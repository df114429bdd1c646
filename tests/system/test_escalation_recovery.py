"""A crash mid-escalation: `kill -9` while an expert is ringing, then restart on the same data dir.

What must hold (app.py: the service marks escalations a dead process left in flight as failed): the witness
chain survives the kill intact, the escalation ends with outcome `failed`, and the witness says so.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.peers import free_port

from .conftest import HOST, Deployment, ExpertSpec, assert_chain_ok
from .test_escalation_sipp import sipp_expert

pytestmark = pytest.mark.interop


def test_sigkill_while_ringing_then_restart_marks_failed(
    deploy: Callable[..., Deployment],
) -> None:
    port = free_port("udp")
    # A ring timeout far beyond the test: the expert is still ringing when the process dies.
    dep = deploy([ExpertSpec("frank", f"sip:frank@{HOST}:{port}")], ring_timeout=30, deadline=60)
    with sipp_expert("esc_uas_ring.xml", port, name="sipp-ring") as ringer:
        ringer.grace = 1.0  # the call it holds never ends: do not wait long for it at stop
        first = dep.service().start()
        try:
            esc_id = first.escalate()["id"]
            first.wait_state(esc_id, "ringing", timeout=5)
            before = first.wait_witness(esc_id, "RINGING")
            assert before[-1] == "RINGING", before
        finally:
            first.kill()
        assert first.returncode == -9
        # Nothing ran after the kill, and the chain is intact as it was left.
        chain_after_kill = assert_chain_ok(dep.data_dir)

        with dep.service() as second:
            assert "marked 1 escalation(s) left in flight" in second.output()
            view = second.escalation(esc_id)
            assert view["state"] == "ended"
            assert view["outcome"] == "failed"
            assert view["end_reason"] == "process restarted while the escalation was in flight"
            events = second.witness(esc_id)
            types = [e["type"] for e in events]
            assert types[: len(before)] == before
            assert types[len(before) :] == ["FAILED"], types
            assert events[-1]["details"]["previous_state"] == "ringing"
        # A second restart does not fail it again.
        with dep.service() as third:
            assert "left in flight" not in third.output()
            assert [e["type"] for e in third.witness(esc_id)].count("FAILED") == 1
    n_after_kill = int(chain_after_kill.split()[1])
    n_final = int(assert_chain_ok(dep.data_dir).split()[1])
    assert n_final == n_after_kill + 1
