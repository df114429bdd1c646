"""The SIP endpoint: transports in, transactions in the middle, a transaction user on top.

This is the thin asyncio driver of the sans-IO core (ARCHITECTURE.md convention 2): it feeds parsed
messages to the §17 machines found by ``TransactionTable``, sends what they return, keeps one timer
for all their deadlines and tells the transaction user (the user agent) what it must decide.

Where a response goes (§18.2.2 with RFC 3581): back over the request's connection on TCP/TLS; on UDP
to the source address and port when the request asked for ``rport``, else to the address it came
from and the port its Via names.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..sip.build import IdGenerator, make_response
from ..sip.errors import SipError, SipParseError
from ..sip.framing import KeepAlivePing, ParseFailure, StreamItem
from ..sip.headers import parse_via
from ..sip.message import Request, Response, parse_message
from ..sip.transaction import (
    DEFAULT_TIMERS,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    Deliver,
    Send,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    Terminated,
    Timeout,
    Timers,
    TransportError,
    TxEvent,
)
from ..sip.txtable import TransactionTable
from ..sip.validate import validate_request
from .timers import Timed, TimerHeap
from .transport import ListenSpec, Source, StreamConnection, StreamLimits, UdpListener

log = logging.getLogger("ifescalate.sip")

DEFAULT_LIMITS = StreamLimits()

_IDS = IdGenerator()

ClientTx = ClientInviteTransaction | ClientNonInviteTransaction
ServerTx = ServerInviteTransaction | ServerNonInviteTransaction


@dataclass(frozen=True, slots=True)
class Target:
    """Where to send a request: transport and a resolved address (RFC 3263 is out of scope here)."""

    transport: str  # "UDP", "TCP", "TLS"
    host: str
    port: int


class TransactionUser(Protocol):
    """What the endpoint asks of the layer above (RFC 3261 §8, §12-§15: the UA core)."""

    def on_request(self, request: Request, tx: ServerTx, source: Source) -> None:
        """A new request with its server transaction; the TU must answer through ``respond``."""

    def on_ack(self, ack: Request, source: Source) -> None:
        """An ACK for a 2xx (outside any transaction, §17.2.1/RFC 6026) or absorbed by one."""

    def on_cancel(self, invite_tx: ServerInviteTransaction, cancel: Request) -> None:
        """A CANCEL matched an INVITE still being processed; the TU answers the INVITE with 487."""

    def on_stray_response(self, response: Response, source: Source) -> None:
        """A response no client transaction wants (a retransmitted 2xx to INVITE, §13.2.2.4)."""

    def on_server_timeout(self, tx: ServerTx) -> None:
        """Timer H fired: the ACK for our final response never came (§17.2.1)."""


ResponseCallback = Callable[[Response], None]
TimeoutCallback = Callable[[str], None]


class _ServerEntry(Timed):
    """A server transaction, where its responses go, and its timer-heap entry in one object.

    Being its own ``Timed`` (methods, no closure) keeps it free of reference cycles, so a finished
    transaction and its messages are freed at once instead of waiting for a full GC pass.
    """

    __slots__ = ("endpoint", "source", "tx")

    def __init__(self, endpoint: SipEndpoint, tx: ServerTx, source: Source) -> None:
        self.armed = None
        self.endpoint = endpoint
        self.tx = tx
        self.source = source

    @property
    def timed(self) -> Timed:
        return self

    def get_timer(self) -> float | None:
        return self.tx.get_timer()

    def fire(self, now: float) -> None:
        self.endpoint._process_server(self, self.tx.handle_timer(now))


class _ClientEntry:
    __slots__ = ("final_2xx", "on_response", "on_timeout", "sink", "timed", "tx")

    def __init__(
        self,
        tx: ClientTx,
        sink: Callable[[bytes], None],
        on_response: ResponseCallback,
        on_timeout: TimeoutCallback,
        timed: Timed,
    ) -> None:
        self.tx = tx
        self.sink = sink
        self.on_response = on_response
        self.on_timeout = on_timeout
        self.timed = timed
        #: An INVITE's first 2xx went to ``on_response``; later ones are the TU's to re-ACK.
        self.final_2xx = False


class SipEndpoint:
    """Listens on UDP/TCP/TLS, runs transactions, and hands decisions to a TransactionUser."""

    def __init__(
        self,
        tu: TransactionUser,
        *,
        timers: Timers = DEFAULT_TIMERS,
        max_message_size: int = 65535,
        limits: StreamLimits = DEFAULT_LIMITS,
        tls_client_context: ssl.SSLContext | None = None,
    ) -> None:
        self.tu = tu
        self.timers = timers
        self.max_message_size = max_message_size
        self.limits = limits
        self.tls_client_context = tls_client_context
        self.loop = asyncio.get_running_loop()
        self.table = TransactionTable()
        self.timer_heap = TimerHeap(self.loop)
        self.udp: list[UdpListener] = []
        self.servers: list[tuple[ListenSpec, asyncio.Server]] = []
        self.bound: list[ListenSpec] = []
        self.connections: dict[tuple[str, str, int], StreamConnection] = {}
        self._per_peer: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        #: Responses the TU sent, by exact status code (metrics read it at scrape time).
        self.responses_by_status: Counter[int] = Counter()
        self._sweeper: asyncio.TimerHandle | None = None
        # Sweep at least twice per time limit so a connection outlives its limit by at most half
        # of it (and by at most one second).
        shortest = min(limits.idle_timeout, limits.message_timeout, limits.tls_handshake_timeout)
        self._sweep_every = min(1.0, max(0.05, shortest / 2))
        # Finished transactions leave the table when they report Terminated; the full-table purge
        # is only a safety net, so it runs every ~30 s rather than on each sweep (it scans every
        # live transaction: ~100k at 3,000 calls/s with 32 s Timer L/J).
        self._purge_every = max(1, round(_PURGE_SECONDS / self._sweep_every))
        self._sweeps = 0
        self._sentinels: dict[int, _ServerEntry | _ClientEntry] = {}
        self._closing = False
        self._counted: set[int] = set()
        self._connecting: dict[tuple[str, str, int], asyncio.Task[StreamConnection]] = {}
        self._aliases: dict[int, tuple[str, str, int]] = {}
        self.ids = IdGenerator()
        #: The security gate (net/security_gate.py), None unless a layer is configured: called for
        #: each request that starts a server transaction; False means it answered or holds it.
        self.gate: Callable[[Request, Source], bool] | None = None
        #: Told ``(kind, peer address)`` when a stream connection is refused or cut off by
        #: ``limits`` (the gate audits it); ``kind`` is the ``stats`` key counted.
        self.on_stream_refused: Callable[[str, str], None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def listen(
        self, spec: ListenSpec, tls_context: ssl.SSLContext | None = None
    ) -> ListenSpec:
        """Bind one listener; returns the spec with the real port (when 0 was asked)."""
        if spec.transport == "UDP":
            _, proto = await self.loop.create_datagram_endpoint(
                lambda: UdpListener(self), local_addr=(spec.host, spec.port)
            )
            self.udp.append(proto)
            bound = ListenSpec("UDP", spec.host, proto.local[1])
        else:
            if spec.transport == "TLS" and tls_context is None:
                raise ValueError("a TLS listener needs a TLS context")
            transport_name = spec.transport
            # TLS runs in the accepted TCP connection (StreamConnection), not in the server: so
            # a handshake is admitted, counted and timed like any connection from its address.
            tls_server = tls_context if spec.transport == "TLS" else None
            server = await self.loop.create_server(
                lambda: StreamConnection(
                    self,
                    transport_name=transport_name,
                    max_size=self.max_message_size,
                    on_open=self._accept_connection,
                    tls_server=tls_server,
                ),
                spec.host,
                spec.port,
                reuse_address=True,
            )
            port = server.sockets[0].getsockname()[1]
            bound = ListenSpec(spec.transport, spec.host, port)
            self.servers.append((bound, server))
        self.bound.append(bound)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)
        return bound

    def local_address(self, transport: str) -> tuple[str, int]:
        """The sent-by (§18.1.1) for requests we send over ``transport``."""
        for spec in self.bound:
            if spec.transport == transport:
                return spec.host, spec.port
        if self.bound:
            return self.bound[0].host, self.bound[0].port
        raise RuntimeError("the endpoint has no listener")

    async def close(self) -> None:
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.timer_heap.close()
        for _, server in self.servers:
            server.close()
        for conn in list(self.connections.values()):
            conn.abort()
        for udp in self.udp:
            if udp.transport is not None:
                udp.transport.close()
        for _, server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    # -- input from transports -------------------------------------------------------------------

    def datagram_received(self, data: bytes, source: Source) -> None:
        if len(data) <= 4 and data.strip(b"\r\n\x00") == b"":
            # RFC 5626 §4.4.1 keep-alive (CRLF) or an empty datagram: nothing to answer.
            self.stats["keepalives"] += 1
            return
        try:
            msg = parse_message(data, max_size=self.max_message_size)
        except SipError as exc:
            self._reject_unparseable(data, exc, source)
            return
        self._dispatch(msg, source)

    def stream_item_received(self, item: StreamItem, source: Source) -> None:
        if isinstance(item, KeepAlivePing):
            # RFC 5626 §3.5.1: answer a CRLFCRLF ping with a CRLF pong.
            if source.conn is not None:
                source.conn.send(b"\r\n")
            return
        if isinstance(item, ParseFailure):
            self._reject_unparseable(item.head + b"\r\n\r\n", item.error, source)
            return
        self._dispatch(item, source)

    def stream_error(self, error: SipParseError, source: Source) -> None:
        self.stats["stream_errors"] += 1
        log.info(
            "closing %s connection from %s:%s: %s",
            source.transport,
            source.host,
            source.port,
            error,
        )

    def stream_tls_failed(self, error: ssl.SSLError, conn: StreamConnection) -> None:
        """A TLS handshake failed (old protocol, no shared cipher, no client certificate, not
        TLS at all) or a record was bad later; the connection closes."""
        log.debug("TLS from %s:%s failed: %s", conn.peer[0], conn.peer[1], error)
        if conn.handshaking:
            self._stream_refused("tls_handshake_failed", conn)
        else:
            self.stats["stream_errors"] += 1

    def connection_lost(self, conn: StreamConnection) -> None:
        key = (conn.transport_name, conn.peer[0], conn.peer[1])
        if self.connections.get(key) is conn:
            del self.connections[key]
        alias = self._aliases.pop(id(conn), None)
        if alias is not None and self.connections.get(alias) is conn:
            del self.connections[alias]
        if id(conn) in self._counted:
            self._counted.discard(id(conn))
            self._per_peer[conn.peer[0]] -= 1
            if self._per_peer[conn.peer[0]] <= 0:
                del self._per_peer[conn.peer[0]]

    def _accept_connection(self, conn: StreamConnection) -> bool:
        """Admit an accepted connection unless its peer, or everyone together, holds too many."""
        if self._per_peer[conn.peer[0]] >= self.limits.max_per_peer:
            self._stream_refused("connections_refused", conn)
            return False
        if len(self._counted) >= self.limits.max_total:
            self._stream_refused("connections_limit", conn)
            return False
        self._register_connection(conn)
        return True

    def _stream_refused(self, kind: str, conn: StreamConnection) -> None:
        self.stats[kind] += 1
        if self.on_stream_refused is not None:
            self.on_stream_refused(kind, conn.peer[0])

    @property
    def stream_connections(self) -> int:
        """Open TCP/TLS connections, TLS handshakes in progress included."""
        return len(self._counted)

    def _register_connection(self, conn: StreamConnection) -> None:
        self._per_peer[conn.peer[0]] += 1
        self._counted.add(id(conn))
        self.connections[(conn.transport_name, conn.peer[0], conn.peer[1])] = conn

    def _sweep(self) -> None:
        """Close stream connections over their time limits (slowloris bounds, ``StreamLimits``):
        a TLS handshake not done in time, a message not complete in time however slowly its
        bytes keep coming, or nothing at all for ``idle_timeout``."""
        now = self.loop.time()
        limits = self.limits
        for conn in list(self.connections.values()):
            if conn.handshaking:
                if now - conn.opened_at > limits.tls_handshake_timeout:
                    self._stream_refused("tls_handshake_timeout", conn)
                    conn.abort()
            elif (
                conn.message_started is not None
                and now - conn.message_started > limits.message_timeout
            ):
                self._stream_refused("message_timeout", conn)
                conn.abort()
            elif now - conn.last_activity > limits.idle_timeout:
                self.stats["idle_closed"] += 1
                conn.abort()
        self._sweeps += 1
        if self._sweeps % self._purge_every == 0:
            self.table.purge()
        if not self._closing:
            self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)

    # -- bad input ---------------------------------------------------------------------------------

    def _reject_unparseable(self, data: bytes, exc: SipError, source: Source) -> None:
        """Answer a malformed request with its error's status when a response can be formed."""
        self.stats["malformed"] += 1
        resp = _error_response_from_raw(data, exc)
        if resp is None:
            self.stats["dropped"] += 1
            log.debug("dropped malformed message from %s:%s: %s", source.host, source.port, exc)
            return
        self._send_to_source(resp.to_bytes(), source, None)

    # -- dispatch ----------------------------------------------------------------------------------

    def _dispatch(self, msg: Request | Response, source: Source) -> None:
        if isinstance(msg, Response):
            self._on_response(msg, source)
            return
        try:
            validate_request(msg)
        except SipError as exc:
            self.stats["invalid"] += 1
            if msg.method == "ACK" or not _answerable(msg):
                # §17.2.1: never answer an ACK; and a response needs Via, From, To, Call-ID and
                # CSeq to be routed and matched (§8.2.6.2): without them it is noise, drop it.
                self.stats["dropped"] += 1
                return
            self._send_to_source(_error_response(msg, exc).to_bytes(), source, msg.top_via)
            return
        self._on_request(msg, source)

    def _on_request(self, req: Request, source: Source) -> None:
        now = self.loop.time()
        _stamp_via(req, source)
        tx = self.table.match_request(req)
        if tx is not None:
            entry = self._server_entry(tx)
            events = tx.receive_request(req, now)
            self._process_server(entry, events) if entry is not None else None
            return
        method = req.method
        if method == "ACK":
            self.tu.on_ack(req, source)
            return
        if method == "CANCEL":
            self._on_cancel(req, source, now)
            return
        gate = self.gate
        if gate is not None and not gate(req, source):
            return
        if self.table.is_merged(req):
            # §8.2.2.2: the same request reached us twice over different paths.
            merged = self._new_server_tx(req, source, now)
            self.respond(merged.tx, make_response(req, 482, to_tag=self.ids.tag()))
            return
        entry = self._new_server_tx(req, source, now)
        self.tu.on_request(req, entry.tx, source)

    def _on_cancel(self, cancel: Request, source: Source, now: float) -> None:
        invite_tx = self.table.match_cancel(cancel)
        entry = self._new_server_tx(cancel, source, now)
        if invite_tx is None:
            # §9.2: no matching transaction: 481.
            self.respond(entry.tx, make_response(cancel, 481, to_tag=self.ids.tag()))
            return
        self.respond(entry.tx, make_response(cancel, 200, to_tag=invite_tx.to_tag or None))
        self.tu.on_cancel(invite_tx, cancel)

    def _new_server_tx(self, req: Request, source: Source, now: float) -> _ServerEntry:
        reliable = source.transport != "UDP"
        tx: ServerTx
        if req.method == "INVITE":
            tx = ServerInviteTransaction(req, reliable=reliable, now=now, timers=self.timers)
        else:
            tx = ServerNonInviteTransaction(req, reliable=reliable, now=now, timers=self.timers)
        entry = _ServerEntry(self, tx, source)
        self.table.add_server(tx)
        self._sentinels[id(tx)] = entry
        return entry

    def _server_entry(self, tx: ServerTx) -> _ServerEntry | None:
        entry = self._sentinels.get(id(tx))
        return entry if isinstance(entry, _ServerEntry) else None

    def respond(self, tx: ServerTx, response: Response) -> None:
        """Send the TU's response through its server transaction."""
        entry = self._server_entry(tx)
        if entry is None:
            raise RuntimeError("unknown server transaction")
        self._count_response(response.status)
        self._process_server(entry, tx.send_response(response, self.loop.time()))

    def _process_server(self, entry: _ServerEntry, events: list[TxEvent]) -> None:
        for ev in events:
            if isinstance(ev, Send):
                self._send_to_source(ev.message.to_bytes(), entry.source, entry.tx.request.top_via)
            elif isinstance(ev, Deliver):
                msg = ev.message
                if isinstance(msg, Request) and msg.method == "ACK":
                    self.tu.on_ack(msg, entry.source)
            elif isinstance(ev, Timeout):
                self.tu.on_server_timeout(entry.tx)
            elif isinstance(ev, Terminated):
                self.table.remove(entry.tx)
                self._sentinels.pop(id(entry.tx), None)
                self.timer_heap.disarm(entry.timed)
                return
        self.timer_heap.arm(entry.timed)

    def _count_response(self, status: int) -> None:
        self.stats[_SENT_KEYS.get(status // 100) or f"responses_sent_{status // 100}xx"] += 1
        self.responses_by_status[status] += 1

    # -- client side -------------------------------------------------------------------------------

    async def send_request(
        self,
        request: Request,
        target: Target,
        on_response: ResponseCallback,
        on_timeout: TimeoutCallback,
    ) -> ClientTx:
        """Start a client transaction for ``request`` towards ``target``.

        ``on_response`` gets every response (provisional and final); ``on_timeout`` gets the timer
        name ("B", "F") or "transport" when the transaction failed without a final response.
        """
        sink = await self._sink_for(target)
        reliable = target.transport != "UDP"
        now = self.loop.time()
        tx: ClientTx
        if request.method == "INVITE":
            tx = ClientInviteTransaction(request, reliable=reliable, now=now, timers=self.timers)
        else:
            tx = ClientNonInviteTransaction(request, reliable=reliable, now=now, timers=self.timers)
        timed = Timed(tx.get_timer, _no_fire)
        entry = _ClientEntry(tx, sink, on_response, on_timeout, timed)

        def fire(now: float) -> None:
            self._process_client(entry, entry.tx.handle_timer(now))

        timed.fire = fire
        self.table.add_client(tx)
        self._sentinels[id(tx)] = entry
        self._process_client(entry, tx.start(now))
        return tx

    async def send_stateless(self, message: Request | Response, target: Target) -> None:
        """Send outside any transaction: the ACK for a 2xx (§13.2.2.4), a 2xx retransmission."""
        sink = await self._sink_for(target)
        sink(message.to_bytes())

    def send_via_source(self, message: Request | Response, source: Source) -> None:
        """Send back to where a message came from (2xx retransmissions of a UAS, §13.3.1.4)."""
        via = message.top_via if isinstance(message, Response) else None
        self._send_to_source(message.to_bytes(), source, via)

    def _on_response(self, resp: Response, source: Source) -> None:
        self.stats[f"responses_received_{resp.status // 100}xx"] += 1
        tx = self.table.match_response(resp)
        if tx is None:
            self.tu.on_stray_response(resp, source)
            return
        entry = self._sentinels.get(id(tx))
        if not isinstance(entry, _ClientEntry):
            return
        self._process_client(entry, tx.receive_response(resp, self.loop.time()), source)

    def _process_client(
        self, entry: _ClientEntry, events: list[TxEvent], source: Source | None = None
    ) -> None:
        for ev in events:
            if isinstance(ev, Send):
                try:
                    entry.sink(ev.message.to_bytes())
                except OSError:
                    self._process_client(entry, entry.tx.transport_error(self.loop.time()))
                    return
            elif isinstance(ev, Deliver):
                msg = ev.message
                if isinstance(msg, Response):
                    self._deliver_response(entry, msg, source)
            elif isinstance(ev, Timeout):
                entry.on_timeout(ev.timer)
            elif isinstance(ev, TransportError):
                entry.on_timeout("transport")
            elif isinstance(ev, Terminated):
                self.table.remove(entry.tx)
                self._sentinels.pop(id(entry.tx), None)
                self.timer_heap.disarm(entry.timed)
                return
        self.timer_heap.arm(entry.timed)

    def _deliver_response(self, entry: _ClientEntry, resp: Response, source: Source | None) -> None:
        if resp.status // 100 != 2 or not isinstance(entry.tx, ClientInviteTransaction):
            entry.on_response(resp)
            return
        if not entry.final_2xx:
            entry.final_2xx = True
            entry.on_response(resp)
            return
        # RFC 6026 §8.4: in Accepted the transaction passes every further 2xx up; each is a
        # retransmission (or another fork's answer) the TU must ACK again (§13.2.2.4).
        if source is not None:
            self.tu.on_stray_response(resp, source)

    def cancel_transaction(self, tx: ClientTx) -> None:
        """Forget a client transaction the TU abandons (its timers stop)."""
        entry = self._sentinels.pop(id(tx), None)
        if entry is not None:
            self.table.remove(tx)
            self.timer_heap.disarm(entry.timed)

    async def _sink_for(self, target: Target) -> Callable[[bytes], None]:
        if target.transport == "UDP":
            if not self.udp:
                raise RuntimeError("no UDP listener to send from")
            udp = self.udp[0]
            for candidate in self.udp:
                if (":" in candidate.local[0]) == (":" in target.host):
                    udp = candidate
                    break
            host, port = target.host, target.port
            return lambda data: udp.send(data, host, port)
        conn = await self.connect(target)
        return conn.send

    async def connect(self, target: Target) -> StreamConnection:
        """Reuse or open a TCP/TLS connection to ``target`` (§18.1.1: reuse is allowed).

        Concurrent requests to one target share a single connection attempt; otherwise each would
        open its own connection and all but the last would escape the table (and the idle sweep).
        """
        key = (target.transport, target.host, target.port)
        conn = self.connections.get(key)
        if conn is not None and conn.is_open:
            return conn
        opening = self._connecting.get(key)
        if opening is None:
            opening = self.loop.create_task(self._open(target, key))
            self._connecting[key] = opening
            opening.add_done_callback(lambda task: self._opened(key, task))
        return await asyncio.shield(opening)

    def _opened(self, key: tuple[str, str, int], task: asyncio.Task[StreamConnection]) -> None:
        if self._connecting.get(key) is task:
            del self._connecting[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so an attempt nobody waits for logs no warning

    async def _open(self, target: Target, key: tuple[str, str, int]) -> StreamConnection:
        ctx: ssl.SSLContext | None = None
        if target.transport == "TLS":
            ctx = self.tls_client_context or ssl.create_default_context()
        _, proto = await self.loop.create_connection(
            lambda: StreamConnection(
                self, transport_name=target.transport, max_size=self.max_message_size
            ),
            target.host,
            target.port,
            ssl=ctx,
            server_hostname=target.host if ctx is not None else None,
        )
        self._register_connection(proto)
        if key != (proto.transport_name, proto.peer[0], proto.peer[1]):
            # Also findable by the name it was asked for ("localhost"); forgotten with it.
            self.connections[key] = proto
            self._aliases[id(proto)] = key
        return proto

    # -- sending responses -------------------------------------------------------------------------

    def _send_to_source(self, data: bytes, source: Source, top_via: str | None) -> None:
        if source.conn is not None:
            source.conn.send(data)
            return
        if source.udp is None:
            return
        port = source.port
        if top_via is not None and "rport" not in top_via:
            # §18.2.2: without rport, the port named in Via (default 5060), at the source address.
            port = _via_port(top_via) or 5060
        source.udp.send(data, source.host, port)


_PURGE_SECONDS = 30.0

# Counter keys per response class, made once instead of an f-string per response.
_SENT_KEYS = {c: f"responses_sent_{c}xx" for c in range(1, 7)}


def _no_fire(now: float) -> None:
    return None


def _stamp_via(req: Request, source: Source) -> None:
    """Write where the request really came from into its top Via, before any response is built.

    §18.2.1: add ``received`` when sent-by is a name or an address other than the packet's source.
    RFC 3581 §4: when the client asked for ``rport``, fill in the source port and add ``received``
    even if it equals sent-by. Responses copy this Via (§8.2.6.2), so the client learns its public
    address and the response routing (§18.2.2) uses it. Done the same way for every copy of a
    request, so retransmissions and the ACK still match their transaction.
    """
    top = req.headers.first("Via")
    if top is None or _stamp_not_needed(top, source.host):
        return
    try:
        via = parse_via(top)
    except SipError:
        return  # validate_request let it through; answer as it is rather than fail here
    stamped = via
    if via.has_rport or not _same_address(via.host, source.host):
        stamped = stamped.with_param("received", source.host)
    if via.has_rport:
        stamped = stamped.with_param("rport", str(source.port))
    if stamped is not via:
        req.headers.pop_first("Via")
        req.headers.prepend("Via", str(stamped))


def _stamp_not_needed(top: str, source_host: str) -> bool:
    """Cheap check for the common case: no rport and sent-by is literally the source IP (with any
    port), so §18.2.1 adds nothing. A False answer only means "parse the Via and decide"."""
    if "rport" in top.lower() or not _is_ip(source_host):
        return False
    parts = top.partition(";")[0].split()
    if len(parts) != 2 or not parts[0].startswith("SIP/2.0/"):
        return False
    sent_by = parts[1]
    if sent_by == source_host:
        return True
    host, colon, port = sent_by.rpartition(":")
    return bool(colon) and host == source_host and port.isdigit()


# Source addresses come from the kernel and repeat per peer: parse each once (bounded).
_IP_CACHE: dict[str, bool] = {}


def _is_ip(host: str) -> bool:
    known = _IP_CACHE.get(host)
    if known is None:
        try:
            ipaddress.ip_address(host)
            known = True
        except ValueError:
            known = False
        if len(_IP_CACHE) >= 4096:
            _IP_CACHE.clear()
        _IP_CACHE[host] = known
    return known


def _same_address(sent_by_host: str, source_host: str) -> bool:
    if sent_by_host == source_host:
        return _is_ip(source_host)
    try:
        return ipaddress.ip_address(sent_by_host) == ipaddress.ip_address(source_host)
    except ValueError:
        return False  # a domain name in sent-by: §18.2.1 always adds received


def _tag() -> str:
    return _IDS.tag()


def _via_port(via: str) -> int | None:
    head = via.partition(";")[0]
    sent_by = head.rsplit(None, 1)[-1] if head.split() else ""
    if sent_by.startswith("["):
        _, _, rest = sent_by.partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        port = sent_by.rpartition(":")[2] if ":" in sent_by else ""
    return int(port) if port.isdigit() else None


def _answerable(req: Request) -> bool:
    return all(req.headers.get(name) for name in _RESPONSE_COPIES)


_RESPONSE_COPIES = ("Via", "From", "To", "Call-ID", "CSeq")


def _error_response(req: Request, exc: SipError) -> Response:
    headers = list(getattr(exc, "response_headers", ()) or ())
    return make_response(req, exc.status, exc.reason, to_tag=_tag(), headers=headers)


_COPY_RAW = {
    b"via": "Via",
    b"v": "Via",
    b"from": "From",
    b"f": "From",
    b"to": "To",
    b"t": "To",
    b"call-id": "Call-ID",
    b"i": "Call-ID",
    b"cseq": "CSeq",
}


def _error_response_from_raw(data: bytes, exc: SipError) -> Response | None:
    """Build the error response for a request that did not parse (§21.4.1, RFC 4475 §3.1.2).

    Only possible when it is a request (never answer a response) and Via, From, To, Call-ID and
    CSeq can be read as raw lines; otherwise the message is dropped.
    """
    head = data.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    if not lines or lines[0].startswith(b"SIP/") or lines[0][:3] == b"ACK":
        return None
    found: list[tuple[str, str]] = []
    for raw in lines[1:]:
        name, sep, value = raw.partition(b":")
        canon = _COPY_RAW.get(name.strip().lower()) if sep else None
        if canon is not None:
            try:
                found.append((canon, value.strip().decode("utf-8")))
            except UnicodeDecodeError:
                return None
    if {n for n, _ in found} != {"Via", "From", "To", "Call-ID", "CSeq"}:
        return None
    resp = Response(status=exc.status, reason=exc.reason)
    for hname, hvalue in found:
        if hname == "To" and "tag=" not in hvalue:
            hvalue = f"{hvalue};tag={_tag()}"
        resp.headers.add(hname, hvalue)
    return resp
