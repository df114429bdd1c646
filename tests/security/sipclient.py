"""A tiny blocking SIP client for attacking our own server over real loopback sockets.

Requests are written by hand (no library state machine in the way): each call sends one request
from a chosen source address and returns the parsed response, or None on timeout. Every wait is
bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ifescalate.sip.digest import DigestClient
from ifescalate.sip.errors import SipError
from ifescalate.sip.message import Request, Response, parse_message

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def free_udp_tcp_port(host: str = "127.0.0.1") -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = int(u.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            try:
                t.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


@dataclass(slots=True)
class Dialog:
    call_id: str
    from_tag: str
    to: str  # the To header of the 2xx, with the remote tag
    contact: str
    cseq: int


@dataclass(slots=True)
class SipClient:
    """Sends requests from ``source`` (a loopback address) to ``server`` over UDP, TCP or TLS."""

    server: tuple[str, int]
    source: str = "127.0.0.1"
    transport: str = "UDP"
    timeout: float = 2.0
    tls_context: ssl.SSLContext | None = None
    _sock: socket.socket | None = field(default=None, init=False)
    _buf: bytes = field(default=b"", init=False)
    _n: int = field(default=0, init=False)
    _last: Request | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.transport == "UDP":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((self.source, 0))
        else:
            s = socket.create_connection(
                self.server, timeout=self.timeout, source_address=(self.source, 0)
            )
            if self.transport == "TLS":
                ctx = self.tls_context or ssl.create_default_context()
                if self.tls_context is None:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                s = ctx.wrap_socket(s)
        s.settimeout(self.timeout)
        self._sock = s

    @property
    def port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()

    def build(
        self,
        method: str,
        *,
        user: str = "bob",
        call_id: str | None = None,
        cseq: int = 1,
        from_tag: str | None = None,
        to: str | None = None,
        uri: str | None = None,
        authorization: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> bytes:
        self._n += 1
        host, port = self.server
        uri = uri or f"sip:{user}@{host}:{port}"
        branch = "z9hG4bK" + os.urandom(8).hex()
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/{self.transport} {self.source}:{self.port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:attacker@{self.source}>;tag={from_tag or 'f' + os.urandom(4).hex()}",
            f"To: {to or f'<sip:{user}@{host}>'}",
            f"Call-ID: {call_id or os.urandom(8).hex()}@{self.source}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:attacker@{self.source}:{self.port}>",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        lines += [f"{n}: {v}" for n, v in headers]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def send(self, data: bytes) -> None:
        assert self._sock is not None
        try:
            msg = parse_message(data)
        except SipError:
            msg = None  # an attack message we do not want parsed either: match nothing
            self._last = None
        if isinstance(msg, Request) and msg.method != "ACK":
            self._last = msg
        if self.transport == "UDP":
            self._sock.sendto(data, self.server)
        else:
            self._sock.sendall(data)

    def recv(self, *, skip_provisional: bool = True) -> Response | None:
        assert self._sock is not None
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                raw = self._recv_one()
            except TimeoutError:
                return None
            msg = parse_message(raw)
            if not isinstance(msg, Response):
                continue
            last = self._last
            if last is not None and (msg.call_id, msg.cseq) != (last.call_id, last.cseq):
                continue  # a retransmission of an earlier answer
            if msg.status >= 300 and last is not None and last.method == "INVITE":
                self._ack_non_2xx(last, msg)
            if msg.status >= 200 or not skip_provisional:
                return msg
        return None

    def _ack_non_2xx(self, invite: Request, resp: Response) -> None:
        # §17.1.1.3: the ACK for a non-2xx final answer, same branch, To with the answer's tag.
        seq, _ = invite.cseq
        lines = [
            f"ACK {invite.uri} SIP/2.0",
            f"Via: {invite.headers.get('Via')}",
            "Max-Forwards: 70",
            f"From: {invite.headers.get('From')}",
            f"To: {resp.headers.get('To')}",
            f"Call-ID: {invite.call_id}",
            f"CSeq: {seq} ACK",
            "Content-Length: 0",
        ]
        assert self._sock is not None
        data = ("\r\n".join(lines) + "\r\n\r\n").encode()
        if self.transport == "UDP":
            self._sock.sendto(data, self.server)
        else:
            self._sock.sendall(data)

    def _recv_one(self) -> bytes:
        assert self._sock is not None
        if self.transport == "UDP":
            return self._sock.recvfrom(65535)[0]
        while True:
            head, sep, rest = self._buf.partition(b"\r\n\r\n")
            if sep:
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() in (b"content-length", b"l"):
                        length = int(value)
                if len(rest) >= length:
                    self._buf = rest[length:]
                    return head + sep + rest[:length]
            chunk = self._sock.recv(65535)
            if not chunk:
                raise TimeoutError("connection closed")
            self._buf += chunk

    def request(self, method: str, **kw: object) -> Response | None:
        self.send(self.build(method, **kw))  # type: ignore[arg-type]
        return self.recv()

    def authed(
        self, method: str, user: str, password: str, *, body: bytes = b"", **kw: object
    ) -> tuple[Response | None, bytes | None]:
        """Send, answer the 401 with digest; returns the final response and the credentialed
        request bytes (for replays)."""
        call_id = os.urandom(8).hex()
        first = self.request(method, user=user, call_id=call_id, body=body, **kw)
        if first is None or first.status != 401:
            return first, None
        host, port = self.server
        uri = f"sip:{user}@{host}:{port}"
        creds = DigestClient(user, password).answer(
            first.headers.get_lines("WWW-Authenticate"), method, uri, body=body
        )
        data = self.build(
            method, user=user, call_id=call_id, cseq=2, authorization=creds, body=body, **kw
        )  # type: ignore[arg-type]
        self.send(data)
        return self.recv(), data

    def ack_and_dialog(self, invite_resp: Response, call_id: str, from_tag: str) -> Dialog:
        to = invite_resp.headers.get("To") or ""
        contact = (invite_resp.headers.get("Contact") or "").strip("<>").split(">")[0]
        seq, _ = invite_resp.cseq
        d = Dialog(call_id, from_tag, to, contact, seq)
        self.send(
            self.build("ACK", call_id=call_id, cseq=seq, from_tag=from_tag, to=to, uri=contact)
        )
        return d

    def bye(self, d: Dialog) -> Response | None:
        d.cseq += 1
        return self.request(
            "BYE", call_id=d.call_id, cseq=d.cseq, from_tag=d.from_tag, to=d.to, uri=d.contact
        )


@contextlib.contextmanager
def answerer(
    *flags: str, port: int | None = None, timeout: float = 15.0, extra_listen: Sequence[str] = ()
) -> Iterator[tuple[int, list[str]]]:
    """``ifescalate sip answer`` on 127.0.0.1 (UDP and TCP on one port) with ``flags``; yields
    (port, output lines so far — complete after exit)."""
    port = port or free_udp_tcp_port()
    argv = [
        sys.executable,
        "-m",
        "ifescalate.cli",
        "sip",
        "answer",
        "--listen",
        f"udp:127.0.0.1:{port}",
        "--listen",
        f"tcp:127.0.0.1:{port}",
        *[a for x in extra_listen for a in ("--listen", x)],
        *flags,
    ]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    out: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"answerer exited: {''.join(out)}")
            out.append(line)
            if line.strip() == "ready":
                break
        else:
            raise RuntimeError("answerer not ready")
        yield port, out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rest, _ = proc.communicate()
        out.extend(rest.splitlines(keepends=True))


def security_stats(out: list[str]) -> str:
    return next((line for line in out if line.startswith("security ")), "")


ROOT = Path(__file__).resolve().parents[2]
