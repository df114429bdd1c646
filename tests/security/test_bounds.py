"""Oversized messages, header floods and slow TCP/TLS connections are bounded (time and count)."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

from .sipclient import SipClient, answerer, free_udp_tcp_port


def _still_answers(port: int) -> None:
    ok = SipClient(("127.0.0.1", port), source="127.0.0.9").request("OPTIONS")
    assert ok is not None and ok.status == 200


def test_oversized_message_over_tcp_closes_the_connection() -> None:
    with answerer("--flood", "1000/10") as (port, _):
        c = SipClient(("127.0.0.1", port), source="127.0.0.2", transport="TCP")
        data = c.build("OPTIONS", headers=[("X-Pad", "a" * 70_000)])
        assert c._sock is not None
        c._sock.settimeout(5.0)
        try:
            c._sock.sendall(data)
            closed = c._sock.recv(65535)
        except (ConnectionResetError, BrokenPipeError):
            closed = b""
        assert b"200 OK" not in closed
        _still_answers(port)


def test_header_flood_is_answered_in_bounded_time() -> None:
    with answerer("--flood", "1000/10") as (port, _):
        c = SipClient(("127.0.0.1", port), source="127.0.0.2", timeout=5.0)
        data = c.build("OPTIONS", headers=[("X-H", str(i)) for i in range(5000)])
        assert len(data) < 65_000
        t0 = time.monotonic()
        c.send(data)
        resp = c.recv()  # 513 (too many header lines) or dropped; either way quickly
        assert resp is None or resp.status == 513
        assert time.monotonic() - t0 < 5.5
        _still_answers(port)


def test_connections_per_peer_bounded_and_silent_tls_handshake_closed(
    dev_cert: tuple[Path, Path],
) -> None:
    cert, key = dev_cert
    tls_port = free_udp_tcp_port()
    flags = ("--flood", "1000/10", "--tls-cert", str(cert), "--tls-key", str(key))
    with answerer(*flags, extra_listen=[f"tls:127.0.0.1:{tls_port}"]) as (port, _):
        socks = []
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
            socks.append(s)
        time.sleep(0.5)
        refused = 0
        for s in socks:
            s.settimeout(0.2)
            try:
                if s.recv(1) == b"":
                    refused += 1
            except TimeoutError:
                pass
            except ConnectionResetError:
                refused += 1
        assert refused == 4  # 16 per peer address
        # A TLS client that never sends its ClientHello is cut off by the handshake timeout.
        slow = socket.create_connection(("127.0.0.1", tls_port), source_address=("127.0.0.3", 0))
        slow.settimeout(15.0)
        t0 = time.monotonic()
        with contextlib.suppress(ConnectionResetError):
            assert slow.recv(1) == b""
        assert time.monotonic() - t0 < 12.0
        for s in [*socks, slow]:
            s.close()
        _still_answers(port)
