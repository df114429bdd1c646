"""The escalation state machine (escalation/machine.py) in virtual time: every path, the table, and a
property test over random input sequences."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ifescalate.escalation.machine import (
    Action,
    CancelRing,
    EscalationInput,
    EscalationMachine,
    EscalationProtocolError,
    Finished,
    Hangup,
    Record,
    Ring,
)
from ifescalate.escalation.model import (
    EscalationRequest,
    EscalationState,
    LadderStep,
    Outcome,
    Urgency,
    Verdict,
)

S = EscalationState
REQUEST = EscalationRequest(
    hazard="safety", question="Is this plan safe?", requester="agent-7", urgency=Urgency.HIGH
)
LADDER = (
    LadderStep("ada", "sips:ada@experts.example", 1),
    LadderStep("bob", "sips:bob@experts.example", 2),
    LadderStep("cy", "sips:cy@experts.example", 3),
)
DENIED = {"eve": ("policy-clearance", "policy-hours"), "mal": ("policy-clearance",)}


def new(now: float = 0.0, **kw: float) -> EscalationMachine:
    return EscalationMachine("esc-1", REQUEST, trace_id="trace-1", now=now, **kw)


def ringing(
    now: float = 1.0, ladder: tuple[LadderStep, ...] = LADDER, **kw: float
) -> EscalationMachine:
    m = new(**kw)
    m.guard_decided(ladder, DENIED, "sha256:abc", now)
    return m


def connected(now: float = 5.0, **kw: float) -> EscalationMachine:
    m = ringing(**kw)
    m.answered(0, now)
    return m


def kinds(actions: list[Action]) -> list[str]:
    """Records by their witness type, other actions by class name."""
    return [a.type if isinstance(a, Record) else type(a).__name__ for a in actions]


def records(actions: list[Action]) -> dict[str, Record]:
    return {a.type: a for a in actions if isinstance(a, Record)}


def finished(actions: list[Action]) -> Finished:
    (fin,) = [a for a in actions if isinstance(a, Finished)]
    return fin


# ------------------------------------------------------------------------------- guard


def test_starts_requested_with_the_deadline_armed() -> None:
    m = new(now=10.0, deadline=120.0)
    assert m.state is S.REQUESTED
    assert m.get_timer() == 130.0
    assert m.outcome is None and m.current_index is None and m.ladder == ()


@pytest.mark.parametrize("bad", [{"ring_timeout": 0.0}, {"deadline": -1.0}, {"max_duration": 0.0}])
def test_timeouts_must_be_positive(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        new(**bad)


def test_guard_permits_nobody_rejects() -> None:
    m = new()
    actions = m.guard_decided([], DENIED, "sha256:abc", 1.0)
    assert actions == [
        Record(
            "REJECTED",
            {
                "reason": "guard permitted no expert",
                "denied": {
                    "eve": ["policy-clearance", "policy-hours"],
                    "mal": ["policy-clearance"],
                },
                "policy_set_hash": "sha256:abc",
            },
        ),
        Finished(Outcome.REJECTED, "guard permitted no expert"),
    ]
    assert m.state is S.ENDED and m.outcome is Outcome.REJECTED
    assert m.get_timer() is None
    assert m.guard_policy_ids == ("policy-clearance", "policy-hours")


def test_guard_permit_rings_the_first_step() -> None:
    m = new()
    actions = m.guard_decided(LADDER, DENIED, "sha256:abc", 2.0)
    assert kinds(actions) == ["Ring", "INVITE"]  # GUARD_DECISION is the service's record
    assert actions[0] == Ring(0, "ada", "sips:ada@experts.example")
    assert actions[1] == Record(
        "INVITE", {"index": 0, "expert_id": "ada", "sip_uri": "sips:ada@experts.example", "rank": 1}
    )
    assert m.state is S.RINGING and m.current_index == 0
    assert m.get_timer() == 32.0  # ring timeout before the 300 s deadline


def test_guard_results_on_permitted_steps_are_cleared() -> None:
    m = new()
    m.guard_decided([LadderStep("ada", "sip:ada@x", 1, result="answered")], {}, "h", 1.0)
    assert m.ladder[0].result is None


# ------------------------------------------------------------------------------- answer


def test_answer_first_step_then_bridge_verdict_and_expert_hangup() -> None:
    m = ringing()
    assert m.ringing(0, 2.0) == [Record("RINGING", {"index": 0, "expert_id": "ada"})]
    assert m.ringing(0, 2.5) == []  # 180 then 183: witnessed once
    actions = m.answered(0, 4.0)
    assert actions == [
        Record("CONNECTED", {"index": 0, "expert_id": "ada", "sip_uri": "sips:ada@experts.example"})
    ]
    assert m.state is S.CONNECTED and m.connected_expert == "ada" and m.connected_at == 4.0
    assert m.get_timer() == 3604.0  # the ring timer and the deadline are gone; max duration runs
    assert kinds(m.bridged(4.5)) == ["BRIDGE_ESTABLISHED"]
    assert m.is_bridged
    assert kinds(m.verdict(Verdict.APPROVE, 60.0)) == ["VERDICT"]
    actions = m.hangup("expert", 64.25)
    assert kinds(actions) == ["TERMINATED", "Finished"]
    assert actions[0] == Record(
        "TERMINATED",
        {
            "outcome": "completed",
            "reason": "hangup by expert",
            "by": "expert",
            "expert_id": "ada",
            "duration": 60.25,
        },
    )
    assert finished(actions) == Finished(Outcome.COMPLETED, "hangup by expert")
    assert m.state is S.ENDED and m.get_timer() is None
    assert m.ladder[0].result == "answered" and m.ladder[1].result is None
    assert m.current_verdict is Verdict.APPROVE and m.end_reason == "hangup by expert"


def test_bridge_twice_is_an_error() -> None:
    m = connected()
    m.bridged(6.0)
    with pytest.raises(EscalationProtocolError, match="already bridged"):
        m.bridged(7.0)


# ------------------------------------------------------------------------------- ladder


@pytest.mark.parametrize(
    ("status", "kind", "result"),
    [
        (486, "BUSY", "busy"),
        (600, "BUSY", "busy"),
        (603, "DECLINED", "declined"),
        (408, "NO_ANSWER", "no_answer"),
        (480, "NO_ANSWER", "no_answer"),
        (487, "NO_ANSWER", "no_answer"),
        (500, "NO_ANSWER", "no_answer"),
        (503, "NO_ANSWER", "no_answer"),
        (302, "NO_ANSWER", "no_answer"),
        (404, "NO_ANSWER", "no_answer"),
    ],
)
def test_failure_moves_to_the_next_step(status: int, kind: str, result: str) -> None:
    m = ringing()
    actions = m.call_failed(0, status, 3.0)
    assert kinds(actions) == [kind, "Ring", "INVITE"]
    assert actions[0] == Record(kind, {"index": 0, "expert_id": "ada", "status": status})
    assert actions[1] == Ring(1, "bob", "sips:bob@experts.example")
    assert m.ladder[0].result == result
    assert m.current_index == 1 and m.state is S.RINGING
    assert m.get_timer() == 33.0  # a fresh ring timer for step 1


def test_ring_timeout_cancels_and_moves_on() -> None:
    m = ringing(now=1.0)
    assert m.handle_timer(30.999) == []
    actions = m.handle_timer(31.0)
    assert actions[:2] == [
        CancelRing(0),
        Record("NO_ANSWER", {"index": 0, "expert_id": "ada", "reason": "ring timeout"}),
    ]
    assert actions[2] == Ring(1, "bob", "sips:bob@experts.example")
    assert kinds(actions) == ["CancelRing", "NO_ANSWER", "Ring", "INVITE"]
    assert m.ladder[0].result == "timeout"
    assert m.get_timer() == 61.0


def test_a_late_timer_call_fires_one_ring_timeout_only() -> None:
    # Step 1's ring timer starts when it is rung (now), so it is not already due.
    m = ringing(now=1.0, deadline=10_000.0)
    actions = m.handle_timer(500.0)
    assert kinds(actions) == ["CancelRing", "NO_ANSWER", "Ring", "INVITE"]
    assert m.get_timer() == 530.0


def test_every_step_fails() -> None:
    m = ringing()
    m.call_failed(0, 486, 2.0)
    m.call_failed(1, 603, 3.0)
    actions = m.call_failed(2, 480, 4.0)
    assert kinds(actions) == ["NO_ANSWER", "TERMINATED", "Finished"]
    assert actions[1] == Record(
        "TERMINATED",
        {"outcome": "no_answer", "reason": "none of 3 approved experts answered"},
    )
    assert finished(actions).outcome is Outcome.NO_ANSWER
    assert [s.result for s in m.ladder] == ["busy", "declined", "no_answer"]
    assert m.get_timer() is None


def test_every_step_times_out() -> None:
    m = ringing(now=0.0, ring_timeout=10.0)
    m.handle_timer(10.0)
    m.handle_timer(20.0)
    actions = m.handle_timer(30.0)
    assert kinds(actions) == ["CancelRing", "NO_ANSWER", "TERMINATED", "Finished"]
    assert finished(actions).outcome is Outcome.NO_ANSWER
    assert [s.result for s in m.ladder] == ["timeout"] * 3


# ------------------------------------------------------------------------------- deadline


def test_deadline_while_ringing() -> None:
    m = ringing(now=0.0, ring_timeout=100.0, deadline=150.0)
    m.handle_timer(100.0)  # step 0 times out, step 1 rings until 200
    assert m.get_timer() == 150.0
    actions = m.handle_timer(150.0)
    assert actions == [
        CancelRing(1),
        Record("NO_ANSWER", {"index": 1, "expert_id": "bob", "reason": "deadline"}),
        Record(
            "TERMINATED",
            {"outcome": "timed_out", "reason": "deadline passed before any expert answered"},
        ),
        Finished(Outcome.TIMED_OUT, "deadline passed before any expert answered"),
    ]
    assert m.outcome is Outcome.TIMED_OUT
    assert [s.result for s in m.ladder] == ["timeout", "cancelled", None]


def test_deadline_before_the_guard_answers() -> None:
    m = new(now=0.0, deadline=5.0)
    actions = m.handle_timer(5.0)
    assert kinds(actions) == ["TERMINATED", "Finished"]
    assert finished(actions).outcome is Outcome.TIMED_OUT
    with pytest.raises(EscalationProtocolError):
        m.guard_decided(LADDER, {}, "h", 6.0)


def test_deadline_wins_over_a_simultaneous_ring_timeout() -> None:
    m = ringing(now=0.0, ring_timeout=30.0, deadline=30.0)
    actions = m.handle_timer(30.0)
    assert kinds(actions) == ["CancelRing", "NO_ANSWER", "TERMINATED", "Finished"]
    assert not any(isinstance(a, Ring) for a in actions)
    assert finished(actions).outcome is Outcome.TIMED_OUT


def test_deadline_does_not_apply_once_connected() -> None:
    m = connected(deadline=50.0)
    assert m.handle_timer(1000.0) == []
    assert m.state is S.CONNECTED


# ------------------------------------------------------------------------------- max duration


def test_max_duration_hangs_up() -> None:
    m = connected(now=5.0, max_duration=600.0)
    assert m.handle_timer(604.9) == []
    actions = m.handle_timer(605.0)
    assert actions == [
        Hangup(0, "max duration"),
        Record(
            "TERMINATED",
            {
                "outcome": "completed",
                "reason": "max duration",
                "expert_id": "ada",
                "duration": 600.0,
            },
        ),
        Finished(Outcome.COMPLETED, "max duration"),
    ]
    # Our BYE's completion (or the expert's crossing BYE) arrives afterwards and is nothing new.
    assert m.hangup("expert", 606.0) == []
    assert m.bridged(606.0) == []


# ------------------------------------------------------------------------------- cancel


def test_cancel_before_the_guard_answers() -> None:
    m = new()
    actions = m.cancel("council", 1.0)
    assert actions == [
        Record("CANCELLED", {"by": "council", "reason": "cancelled by council"}),
        Finished(Outcome.CANCELLED, "cancelled by council"),
    ]


def test_cancel_while_ringing() -> None:
    m = ringing()
    actions = m.cancel("council", 3.0)
    assert actions == [
        CancelRing(0),
        Record(
            "CANCELLED",
            {"index": 0, "expert_id": "ada", "by": "council", "reason": "cancelled by council"},
        ),
        Finished(Outcome.CANCELLED, "cancelled by council"),
    ]
    assert m.ladder[0].result == "cancelled" and m.get_timer() is None
    # RFC 3261 §9.1: the INVITE still completes with 487; that is late and ignored.
    assert m.call_failed(0, 487, 3.1) == []
    assert m.ringing(0, 3.1) == []


def test_cancel_while_connected() -> None:
    m = connected(now=5.0)
    actions = m.cancel("operator", 35.0)
    assert actions == [
        Hangup(0, "cancelled by operator"),
        Record(
            "TERMINATED",
            {
                "outcome": "cancelled",
                "reason": "cancelled by operator",
                "by": "operator",
                "expert_id": "ada",
                "duration": 30.0,
            },
        ),
        Finished(Outcome.CANCELLED, "cancelled by operator"),
    ]
    assert m.hangup("expert", 35.1) == []  # crossing BYE


@pytest.mark.parametrize(
    "end",
    [
        lambda m: m.cancel("council", 9.0),
        lambda m: m.hangup("expert", 9.0),
        lambda m: m.handle_timer(10_000.0),
    ],
)
def test_cancel_when_ended_is_a_no_op(end: Callable[[EscalationMachine], list[Action]]) -> None:
    m = connected()
    end(m)
    outcome = m.outcome
    assert m.cancel("council", 20.0) == []
    assert m.cancel("council", 21.0) == []
    assert m.outcome is outcome and m.state is S.ENDED


def test_cancel_after_rejection_is_a_no_op() -> None:
    m = new()
    m.guard_decided([], {}, "h", 1.0)
    assert m.cancel("council", 2.0) == []
    assert m.outcome is Outcome.REJECTED


# ------------------------------------------------------------------------------- late legs


def test_late_answer_after_ring_timeout_is_hung_up() -> None:
    m = ringing(now=0.0)
    m.handle_timer(30.0)
    actions = m.answered(0, 30.2)  # the 200 OK crossed our CANCEL
    assert actions == [
        Hangup(0, "late answer after cancel"),
        Record(
            "TERMINATED", {"index": 0, "expert_id": "ada", "reason": "late answer after cancel"}
        ),
    ]
    assert m.state is S.RINGING and m.current_index == 1  # step 1 still rings
    assert m.answered(0, 30.3) == []  # a second report of the same 200: once is enough
    assert m.call_failed(0, 487, 30.4) == []


def test_late_answer_while_connected_to_another_step() -> None:
    m = ringing(now=0.0)
    m.handle_timer(30.0)
    m.answered(1, 31.0)
    assert kinds(m.answered(0, 31.5)) == ["Hangup", "TERMINATED"]
    assert m.state is S.CONNECTED and m.connected_expert == "bob"


def test_late_answer_after_cancel_when_ended() -> None:
    m = ringing()
    m.cancel("council", 2.0)
    actions = m.answered(0, 2.1)
    assert actions[0] == Hangup(0, "late answer after cancel")
    assert m.state is S.ENDED and m.outcome is Outcome.CANCELLED


def test_an_answer_after_a_failure_is_hung_up_too() -> None:
    # Never leave a callee on a call nobody hears, even if the peer broke the rules (RFC 3261 §15).
    m = ringing()
    m.call_failed(0, 486, 2.0)
    assert m.answered(0, 2.5)[0] == Hangup(0, "late answer after failure")
    assert m.ladder[0].result == "busy" and m.current_index == 1


def test_late_failure_and_ringing_for_an_old_step_are_ignored() -> None:
    m = ringing(now=0.0)
    m.handle_timer(30.0)
    assert m.call_failed(0, 487, 30.1) == []
    assert m.ringing(0, 30.1) == []
    assert m.ladder[0].result == "timeout"  # the late 487 does not rewrite history
    assert m.current_index == 1 and m.state is S.RINGING


def test_failure_repeated_for_a_failed_step_is_ignored() -> None:
    m = ringing()
    m.call_failed(0, 486, 2.0)
    assert m.call_failed(0, 486, 2.1) == []
    assert m.current_index == 1


# ------------------------------------------------------------------------------- verdicts


def test_verdicts_replace_each_other_and_are_each_recorded() -> None:
    m = connected()
    first = m.verdict(Verdict.NEED_MORE_INFO, 10.0)
    second = m.verdict(Verdict.REJECT, 20.0)
    assert first == [
        Record(
            "VERDICT",
            {"index": 0, "expert_id": "ada", "verdict": "need_more_info", "replaces": None},
        )
    ]
    assert second == [
        Record(
            "VERDICT",
            {"index": 0, "expert_id": "ada", "verdict": "reject", "replaces": "need_more_info"},
        )
    ]
    assert m.current_verdict is Verdict.REJECT
    assert m.view(created_at=1.0, updated_at=2.0).verdict is Verdict.REJECT


@pytest.mark.parametrize("make", [new, ringing])
def test_verdict_before_connected_is_an_error(make: Callable[[], EscalationMachine]) -> None:
    m = make()
    with pytest.raises(EscalationProtocolError, match="verdict"):
        m.verdict(Verdict.APPROVE, 3.0)


def test_verdict_after_the_end_is_an_error() -> None:
    m = connected()
    m.hangup("expert", 9.0)
    with pytest.raises(EscalationProtocolError):
        m.verdict(Verdict.APPROVE, 10.0)


# ------------------------------------------------------------------------------- the table


def _reach(state: str) -> EscalationMachine:
    if state == "requested":
        return new()
    if state == "ringing":
        return ringing()
    if state == "connected":
        return connected()
    if state == "ended-rejected":
        m = new()
        m.guard_decided([], {}, "h", 1.0)
        return m
    if state == "ended-completed":
        m = connected()
        m.hangup("expert", 9.0)
        return m
    raise AssertionError(state)


_INPUTS: dict[str, Callable[[EscalationMachine], list[Action]]] = {
    "guard": lambda m: m.guard_decided(LADDER, {}, "h", 50.0),
    "ringing": lambda m: m.ringing(0, 50.0),
    "answered": lambda m: m.answered(0, 50.0),
    "failed": lambda m: m.call_failed(0, 486, 50.0),
    "bridged": lambda m: m.bridged(50.0),
    "verdict": lambda m: m.verdict(Verdict.APPROVE, 50.0),
    "hangup": lambda m: m.hangup("expert", 50.0),
    "cancel": lambda m: m.cancel("council", 50.0),
}

_ALLOWED = {
    "requested": {"guard", "cancel"},
    "ringing": {"ringing", "answered", "failed", "cancel"},
    "connected": {"bridged", "verdict", "hangup", "cancel"},
    "ended-rejected": {"cancel"},
    "ended-completed": {"cancel"},
}


@pytest.mark.parametrize("state", sorted(_ALLOWED))
@pytest.mark.parametrize("name", sorted(_INPUTS))
def test_every_state_and_input_pair(state: str, name: str) -> None:
    m = _reach(state)
    if name in _ALLOWED[state]:
        assert isinstance(_INPUTS[name](m), list)
    else:
        with pytest.raises(EscalationProtocolError):
            _INPUTS[name](m)


def test_the_table_has_no_entries_for_the_transient_approved_state() -> None:
    assert not [key for key in EscalationMachine.TABLE if key[0] is S.APPROVED]
    assert {i for _, i in EscalationMachine.TABLE} == set(EscalationInput)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.answered(1, 2.0),  # step 1 was never rung
        lambda m: m.ringing(-1, 2.0),
        lambda m: m.call_failed(7, 486, 2.0),
        lambda m: m.call_failed(0, 200, 2.0),  # a 2xx is an answer, not a failure
        lambda m: m.call_failed(0, 180, 2.0),
        lambda m: m.hangup("nobody", 2.0),
    ],
)
def test_impossible_leg_inputs_are_errors(
    call: Callable[[EscalationMachine], list[Action]],
) -> None:
    m = ringing()
    with pytest.raises(EscalationProtocolError):
        call(m)
    assert m.state is S.RINGING and m.current_index == 0  # and nothing changed


def test_answered_twice_for_the_connected_step_is_an_error() -> None:
    m = connected()
    with pytest.raises(EscalationProtocolError):
        m.answered(0, 6.0)


def test_record_types_are_witness_event_types() -> None:
    with pytest.raises(ValueError, match="HELLO"):
        Record("HELLO", {})


# ------------------------------------------------------------------------------- view


def test_view_snapshot() -> None:
    m = ringing()
    m.call_failed(0, 603, 2.0)
    m.answered(1, 3.0)
    v = m.view(created_at=1_700_000_000.0, updated_at=1_700_000_003.0)
    assert v.id == "esc-1" and v.trace_id == "trace-1"
    assert v.state is S.CONNECTED and v.outcome is None
    assert (v.hazard, v.question, v.requester, v.urgency) == (
        "safety",
        "Is this plan safe?",
        "agent-7",
        Urgency.HIGH,
    )
    assert (v.created_at, v.updated_at) == (1_700_000_000.0, 1_700_000_003.0)
    assert [s.result for s in v.ladder] == ["declined", "answered", None]
    assert v.connected_expert == "bob"
    assert v.guard_policy_ids == ("policy-clearance", "policy-hours")
    assert v.end_reason is None
    assert v.to_dict()["state"] == "connected"


# ------------------------------------------------------------------------------- property


_STATUSES = st.sampled_from([180, 200, 302, 404, 408, 480, 486, 487, 500, 503, 600, 603, 699, 700])
# "cur" stands for the step being rung, so that answers and failures often land.
_INDEX = st.sampled_from([-1, 0, 1, 2, 3, "cur", "cur", "cur"])
_ARGS: dict[str, st.SearchStrategy[object]] = {
    "guard": st.sampled_from([0, 1, 2, 3, 3]),
    "ringing": _INDEX,
    "answered": _INDEX,
    "failed": st.tuples(_INDEX, _STATUSES),
    "bridged": st.none(),
    "verdict": st.sampled_from(list(Verdict)),
    "hangup": st.sampled_from(["expert", "council", "system", "x"]),
    "cancel": st.sampled_from(["council", "operator"]),
    "timer": st.none(),
}
# Weighted towards leg responses and timers so that most runs get past ringing.
_NAMES = [
    "guard",
    "ringing",
    "answered",
    "answered",
    "answered",
    "failed",
    "failed",
    "bridged",
    "verdict",
]
_NAMES += ["verdict", "hangup", "cancel", "timer", "timer"]
_OPS = st.sampled_from(_NAMES).flatmap(lambda name: st.tuples(st.just(name), _ARGS[name]))
_DT = st.sampled_from([0.0, 0.5, 0.5, 3.0, 15.0, 40.0])
_STEPS = st.lists(st.tuples(_OPS, _DT), max_size=40)
_START = st.one_of(st.none(), st.sampled_from([0, 1, 2, 3, 3, 3]))


def _index(m: EscalationMachine, arg: object) -> int:
    if arg == "cur":
        return m.current_index if m.current_index is not None else 0
    assert isinstance(arg, int)
    return arg


def _apply(m: EscalationMachine, op: str, arg: object, now: float) -> list[Action]:
    if op == "guard":
        assert isinstance(arg, int)
        return m.guard_decided(LADDER[:arg], DENIED, "h", now)
    if op == "ringing":
        return m.ringing(_index(m, arg), now)
    if op == "answered":
        return m.answered(_index(m, arg), now)
    if op == "failed":
        assert isinstance(arg, tuple)
        return m.call_failed(_index(m, arg[0]), arg[1], now)
    if op == "bridged":
        return m.bridged(now)
    if op == "verdict":
        assert isinstance(arg, Verdict)
        return m.verdict(arg, now)
    if op == "hangup":
        assert isinstance(arg, str)
        return m.hangup(arg, now)
    if op == "cancel":
        assert isinstance(arg, str)
        return m.cancel(arg, now)
    timer = m.get_timer()
    return m.handle_timer(timer if timer is not None else now)


def _check_batch(m: EscalationMachine, actions: list[Action], was_ended: bool) -> None:
    fins = [a for a in actions if isinstance(a, Finished)]
    terminal_records = [
        a
        for a in actions
        if isinstance(a, Record)
        and (
            a.type in {"REJECTED", "CANCELLED"}
            or (a.type == "TERMINATED" and "outcome" in a.details)
        )
    ]
    assert len(terminal_records) == len(fins) <= 1, "one terminal record per Finished"
    if fins:
        assert actions[-1] is fins[0], "Finished comes last"
        terminal = actions[-2]
        assert isinstance(terminal, Record)
        assert terminal.type in {"REJECTED", "CANCELLED", "TERMINATED"}
        assert m.outcome is fins[0].outcome and m.end_reason == fins[0].reason
    if was_ended:
        # Only a hang-up of a late-answering leg may still come out of an ended escalation.
        assert kinds(actions) in ([], ["Hangup", "TERMINATED"])


@settings(max_examples=600, deadline=None)
@given(_START, _STEPS)
def test_random_inputs_keep_the_invariants(
    start: int | None, steps: list[tuple[tuple[str, object], float]]
) -> None:
    m = new(now=0.0, ring_timeout=20.0, deadline=240.0, max_duration=60.0)
    now = 0.0
    all_actions: list[Action] = []
    rung: list[int] = []
    if start is not None:  # usually the guard answers first; sometimes never or late
        steps = [(("guard", start), 0.0), *steps]
    for (op, arg), dt in steps:
        now += dt
        before = m.state
        was_ended = before is S.ENDED
        try:
            actions = _apply(m, op, arg, now)
        except EscalationProtocolError:
            assert m.state is before, "a refused input changes nothing"
            continue
        _check_batch(m, actions, was_ended)
        if was_ended:
            assert m.state is S.ENDED
        rung += [a.index for a in actions if isinstance(a, Ring)]
        all_actions += actions
        assert (m.outcome is None) == (m.state is not S.ENDED)
        assert m.state is not S.APPROVED  # transient only
        if m.state is S.ENDED:
            assert m.get_timer() is None
    if m.state is not S.ENDED:
        all_actions += m.cancel("system", now + 1.0)
    assert sum(isinstance(a, Finished) for a in all_actions) == 1
    assert m.cancel("system", now + 2.0) == []
    assert rung == list(range(len(rung))), "each step is rung once, in rank order"
    for a in all_actions:
        if isinstance(a, CancelRing | Hangup):
            assert a.index in rung
