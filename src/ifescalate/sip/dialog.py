"""SIP dialogs for a user agent (RFC 3261 §12, §13.2.2.4, §14, §15), sans-IO.

A ``Dialog`` is the peer-to-peer state between two UAs: its ID (Call-ID, local tag, remote tag), the
sequence numbers, the remote target and the route set. It builds in-dialog requests (§12.2.1.1),
the ACK for a 2xx (§13.2.2.4), checks in-dialog requests it receives (§12.2.2) and follows the
responses that move it from early to confirmed or end it (§12.1.2, §12.3, §15).

Nothing here touches a clock or a socket. Randomness for the §14 glare timers is injected as a
``rand(nbytes) -> bytes`` callable (``os.urandom`` by default, like ``build.IdGenerator``).

Typical UAC use::

    d = Dialog.from_uac_response(invite, ok)          # or from a 180 with a To tag, then
    d.update_from_response(ok)                         # confirms it (§13.2.2.4)
    ack = d.build_ack(invite, ok, via_host=..., via_port=..., transport="UDP", branch=ids.branch())
    bye, next_hop = d.create_request("BYE", via_host=..., via_port=..., transport="UDP",
                                     branch=ids.branch())
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from .build import make_response
from .errors import SipError
from .message import Headers, Request, Response
from .request_builder import (
    DEFAULT_MAX_FORWARDS,
    add_extra_headers,
    apply_route_set,
    format_via,
    name_addr_tag,
    name_addr_uri,
    next_hop_uri,
    strip_tag,
    wrap_name_addr,
)

__all__ = [
    "CallLegDoesNotExist",
    "Dialog",
    "DialogId",
    "DialogState",
    "DialogTable",
    "InviteInProgress",
    "NoDialog",
    "RequestOutOfOrder",
    "RequestPending",
    "call_leg_does_not_exist",
    "dialog_id_for_request",
    "dialog_id_for_response",
]

Rand = Callable[[int], bytes]

#: §12.2.1.1 / §12.2.2: requests whose 2xx (or acceptance) replaces the remote target. RFC 3261
#: names re-INVITE; UPDATE (RFC 3311), SUBSCRIBE/NOTIFY (RFC 6665) and REFER (RFC 3515) join it.
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})

#: §12.2.1.1: ACK and CANCEL reuse a sequence number instead of taking the next one.
_NO_SEQ_INCREMENT = frozenset({"ACK", "CANCEL"})


class DialogState(Enum):
    """§12: a dialog is early (created by a 1xx with a tag), confirmed (2xx), or over."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogId(NamedTuple):
    """§12: a dialog is identified by Call-ID, local tag and remote tag, seen from one side."""

    call_id: str
    local_tag: str
    remote_tag: str


class CallLegDoesNotExist(SipError):
    """§12.2.2: a request that matches no dialog (or an ended one) gets 481."""

    status = 481
    reason = "Call/Transaction Does Not Exist"


class NoDialog(SipError):
    """The message cannot create a dialog: no To tag on the response, no Contact, a tag already."""


class RequestOutOfOrder(SipError):
    """§12.2.2: a CSeq lower than the remote sequence number MUST be rejected with 500."""

    status = 500
    reason = "Server Internal Error"


class RequestPending(SipError):
    """§14.2: an INVITE received while our own INVITE on the dialog is in progress gets 491.

    Also raised locally (§14.1) when asked to send a re-INVITE while another INVITE transaction is
    in progress in either direction.
    """

    status = 491
    reason = "Request Pending"


class InviteInProgress(SipError):
    """§14.2: a second INVITE before we answered the first gets 500 with a random Retry-After."""

    status = 500
    reason = "Server Internal Error"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        #: Seconds for the Retry-After header of the 500 (0 to 10, §14.2).
        self.retry_after = retry_after


# --- Dialog IDs and the 481 helper ---------------------------------------------------------------


def dialog_id_for_request(request: Request) -> DialogId:
    """The dialog ID a UAS sees in a request (§12.2.2): local = To tag, remote = From tag.

    A missing tag reads as ``""`` (§12.1.1: an RFC 2543 peer may send no From tag).
    """
    return DialogId(
        request.call_id,
        name_addr_tag(request.headers.get("To")) or "",
        name_addr_tag(request.headers.get("From")) or "",
    )


def dialog_id_for_response(response: Response) -> DialogId:
    """The dialog ID a UAC sees in a response (§12.1.2): local = From tag, remote = To tag."""
    return DialogId(
        response.call_id,
        name_addr_tag(response.headers.get("From")) or "",
        name_addr_tag(response.headers.get("To")) or "",
    )


def call_leg_does_not_exist(request: Request, *, to_tag: str | None = None) -> Response:
    """The 481 for a request that matches no dialog (§12.2.2).

    ``to_tag`` is added only when the request's To has none (§8.2.6.2). ACK is never answered
    (§17.2.3), so asking for a response to one is a caller error.
    """
    if request.method == "ACK":
        raise ValueError("an ACK is never answered (RFC 3261 §17)")
    return make_response(request, 481, to_tag=to_tag)


# --- Small private helpers -----------------------------------------------------------------------


def _contact_uri(message: Request | Response) -> str | None:
    """The URI of the first Contact, or None when absent or ``*`` (§20.10)."""
    first = message.headers.first("Contact")
    if first is None or first.strip() == "*":
        return None
    return name_addr_uri(first)


def _route_set(values: list[str]) -> list[str]:
    """Record-Route entries as a route set, each checked to hold a URI now rather than when the
    first in-dialog request is built (a malformed entry is the peer's 400, not our crash later)."""
    for value in values:
        name_addr_uri(value)
    return values


def _uniform_steps(rand: Rand, low: int, high: int) -> int:
    """A random integer in [low, high] from injected bytes (modulo bias < 1e-7 with 4 bytes)."""
    return low + int.from_bytes(rand(4), "big") % (high - low + 1)


def _is_sips(uri: str) -> bool:
    return uri.strip().lower().startswith("sips:")


# --- The dialog ----------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Dialog:
    """The state of one dialog (§12) and the rules for requests and responses inside it.

    ``local_uri``/``remote_uri`` are name-addr text without tags; ``remote_target`` is a URI;
    ``route_set`` holds Route values (``<sip:p1.example.com;lr>``) in the order a request sent by
    this UA must list them.
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    local_seq: int | None
    remote_seq: int | None
    remote_target: str
    route_set: list[str]
    secure: bool
    state: DialogState
    is_uac: bool
    #: Our Contact (name-addr), sent again in target refresh requests (§12.2.1.1).
    local_contact: str | None = None
    #: UAS only: the Record-Route lines of the dialog-creating request, copied into responses.
    record_route: list[str] = field(default_factory=list)
    #: §14: CSeq number of our INVITE that has no final response yet, if any.
    pending_client_invite: int | None = None
    #: §14: CSeq number of a received INVITE we have not answered finally yet, if any.
    pending_server_invite: int | None = None

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    # -- Creation -------------------------------------------------------------------------------

    @classmethod
    def from_uac_response(cls, invite: Request, response: Response) -> Dialog:
        """The UAC's dialog from a 1xx (with To tag) or 2xx to ``invite`` (§12.1.2).

        Route set: Record-Route of the response in reverse order (the UAS side reads it in order;
        both end up listing the proxy nearest to themselves first). Remote target: the response's
        Contact. The dialog is early for a 1xx, confirmed for a 2xx.
        """
        status = response.status
        if not (101 <= status <= 299):
            raise NoDialog(f"a {status} response does not create a dialog (RFC 3261 §12.1)")
        remote_tag = name_addr_tag(response.headers.get("To"))
        if remote_tag is None:
            raise NoDialog("a dialog-creating response needs a To tag (RFC 3261 §12.1.1)")
        local_tag = name_addr_tag(invite.headers.get("From"))
        if local_tag is None:
            raise NoDialog("our INVITE has no From tag (RFC 3261 §8.1.1.3)")
        if (response.call_id, name_addr_tag(response.headers.get("From"))) != (
            invite.call_id,
            local_tag,
        ):
            raise NoDialog("the response does not answer this INVITE (Call-ID or From tag)")
        target = _contact_uri(response)
        if target is None:
            if status >= 200:
                raise NoDialog("a 2xx to INVITE needs a Contact (RFC 3261 §13.3.1.4)")
            target = invite.uri  # a 1xx may omit it; a later 1xx/2xx refreshes it
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=strip_tag(invite.headers.get("From") or ""),
            remote_uri=strip_tag(invite.headers.get("To") or ""),
            local_seq=invite.cseq[0],
            remote_seq=None,
            remote_target=target,
            route_set=_route_set(response.headers.values("Record-Route")[::-1]),
            secure=_is_sips(invite.uri),
            state=DialogState.CONFIRMED if status >= 200 else DialogState.EARLY,
            is_uac=True,
            local_contact=invite.headers.first("Contact"),
            pending_client_invite=invite.cseq[0] if status < 200 else None,
        )

    @classmethod
    def from_uas_request(
        cls,
        invite: Request,
        *,
        local_tag: str,
        local_contact: str,
        over_tls: bool = False,
    ) -> Dialog:
        """The UAS's dialog for a dialog-creating ``invite`` it will answer with a tag (§12.1.1).

        Route set: Record-Route of the request, in order, with all parameters. Remote target: the
        request's Contact; remote sequence number: its CSeq. ``over_tls`` is a transport fact (the
        message cannot vouch for it): the dialog is secure only if it arrived over TLS with a SIPS
        Request-URI. The dialog starts early; ``response_sent`` confirms or ends it.
        """
        if name_addr_tag(invite.headers.get("To")) is not None:
            raise NoDialog("a request with a To tag belongs to an existing dialog (§12.2)")
        target = _contact_uri(invite)
        if target is None:
            # RFC 2543 made Contact optional; RFC 4475 §3.4.1 (inv2543) asks us to accept such an
            # INVITE from an RFC 2543 peer (its branch lacks the magic cookie, §8.1.1.7). Requests
            # in the dialog then go to the From URI, as RFC 2543 did. An RFC 3261 peer MUST send
            # Contact (§8.1.1.8).
            if "z9hG4bK" in (invite.headers.first("Via") or ""):
                raise NoDialog("a dialog-creating request needs a Contact (RFC 3261 §8.1.1.8)")
            target = name_addr_uri(invite.headers.get("From") or "")
        seq, method = invite.cseq
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=name_addr_tag(invite.headers.get("From")) or "",
            local_uri=strip_tag(invite.headers.get("To") or ""),
            remote_uri=strip_tag(invite.headers.get("From") or ""),
            local_seq=None,
            remote_seq=seq,
            remote_target=target,
            route_set=_route_set(invite.headers.values("Record-Route")),
            secure=over_tls and _is_sips(invite.uri),
            state=DialogState.EARLY,
            is_uac=False,
            local_contact=wrap_name_addr(local_contact),
            record_route=invite.headers.get_lines("Record-Route"),
            pending_server_invite=seq if method == "INVITE" else None,
        )

    def uas_response_headers(self) -> list[tuple[str, str]]:
        """Headers a UAS adds to a dialog-creating 1xx/2xx (§12.1.1): the request's Record-Route
        lines, copied in order and unchanged, then our Contact."""
        out = [("Record-Route", line) for line in self.record_route]
        if self.local_contact is not None:
            out.append(("Contact", self.local_contact))
        return out

    # -- Requests we send (§12.2.1.1) -----------------------------------------------------------

    def create_request(
        self,
        method: str,
        *,
        via_host: str,
        via_port: int | None,
        transport: str,
        branch: str,
        contact: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> tuple[Request, str]:
        """A request inside this dialog and the URI of its next hop (§12.2.1.1, §8.1.2).

        The CSeq number is the local sequence number plus one, except for ACK and CANCEL, which
        reuse it. Target refresh requests carry a Contact (``contact`` or the dialog's own). Sending
        a BYE ends the dialog at once (§15.1.1). A re-INVITE while an INVITE is in progress in
        either direction raises ``RequestPending`` (§14.1).
        """
        if self.state is DialogState.TERMINATED:
            raise CallLegDoesNotExist(f"dialog {self.id} is terminated")
        seq = self._next_local_seq(method)
        if method == "INVITE":
            self._check_no_invite_in_progress()
            self.pending_client_invite = seq
        if contact is not None:
            self.local_contact = wrap_name_addr(contact)
        send_contact = self.local_contact if method in TARGET_REFRESH_METHODS else None
        request = self._build(
            method,
            seq,
            via=format_via(transport, via_host, via_port, branch),
            contact=send_contact,
            headers=headers,
            body=body,
            content_type=content_type,
        )
        if method == "BYE":
            self.state = DialogState.TERMINATED
        return request, next_hop_uri(self.remote_target, self.route_set)

    def build_ack(
        self,
        invite: Request,
        response_2xx: Response,
        *,
        via_host: str,
        via_port: int | None,
        transport: str,
        branch: str,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """The ACK for a 2xx to ``invite`` (§13.2.2.4).

        It is an in-dialog request with a new branch, the CSeq number of the INVITE and method ACK,
        and the same credentials (Authorization, Proxy-Authorization) as the INVITE. If the 2xx
        carried an offer, ``body`` is the answer. An early dialog is confirmed by the 2xx first, so
        the ACK follows the route set the 2xx recomputes.
        """
        if not 200 <= response_2xx.status <= 299:
            raise ValueError("only a 2xx is acknowledged in the dialog (RFC 3261 §13.2.2.4)")
        seq, method = invite.cseq
        if response_2xx.cseq != (seq, "INVITE") or method != "INVITE":
            raise ValueError("the response does not answer this INVITE")
        if dialog_id_for_response(response_2xx) != self.id:
            raise CallLegDoesNotExist("the 2xx belongs to another dialog (a fork?)")
        if self.state is DialogState.EARLY:
            self.update_from_response(response_2xx)
        credentials = [
            (name, value)
            for name, value in invite.headers.items()
            if name in ("Authorization", "Proxy-Authorization")
        ]
        return self._build(
            "ACK",
            seq,
            via=format_via(transport, via_host, via_port, branch),
            contact=None,
            headers=credentials,
            body=body,
            content_type=content_type,
        )

    def _next_local_seq(self, method: str) -> int:
        if method in _NO_SEQ_INCREMENT:
            if self.local_seq is None:
                raise ValueError(f"{method} needs a request to refer to (no local CSeq yet)")
            return self.local_seq
        # §12.2.1.1: empty local sequence number -> pick one (§8.1.1.5); otherwise add one.
        self.local_seq = 1 if self.local_seq is None else self.local_seq + 1
        if self.local_seq >= 2**31:
            raise ValueError("local CSeq exhausted (RFC 3261 §8.1.1.5)")
        return self.local_seq

    def _check_no_invite_in_progress(self) -> None:
        # §14.1: a UAC MUST NOT initiate a re-INVITE while another INVITE transaction is in
        # progress in either direction.
        if self.pending_client_invite is not None or self.pending_server_invite is not None:
            raise RequestPending(f"an INVITE is already in progress on dialog {self.id}")

    def _build(
        self,
        method: str,
        seq: int,
        *,
        via: str,
        contact: str | None,
        headers: list[tuple[str, str]] | None,
        body: bytes,
        content_type: str | None,
    ) -> Request:
        """§12.2.1.1 header fields: To = remote URI + remote tag, From = local URI + local tag,
        Request-URI and Route from the remote target and the route set."""
        ruri, routes = apply_route_set(self.remote_target, self.route_set)
        h = Headers()
        h.add("Via", via)
        h.add("Max-Forwards", str(DEFAULT_MAX_FORWARDS))
        for value in routes:
            h.add("Route", value)
        to = f"{self.remote_uri};tag={self.remote_tag}" if self.remote_tag else self.remote_uri
        h.add("To", to)
        h.add("From", f"{self.local_uri};tag={self.local_tag}")
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{seq} {method}")
        if contact is not None:
            h.add("Contact", contact)
        add_extra_headers(h, headers, body, content_type)
        return Request(method=method, uri=ruri, headers=h, body=body)

    # -- Responses to requests we sent (§12.1.2, §12.2.1.2, §13.2.2.4, §14.1) -------------------

    def update_from_response(self, response: Response, *, rand: Rand = os.urandom) -> float | None:
        """Follow a response to a request this UA sent in the dialog.

        - 1xx/2xx to the initial INVITE on an early dialog: refresh the remote target; a 2xx
          confirms the dialog and recomputes the route set (§13.2.2.4).
        - non-2xx final to the initial INVITE: the early dialog ends (§12.3) whatever its To tag,
          since a final response from any branch ends every early dialog of the INVITE.
        - 481 or 408 to any in-dialog request ends the dialog (§12.2.1.2).
        - 2xx to a target refresh replaces the remote target (§12.2.1.2).
        - 491 to our re-INVITE: returns the seconds to wait before retrying (§14.1); the caller
          schedules it. Otherwise returns None.
        """
        status = response.status
        seq, method = response.cseq
        early_invite = self.state is DialogState.EARLY and method == "INVITE"
        if dialog_id_for_response(response) != self.id and not (early_invite and status >= 300):
            raise CallLegDoesNotExist(f"response does not belong to dialog {self.id}")
        if method == "INVITE" and status >= 200 and seq == self.pending_client_invite:
            self.pending_client_invite = None
        if early_invite:
            self._follow_initial_invite(response)
            return None
        if status in (408, 481):
            self.state = DialogState.TERMINATED
        elif 200 <= status <= 299 and method in TARGET_REFRESH_METHODS:
            self.refresh_target(response)
        elif status == 491 and method == "INVITE":
            return self.glare_retry_delay(rand)
        return None

    def _follow_initial_invite(self, response: Response) -> None:
        status = response.status
        if status >= 300:
            self.state = DialogState.TERMINATED
            return
        self.refresh_target(response)
        if status >= 200:
            # §13.2.2.4: the 2xx recomputes the route set and confirms the dialog.
            self.route_set = _route_set(response.headers.values("Record-Route")[::-1])
            self.state = DialogState.CONFIRMED

    def glare_retry_delay(self, rand: Rand = os.urandom) -> float:
        """§14.1: seconds before retrying a re-INVITE that got 491, in 10 ms units.

        The owner of the Call-ID (the UA that sent the initial INVITE: the dialog's UAC) waits 2.1
        to 4 s, the other side 0 to 2 s, so the two retries are unlikely to collide again.
        """
        if self.is_uac:
            return _uniform_steps(rand, 210, 400) / 100
        return _uniform_steps(rand, 0, 200) / 100

    def refresh_target(self, message: Request | Response) -> None:
        """Replace the remote target with the message's Contact URI, if it has one (§12.2)."""
        target = _contact_uri(message)
        if target is not None:
            self.remote_target = target

    # -- Requests we receive (§12.2.2, §14.2, §15.1.2) -------------------------------------------

    def receive_request(self, request: Request, *, rand: Rand = os.urandom) -> None:
        """Check and record a request received inside this dialog (§12.2.2).

        Raises ``CallLegDoesNotExist`` (481) if the dialog is over or the request is not in it,
        ``RequestOutOfOrder`` (500) for a CSeq below the remote sequence number (ACK and CANCEL
        excepted), ``RequestPending`` (491) for an INVITE while ours is in progress, and
        ``InviteInProgress`` (500 + Retry-After) for an INVITE before we answered the previous one
        (§14.2). A BYE ends the dialog (§15.1.2). The remote target is not refreshed here: call
        ``response_sent`` with the 2xx (RFC 6141 §3.3: only an accepted refresh changes it).
        """
        if self.state is DialogState.TERMINATED or dialog_id_for_request(request) != self.id:
            raise CallLegDoesNotExist(f"no dialog {dialog_id_for_request(request)}")
        method = request.method
        if method in _NO_SEQ_INCREMENT:
            return
        seq = request.cseq[0]
        if self.remote_seq is not None and seq < self.remote_seq:
            raise RequestOutOfOrder(f"CSeq {seq} is below the remote sequence {self.remote_seq}")
        self.remote_seq = seq
        if method == "INVITE":
            self._check_invite_glare(seq, rand)
            self.pending_server_invite = seq
        elif method == "BYE":
            self.state = DialogState.TERMINATED

    def _check_invite_glare(self, seq: int, rand: Rand) -> None:
        if self.pending_client_invite is not None:
            raise RequestPending(f"our INVITE {self.pending_client_invite} is in progress")
        if self.pending_server_invite is not None and self.pending_server_invite != seq:
            retry_after = _uniform_steps(rand, 0, 10)
            raise InviteInProgress(
                f"INVITE {self.pending_server_invite} is not answered yet", retry_after
            )

    def response_sent(self, response: Response, request: Request | None = None) -> None:
        """Record a response this UA (as UAS) sent to a request in the dialog.

        A final response to the INVITE ends the §14.2 "INVITE in progress" state; on an early
        dialog a 2xx confirms it and a non-2xx final ends it (§12.1.1, §12.3). A 2xx to a target
        refresh ``request`` takes its Contact as the new remote target (§12.2.2).
        """
        status = response.status
        seq, method = response.cseq
        if method == "INVITE" and status >= 200 and seq == self.pending_server_invite:
            self.pending_server_invite = None
            if self.state is DialogState.EARLY:
                ok = status < 300
                self.state = DialogState.CONFIRMED if ok else DialogState.TERMINATED
        if 200 <= status <= 299 and request is not None and method in TARGET_REFRESH_METHODS:
            self.refresh_target(request)

    def terminate(self) -> None:
        """End the dialog (for example when the session timer or the application hangs up)."""
        self.state = DialogState.TERMINATED


# --- A table of dialogs --------------------------------------------------------------------------


class DialogTable:
    """Dialogs by ID, with the lookups a UA core needs for requests and responses (§12.2)."""

    __slots__ = ("_dialogs",)

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}

    def add(self, dialog: Dialog) -> None:
        """Store ``dialog``; an ID already present is a caller error."""
        if dialog.id in self._dialogs:
            raise ValueError(f"dialog {dialog.id} already exists")
        self._dialogs[dialog.id] = dialog

    def find(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.get(dialog_id)

    def find_for_request(self, request: Request) -> Dialog | None:
        """The dialog a received request belongs to (UAS view of the ID)."""
        return self._dialogs.get(dialog_id_for_request(request))

    def find_for_response(self, response: Response) -> Dialog | None:
        """The dialog a received response belongs to (UAC view of the ID)."""
        return self._dialogs.get(dialog_id_for_response(response))

    def early_dialogs(self, call_id: str, local_tag: str) -> list[Dialog]:
        """Every early dialog of one INVITE (one per fork, §12.1.2, §13.2.2.4)."""
        return [
            d
            for d in self._dialogs.values()
            if d.call_id == call_id and d.local_tag == local_tag and d.state is DialogState.EARLY
        ]

    def remove(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.pop(dialog_id, None)

    def remove_terminated(self) -> list[Dialog]:
        """Drop and return every terminated dialog."""
        gone = [d for d in self._dialogs.values() if d.state is DialogState.TERMINATED]
        for d in gone:
            del self._dialogs[d.id]
        return gone

    def __len__(self) -> int:
        return len(self._dialogs)

    def __contains__(self, dialog_id: object) -> bool:
        return dialog_id in self._dialogs

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))
