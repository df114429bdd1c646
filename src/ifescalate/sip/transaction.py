"""The four SIP transaction state machines (RFC 3261 §17 with the RFC 6026 corrections), sans-IO.

Each machine is a transition table ``{(state, input): (action, next_state)}``. Inputs come from three
places: the network (responses, retransmitted requests, ACK), the transaction user (responses to
send) and timers. A network or timer input missing from the table is ignored, as §17 asks for
anything a transaction does not expect; a TU input missing from the table is a bug of the TU and
raises ``ProtocolError``.

Nothing here reads a clock: every entry point takes ``now`` and ``get_timer()`` returns the next
absolute deadline, which the caller passes back to ``handle_timer(now)`` (ARCHITECTURE.md 1). Every
entry point returns the ``TxEvent`` list to act on, in order.

Timers live in two slots, because no state needs more: one retransmission timer (A, E, G) and one
state timer (B, D, F, H, I, J, K, L, M). Entering a state clears the timers that state does not own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

from .errors import SipError
from .message import Headers, Request, Response
from .txtable import (
    TransactionTable,
    TxKey,
    client_key,
    header_tag,
    is_rfc2543_key,
    parse_top_via,
    server_key,
)

__all__ = [
    "DEFAULT_TIMERS",
    "ClientInviteTransaction",
    "ClientNonInviteTransaction",
    "Deliver",
    "ProtocolError",
    "Send",
    "ServerInviteTransaction",
    "ServerNonInviteTransaction",
    "Terminated",
    "Timeout",
    "Timers",
    "TransactionTable",
    "TransportError",
    "TxEvent",
    "TxInput",
    "TxKey",
    "TxState",
    "build_ack",
    "build_cancel",
    "client_key",
    "header_tag",
    "is_rfc2543_key",
    "parse_top_via",
    "server_key",
]


class ProtocolError(SipError):
    """The TU asked a transaction for something its state does not allow (a bug, not bad input)."""

    status = 500
    reason = "Server Internal Error"


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 §17.1.1.1 / Table 4 timer bases, in seconds. ``timer_d`` is §17.1.1.2's 32 s."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0

    def __post_init__(self) -> None:
        if not (self.t1 > 0 and self.t2 >= self.t1 and self.t4 >= 0 and self.timer_d >= 0):
            raise ValueError(f"invalid SIP timers: {self!r}")


DEFAULT_TIMERS = Timers()


# ---------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Send:
    """Transmit ``message`` to the transaction's peer."""

    message: Request | Response


@dataclass(frozen=True, slots=True)
class Deliver:
    """Pass ``message`` (a response, or an ACK for an RFC 6026 Accepted IST) up to the TU."""

    message: Request | Response


@dataclass(frozen=True, slots=True)
class Timeout:
    """Timer B, F (client: the TU treats it as a 408, §8.1.3.1) or H (server: no ACK came)."""

    timer: str = ""

    def __post_init__(self) -> None:
        if self.timer not in ("", "B", "F", "H"):
            raise ValueError(f"not a timeout timer: {self.timer!r}")


@dataclass(frozen=True, slots=True)
class TransportError:
    """The transport failed to send for this transaction (§17.1.4, §17.2.4); the TU is informed."""


@dataclass(frozen=True, slots=True)
class Terminated:
    """The transaction reached Terminated: drop it from the table."""


TxEvent = Send | Deliver | Timeout | TransportError | Terminated

# Argument-less events are immutable: share one instance instead of allocating per transaction.
_TERMINATED = Terminated()
_TRANSPORT_ERROR = TransportError()
_TIMEOUT = {"B": Timeout("B"), "F": Timeout("F"), "H": Timeout("H")}


# ---------------------------------------------------------------------------------------- tables


class TxState(IntEnum):
    """Transaction states of §17 plus RFC 6026's Accepted.

    IntEnum, not Enum: ``Enum.__hash__`` is Python code and every input hashes a (state, input) key.
    """

    CALLING = 1
    TRYING = 2
    PROCEEDING = 3
    COMPLETED = 4
    CONFIRMED = 5
    ACCEPTED = 6
    TERMINATED = 7


class TxInput(IntEnum):
    """Everything that can drive a transaction."""

    # From the network.
    RESPONSE_1XX = 1
    RESPONSE_2XX = 2
    RESPONSE_3XX_6XX = 3
    REQUEST = 4  # a retransmission of the request that created a server transaction
    ACK = 5
    # From the TU.
    SEND_1XX = 10
    SEND_2XX = 11
    SEND_3XX_6XX = 12
    # Timers (§17, Table 4; RFC 6026 §8.4 M and §8.7 L).
    TIMER_A = 20
    TIMER_B = 21
    TIMER_D = 22
    TIMER_E = 23
    TIMER_F = 24
    TIMER_K = 25
    TIMER_G = 26
    TIMER_H = 27
    TIMER_I = 28
    TIMER_J = 29
    TIMER_L = 30
    TIMER_M = 31
    # From the transport, about a send of this transaction.
    TRANSPORT_ERROR = 40


TU_INPUTS = frozenset({TxInput.SEND_1XX, TxInput.SEND_2XX, TxInput.SEND_3XX_6XX})

_S = TxState
_I = TxInput

Action = Callable[[Any, Any, float, list[TxEvent]], None]
Table = dict[tuple[TxState, TxInput], tuple[Action, TxState]]


def _response_input(status: int) -> TxInput:
    if status < 200:
        return _I.RESPONSE_1XX
    return _I.RESPONSE_2XX if status < 300 else _I.RESPONSE_3XX_6XX


def _send_input(status: int) -> TxInput:
    if not 100 <= status <= 699:
        raise ProtocolError(f"cannot send a response with status {status}")
    if status < 200:
        return _I.SEND_1XX
    return _I.SEND_2XX if status < 300 else _I.SEND_3XX_6XX


# ------------------------------------------------------------------------------------ base class


class _Transaction:
    """Table driver and timer slots shared by the four machines."""

    __slots__ = (
        "_deadline",
        "_deadline_input",
        "_immediate",
        "_retx_at",
        "_retx_input",
        "_retx_interval",
        "_state",
        "key",
        "reliable",
        "request",
        "timers",
    )

    IS_CLIENT: ClassVar[bool]
    TABLE: ClassVar[Table]
    #: Which timers may run in each state; entering a state cancels the others.
    STATE_TIMERS: ClassVar[dict[TxState, frozenset[TxInput]]]

    def __init__(
        self, request: Request, reliable: bool, timers: Timers, key: TxKey, state: TxState
    ) -> None:
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self.key = key
        self._state = state
        self._retx_at: float | None = None
        self._retx_input: TxInput | None = None
        self._retx_interval = 0.0
        self._deadline: float | None = None
        self._deadline_input: TxInput | None = None
        self._immediate: TxInput | None = None

    @property
    def state(self) -> TxState:
        return self._state

    @property
    def terminated(self) -> bool:
        return self._state is _S.TERMINATED

    def get_timer(self) -> float | None:
        """The next absolute deadline, or None when no timer runs."""
        r = self._retx_at
        d = self._deadline
        if r is None:
            return d
        if d is None or r < d:
            return r
        return d

    def handle_timer(self, now: float) -> list[TxEvent]:
        """Fire every timer due at ``now``, earliest first (a state timer wins a tie)."""
        out: list[TxEvent] = []
        while True:
            r = self._retx_at
            d = self._deadline
            if d is not None and d <= now and (r is None or d <= r):
                inp = self._deadline_input
                self._deadline = self._deadline_input = None
            elif r is not None and r <= now:
                inp = self._retx_input
                self._retx_at = self._retx_input = None
            else:
                return out
            assert inp is not None
            self._step(inp, None, now, out)

    def transport_error(self, now: float) -> list[TxEvent]:
        """The transport could not send for this transaction (§17.1.4, §17.2.4)."""
        out: list[TxEvent] = []
        self._step(_I.TRANSPORT_ERROR, None, now, out)
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state.name} key={self.key!r}>"

    # -- driver ----------------------------------------------------------------------------------

    def _step(
        self, inp: TxInput, msg: Request | Response | None, now: float, out: list[TxEvent]
    ) -> None:
        entry = self.TABLE.get((self._state, inp))
        if entry is None:
            if inp in TU_INPUTS and self._state is not _S.TERMINATED:
                raise ProtocolError(
                    f"{type(self).__name__}: {inp.name} not allowed in state {self._state.name}"
                )
            return  # §17: unexpected network input and stale timers are ignored
        action, nxt = entry
        if nxt is not self._state:
            self._state = nxt
            allowed = self.STATE_TIMERS[nxt]
            if self._retx_input not in allowed:
                self._retx_at = self._retx_input = None
            if self._deadline_input not in allowed:
                self._deadline = self._deadline_input = None
            action(self, msg, now, out)
            if nxt is _S.TERMINATED:
                self._immediate = None
                out.append(_TERMINATED)
                return
        else:
            action(self, msg, now, out)
        imm = self._immediate
        if imm is not None:
            # A zero-length timer (D, I, J, K on reliable transports) fires at once (§17.1.1.2).
            self._immediate = None
            self._step(imm, None, now, out)

    def _arm_retx(self, inp: TxInput, interval: float, now: float) -> None:
        self._retx_input = inp
        self._retx_interval = interval
        self._retx_at = now + interval

    def _arm_deadline(self, inp: TxInput, delay: float, now: float) -> None:
        if delay <= 0:
            self._immediate = inp
        else:
            self._deadline_input = inp
            self._deadline = now + delay

    # -- actions shared by several machines -------------------------------------------------------

    def _noop(self, msg: object, now: float, out: list[TxEvent]) -> None:
        return None

    def _inform_transport_error(self, msg: object, now: float, out: list[TxEvent]) -> None:
        out.append(_TRANSPORT_ERROR)

    def _deliver(self, msg: Request | Response, now: float, out: list[TxEvent]) -> None:
        out.append(Deliver(msg))


# ------------------------------------------------------------------------- client transactions


class _ClientTransaction(_Transaction):
    __slots__ = ("_started",)

    IS_CLIENT = True

    def __init__(self, request: Request, reliable: bool, timers: Timers, state: TxState) -> None:
        super().__init__(request, reliable, timers, client_key(request), state)
        self._started = False

    def start(self, now: float) -> list[TxEvent]:
        """Send the request for the first time and start the timers."""
        if self._started:
            raise ProtocolError(f"{type(self).__name__} already started")
        self._started = True
        self._start_timers(now)
        return [Send(self.request)]

    def receive_response(self, response: Response, now: float) -> list[TxEvent]:
        """A response the table matched to this transaction (§17.1.3)."""
        out: list[TxEvent] = []
        self._step(_response_input(response.status), response, now, out)
        return out

    def _start_timers(self, now: float) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _resend_request(self, msg: object, now: float, out: list[TxEvent]) -> None:
        out.append(Send(self.request))


class ClientInviteTransaction(_ClientTransaction):
    """INVITE client transaction, §17.1.1 with RFC 6026 §8.4 (Accepted state, Timer M)."""

    __slots__ = ("_ack",)

    def __init__(
        self,
        request: Request,
        *,
        reliable: bool,
        now: float,
        timers: Timers = DEFAULT_TIMERS,
    ) -> None:
        if request.method != "INVITE":
            raise ProtocolError(f"ClientInviteTransaction needs an INVITE, not {request.method}")
        super().__init__(request, reliable, timers, _S.CALLING)
        self._ack: Request | None = None

    @property
    def ack(self) -> Request | None:
        """The ACK this transaction generated for a non-2xx final response (§17.1.1.3)."""
        return self._ack

    @property
    def can_cancel(self) -> bool:
        """§9.1: a CANCEL SHOULD NOT be sent before a provisional response arrived."""
        return self._state is _S.PROCEEDING

    def _start_timers(self, now: float) -> None:
        t1 = self.timers.t1
        if not self.reliable:
            self._arm_retx(_I.TIMER_A, t1, now)  # §17.1.1.2: Timer A only on unreliable transports
        self._arm_deadline(_I.TIMER_B, 64 * t1, now)

    def _retransmit(self, msg: object, now: float, out: list[TxEvent]) -> None:
        # §17.1.1.2: Timer A doubles each time it fires (no T2 cap for INVITE).
        out.append(Send(self.request))
        self._arm_retx(_I.TIMER_A, 2 * self._retx_interval, now)

    def _timeout(self, msg: object, now: float, out: list[TxEvent]) -> None:
        out.append(_TIMEOUT["B"])

    def _accept(self, msg: Response, now: float, out: list[TxEvent]) -> None:
        # RFC 6026 §8.4: pass the 2xx up and stay in Accepted for 64*T1 to pass its retransmissions
        # and other forks' 2xx up too; the TU ACKs each one itself (§13.2.2.4).
        out.append(Deliver(msg))
        self._arm_deadline(_I.TIMER_M, 64 * self.timers.t1, now)

    def _complete(self, msg: Response, now: float, out: list[TxEvent]) -> None:
        out.append(Deliver(msg))
        self._ack = build_ack(self.request, msg)
        out.append(Send(self._ack))
        self._arm_deadline(_I.TIMER_D, 0.0 if self.reliable else self.timers.timer_d, now)

    def _resend_ack(self, msg: Response, now: float, out: list[TxEvent]) -> None:
        # §17.1.1.2: every retransmission of the final response gets the ACK again.
        ack = self._ack
        if ack is None or ack.headers.get("To") != msg.headers.get("To"):
            ack = self._ack = build_ack(self.request, msg)
        out.append(Send(ack))


_ICT = ClientInviteTransaction
ClientInviteTransaction.STATE_TIMERS = {
    _S.CALLING: frozenset({_I.TIMER_A, _I.TIMER_B}),
    _S.PROCEEDING: frozenset(),
    _S.COMPLETED: frozenset({_I.TIMER_D}),
    _S.ACCEPTED: frozenset({_I.TIMER_M}),
    _S.TERMINATED: frozenset(),
}
ClientInviteTransaction.TABLE = {
    # Figure 5 of RFC 3261 as amended by Figure 3 of RFC 6026.
    (_S.CALLING, _I.TIMER_A): (_ICT._retransmit, _S.CALLING),
    (_S.CALLING, _I.TIMER_B): (_ICT._timeout, _S.TERMINATED),
    (_S.CALLING, _I.RESPONSE_1XX): (_ICT._deliver, _S.PROCEEDING),
    (_S.CALLING, _I.RESPONSE_2XX): (_ICT._accept, _S.ACCEPTED),
    (_S.CALLING, _I.RESPONSE_3XX_6XX): (_ICT._complete, _S.COMPLETED),
    (_S.CALLING, _I.TRANSPORT_ERROR): (_ICT._inform_transport_error, _S.TERMINATED),
    (_S.PROCEEDING, _I.RESPONSE_1XX): (_ICT._deliver, _S.PROCEEDING),
    (_S.PROCEEDING, _I.RESPONSE_2XX): (_ICT._accept, _S.ACCEPTED),
    (_S.PROCEEDING, _I.RESPONSE_3XX_6XX): (_ICT._complete, _S.COMPLETED),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): (_ICT._inform_transport_error, _S.TERMINATED),
    (_S.COMPLETED, _I.RESPONSE_1XX): (_ICT._noop, _S.COMPLETED),
    (_S.COMPLETED, _I.RESPONSE_3XX_6XX): (_ICT._resend_ack, _S.COMPLETED),
    # A 2xx from another fork after a non-2xx final: the TU must still ACK and BYE it (§13.2.2.4).
    (_S.COMPLETED, _I.RESPONSE_2XX): (_ICT._deliver, _S.COMPLETED),
    (_S.COMPLETED, _I.TIMER_D): (_ICT._noop, _S.TERMINATED),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): (_ICT._inform_transport_error, _S.TERMINATED),
    (_S.ACCEPTED, _I.RESPONSE_1XX): (_ICT._noop, _S.ACCEPTED),
    (_S.ACCEPTED, _I.RESPONSE_2XX): (_ICT._deliver, _S.ACCEPTED),
    (_S.ACCEPTED, _I.RESPONSE_3XX_6XX): (_ICT._noop, _S.ACCEPTED),
    (_S.ACCEPTED, _I.TIMER_M): (_ICT._noop, _S.TERMINATED),
}


class ClientNonInviteTransaction(_ClientTransaction):
    """Non-INVITE client transaction, §17.1.2."""

    __slots__ = ()

    def __init__(
        self,
        request: Request,
        *,
        reliable: bool,
        now: float,
        timers: Timers = DEFAULT_TIMERS,
    ) -> None:
        if request.method in ("INVITE", "ACK"):
            raise ProtocolError(f"ClientNonInviteTransaction cannot carry {request.method}")
        super().__init__(request, reliable, timers, _S.TRYING)

    def _start_timers(self, now: float) -> None:
        t1 = self.timers.t1
        if not self.reliable:
            self._arm_retx(_I.TIMER_E, t1, now)  # §17.1.2.2: Timer E only on unreliable transports
        self._arm_deadline(_I.TIMER_F, 64 * t1, now)

    def _retransmit_trying(self, msg: object, now: float, out: list[TxEvent]) -> None:
        # §17.1.2.2: E doubles up to T2 while Trying.
        out.append(Send(self.request))
        self._arm_retx(_I.TIMER_E, min(2 * self._retx_interval, self.timers.t2), now)

    def _retransmit_proceeding(self, msg: object, now: float, out: list[TxEvent]) -> None:
        # §17.1.2.2: once a provisional response arrived, E is reset to T2.
        out.append(Send(self.request))
        self._arm_retx(_I.TIMER_E, self.timers.t2, now)

    def _timeout(self, msg: object, now: float, out: list[TxEvent]) -> None:
        out.append(_TIMEOUT["F"])

    def _complete(self, msg: Response, now: float, out: list[TxEvent]) -> None:
        out.append(Deliver(msg))
        # §17.1.2.2: Timer K absorbs retransmitted finals: T4 unreliable, zero reliable.
        self._arm_deadline(_I.TIMER_K, 0.0 if self.reliable else self.timers.t4, now)


_NICT = ClientNonInviteTransaction
ClientNonInviteTransaction.STATE_TIMERS = {
    _S.TRYING: frozenset({_I.TIMER_E, _I.TIMER_F}),
    _S.PROCEEDING: frozenset({_I.TIMER_E, _I.TIMER_F}),
    _S.COMPLETED: frozenset({_I.TIMER_K}),
    _S.TERMINATED: frozenset(),
}
ClientNonInviteTransaction.TABLE = {
    # Figure 6 of RFC 3261.
    (_S.TRYING, _I.TIMER_E): (_NICT._retransmit_trying, _S.TRYING),
    (_S.TRYING, _I.TIMER_F): (_NICT._timeout, _S.TERMINATED),
    (_S.TRYING, _I.RESPONSE_1XX): (_NICT._deliver, _S.PROCEEDING),
    (_S.TRYING, _I.RESPONSE_2XX): (_NICT._complete, _S.COMPLETED),
    (_S.TRYING, _I.RESPONSE_3XX_6XX): (_NICT._complete, _S.COMPLETED),
    (_S.TRYING, _I.TRANSPORT_ERROR): (_NICT._inform_transport_error, _S.TERMINATED),
    (_S.PROCEEDING, _I.TIMER_E): (_NICT._retransmit_proceeding, _S.PROCEEDING),
    (_S.PROCEEDING, _I.TIMER_F): (_NICT._timeout, _S.TERMINATED),
    (_S.PROCEEDING, _I.RESPONSE_1XX): (_NICT._deliver, _S.PROCEEDING),
    (_S.PROCEEDING, _I.RESPONSE_2XX): (_NICT._complete, _S.COMPLETED),
    (_S.PROCEEDING, _I.RESPONSE_3XX_6XX): (_NICT._complete, _S.COMPLETED),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): (_NICT._inform_transport_error, _S.TERMINATED),
    (_S.COMPLETED, _I.RESPONSE_1XX): (_NICT._noop, _S.COMPLETED),
    (_S.COMPLETED, _I.RESPONSE_2XX): (_NICT._noop, _S.COMPLETED),
    (_S.COMPLETED, _I.RESPONSE_3XX_6XX): (_NICT._noop, _S.COMPLETED),
    (_S.COMPLETED, _I.TIMER_K): (_NICT._noop, _S.TERMINATED),
}


# ------------------------------------------------------------------------- server transactions


class _ServerTransaction(_Transaction):
    __slots__ = ("_last_response",)

    IS_CLIENT = False

    def __init__(self, request: Request, reliable: bool, timers: Timers, state: TxState) -> None:
        super().__init__(request, reliable, timers, server_key(request), state)
        self._last_response: Response | None = None

    @property
    def last_response(self) -> Response | None:
        return self._last_response

    @property
    def to_tag(self) -> str:
        """To tag of the last response sent ("" if none): RFC 2543 ACK matching (§17.2.3)."""
        resp = self._last_response
        return header_tag(resp.headers.get("To")) if resp is not None else ""

    def receive_request(self, request: Request, now: float) -> list[TxEvent]:
        """A request the table matched to this transaction: a retransmission or an ACK."""
        out: list[TxEvent] = []
        self._step(_I.ACK if request.method == "ACK" else _I.REQUEST, request, now, out)
        return out

    def send_response(self, response: Response, now: float) -> list[TxEvent]:
        """The TU's response; raises ProtocolError where the state forbids it."""
        out: list[TxEvent] = []
        self._step(_send_input(response.status), response, now, out)
        return out

    def _send(self, msg: Response, now: float, out: list[TxEvent]) -> None:
        self._last_response = msg
        out.append(Send(msg))

    def _resend_last(self, msg: object, now: float, out: list[TxEvent]) -> None:
        # §17.2.1 / §17.2.2: a retransmitted request gets the most recent response again.
        resp = self._last_response
        if resp is not None:
            out.append(Send(resp))


class ServerInviteTransaction(_ServerTransaction):
    """INVITE server transaction, §17.2.1 with RFC 6026 §8.5-8.7 (Accepted state, Timer L).

    It does not send 100 Trying by itself: the TU decides (§17.2.1 allows the TU to answer first).
    """

    __slots__ = ()

    def __init__(
        self,
        request: Request,
        *,
        reliable: bool,
        now: float,
        timers: Timers = DEFAULT_TIMERS,
    ) -> None:
        if request.method != "INVITE":
            raise ProtocolError(f"ServerInviteTransaction needs an INVITE, not {request.method}")
        super().__init__(request, reliable, timers, _S.PROCEEDING)

    def _send_2xx(self, msg: Response, now: float, out: list[TxEvent]) -> None:
        # RFC 6026 §8.5: Accepted for 64*T1 absorbs INVITE retransmissions; the TU retransmits the
        # 2xx itself (§13.3.1.4).
        self._send(msg, now, out)
        self._arm_deadline(_I.TIMER_L, 64 * self.timers.t1, now)

    def _send_final(self, msg: Response, now: float, out: list[TxEvent]) -> None:
        self._send(msg, now, out)
        t1 = self.timers.t1
        if not self.reliable:
            self._arm_retx(_I.TIMER_G, t1, now)
        self._arm_deadline(_I.TIMER_H, 64 * t1, now)

    def _retransmit_final(self, msg: object, now: float, out: list[TxEvent]) -> None:
        # §17.2.1: Timer G doubles up to T2.
        self._resend_last(msg, now, out)
        self._arm_retx(_I.TIMER_G, min(2 * self._retx_interval, self.timers.t2), now)

    def _timeout(self, msg: object, now: float, out: list[TxEvent]) -> None:
        out.append(_TIMEOUT["H"])

    def _confirm(self, msg: object, now: float, out: list[TxEvent]) -> None:
        # §17.2.1: Timer I absorbs ACK retransmissions: T4 unreliable, zero reliable.
        self._arm_deadline(_I.TIMER_I, 0.0 if self.reliable else self.timers.t4, now)


_IST = ServerInviteTransaction
ServerInviteTransaction.STATE_TIMERS = {
    _S.PROCEEDING: frozenset(),
    _S.COMPLETED: frozenset({_I.TIMER_G, _I.TIMER_H}),
    _S.CONFIRMED: frozenset({_I.TIMER_I}),
    _S.ACCEPTED: frozenset({_I.TIMER_L}),
    _S.TERMINATED: frozenset(),
}
ServerInviteTransaction.TABLE = {
    # Figure 7 of RFC 3261 as amended by Figure 5 of RFC 6026.
    (_S.PROCEEDING, _I.REQUEST): (_IST._resend_last, _S.PROCEEDING),
    (_S.PROCEEDING, _I.ACK): (_IST._noop, _S.PROCEEDING),
    (_S.PROCEEDING, _I.SEND_1XX): (_IST._send, _S.PROCEEDING),
    (_S.PROCEEDING, _I.SEND_2XX): (_IST._send_2xx, _S.ACCEPTED),
    (_S.PROCEEDING, _I.SEND_3XX_6XX): (_IST._send_final, _S.COMPLETED),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): (_IST._inform_transport_error, _S.TERMINATED),
    (_S.COMPLETED, _I.REQUEST): (_IST._resend_last, _S.COMPLETED),
    (_S.COMPLETED, _I.ACK): (_IST._confirm, _S.CONFIRMED),
    (_S.COMPLETED, _I.TIMER_G): (_IST._retransmit_final, _S.COMPLETED),
    (_S.COMPLETED, _I.TIMER_H): (_IST._timeout, _S.TERMINATED),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): (_IST._inform_transport_error, _S.TERMINATED),
    (_S.CONFIRMED, _I.REQUEST): (_IST._noop, _S.CONFIRMED),
    (_S.CONFIRMED, _I.ACK): (_IST._noop, _S.CONFIRMED),
    (_S.CONFIRMED, _I.TIMER_I): (_IST._noop, _S.TERMINATED),
    # RFC 6026 §8.7: INVITE retransmissions are absorbed, not answered and not passed up.
    (_S.ACCEPTED, _I.REQUEST): (_IST._noop, _S.ACCEPTED),
    (_S.ACCEPTED, _I.ACK): (_IST._deliver, _S.ACCEPTED),
    (_S.ACCEPTED, _I.SEND_2XX): (_IST._send, _S.ACCEPTED),
    (_S.ACCEPTED, _I.TIMER_L): (_IST._noop, _S.TERMINATED),
    (_S.ACCEPTED, _I.TRANSPORT_ERROR): (_IST._inform_transport_error, _S.TERMINATED),
}


class ServerNonInviteTransaction(_ServerTransaction):
    """Non-INVITE server transaction, §17.2.2."""

    __slots__ = ()

    def __init__(
        self,
        request: Request,
        *,
        reliable: bool,
        now: float,
        timers: Timers = DEFAULT_TIMERS,
    ) -> None:
        if request.method in ("INVITE", "ACK"):
            raise ProtocolError(f"ServerNonInviteTransaction cannot carry {request.method}")
        super().__init__(request, reliable, timers, _S.TRYING)

    def _send_final(self, msg: Response, now: float, out: list[TxEvent]) -> None:
        self._send(msg, now, out)
        # §17.2.2: Timer J absorbs request retransmissions: 64*T1 unreliable, zero reliable.
        self._arm_deadline(_I.TIMER_J, 0.0 if self.reliable else 64 * self.timers.t1, now)


_NIST = ServerNonInviteTransaction
ServerNonInviteTransaction.STATE_TIMERS = {
    _S.TRYING: frozenset(),
    _S.PROCEEDING: frozenset(),
    _S.COMPLETED: frozenset({_I.TIMER_J}),
    _S.TERMINATED: frozenset(),
}
ServerNonInviteTransaction.TABLE = {
    # Figure 8 of RFC 3261.
    (_S.TRYING, _I.REQUEST): (_NIST._noop, _S.TRYING),
    (_S.TRYING, _I.SEND_1XX): (_NIST._send, _S.PROCEEDING),
    (_S.TRYING, _I.SEND_2XX): (_NIST._send_final, _S.COMPLETED),
    (_S.TRYING, _I.SEND_3XX_6XX): (_NIST._send_final, _S.COMPLETED),
    (_S.TRYING, _I.TRANSPORT_ERROR): (_NIST._inform_transport_error, _S.TERMINATED),
    (_S.PROCEEDING, _I.REQUEST): (_NIST._resend_last, _S.PROCEEDING),
    (_S.PROCEEDING, _I.SEND_1XX): (_NIST._send, _S.PROCEEDING),
    (_S.PROCEEDING, _I.SEND_2XX): (_NIST._send_final, _S.COMPLETED),
    (_S.PROCEEDING, _I.SEND_3XX_6XX): (_NIST._send_final, _S.COMPLETED),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): (_NIST._inform_transport_error, _S.TERMINATED),
    (_S.COMPLETED, _I.REQUEST): (_NIST._resend_last, _S.COMPLETED),
    # §17.2.2: "Any other final responses passed by the TU ... MUST be discarded".
    (_S.COMPLETED, _I.SEND_1XX): (_NIST._noop, _S.COMPLETED),
    (_S.COMPLETED, _I.SEND_2XX): (_NIST._noop, _S.COMPLETED),
    (_S.COMPLETED, _I.SEND_3XX_6XX): (_NIST._noop, _S.COMPLETED),
    (_S.COMPLETED, _I.TIMER_J): (_NIST._noop, _S.TERMINATED),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): (_NIST._inform_transport_error, _S.TERMINATED),
}


# ------------------------------------------------------------------------------ message builders


def _top_via_line(invite: Request) -> str:
    via = invite.headers.first("Via")
    if via is None:
        raise ProtocolError("request has no Via header")
    return via


def _copy_common(invite: Request, method: str, to_value: str | None, seq: int) -> Request:
    """Via (top only), Route, Max-Forwards, From, To, Call-ID, CSeq: what §9.1 and §17.1.1.3 keep."""
    src = invite.headers
    headers = Headers()
    headers.add("Via", _top_via_line(invite))
    for route in src.get_lines("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    for name, value in (
        ("From", src.get("From")),
        ("To", to_value),
        ("Call-ID", src.get("Call-ID")),
    ):
        if value is None:
            raise ProtocolError(f"cannot build {method}: no {name} header")
        headers.add(name, value)
    headers.add("CSeq", f"{seq} {method}")
    return Request(headers=headers, method=method, uri=invite.uri)


def build_ack(invite: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response, built by the transaction (§17.1.1.3).

    Request-URI, Call-ID, From and the single Via come from the INVITE, To from the response (with
    its tag), CSeq has the INVITE's number and method ACK, and the INVITE's Route headers are kept.
    """
    return _copy_common(invite, "ACK", response.headers.get("To"), invite.cseq[0])


def build_cancel(invite: Request) -> Request:
    """A CANCEL for ``invite`` (§9.1): same Request-URI, Call-ID, From, To, CSeq number, top Via
    (same branch) and Route; method CANCEL. Send it once a provisional response arrived."""
    return _copy_common(invite, "CANCEL", invite.headers.get("To"), invite.cseq[0])
