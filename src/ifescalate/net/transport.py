"""asyncio transports for SIP: UDP sockets and TCP/TLS connections (RFC 3261 §18).

This layer only moves bytes. It tells the endpoint where each message came from as the kernel and
the TLS session report it (``Source``), frames streams with ``sip.framing``, bounds connections per
peer and closes idle ones. Everything about SIP itself happens in the endpoint and the sans-IO core.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from ..sip.errors import SipParseError
from ..sip.framing import StreamFramer, StreamItem
from .tls import TlsFacts, tls_facts
from .tls_session import TlsServerSession

log = logging.getLogger("ifescalate.net")

#: Ask the kernel for a large UDP receive buffer: a short pause of the event loop (GC, a burst of
#: work) must not overflow the default 208 KB and turn into retransmission storms (PEERS.md).
UDP_RCVBUF = 8 * 1024 * 1024
_SOURCES_MAX = 4096


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from, as the transport saw it (never as the message claims)."""

    transport: str  # "UDP", "TCP" or "TLS"
    host: str
    port: int
    conn: StreamConnection | None = None
    udp: UdpListener | None = None

    @property
    def tls(self) -> TlsFacts | None:
        return self.conn.tls if self.conn is not None else None


class Receiver(Protocol):
    """What a transport hands its input to (the endpoint)."""

    def datagram_received(self, data: bytes, source: Source) -> None: ...

    def stream_item_received(self, item: StreamItem, source: Source) -> None: ...

    def stream_error(self, error: SipParseError, source: Source) -> None: ...

    def connection_lost(self, conn: StreamConnection) -> None: ...

    def stream_tls_failed(self, error: ssl.SSLError, conn: StreamConnection) -> None: ...


class UdpListener(asyncio.DatagramProtocol):
    """One bound UDP socket; also sends requests and responses from the same port (symmetry)."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)
        self.sent = 0
        self.received = 0
        # One Source per peer address, as a stream connection has one: Source is immutable, so
        # sharing it saves a (frozen, slow to build) object per datagram. Bounded.
        self._sources: dict[tuple[str | object, int], Source] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's; they implement the same interface.
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UDP_RCVBUF)
        name = transport.get_extra_info("sockname")
        self.local = (name[0], name[1])

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.received += 1
        source = self._sources.get(addr)
        if source is None:
            host = addr[0]
            source = Source("UDP", host if isinstance(host, str) else str(host), addr[1], udp=self)
            if len(self._sources) >= _SOURCES_MAX:
                self._sources.clear()
            self._sources[addr] = source
        self.receiver.datagram_received(data, source)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the transaction's timers handle the loss (§18.4 allows
        # treating it as a transport error, but UDP errors are unreliable and often spurious).
        log.debug("udp error on %s: %s", self.local, exc)

    def send(self, data: bytes, host: str, port: int) -> None:
        if self.transport is not None:
            self.sent += 1
            self.transport.sendto(data, (host, port))


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Bounds on stream (TCP/TLS) connections against slow and many-connection attacks.

    RFC 3261 and RFC 5626 give no numbers. ``message_timeout``: a message must be complete this
    many seconds after its first byte (nginx's ``client_header_timeout``, Kamailio's
    ``tcp_msg_read_timeout`` of 20 s; a SIP message is at most 64 KB and real clients write it at
    once), so a peer dribbling a byte a second is cut off however "active" it looks.
    ``tls_handshake_timeout``: the TLS handshake must finish in this time after the TCP accept.
    ``idle_timeout``: nothing at all received or sent for this long (RFC 5626 keep-alives every
    ~120 s keep a registered flow open; the default is above them). ``max_per_peer`` connections
    from one source address and ``max_total`` from everyone, handshakes included.
    """

    message_timeout: float = 10.0
    tls_handshake_timeout: float = 10.0
    idle_timeout: float = 120.0
    max_per_peer: int = 16
    max_total: int = 1000

    def __post_init__(self) -> None:
        if min(self.message_timeout, self.tls_handshake_timeout, self.idle_timeout) <= 0:
            raise ValueError("stream timeouts must be positive")
        if self.max_per_peer < 1 or self.max_total < 1:
            raise ValueError("connection limits must be at least 1")


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection, accepted or opened by us.

    An accepted TLS connection is taken as plain TCP and runs its TLS session here
    (``tls_server``, ``tls_session.py``), so it is admitted, counted and timed from the TCP accept
    on: a client that never finishes its handshake holds a slot of its address's limit and is
    closed by the endpoint's sweep.
    """

    def __init__(
        self,
        receiver: Receiver,
        *,
        transport_name: str,
        max_size: int,
        on_open: Callable[[StreamConnection], bool] | None = None,
        tls_server: ssl.SSLContext | None = None,
    ) -> None:
        self.receiver = receiver
        self.transport_name = transport_name
        self.framer = StreamFramer(max_size=max_size)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self.tls: TlsFacts | None = None
        self.last_activity = 0.0
        self.opened_at = 0.0
        #: When the first byte of the message now being received arrived (None: between messages).
        self.message_started: float | None = None
        #: True from the TCP accept until the TLS handshake is done (nothing is sent meanwhile).
        self.handshaking = False
        self.closed = asyncio.get_running_loop().create_future()
        self._on_open = on_open
        self._source: Source | None = None
        self._tls_server = tls_server
        self._session: TlsServerSession | None = None
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1])
        name = transport.get_extra_info("sockname")
        self.local = (name[0], name[1])
        sslobj = transport.get_extra_info("ssl_object")
        if isinstance(sslobj, ssl.SSLObject | ssl.SSLSocket):
            self.tls = tls_facts(sslobj)
        self.last_activity = self.opened_at = asyncio.get_running_loop().time()
        self._source = Source(self.transport_name, self.peer[0], self.peer[1], conn=self)
        if self._on_open is not None and not self._on_open(self):
            self.transport.abort()
            return
        if self._tls_server is not None:
            self._session = TlsServerSession(self._tls_server)
            self.handshaking = True

    def _decrypt(self, data: bytes) -> bytes | None:
        """TLS records in, plaintext out (None: the connection is done). Handshake replies,
        session tickets and alerts go straight back to the socket."""
        session = self._session
        assert session is not None and self.transport is not None
        try:
            plain, out, closed = session.receive(data)
        except ssl.SSLError as exc:
            if out := session.pending():
                self.transport.write(out)  # the alert that says why
            self.receiver.stream_tls_failed(exc, self)
            self.transport.close()
            return None
        if out:
            self.transport.write(out)
        if self.handshaking and session.handshaken:
            self.handshaking = False
            self.tls = tls_facts(session.obj)
        if closed:
            self.transport.close()
        return plain

    @property
    def source(self) -> Source:
        assert self._source is not None
        return self._source

    def data_received(self, data: bytes) -> None:
        now = asyncio.get_running_loop().time()
        self.last_activity = now
        if self._session is not None:
            plain = self._decrypt(data)
            if not plain:
                return
            data = plain
        framer = self.framer
        while True:
            try:
                items = framer.feed(data)
            except SipParseError as exc:
                # A stream cannot resynchronise after a framing error: close this connection only.
                self.receiver.stream_error(exc, self.source)
                self.abort()
                return
            # The clock of the message being received starts with its first byte (or now, for
            # leftover bytes after whole messages): trickling more bytes never resets it.
            if not framer.in_message:
                self.message_started = None
            elif items or self.message_started is None:
                self.message_started = now
            for item in items:
                self.receiver.stream_item_received(item, self.source)
            if not items or not framer.buffered or not self.is_open:
                return
            data = b""  # messages came before leftover bytes: frame those now (they may be bad)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        if not self.closed.done():
            self.closed.set_result(None)
        self.receiver.connection_lost(self)

    def send(self, data: bytes) -> None:
        if self.is_open:
            assert self.transport is not None
            self.last_activity = asyncio.get_running_loop().time()
            if self._session is not None:
                data = self._session.send(data)
            self.transport.write(data)

    @property
    def is_open(self) -> bool:
        """Open and, for TLS, past its handshake (nothing may go out in the clear before)."""
        return (
            self.transport is not None and not self.handshaking and not self.transport.is_closing()
        )

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


@dataclass(frozen=True, slots=True)
class ListenSpec:
    """``udp:HOST:PORT``, ``tcp:...`` or ``tls:...`` as given on the command line."""

    transport: str  # "UDP", "TCP", "TLS"
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ListenSpec:
        kind, sep, rest = text.partition(":")
        if not sep or kind.lower() not in ("udp", "tcp", "tls"):
            raise ValueError(f"listen address must be udp:|tcp:|tls:HOST:PORT, got {text!r}")
        if rest.startswith("["):
            host, _, port_text = rest[1:].partition("]:")
        else:
            host, _, port_text = rest.rpartition(":")
        if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ValueError(f"listen address needs HOST:PORT, got {text!r}")
        return cls(kind.upper(), host, int(port_text))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport.lower()}:{host}:{self.port}"
