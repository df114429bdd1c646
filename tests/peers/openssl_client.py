"""`openssl s_client` as a raw SIP-over-TLS client: the test writes SIP messages, OpenSSL does TLS.

A real TLS stack other than ours (and other than Python's ssl module) on the client side, with an
optional client certificate (`-cert`/`-key`), optionally run inside a network namespace
(`prefix=NetNs.exec_prefix()`). Messages are written to its stdin and read back from its stdout
(`-quiet`: application data only), framed by Content-Length. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from ifescalate.sip.digest import DigestClient
from ifescalate.sip.message import Response, parse_message

from .proc import PeerError, require_binary


class OpenSslClient:
    """One TLS connection to `target` through `openssl s_client`, for the length of a `with` block."""

    def __init__(
        self,
        target: tuple[str, int],
        *,
        cert: Path | None = None,
        key: Path | None = None,
        prefix: Sequence[str] = (),
        min_version: str = "TLSv1.2",
    ) -> None:
        host, port = target
        self.dir = Path(tempfile.mkdtemp(prefix="s_client-"))
        self.log_path = self.dir / "s_client.log"
        self.argv = [
            *prefix, require_binary("openssl"), "s_client", "-connect", f"{host}:{port}",
            "-quiet", "-nocommands", "-verify_quiet", "-min_protocol", min_version,
        ]  # fmt: skip
        if cert is not None:
            self.argv += ["-cert", str(cert), "-key", str(key or cert)]
        self._proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self._eof = False
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Self:
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while chunk := self._proc.stdout.read1(65536):
            with self._cond:
                self._buf += chunk
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def send(self, data: bytes) -> None:
        """Write `data` into the TLS connection; PeerError if s_client is gone (e.g. handshake
        refused)."""
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise PeerError(f"s_client is gone ({exc}):\n{self.log()}") from None

    def recv(self, timeout: float = 5.0) -> bytes | None:
        """The next complete SIP message, or None when the connection ended or `timeout` passed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                message = self._take_message()
                if message is not None:
                    return message
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    return None
                self._cond.wait(left)

    def _take_message(self) -> bytes | None:
        head, sep, rest = self._buf.partition(b"\r\n\r\n")
        if not sep:
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() in (b"content-length", b"l"):
                length = int(value.strip())
        if len(rest) < length:
            return None
        self._buf = rest[length:]
        return head + sep + rest[:length]

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """True once the server closed the connection (s_client saw EOF or exited)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._eof and time.monotonic() < deadline:
                self._cond.wait(max(0.0, deadline - time.monotonic()))
            return self._eof

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


class SipOverTls:
    """OPTIONS / INVITE (with a digest answer to a 401) / ACK / BYE written by hand over one
    `OpenSslClient` connection to `uri` (e.g. "sip:svc@198.18.0.1:5061;transport=tls")."""

    SDP = (
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )

    def __init__(self, conn: OpenSslClient, uri: str, *, user: str = "caller") -> None:
        self.conn = conn
        self.uri = uri
        self.user = user
        self.call_id = os.urandom(8).hex()
        self.from_tag = os.urandom(4).hex()
        self.cseq = 0

    def send(
        self,
        method: str,
        *,
        uri: str | None = None,
        to_tag: str = "",
        branch: str = "",
        extra: Sequence[str] = (),
        body: bytes = b"",
    ) -> str:
        """Write one request; returns its Via branch."""
        branch = branch or "z9hG4bK" + os.urandom(8).hex()
        lines = [
            f"{method} {uri or self.uri} SIP/2.0",
            f"Via: SIP/2.0/TLS 203.0.113.9:5999;branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@203.0.113.9>;tag={self.from_tag}",
            f"To: <{self.uri}>" + (f";tag={to_tag}" if to_tag else ""),
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} {method}",
            f"Contact: <sip:{self.user}@203.0.113.9:5999;transport=tls>",
            *extra,
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        self.conn.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return branch

    def final(self, timeout: float = 10.0) -> Response | None:
        """The next final response on the connection (provisional ones skipped), or None."""
        while (raw := self.conn.recv(timeout)) is not None:
            msg = parse_message(raw)
            if isinstance(msg, Response) and msg.status >= 200:
                return msg
        return None

    def options(self) -> Response | None:
        self.cseq += 1
        self.send("OPTIONS")
        return self.final()

    def invite(self, user: str | None = None, password: str = "", *extra: str) -> Response | None:
        """INVITE; with `user`, answer a 401 with digest. Returns the last final answer (a non-2xx
        one is ACKed, RFC 3261 section 17.1.1.3)."""
        self.cseq += 1
        branch = self.send("INVITE", extra=extra, body=self.SDP)
        answer = self.final()
        if answer is not None and answer.status == 401 and user is not None:
            self._ack_error(answer, branch)
            creds = DigestClient(user, password).answer(
                answer.headers.get_lines("WWW-Authenticate"), "INVITE", self.uri, body=self.SDP
            )
            self.cseq += 1
            authed = (*extra, f"Authorization: {creds}")
            branch = self.send("INVITE", extra=authed, body=self.SDP)
            answer = self.final()
        if answer is not None and answer.status >= 300:
            self._ack_error(answer, branch)
        return answer

    def _ack_error(self, resp: Response, branch: str) -> None:
        self.send("ACK", to_tag=_to_tag(resp), branch=branch)

    def ack_and_bye(self, ok: Response) -> Response | None:
        """ACK a 200 to its Contact, then BYE; returns the BYE's answer."""
        contact = re.search(r"<([^>]+)>", ok.headers.get("Contact") or "")
        if contact is None:
            raise PeerError(f"2xx without a Contact: {ok}")
        self.send("ACK", uri=contact.group(1), to_tag=_to_tag(ok))
        self.cseq += 1
        self.send("BYE", uri=contact.group(1), to_tag=_to_tag(ok))
        return self.final()


def _to_tag(resp: Response) -> str:
    m = re.search(r"tag=([^;>\s]+)", resp.headers.get("To") or "")
    return m.group(1) if m else ""
