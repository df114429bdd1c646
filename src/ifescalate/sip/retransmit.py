"""The UAS core's 2xx retransmission until ACK (RFC 3261 §13.3.1.4, RFC 6026 §7.1).

The INVITE server transaction hands a 2xx to the transport once and goes to Accepted; from then on
the TU owns reliability: it resends the 2xx at T1, 2*T1, ... capped at T2 over unreliable transports,
and if no ACK arrives within 64*T1 it confirms the dialog and then ends it with BYE.
"""

from __future__ import annotations

import enum

from .message import Response
from .transaction import DEFAULT_TIMERS, Send, Timeout, Timers


class TwoXXState(enum.Enum):
    WAITING = "waiting"
    ACKED = "acked"
    TIMED_OUT = "timed_out"


class TwoXXRetransmitter:
    """Sans-IO: ``get_timer()`` / ``handle_timer(now)`` like the transaction machines."""

    __slots__ = ("_deadline", "_interval", "_next", "response", "state", "timers")

    def __init__(
        self, response: Response, *, reliable: bool, now: float, timers: Timers = DEFAULT_TIMERS
    ) -> None:
        self.response = response
        self.timers = timers
        self.state = TwoXXState.WAITING
        self._interval = timers.t1
        # §13.3.1.4: retransmission only on unreliable transports; the 64*T1 wait applies to both.
        self._next: float | None = None if reliable else now + timers.t1
        self._deadline = now + 64 * timers.t1

    def get_timer(self) -> float | None:
        if self.state is not TwoXXState.WAITING:
            return None
        if self._next is None:
            return self._deadline
        return min(self._next, self._deadline)

    def ack_received(self) -> None:
        if self.state is TwoXXState.WAITING:
            self.state = TwoXXState.ACKED

    def handle_timer(self, now: float) -> list[Send | Timeout]:
        if self.state is not TwoXXState.WAITING:
            return []
        if now >= self._deadline:
            self.state = TwoXXState.TIMED_OUT
            return [Timeout("H")]  # the same meaning as Timer H: no ACK came
        out: list[Send | Timeout] = []
        if self._next is not None and now >= self._next:
            out.append(Send(self.response))
            self._interval = min(self._interval * 2, self.timers.t2)
            self._next = now + self._interval
        return out
