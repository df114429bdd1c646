"""stunnel in client mode: plain TCP in on a local port, TLS 1.2+ out to a target.

SIPp has no TLS here, so load tests of a TLS listener run SIPp over TCP (`-t t1`) into this tunnel.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .proc import ListeningPeer, PeerProcess, free_port


class Stunnel(ListeningPeer):
    """Accept TCP on `listen_host:listen_port` (a free port when None) and relay it over TLS to `target`.

    `ca`: verify the server's chain against this file and its name against `verify_host` (or its IP against
    `verify_ip`); None: no verification (loopback tests of our own self-signed listener).
    `cert`/`key`: present a client certificate (mutual TLS).
    """

    stop_grace = 3.0

    def __init__(
        self,
        target: tuple[str, int],
        *,
        listen_port: int | None = None,
        listen_host: str = "127.0.0.1",
        ca: Path | None = None,
        verify_host: str | None = None,
        verify_ip: str | None = None,
        cert: Path | None = None,
        key: Path | None = None,
        min_version: str = "TLSv1.2",
        debug: str = "notice",
    ) -> None:
        self.target = target
        self.listen_host = listen_host
        self.port = listen_port if listen_port is not None else free_port("tcp", listen_host)
        self.dir = Path(tempfile.mkdtemp(prefix="stunnel-"))
        self.config_path = self.dir / "stunnel.conf"
        self.config_path.write_text(
            self._config(ca, verify_host, verify_ip, cert, key, min_version, debug)
        )
        self.process = PeerProcess(
            "stunnel", ["stunnel", str(self.config_path)], log_path=self.dir / "stunnel.log"
        )

    def _config(
        self,
        ca: Path | None,
        verify_host: str | None,
        verify_ip: str | None,
        cert: Path | None,
        key: Path | None,
        min_version: str,
        debug: str,
    ) -> str:
        host, port = self.target
        lines = [
            "foreground = yes",  # stay in our process group, log to stderr
            "pid =",  # no pid file
            f"debug = {debug}",
            "[tunnel]",
            "client = yes",
            f"accept = {self.listen_host}:{self.port}",
            f"connect = {host}:{port}",
            f"sslVersionMin = {min_version}",
        ]
        if ca is None:
            lines.append("verifyChain = no")
        else:
            lines += ["verifyChain = yes", f"CAfile = {ca}"]
            if verify_host is not None:
                lines.append(f"checkHost = {verify_host}")
            if verify_ip is not None:
                lines.append(f"checkIP = {verify_ip}")
        if cert is not None:
            lines.append(f"cert = {cert}")
        if key is not None:
            lines.append(f"key = {key}")
        return "\n".join(lines) + "\n"

    @property
    def address(self) -> tuple[str, int]:
        """Where to connect plain TCP (e.g. SIPp `-t t1` remote address)."""
        return self.listen_host, self.port

    def log(self) -> str:
        return self.process.log()

    def listen_address(self) -> tuple[str, int]:
        return self.listen_host, self.port
