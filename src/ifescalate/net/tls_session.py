"""Server-side TLS on memory BIOs: the connection feeds it what the socket read and writes out
what it returns (RFC 3261 §26.2.1, TLS 1.2/1.3 via OpenSSL's ``ssl.SSLObject``).

The stream connection runs TLS itself instead of handing the socket to the event loop's TLS layer,
so that an accepted connection is admitted, counted and timed from its TCP accept on, whatever
event loop runs it: a client that never finishes its handshake holds one slot of its address's
limit and is cut off by the endpoint's sweep. (With ``loop.start_tls`` after the accept, uvloop
starts reading before the upgrade and hands the ClientHello to the plain protocol.)
"""

from __future__ import annotations

import ssl

#: Largest plaintext read per call (a TLS record carries at most 16 KB).
_READ = 65536


class TlsServerSession:
    """One server-side TLS session over in-memory BIOs."""

    __slots__ = ("_in", "_out", "handshaken", "obj")

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self._in, self._out, server_side=True)
        self.handshaken = False

    def receive(self, data: bytes) -> tuple[bytes, bytes, bool]:
        """Ciphertext from the socket in; returns the plaintext for the application, the
        ciphertext to send back (handshake messages, session tickets, alerts) and whether the
        peer closed the session (close_notify). Raises ``ssl.SSLError`` when the handshake fails
        or a record is bad (the connection must be dropped)."""
        self._in.write(data)
        if not self.handshaken:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                return b"", self._out.read(), False
            self.handshaken = True
        chunks: list[bytes] = []
        closed = False
        while True:
            try:
                chunk = self.obj.read(_READ)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                closed = True
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks), self._out.read(), closed

    def pending(self) -> bytes:
        """Ciphertext waiting to go out (an alert after a failed handshake)."""
        return self._out.read()

    def send(self, data: bytes) -> bytes:
        """Plaintext in, the records to write to the socket out."""
        self.obj.write(data)
        return self._out.read()
