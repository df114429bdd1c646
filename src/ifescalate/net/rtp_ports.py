"""RTP/RTCP port pairs for media sessions: even RTP ports in a configured range, RTCP on port + 1
(RFC 3550 §11), bound together or not at all. Split from ``net/rtp.py`` (one concept per module);
``net.rtp`` re-exports these names."""

from __future__ import annotations

import socket


class RtpPortError(OSError):
    """No free (RTP, RTCP) port pair in the pool's range."""


class RtpPortPool:
    """Even RTP ports in ``[start, end]`` with RTCP on port + 1 (RFC 3550 §11).

    ``bind`` tries pairs from a rotating cursor (a just-freed pair is not reused at once, so late
    packets of the last call do not reach the next one); a pair is used only when both sockets
    bind, else the next pair is tried.
    """

    def __init__(self, start: int = 40000, end: int = 49999) -> None:
        first = start + (start & 1)
        if not 0 < first < end <= 65535:
            raise ValueError(f"RTP port range {start}-{end} holds no even/odd pair")
        self.start = first
        self.end = end
        self._next = first
        self.in_use: set[int] = set()

    @property
    def size(self) -> int:
        """Number of pairs in the range."""
        return (self.end - self.start + 1) // 2

    def bind(self, host: str) -> tuple[int, socket.socket, socket.socket]:
        """Bind a free pair on ``host``: ``(rtp_port, rtp_socket, rtcp_socket)``, non-blocking."""
        for _ in range(self.size):
            port = self._next
            self._next = port + 2 if port + 3 <= self.end else self.start
            if port in self.in_use:
                continue
            pair = _bind_pair(host, port)
            if pair is not None:
                self.in_use.add(port)
                return port, pair[0], pair[1]
        raise RtpPortError(f"no free RTP/RTCP port pair in {self.start}-{self.end} on {host}")

    def release(self, port: int) -> None:
        self.in_use.discard(port)


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket] | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for p in (port, port + 1):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            socks.append(sock)
            sock.setblocking(False)
            sock.bind((host, p))
    except OSError:
        for sock in socks:
            sock.close()
        return None
    return socks[0], socks[1]
