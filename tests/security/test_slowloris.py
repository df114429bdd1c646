"""A bounded slowloris against ``sip answer`` while a legitimate SIPp caller completes its calls.

From 127.0.0.2, 200 TCP connections each dribble one byte of an INVITE per second; from 127.0.0.4,
50 connections to the TLS port never send a ClientHello. The per-address cap (16) refuses all
but 16 of each at once; the 16 dribblers are cut off 3 s after their first byte
(``--message-timeout 3``) however "active" they look, the 16 silent TLS connections 3 s after the
accept (``--tls-handshake-timeout 3``). Meanwhile SIPp on 127.0.0.3 makes 20 calls over TCP and
every one completes. At the end the kernel shows no established connection on either port (the
baseline), and the stop line counts each close, audited by the gate as transport rejections.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import subprocess
import time
from pathlib import Path

from tests.peers import SippProcess, free_port

from .sipclient import answerer, free_udp_tcp_port, security_stats

TIMEOUT = 3.0  # --message-timeout and --tls-handshake-timeout
SWEEP = 1.0  # the endpoint sweeps at least once a second
SLACK = 1.5  # scheduling on a busy 2-core machine
DRIBBLE = (
    b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.2:5060;branch=z9hG4bK-slow\r\n"
)


def established(*ports: int) -> int:
    """Server-side sockets in ESTABLISHED on ``ports``, as the kernel sees them (``ss``)."""
    expr = " or ".join(f"sport = :{p}" for p in ports)
    done = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( {expr} )"],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    return len([line for line in done.stdout.splitlines() if line.strip()])


class Attackers:
    """Many client sockets; records when the server closed each (EOF or reset)."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.opened: dict[socket.socket, float] = {}
        self.first_byte: dict[socket.socket, float] = {}
        self.closed: dict[socket.socket, float] = {}

    def connect(self, port: int, source: str, n: int) -> list[socket.socket]:
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), 5, source_address=(source, 0))
            s.setblocking(False)
            self.opened[s] = time.monotonic()
            self.sel.register(s, selectors.EVENT_READ)
            socks.append(s)
        return socks

    def _close(self, s: socket.socket) -> None:
        if s not in self.closed:
            self.closed[s] = time.monotonic()
            self.sel.unregister(s)

    def dribble(self, socks: list[socket.socket], offset: int) -> None:
        """One more byte of the INVITE on every socket still open."""
        byte = DRIBBLE[offset % len(DRIBBLE) : offset % len(DRIBBLE) + 1]
        for s in socks:
            if s in self.closed:
                continue
            try:
                s.send(byte)
                self.first_byte.setdefault(s, time.monotonic())
            except (BrokenPipeError, ConnectionResetError, BlockingIOError):
                self._close(s)

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for key, _ in self.sel.select(left):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                try:
                    data = s.recv(4096)
                except ConnectionResetError:
                    data = b""
                except BlockingIOError:
                    continue
                if not data:
                    self._close(s)

    def close_all(self) -> None:
        for s in self.opened:
            with contextlib.suppress(OSError):
                s.close()
        self.sel.close()


def test_slowloris_and_silent_tls_are_cut_off_while_a_caller_completes_calls(
    dev_cert: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = dev_cert
    tls_port = free_udp_tcp_port()
    flags = ("--flood", "1000/10", "--tls-cert", str(cert), "--tls-key", str(key),
             "--message-timeout", str(TIMEOUT), "--tls-handshake-timeout", str(TIMEOUT),
             "--max-connections-per-peer", "16", "--max-connections", "200")  # fmt: skip
    attack = Attackers()
    with answerer(*flags, extra_listen=[f"tls:127.0.0.1:{tls_port}"]) as (port, out):
        baseline = established(port, tls_port)
        sipp_args = [
            "-sn", "uac", f"127.0.0.1:{port}", "-t", "t1", "-i", "127.0.0.3",
            "-p", str(free_port("tcp", "127.0.0.3")), "-m", "20", "-r", "4", "-d", "500",
            "-recv_timeout", "10000",
        ]  # fmt: skip
        with SippProcess(sipp_args, cwd=tmp_path, max_lifetime=40, name="sipp-legit") as sipp:
            try:
                slow = attack.connect(port, "127.0.0.2", 200)
                silent = attack.connect(tls_port, "127.0.0.4", 50)
                attack.poll(0.5)  # refused connections are closed at accept
                refused = set(attack.closed)
                during = established(port, tls_port)
                for i in range(9):  # a byte a second for 9 s: three times the limit
                    attack.dribble(slow, i)
                    attack.poll(1.0)
                attack.poll(SLACK)
                open_after = [s for s in attack.opened if s not in attack.closed]
                assert sipp.process.wait(40) == 0
            finally:
                attack.close_all()
        legit = sipp.stop()
        time.sleep(0.5)
        after = established(port, tls_port)
    stop_line = next((line for line in out if line.startswith("stopping; stats")), "")
    audit = security_stats(out)

    # Every attacker connection was closed by the server, none is left.
    assert open_after == [], f"{len(open_after)} attacker connections still open"
    accepted_slow = [s for s in slow if s not in refused]
    accepted_tls = [s for s in silent if s not in refused]
    assert len(accepted_slow) == 16 and len(accepted_tls) == 16, (stop_line, audit)
    slow_lived = [attack.closed[s] - attack.first_byte[s] for s in accepted_slow]
    tls_lived = [attack.closed[s] - attack.opened[s] for s in accepted_tls]
    print(
        f"\nslowloris: 16 dribblers cut {min(slow_lived):.2f}-{max(slow_lived):.2f} s after their "
        f"first byte; 16 silent TLS cut {min(tls_lived):.2f}-{max(tls_lived):.2f} s after accept; "
        f"{len(refused)} refused at accept; established: baseline {baseline}, "
        f"during {during}, after {after}; SIPp {legit.explain()}\n{stop_line.strip()}\n{audit}"
    )
    assert all(TIMEOUT <= t <= TIMEOUT + SWEEP + SLACK for t in slow_lived), slow_lived
    assert all(TIMEOUT <= t <= TIMEOUT + SWEEP + SLACK for t in tls_lived), tls_lived
    # The legitimate caller on another address got through everything.
    assert legit.ok and legit.successful == 20, legit.explain()
    # The service holds no more connections than before (SIPp's own has closed too).
    assert during >= 32 and after == baseline == 0, (baseline, during, after)
    counts = dict(re.findall(r"'([a-z_]+)': (\d+)", stop_line))
    assert counts.get("message_timeout") == "16" and counts.get("tls_handshake_timeout") == "16"
    assert counts.get("connections_refused") == str(184 + 34), stop_line
    assert "'transport:message_timeout': 16" in audit and "connection_limit_peer" in audit
