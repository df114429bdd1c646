"""Calls of the user agent: a dialog placed or received, the decision pending on an INVITE, the UAS
2xx retransmission timer (RFC 3261 §13.3.1.4), and how a request URI becomes a transport target.

Split from ``ua.py`` (one concept per module); ``ua.py`` re-exports these names.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..sip.dialog import Dialog, DialogState
from ..sip.message import Request, Response
from ..sip.retransmit import TwoXXRetransmitter
from ..sip.transaction import Send, Timeout
from ..sip.uri import SipUri, parse_uri
from .endpoint import ClientTx, ServerTx, Target
from .rtp import MediaSession
from .timers import Timed
from .transport import Source

if TYPE_CHECKING:
    from .ua import UserAgent


class CallFailed(Exception):
    """An outgoing request ended without success; carries the final status (408 for timeouts)."""

    def __init__(self, status: int, reason: str, response: Response | None = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.response = response


def target_for_uri(uri: str | SipUri) -> Target:
    """Where to send a request for ``uri`` (RFC 3263 lite: IP literal or name, default ports)."""
    parsed = parse_uri(uri) if isinstance(uri, str) else uri
    if parsed.scheme not in ("sip", "sips"):
        raise ValueError(f"cannot route to a {parsed.scheme}: URI")
    transport = parsed.transport.upper()
    host = parsed.params.get("maddr") or parsed.host
    port = parsed.port or (5061 if transport == "TLS" else 5060)
    return Target(transport, host, port)


class Call:
    """One call (dialog) placed or received by this UA."""

    __slots__ = (
        "_ended",
        "_established",
        "auth_user",
        "call_id",
        "dialog",
        "direction",
        "end_reason",
        "invite",
        "invite_tx",
        "local_sdp",
        "media",
        "remote_sdp",
        "retransmitter",
        "source",
        "started_at",
        "target",
        "ua",
    )

    def __init__(self, ua: UserAgent, invite: Request, direction: str) -> None:
        self.ua = ua
        self.invite = invite
        self.direction = direction  # "in" or "out"
        self.call_id = invite.call_id
        self.dialog: Dialog | None = None
        self.invite_tx: ServerTx | ClientTx | None = None
        self.media: MediaSession | None = None
        self.source: Source | None = None
        self.target: Target | None = None
        self.local_sdp: bytes = b""
        self.remote_sdp: bytes = invite.body if direction == "in" else b""
        self.retransmitter: _TwoXXTimer | None = None
        self.end_reason: str | None = None
        #: The digest username the caller proved (a transport-backed fact), None without digest.
        self.auth_user: str | None = None
        self.started_at = time.monotonic()
        self._established: asyncio.Future[None] | None = None
        self._ended: asyncio.Future[str] | None = None

    @property
    def established(self) -> bool:
        return self.dialog is not None and self.dialog.state is DialogState.CONFIRMED

    async def wait_ended(self) -> str:
        """Wait until the call ends; returns why ("bye", "remote-bye", "cancelled", ...)."""
        if self.end_reason is not None:
            return self.end_reason
        if self._ended is None:
            self._ended = asyncio.get_running_loop().create_future()
        return await self._ended

    def _finish(self, reason: str) -> None:
        if self.end_reason is not None:
            return
        self.end_reason = reason
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(reason)
        if self.media is not None:
            self.media.close()
        self.ua._forget(self)

    async def hangup(self) -> None:
        """Send BYE (§15.1.1) and wait for its final response (any answer ends the dialog)."""
        if self.dialog is None or self.end_reason is not None:
            return
        await self.ua._send_bye(self)

    async def send_info(self, body: bytes, content_type: str) -> Response:
        """Send INFO in this dialog (RFC 6086 §4.2, routed per §12.2.1.1); return the final response.

        Raises CallFailed(481) when there is no dialog (any more), CallFailed(408) on timeout.
        """
        if self.dialog is None or self.end_reason is not None:
            raise CallFailed(481, "Call/Transaction Does Not Exist")
        return await self.ua._send_in_dialog(self, "INFO", body, content_type)

    async def send_message(self, body: bytes, content_type: str = "text/plain") -> Response:
        """Send MESSAGE in this dialog (RFC 3428 §4: allowed inside a dialog, routed like any
        mid-dialog request); return the final response. Raises like :meth:`send_info`."""
        if self.dialog is None or self.end_reason is not None:
            raise CallFailed(481, "Call/Transaction Does Not Exist")
        return await self.ua._send_in_dialog(self, "MESSAGE", body, content_type)


class _TwoXXTimer(Timed):
    """The UAS 2xx retransmission (§13.3.1.4) as its own ``Timed``: methods, not a closure.

    The timer heap forgets a disarmed entry only at its old deadline (T1 and up later), so
    ``release`` drops the call and retransmitter then: an ACKed call is freed at its BYE by
    refcount, not kept alive (and promoted by the cyclic GC) by a stale heap entry.
    """

    __slots__ = ("call", "rtx", "source", "ua")

    def __init__(
        self, ua: UserAgent, call: Call, rtx: TwoXXRetransmitter, source: Source | None = None
    ) -> None:
        self.armed = None
        self.ua: UserAgent | None = ua
        self.call: Call | None = call
        self.rtx: TwoXXRetransmitter | None = rtx
        #: Where the 2xx goes again: the INVITE's source (a re-INVITE may come on a call we placed).
        self.source = source if source is not None else call.source

    def get_timer(self) -> float | None:
        return self.rtx.get_timer() if self.rtx is not None else None

    def fire(self, now: float) -> None:
        ua, call, rtx, source = self.ua, self.call, self.rtx, self.source
        if ua is None or call is None or rtx is None or source is None:
            return
        for ev in rtx.handle_timer(now):
            if isinstance(ev, Send):
                ua.ep.send_via_source(ev.message, source)
            elif isinstance(ev, Timeout):
                # §13.3.1.4: no ACK within 64*T1: end the dialog with BYE.
                call.retransmitter = None
                ua.ep.loop.create_task(ua._send_bye(call, reason="no-ack"))

    def release(self) -> None:
        self.ua = self.call = self.rtx = self.source = None


class IncomingCall:
    """An INVITE waiting for the handler's decision: ring, answer or reject."""

    __slots__ = ("call", "tx")

    def __init__(self, call: Call, tx: ServerTx) -> None:
        self.call = call
        self.tx = tx

    @property
    def request(self) -> Request:
        return self.call.invite

    def ring(self) -> None:
        self.call.ua._provisional(self, 180)

    def answer(self, sdp: bytes | None = None) -> Call:
        return self.call.ua._answer(self, sdp)

    def reject(self, status: int = 486, reason: str | None = None) -> None:
        self.call.ua._reject(self, status, reason)


IncomingHandler = Callable[[IncomingCall], None]
