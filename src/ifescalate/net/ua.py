"""A user agent on top of the endpoint: place and answer calls, BYE, OPTIONS, MESSAGE.

This is the UA core of RFC 3261 §8, §12-§15 (the transaction user). Incoming requests are decided
synchronously by a handler (no task per call on the hot path); outgoing operations are coroutines
that resolve when the final response arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..sip.build import IdGenerator, make_response
from ..sip.dialog import (
    Dialog,
    DialogTable,
    call_leg_does_not_exist,
)
from ..sip.digest import DigestClient, DigestServer, ha1
from ..sip.errors import SipError
from ..sip.message import Request, Response
from ..sip.request_builder import new_request, next_hop_uri
from ..sip.retransmit import TwoXXRetransmitter
from ..sip.sdp import (
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    build_offer,
)
from ..sip.sdp_cache import AnswerCache
from ..sip.validate import check_accept, check_content, check_method, check_require
from .call import Call, CallFailed, IncomingCall, IncomingHandler, _TwoXXTimer, target_for_uri
from .endpoint import ServerTx, SipEndpoint, Target
from .media_session import (
    answer_with_media,
    offer_with_media,
    reanswer_with_media,
    start_media,
)
from .rtp import MediaConfig
from .transport import Source

# Call and friends live in call.py; they are re-exported here for existing callers.
__all__ = [
    "ALLOW",
    "Call",
    "CallFailed",
    "IncomingCall",
    "IncomingHandler",
    "UaConfig",
    "UserAgent",
    "target_for_uri",
]

log = logging.getLogger("ifescalate.ua")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, UPDATE"
ALLOWED_METHODS = frozenset(m.strip() for m in ALLOW.split(","))
AUDIO_CODECS = (PCMU, PCMA, TELEPHONE_EVENT)


@dataclass(slots=True)
class UaConfig:
    """How the user agent presents itself and answers."""

    user: str = "ifescalate"
    display_name: str | None = None
    #: Credentials callers must present (digest, §22); None answers everybody.
    auth_user: str | None = None
    auth_password: str | None = None
    realm: str = "ifescalate"
    #: Digest algorithms offered in challenges, strongest first (RFC 8760 §2.4). Offering only
    #: "MD5" serves clients that pick the first challenge even when they cannot compute it (SIPp).
    auth_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    #: Ring this long (180 Ringing) before answering; 0 answers at once with 200.
    ring_ms: int = 0
    #: Value of Server / User-Agent headers; None sends none (no banner by default).
    banner: str | None = None
    #: Address put in SDP (c=) and Contact; defaults to the listener's host.
    media_host: str | None = None
    media_port: int = 40000
    #: RTP for every call (net/rtp.py); None: SDP names media_port and no RTP flows (SIP only).
    media: MediaConfig | None = None
    auth_key: bytes = field(default_factory=lambda: IdGenerator().token(32).encode())


# ------------------------------------------------------------------------------------- the agent


def _check_application_layer(request: Request) -> None:
    """§8.2.2.3: 420 for any Require (we support no extension); for INVITE, whose body we read and
    whose 2xx carries SDP, §8.2.3 415 for a body that is not SDP and §20.1 406 when Accept excludes
    SDP (RFC 4475 bext01, invut, sdp01)."""
    check_require(request, ())
    if request.method == "INVITE":
        check_content(request, ("application/sdp",))
        check_accept(request, ("application/sdp",))


class UserAgent:
    """Transaction user over one SipEndpoint; see module doc."""

    def __init__(self, config: UaConfig | None = None, ids: IdGenerator | None = None) -> None:
        self.config = config or UaConfig()
        self.ids = ids or IdGenerator()
        self.endpoint: SipEndpoint | None = None
        self.dialogs = DialogTable()
        self.calls: dict[str, Call] = {}
        self.on_incoming: IncomingHandler = self._auto_answer
        self.on_message: Callable[[Request, Source], None] | None = None
        self.on_info: Callable[[Call, Request], None] | None = None
        self.digest: DigestServer | None = None
        self._ha1: dict[tuple[str, str], str] = {}
        #: ``(username, realm, algorithm) -> HA1`` for digest checks; replaceable (the registry's).
        self.credential_lookup: Callable[[str, str, str], str | None] = lambda u, r, a: (
            self._ha1.get((u, a))
        )
        self._last_auth_user: str | None = None
        #: Set by the security gate, which verifies digest once before the request gets here.
        self.verified_user: Callable[[Request], str | None] | None = None
        self._rtx: dict[str, TwoXXRetransmitter] = {}
        self._answers = AnswerCache()
        self.stats: dict[str, int] = {"answered": 0, "rejected": 0, "ended": 0}
        if self.config.auth_user is not None and self.config.auth_password is not None:
            self.digest = DigestServer(
                self.config.realm, self.config.auth_key, algorithms=self.config.auth_algorithms
            )
            for alg in self.config.auth_algorithms:
                self._ha1[(self.config.auth_user, alg)] = ha1(
                    self.config.auth_user, self.config.realm, self.config.auth_password, alg
                )

    def enable_digest(
        self, lookup: Callable[[str, str, str], str | None], *, realm: str | None = None
    ) -> None:
        """Challenge INVITE and MESSAGE with digest, checking credentials through ``lookup``."""
        if realm is not None:
            self.config.realm = realm
        self.credential_lookup = lookup
        if self.digest is None or realm is not None:
            self.digest = DigestServer(
                self.config.realm, self.config.auth_key, algorithms=self.config.auth_algorithms
            )

    def attach(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint

    @property
    def ep(self) -> SipEndpoint:
        assert self.endpoint is not None, "attach() the endpoint first"
        return self.endpoint

    # -- helpers -----------------------------------------------------------------------------------

    def _contact(self, transport: str, *, secure: bool = False) -> str:
        """Our Contact: ``sips:`` only when the dialog is secure (the Request-URI was sips,
        §8.1.1.8, §12.1.1); otherwise ``sip:`` with the transport named, so a peer that reached
        us over TLS for a sip: URI keeps using TLS without being asked for sips end to end."""
        host, port = self.ep.local_address(transport)
        host = f"[{host}]" if ":" in host else host
        scheme = "sips" if secure else "sip"
        suffix = "" if transport == "UDP" or secure else f";transport={transport.lower()}"
        return f"<{scheme}:{self.config.user}@{host}:{port}{suffix}>"

    def _extra(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if self.config.banner:
            headers.append(("User-Agent", self.config.banner))
        return headers

    def _media_host(self, transport: str) -> str:
        return self.config.media_host or self.ep.local_address(transport)[0]

    # -- TransactionUser: incoming -----------------------------------------------------------------

    def on_request(self, request: Request, tx: ServerTx, source: Source) -> None:
        method = request.method
        try:
            _check_application_layer(request)
        except SipError as exc:
            headers = list(getattr(exc, "response_headers", ()) or ())
            self._respond(
                tx,
                make_response(
                    request, exc.status, exc.reason, to_tag=self.ids.tag(), headers=headers
                ),
            )
            return
        if ";tag=" in (request.headers.get("To") or "").replace(" ", ""):
            self._in_dialog(request, tx, source)
            return
        if method == "INVITE":
            self._incoming_invite(request, tx, source)
        elif method == "OPTIONS":
            self._respond(
                tx, make_response(request, 200, to_tag=self.ids.tag(), headers=self._caps())
            )
        elif method == "MESSAGE":
            if not self._authorized(request, tx):
                return
            self._respond(tx, make_response(request, 200, to_tag=self.ids.tag()))
            if self.on_message is not None:
                self.on_message(request, source)
        elif method in ("BYE", "INFO", "UPDATE"):
            self._respond(tx, call_leg_does_not_exist(request, to_tag=self.ids.tag()))
        else:
            # §8.2.1: 405 with Allow for a method we know but do not take; 501 for an unknown one.
            try:
                check_method(request, ALLOWED_METHODS)
            except SipError as exc:
                extra = list(getattr(exc, "response_headers", ()))
                self._respond(
                    tx,
                    make_response(
                        request, exc.status, exc.reason, to_tag=self.ids.tag(), headers=extra
                    ),
                )

    def _caps(self) -> list[tuple[str, str]]:
        return self._extra([("Allow", ALLOW), ("Accept", "application/sdp")])

    def _respond(self, tx: ServerTx, response: Response) -> None:
        if self.config.banner and "Server" not in response.headers:
            response.headers.add("Server", self.config.banner)
        self.ep.respond(tx, response)

    def _authorized(self, request: Request, tx: ServerTx) -> bool:
        """Digest check (§22.2); answers 401 itself and returns False when not authorized."""
        if self.digest is None:
            return True
        if self.verified_user is not None:
            user = self.verified_user(request)
            if user is not None:
                self._last_auth_user = user
                return True
        now = time.time()
        creds = request.headers.get("Authorization")
        if creds is not None:
            result = self.digest.verify(request.method, creds, self.credential_lookup, now)
            if result.ok:
                self._last_auth_user = result.username
                return True
            stale = result.stale
        else:
            stale = False
        headers = [("WWW-Authenticate", c) for c in self.digest.challenge(now, stale=stale)]
        self._respond(tx, make_response(request, 401, to_tag=self.ids.tag(), headers=headers))
        return False

    def _incoming_invite(self, request: Request, tx: ServerTx, source: Source) -> None:
        if not self._authorized(request, tx):
            return
        call = Call(self, request, "in")
        call.auth_user = self._last_auth_user if self.digest is not None else None
        call.invite_tx = tx
        call.source = source
        try:
            call.dialog = Dialog.from_uas_request(
                request,
                local_tag=self.ids.tag(),
                local_contact=self._contact(
                    source.transport, secure=request.uri.lower().startswith("sips:")
                ),
                over_tls=source.transport == "TLS",
            )
        except SipError as exc:
            self._respond(tx, make_response(request, exc.status, exc.reason, to_tag=self.ids.tag()))
            return
        self.calls[call.call_id] = call
        self.on_incoming(IncomingCall(call, tx))

    def _auto_answer(self, incoming: IncomingCall) -> None:
        ring_ms = self.config.ring_ms
        if ring_ms <= 0:
            incoming.answer()
            return
        incoming.ring()
        self.ep.loop.call_later(ring_ms / 1000.0, self._answer_if_pending, incoming)

    def _answer_if_pending(self, incoming: IncomingCall) -> None:
        if incoming.call.end_reason is None and not incoming.call.established:
            incoming.answer()

    def _provisional(self, incoming: IncomingCall, status: int) -> None:
        call = incoming.call
        assert call.dialog is not None
        resp = make_response(
            call.invite,
            status,
            to_tag=call.dialog.local_tag,
            headers=call.dialog.uas_response_headers(),
        )
        self._respond(incoming.tx, resp)

    def _answer(self, incoming: IncomingCall, sdp: bytes | None) -> Call:
        call = incoming.call
        dialog = call.dialog
        assert dialog is not None and call.source is not None
        if sdp is None:
            try:
                sdp = self._sdp_answer(call, call.source.transport)
            except SipError as exc:
                self._reject(incoming, exc.status, exc.reason)
                return call
        call.local_sdp = sdp
        headers = dialog.uas_response_headers()
        headers.append(("Content-Type", "application/sdp"))
        resp = make_response(call.invite, 200, to_tag=dialog.local_tag, headers=headers, body=sdp)
        self._respond(incoming.tx, resp)
        dialog.response_sent(resp, call.invite)
        self.dialogs.add(dialog)
        self.stats["answered"] += 1
        self._start_2xx_retransmission(call, resp)
        start_media(self, call, None)  # early: latching needs our first packets
        return call

    def _sdp_answer(self, call: Call, transport: str) -> bytes:
        sid = int.from_bytes(bytes.fromhex(self.ids.token(4)), "big")
        if self.config.media is not None:
            return answer_with_media(self, call, transport, session_id=sid)
        if call.invite.body:
            # Identical offers are parsed and answered once; only o= changes per call.
            return self._answers.answer(
                call.invite.body,
                address=self._media_host(transport),
                port=self.config.media_port,
                codecs=AUDIO_CODECS,
                session_id=sid,
            )
        # §13.2.1: no offer in the INVITE, so the 2xx carries our offer.
        return self._sdp_offer(transport, sid)

    def _sdp_offer(self, transport: str, sid: int | None = None) -> bytes:
        sid = sid if sid is not None else int.from_bytes(bytes.fromhex(self.ids.token(4)), "big")
        return build_offer(
            address=self._media_host(transport),
            port=self.config.media_port,
            codecs=list(AUDIO_CODECS),
            session_id=sid,
            session_version=sid,
        ).to_bytes()

    def _start_2xx_retransmission(
        self, call: Call, resp: Response, source: Source | None = None
    ) -> None:
        source = source or call.source
        assert source is not None
        rtx = TwoXXRetransmitter(
            resp,
            reliable=source.transport != "UDP",
            now=self.ep.loop.time(),
            timers=self.ep.timers,
        )
        timed = _TwoXXTimer(self, call, rtx, source)
        self._stop_2xx_retransmission(call)
        call.retransmitter = timed
        self._rtx[call.call_id] = rtx
        self.ep.timer_heap.arm(timed)

    def _stop_2xx_retransmission(self, call: Call) -> None:
        self._rtx.pop(call.call_id, None)
        if call.retransmitter is not None:
            self.ep.timer_heap.disarm(call.retransmitter)
            call.retransmitter.release()
            call.retransmitter = None

    def _reject(self, incoming: IncomingCall, status: int, reason: str | None) -> None:
        call = incoming.call
        assert call.dialog is not None
        self._respond(
            incoming.tx, make_response(call.invite, status, reason, to_tag=call.dialog.local_tag)
        )
        self.stats["rejected"] += 1
        call._finish(f"rejected-{status}")

    def on_ack(self, ack: Request, source: Source) -> None:
        call = self.calls.get(ack.call_id)
        rtx = self._rtx.get(ack.call_id)
        if call is None or (call.direction != "in" and rtx is None):
            return  # §17.2.1: an ACK that matches nothing is dropped
        if rtx is not None and rtx.response.cseq[0] != ack.cseq[0]:
            return  # a late ACK of an earlier 2xx: the current one still waits (§13.2.2.4)
        start_media(self, call, ack.body)  # the answer is in the ACK when our 2xx offered
        if rtx is not None:
            rtx.ack_received()
            self._stop_2xx_retransmission(call)
        if call._established is not None and not call._established.done():
            call._established.set_result(None)

    def on_cancel(self, invite_tx: ServerTx, cancel: Request) -> None:
        call = self.calls.get(cancel.call_id)
        if call is None or call.invite_tx is not invite_tx or call.established:
            return
        assert call.dialog is not None
        with contextlib.suppress(SipError):
            self._respond(invite_tx, make_response(call.invite, 487, to_tag=call.dialog.local_tag))
        call._finish("cancelled")

    def on_stray_response(self, response: Response, source: Source) -> None:
        # §13.2.2.4: a retransmitted 2xx to our INVITE: send the ACK again.
        if response.status // 100 != 2:
            return
        _, method = response.cseq
        if method != "INVITE":
            return
        call = self.calls.get(response.call_id)
        if call is not None and call.direction == "out" and call.dialog is not None:
            self.ep.loop.create_task(self._send_ack(call, response))

    def on_server_timeout(self, tx: ServerTx) -> None:
        call = self.calls.get(tx.request.call_id)
        if call is not None and not call.established:
            call._finish("no-ack")

    def _in_dialog(self, request: Request, tx: ServerTx, source: Source) -> None:
        dialog = self.dialogs.find_for_request(request)
        if dialog is None:
            self._respond(tx, call_leg_does_not_exist(request))
            return
        try:
            dialog.receive_request(request)
        except SipError as exc:
            self._respond(tx, make_response(request, exc.status, exc.reason))
            return
        call = self.calls.get(request.call_id)
        method = request.method
        if method == "BYE":
            resp = make_response(request, 200)
            self._respond(tx, resp)
            self.dialogs.remove(dialog.id)
            if call is not None:
                call._finish("remote-bye")
        elif method == "INVITE" or (method == "UPDATE" and request.body):
            # A re-INVITE or UPDATE (hold, resume, refresh): its offer reaches the media session
            # (RFC 3264 §8); without one we send our current session again (§14.2).
            try:
                body = reanswer_with_media(call, request.body) if call is not None else b""
            except SipError as exc:  # 488: the session stays as it was (§14.2)
                self._respond(tx, make_response(request, exc.status, exc.reason))
                return
            secure = request.uri.lower().startswith("sips:")
            headers = [("Contact", self._contact(source.transport, secure=secure))]
            if body:
                headers.append(("Content-Type", "application/sdp"))
            resp = make_response(request, 200, headers=headers, body=body)
            self._respond(tx, resp)
            dialog.response_sent(resp, request)
            if method == "INVITE" and call is not None:
                # §14.2 / §13.3.1.4: a re-INVITE's 2xx is resent until its ACK, like the first.
                self._start_2xx_retransmission(call, resp, source)
        elif method == "INFO":
            self._respond(tx, make_response(request, 200))
            if call is not None and self.on_info is not None:
                self.on_info(call, request)
        elif method in ("MESSAGE", "OPTIONS", "UPDATE"):
            self._respond(tx, make_response(request, 200))
        else:
            self._respond(tx, make_response(request, 405, headers=[("Allow", ALLOW)]))

    def _forget(self, call: Call) -> None:
        if self.calls.get(call.call_id) is call:
            del self.calls[call.call_id]
        self._rtx.pop(call.call_id, None)
        if call.retransmitter is not None and self.endpoint is not None:
            self.ep.timer_heap.disarm(call.retransmitter)
            call.retransmitter.release()
        if call.dialog is not None:
            self.dialogs.remove(call.dialog.id)
        self.stats["ended"] += 1

    # -- outgoing ------------------------------------------------------------------------------------

    async def request(self, request: Request, target: Target) -> Response:
        """Send ``request`` in a client transaction; return its final response."""
        loop = self.ep.loop
        fut: asyncio.Future[Response] = loop.create_future()

        def on_response(resp: Response) -> None:
            if resp.status >= 200 and not fut.done():
                fut.set_result(resp)

        def on_timeout(timer: str) -> None:
            if not fut.done():
                fut.set_exception(CallFailed(408, f"Request Timeout (timer {timer})"))

        await self.ep.send_request(request, target, on_response, on_timeout)
        return await fut

    def _out_of_dialog(
        self,
        method: str,
        uri: str,
        target: Target,
        *,
        call_id: str | None = None,
        from_tag: str | None = None,
        cseq: int = 1,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        host, port = self.ep.local_address(target.transport)
        from_host = f"[{host}]" if ":" in host else host
        display = f'"{self.config.display_name}" ' if self.config.display_name else ""
        return new_request(
            method,
            uri,
            from_addr=f"{display}<sip:{self.config.user}@{from_host}>",
            from_tag=from_tag or self.ids.tag(),
            to_addr=f"<{uri}>",
            call_id=call_id or self.ids.call_id(from_host),
            cseq=cseq,
            via_host=host,
            via_port=port,
            transport=target.transport,
            branch=self.ids.branch(),
            contact=(
                self._contact(target.transport, secure=uri.lower().startswith("sips:"))
                if method == "INVITE"
                else None
            ),
            headers=self._extra(list(headers or [])),
            body=body,
            content_type=content_type,
        )

    async def options(self, uri: str, *, target: Target | None = None) -> Response:
        """Send OPTIONS (§11) and return the final response."""
        target = target or target_for_uri(uri)
        return await self.request(self._out_of_dialog("OPTIONS", uri, target), target)

    async def message(
        self,
        uri: str,
        text: bytes,
        *,
        content_type: str = "text/plain",
        target: Target | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Response:
        """Send a MESSAGE (RFC 3428) outside a dialog, answering one digest challenge if asked."""
        target = target or target_for_uri(uri)
        req = self._out_of_dialog("MESSAGE", uri, target, body=text, content_type=content_type)
        resp = await self.request(req, target)
        if resp.status in (401, 407) and auth is not None:
            retry = self._with_credentials(req, resp, auth)
            resp = await self.request(retry, target)
        return resp

    def _with_credentials(
        self, req: Request, challenge: Response, auth: tuple[str, str]
    ) -> Request:
        """A copy of ``req`` with credentials for ``challenge``, CSeq + 1, new branch (§22.2)."""
        header = "WWW-Authenticate" if challenge.status == 401 else "Proxy-Authenticate"
        answer_header = "Authorization" if challenge.status == 401 else "Proxy-Authorization"
        client = DigestClient(auth[0], auth[1])
        creds = client.answer(
            challenge.headers.get_lines(header), req.method, req.uri, body=req.body
        )
        headers = req.headers.copy()
        seq, method = req.cseq
        headers.set("CSeq", f"{seq + 1} {method}")
        via = headers.first("Via") or ""
        head, _, _ = via.partition(";branch=")
        headers.pop_first("Via")
        headers.prepend("Via", f"{head};branch={self.ids.branch()};rport")
        headers.set(answer_header, creds)
        return Request(method=req.method, uri=req.uri, headers=headers, body=req.body)

    async def call(
        self,
        uri: str,
        *,
        target: Target | None = None,
        auth: tuple[str, str] | None = None,
        headers: list[tuple[str, str]] | None = None,
        sdp: bytes | None = None,
        on_provisional: Callable[[Response], None] | None = None,
    ) -> Call:
        """Place a call; returns the established Call or raises CallFailed with the final status."""
        target = target or target_for_uri(uri)
        media = None
        if sdp is None and self.config.media is not None:
            media, sdp = offer_with_media(self, target.transport)
        body = sdp if sdp is not None else self._sdp_offer(target.transport)
        invite = self._out_of_dialog(
            "INVITE", uri, target, headers=headers, body=body, content_type="application/sdp"
        )
        call = Call(self, invite, "out")
        call.target = target
        call.local_sdp = body
        call.media = media
        self.calls[call.call_id] = call
        try:
            resp = await self._invite(call, target, on_provisional)
            if resp.status in (401, 407) and auth is not None:
                call.invite = self._with_credentials(call.invite, resp, auth)
                resp = await self._invite(call, target, on_provisional)
        except BaseException:
            call._finish("failed")
            raise
        if resp.status >= 300:
            call._finish(f"failed-{resp.status}")
            raise CallFailed(resp.status, resp.reason, resp)
        return call

    async def _invite(
        self, call: Call, target: Target, on_provisional: Callable[[Response], None] | None
    ) -> Response:
        loop = self.ep.loop
        fut: asyncio.Future[Response] = loop.create_future()

        def on_response(resp: Response) -> None:
            if resp.status < 200:
                if on_provisional is not None:
                    on_provisional(resp)
                return
            if fut.done():
                return  # a second 2xx (forking) is answered by on_stray_response's re-ACK path
            if resp.status < 300:
                self._confirmed(call, resp)
            fut.set_result(resp)

        def on_timeout(timer: str) -> None:
            if not fut.done():
                fut.set_exception(CallFailed(408, f"Request Timeout (timer {timer})"))

        call.invite_tx = await self.ep.send_request(call.invite, target, on_response, on_timeout)
        try:
            return await fut
        except asyncio.CancelledError:
            await self._cancel(call, target)
            raise

    def _confirmed(self, call: Call, resp: Response) -> None:
        dialog = Dialog.from_uac_response(call.invite, resp)
        call.dialog = dialog
        call.remote_sdp = resp.body
        start_media(self, call, resp.body)
        self.dialogs.add(dialog)
        self.ep.loop.create_task(self._send_ack(call, resp))

    async def _send_ack(self, call: Call, resp: Response) -> None:
        dialog = call.dialog
        assert dialog is not None and call.target is not None
        transport = call.target.transport
        host, port = self.ep.local_address(transport)
        ack = dialog.build_ack(
            call.invite,
            resp,
            via_host=host,
            via_port=port,
            transport=transport,
            branch=self.ids.branch(),
        )
        await self.ep.send_stateless(ack, self._next_hop(dialog, call.target))

    def _next_hop(self, dialog: Dialog, fallback: Target) -> Target:
        """The target for an in-dialog request: first route or remote target, same transport."""
        hop = next_hop_uri(dialog.remote_target, dialog.route_set)
        try:
            target = target_for_uri(hop.strip("<>").split(">")[0])
        except (SipError, ValueError):
            return fallback
        if fallback.transport != "UDP" and target.transport == "UDP":
            # Stay on the connection-oriented transport the dialog was set up over.
            return Target(fallback.transport, target.host, target.port)
        return target

    async def _cancel(self, call: Call, target: Target) -> None:
        from ..sip.transaction import build_cancel

        cancel = build_cancel(call.invite)
        with contextlib.suppress(CallFailed):
            await asyncio.wait_for(self.request(cancel, target), 5.0)
        call._finish("cancelled")

    async def _send_bye(self, call: Call, reason: str = "bye") -> None:
        dialog = call.dialog
        if dialog is None or call.end_reason is not None:
            return
        fallback = call.target
        if fallback is None:
            src = call.source
            assert src is not None
            fallback = Target(src.transport, src.host, src.port)
        transport = fallback.transport
        host, port = self.ep.local_address(transport)
        bye, _ = dialog.create_request(
            "BYE", via_host=host, via_port=port, transport=transport, branch=self.ids.branch()
        )
        target = self._next_hop(dialog, fallback)
        if call.direction == "in" and call.source is not None and call.source.conn is not None:
            target = Target(fallback.transport, call.source.host, call.source.port)
        call._finish(reason)
        with contextlib.suppress(CallFailed, OSError):
            await asyncio.wait_for(self.request(bye, target), 40.0)

    async def _send_in_dialog(
        self, call: Call, method: str, body: bytes, content_type: str
    ) -> Response:
        """A non-INVITE request in ``call``'s dialog, sent where a BYE would go (§12.2.1.1)."""
        dialog = call.dialog
        assert dialog is not None
        fallback = call.target
        if fallback is None:
            src = call.source
            assert src is not None
            fallback = Target(src.transport, src.host, src.port)
        host, port = self.ep.local_address(fallback.transport)
        request, _ = dialog.create_request(
            method,
            via_host=host,
            via_port=port,
            transport=fallback.transport,
            branch=self.ids.branch(),
            body=body,
            content_type=content_type,
        )
        target = self._next_hop(dialog, fallback)
        if call.direction == "in" and call.source is not None and call.source.conn is not None:
            target = Target(fallback.transport, call.source.host, call.source.port)
        return await self.request(request, target)
