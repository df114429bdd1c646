"""The ring ladder end to end: busy, ring timeout with CANCEL, and nobody at all, against real SIPp experts.

Experts share the hazard and the number of specializations, so IF.guard ranks them by id: the `a-` expert
is rung first, then `b-`, then `c-` (guard/match.py `_rank_key`). Ring timeout is 2 s.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.peers import free_port

from .conftest import HOST, Deployment, ExpertSpec
from .test_escalation_sipp import sipp_expert, wait_sipp

pytestmark = pytest.mark.interop


def _results(view: dict[str, object]) -> list[tuple[str, object]]:
    ladder = view["ladder"]
    assert isinstance(ladder, list)
    return [(step["expert_id"], step["result"]) for step in ladder]


def test_busy_expert_then_next_answers(deploy: Callable[..., Deployment]) -> None:
    busy_port, answer_port = free_port("udp"), free_port("udp")
    dep = deploy(
        [
            ExpertSpec("b-answers", f"sip:b@{HOST}:{answer_port}"),
            ExpertSpec("a-busy", f"sip:a@{HOST}:{busy_port}"),
        ]
    )
    with (
        sipp_expert("esc_uas_busy.xml", busy_port, name="sipp-busy") as busy,
        sipp_expert("esc_uas_answer.xml", answer_port, name="sipp-answer") as answer,
        dep.service() as svc,
    ):
        esc_id = svc.escalate()["id"]
        view = svc.wait_state(esc_id, "connected")
        assert view["connected_expert"] == "b-answers"
        assert _results(view) == [("a-busy", "busy"), ("b-answers", "answered")]
        types = svc.wait_witness(esc_id, "CONNECTED")
        assert types.count("INVITE") == 2, types
        assert "BUSY" in types, types
        # The 486 was ACKed (the busy scenario ends with the ACK).
        assert wait_sipp(busy, "SuccessfulCall(C)", 1) == 1, busy.stats()
        svc.cancel(esc_id)
        assert svc.wait_state(esc_id, "ended")["outcome"] == "cancelled"
        assert wait_sipp(answer, "SuccessfulCall(C)", 1) == 1, answer.stats()
    assert busy.stop().failed == 0
    assert answer.stop().failed == 0


def test_ring_timeout_cancels_then_next_answers(deploy: Callable[..., Deployment]) -> None:
    ring_port, answer_port = free_port("udp"), free_port("udp")
    dep = deploy(
        [
            ExpertSpec("a-rings", f"sip:a@{HOST}:{ring_port}"),
            ExpertSpec("b-answers", f"sip:b@{HOST}:{answer_port}"),
        ],
        ring_timeout=2.0,
    )
    with (
        sipp_expert("esc_uas_ring.xml", ring_port, name="sipp-ring") as ring,
        sipp_expert("esc_uas_answer.xml", answer_port, name="sipp-answer") as answer,
        dep.service() as svc,
    ):
        esc_id = svc.escalate()["id"]
        ringing = svc.wait_state(esc_id, "ringing", timeout=5)
        assert ringing["ladder"][0]["result"] is None
        view = svc.wait_state(esc_id, "connected", timeout=10)
        assert _results(view) == [("a-rings", "timeout"), ("b-answers", "answered")]
        # The CANCEL reached the ringing expert: its scenario (180, CANCEL/200, 487/ACK) completed.
        assert wait_sipp(ring, "SuccessfulCall(C)", 1) == 1, ring.stats()
        events = svc.witness(esc_id)
        no_answer = [e for e in events if e["type"] == "NO_ANSWER"]
        assert len(no_answer) == 1, [e["type"] for e in events]
        assert no_answer[0]["details"]["reason"] == "ring timeout"
        # The ring timeout is 2 s: the second INVITE follows the first by about that much.
        invites = [e for e in events if e["type"] == "INVITE"]
        assert len(invites) == 2
        svc.cancel(esc_id)
        assert svc.wait_state(esc_id, "ended")["outcome"] == "cancelled"
    assert ring.stop().failed == 0
    assert answer.stop().failed == 0


def test_every_expert_fails_no_answer(deploy: Callable[..., Deployment]) -> None:
    busy_port, ring_port, dead_port = free_port("udp"), free_port("udp"), free_port("udp")
    dep = deploy(
        [
            ExpertSpec("a-busy", f"sip:a@{HOST}:{busy_port}"),
            ExpertSpec("b-rings", f"sip:b@{HOST}:{ring_port}"),
            # Nothing listens here: no answer at all until the ring timeout.
            ExpertSpec("c-absent", f"sip:c@{HOST}:{dead_port}"),
        ],
        ring_timeout=2.0,
    )
    with (
        sipp_expert("esc_uas_busy.xml", busy_port, name="sipp-busy") as busy,
        sipp_expert("esc_uas_ring.xml", ring_port, name="sipp-ring") as ring,
        dep.service() as svc,
    ):
        esc_id = svc.escalate()["id"]
        ended = svc.wait_state(esc_id, "ended", timeout=15)
        assert ended["outcome"] == "no_answer", ended
        assert ended["connected_expert"] is None
        results = dict(_results(ended))
        assert results["a-busy"] == "busy"
        assert results["b-rings"] == "timeout"
        assert results["c-absent"] in {"timeout", "no_answer", "failed"}, results
        assert [expert for expert, _ in _results(ended)] == ["a-busy", "b-rings", "c-absent"]
        assert wait_sipp(ring, "SuccessfulCall(C)", 1) == 1, ring.stats()
        types = svc.wait_witness(esc_id, "TERMINATED")
        assert types.count("INVITE") == 3, types
        assert "CONNECTED" not in types
    assert busy.stop().failed == 0
    assert ring.stop().failed == 0
