"""`openssl s_server` as a minimal TLS peer (e.g. the target behind a `Stunnel`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .proc import ListeningPeer, PeerProcess, free_port


class OpenSslServer(ListeningPeer):
    """A TLS 1.2+ server on host:port (a free port when None) that echoes each line reversed (`-rev`)."""

    def __init__(
        self,
        cert: Path,
        key: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        ca: Path | None = None,
        require_client_cert: bool = False,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port("tcp", host)
        self.dir = Path(tempfile.mkdtemp(prefix="s_server-"))
        argv = [
            "openssl", "s_server", "-accept", f"{host}:{self.port}", "-cert", str(cert),
            "-key", str(key), "-min_protocol", "TLSv1.2", "-rev",
        ]  # fmt: skip
        if ca is not None:
            argv += ["-CAfile", str(ca)]
        if require_client_cert:
            argv += ["-Verify", "1"]
        self.process = PeerProcess("openssl-s_server", argv, log_path=self.dir / "s_server.log")

    def log(self) -> str:
        return self.process.log()

    def listen_address(self) -> tuple[str, int]:
        return self.host, self.port
