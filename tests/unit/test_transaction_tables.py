"""The four §17 machines as tables: every reachable (state, input) pair walked, table shape, and random
input sequences keeping the invariants (split from test_transaction.py)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.test_transaction import (
    ACK_SAME_BRANCH,
    INVITE,
    OPTIONS,
    SERVER_INVITE,
    invite_response,
    options_response,
    run_until,
    send_times,
)

from ifescalate.sip.transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ProtocolError,
    Send,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    Terminated,
    Timeout,
    Timers,
    TxEvent,
    TxState,
)

# ------------------------------------------------------------- every (state, input) pair, walked

Tx = (
    ClientInviteTransaction
    | ClientNonInviteTransaction
    | ServerInviteTransaction
    | ServerNonInviteTransaction
)
Step = Callable[[Tx, float], list[TxEvent]]


def _timer(tx: Tx, now: float) -> list[TxEvent]:
    when = tx.get_timer()
    return tx.handle_timer(now if when is None else max(now, when))


def _due(tx: Tx, now: float) -> list[TxEvent]:
    return tx.handle_timer(now)


def _client_inputs() -> dict[str, Step]:
    def response(status: int) -> Step:
        def step(tx: Tx, now: float) -> list[TxEvent]:
            assert isinstance(tx, ClientInviteTransaction | ClientNonInviteTransaction)
            r = (
                invite_response(status, "X")
                if tx.request.method == "INVITE"
                else options_response(status, "X")
            )
            return tx.receive_response(r, now)

        return step

    return {
        "1xx": response(180),
        "2xx": response(200),
        "4xx": response(486),
        "timer": _timer,
        "transport": lambda tx, now: tx.transport_error(now),
    }


def _server_inputs() -> dict[str, Step]:
    def request(ack: bool) -> Step:
        def step(tx: Tx, now: float) -> list[TxEvent]:
            assert isinstance(tx, ServerInviteTransaction | ServerNonInviteTransaction)
            return tx.receive_request(ACK_SAME_BRANCH if ack else tx.request, now)

        return step

    def send(status: int) -> Step:
        def step(tx: Tx, now: float) -> list[TxEvent]:
            assert isinstance(tx, ServerInviteTransaction | ServerNonInviteTransaction)
            r = (
                invite_response(status, "X")
                if tx.request.method == "INVITE"
                else options_response(status, "X")
            )
            return tx.send_response(r, now)

        return step

    return {
        "request": request(False),
        "ack": request(True),
        "send1xx": send(180),
        "send2xx": send(200),
        "send4xx": send(486),
        "timer": _timer,
        "transport": lambda tx, now: tx.transport_error(now),
    }


MACHINES: list[tuple[str, Callable[[bool], Tx], dict[str, Step]]] = [
    (
        "ict",
        lambda rel: ClientInviteTransaction(INVITE, reliable=rel, now=0.0),
        _client_inputs(),
    ),
    (
        "nict",
        lambda rel: ClientNonInviteTransaction(OPTIONS, reliable=rel, now=0.0),
        _client_inputs(),
    ),
    (
        "ist",
        lambda rel: ServerInviteTransaction(SERVER_INVITE, reliable=rel, now=0.0),
        _server_inputs(),
    ),
    (
        "nist",
        lambda rel: ServerNonInviteTransaction(OPTIONS, reliable=rel, now=0.0),
        _server_inputs(),
    ),
]


def _fresh(make: Callable[[bool], Tx], reliable: bool) -> Tx:
    tx = make(reliable)
    if isinstance(tx, ClientInviteTransaction | ClientNonInviteTransaction):
        tx.start(0.0)
    return tx


def _apply(tx: Tx, step: Step, now: float) -> list[TxEvent]:
    """Apply one input and check the invariants every machine keeps."""
    before = tx.state
    timer_before = tx.get_timer()
    try:
        events = step(tx, now)
    except ProtocolError:
        # Only the TU can be refused, and a refusal changes nothing.
        assert tx.state is before and tx.get_timer() == timer_before
        raise
    if before is TxState.TERMINATED:
        assert events == [] and tx.state is TxState.TERMINATED
    # Terminated is reported exactly when it is entered, and last.
    entered = before is not TxState.TERMINATED and tx.state is TxState.TERMINATED
    assert events.count(Terminated()) == (1 if entered else 0)
    if entered:
        assert events[-1] == Terminated()
    # Timers run only while not terminated, and only those the state owns.
    when = tx.get_timer()
    if tx.state is TxState.TERMINATED:
        assert when is None
    else:
        assert tx.state in type(tx).STATE_TIMERS
        owned = type(tx).STATE_TIMERS[tx.state]
        assert tx._retx_input is None or tx._retx_input in owned
        assert tx._deadline_input is None or tx._deadline_input in owned
        if step is _timer or step is _due:
            assert when is None or when > now  # every due timer fired
    return events


@pytest.mark.parametrize("reliable", [False, True])
@pytest.mark.parametrize(("name", "make", "inputs"), MACHINES, ids=[m[0] for m in MACHINES])
def test_every_reachable_state_input_pair(
    name: str, make: Callable[[bool], Tx], inputs: dict[str, Step], reliable: bool
) -> None:
    """Breadth-first over states by input paths; apply every input in every reachable state."""
    seen: set[TxState] = set()
    queue: deque[list[str]] = deque([[]])
    pairs = 0
    while queue:
        path = queue.popleft()
        tx = _fresh(make, reliable)
        now = 0.0
        for label in path:
            now += 0.01
            _apply(tx, inputs[label], now)
        state = tx.state
        if state in seen:
            continue
        seen.add(state)
        for label, step in inputs.items():
            probe = _fresh(make, reliable)
            t = 0.0
            for prior in path:
                t += 0.01
                _apply(probe, inputs[prior], t)
            try:
                _apply(probe, step, t + 0.01)
            except ProtocolError:
                assert label.startswith("send") and name == "ist"
                continue
            pairs += 1
            queue.append([*path, label])
    table_states = {s for s, _ in type(_fresh(make, reliable)).TABLE}
    table_states.add(TxState.TERMINATED)
    # Every state of the table is reachable on unreliable transports (reliable skips some waits).
    if not reliable:
        assert seen == table_states
    assert pairs >= len(seen)


@pytest.mark.parametrize(("name", "make", "inputs"), MACHINES, ids=[m[0] for m in MACHINES])
def test_tables_are_well_formed(
    name: str, make: Callable[[bool], Tx], inputs: dict[str, Step]
) -> None:
    cls = type(_fresh(make, False))
    for (state, _inp), (action, nxt) in cls.TABLE.items():
        assert state is not TxState.TERMINATED  # nothing leaves Terminated
        assert state in cls.STATE_TIMERS and nxt in cls.STATE_TIMERS
        assert callable(action)
    assert cls.STATE_TIMERS[TxState.TERMINATED] == frozenset()


@settings(max_examples=300, deadline=None)
@given(
    machine=st.sampled_from(MACHINES),
    reliable=st.booleans(),
    script=st.lists(
        st.tuples(st.integers(min_value=0, max_value=6), st.floats(min_value=0.0, max_value=20.0)),
        max_size=25,
    ),
)
def test_random_input_sequences_keep_invariants(
    machine: tuple[str, Callable[[bool], Tx], dict[str, Step]],
    reliable: bool,
    script: list[tuple[int, float]],
) -> None:
    name, make, inputs = machine
    steps = list(inputs.values())
    tx = _fresh(make, reliable)
    now = 0.0
    terminated_events = 0
    for index, dt in script:
        now += dt
        # As the event loop would: timers due by now fire before the next input is handled.
        terminated_events += _apply(tx, _due, now).count(Terminated())
        try:
            events = _apply(tx, steps[index % len(steps)], now)
        except ProtocolError:
            assert name == "ist"
            continue
        terminated_events += events.count(Terminated())
    assert terminated_events == (1 if tx.state is TxState.TERMINATED else 0)
    # Whatever happened, every machine ends by itself once its timers run out.
    run = run_until(tx, now + 10_000.0)
    assert tx.state is TxState.TERMINATED or (tx.get_timer() is None and not run)


def test_state_timer_wins_a_tie_with_the_retransmission_timer() -> None:
    # With T2 = T1, Timer E falls on 64*T1 exactly; Timer F fires then and nothing is resent.
    tx = ClientNonInviteTransaction(OPTIONS, reliable=False, now=0.0, timers=Timers(t2=0.5))
    tx.start(0.0)
    fired = run_until(tx, 100.0)
    assert len(send_times(fired)) == 63
    assert fired[-1] == (32.0, [Timeout("F"), Terminated()])


def test_late_handle_timer_fires_in_deadline_order() -> None:
    tx = ClientNonInviteTransaction(OPTIONS, reliable=False, now=0.0)
    tx.start(0.0)
    # One call long after everything was due: the overdue retransmission, then Timer F.
    assert tx.handle_timer(40.0) == [Send(OPTIONS), Timeout("F"), Terminated()]
