"""Process and port helpers shared by every real-peer wrapper.

Every peer runs in its own process group (so its children die with it), with stdin closed, its output in a log
file, and a bounded lifetime. A missing binary is an error with a clear message, never a skip: scripts/bootstrap
installs every peer, so a missing one means the machine is not set up.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

PortKind = Literal["udp", "tcp", "both"]

# Debian package that brings each binary, named in the error when it is missing.
_PACKAGES = {
    "sipp": "sip-tester",
    "kamailio": "kamailio",
    "baresip": "baresip-core",
    "stunnel": "stunnel4",
    "stunnel4": "stunnel4",
    "openssl": "openssl",
    "sipsak": "sipsak",
    "tshark": "tshark",
}


class PeerError(RuntimeError):
    """A real peer is missing, failed to start, misbehaved or overran its time bound."""


def require_binary(name: str) -> str:
    """Return the absolute path of `name`, or raise PeerError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        package = _PACKAGES.get(name, name)
        raise PeerError(
            f"{name!r} not found on PATH: run scripts/bootstrap (installs Debian package {package!r})"
        )
    return path


def free_port(kind: PortKind = "udp", host: str = "127.0.0.1") -> int:
    """Return a port that is free right now on `host` for `kind` ("both": free for UDP and TCP alike).

    The port is released before returning, so another process could take it: callers bind it soon after.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        first = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
        with socket.socket(family, first) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if kind != "both" or _bindable(family, socket.SOCK_STREAM, host, port):
            return port
    raise PeerError(f"no free {kind} port found on {host}")


def _bindable(family: int, type_: int, host: str, port: int) -> bool:
    with socket.socket(family, type_) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _proc_net_ports(kind: Literal["udp", "tcp"]) -> set[tuple[str, int]]:
    """Bound (UDP) or listening (TCP) local addresses, read from /proc without touching the peer."""
    found: set[tuple[str, int]] = set()
    for suffix in ("", "6"):
        table = Path(f"/proc/net/{kind}{suffix}")
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if kind == "tcp" and state != "0A":  # 0A = LISTEN
                continue
            addr_hex, port_hex = local.rsplit(":", 1)
            found.add((_decode_addr(addr_hex), int(port_hex, 16)))
    return found


def _decode_addr(addr_hex: str) -> str:
    raw = bytes.fromhex(addr_hex)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # IPv6 in /proc is four little-endian 32-bit words.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def port_is_bound(host: str, port: int, kind: Literal["udp", "tcp"]) -> bool:
    """True when something is bound to (or, for TCP, listening on) host:port or the wildcard."""
    wildcard = "::" if ":" in host else "0.0.0.0"
    bound = _proc_net_ports(kind)
    return (host, port) in bound or (wildcard, port) in bound


def wait_port(
    host: str,
    port: int,
    kind: Literal["udp", "tcp"] = "tcp",
    timeout: float = 10.0,
    *,
    process: PeerProcess | None = None,
) -> None:
    """Wait until host:port is bound (UDP) or listening (TCP); fail early if `process` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while not port_is_bound(host, port, kind):
        if process is not None and not process.running:
            raise PeerError(
                f"{process.name} exited (status {process.returncode}) before {kind} {host}:{port} "
                f"was bound\n{process.log_tail()}"
            )
        if time.monotonic() > deadline:
            tail = f"\n{process.log_tail()}" if process is not None else ""
            raise PeerError(f"{kind} {host}:{port} not bound after {timeout:.1f} s{tail}")
        time.sleep(0.02)


def wait_log(process: PeerProcess, text: str, timeout: float = 10.0) -> None:
    """Wait until `text` appears in the process's log; PeerError if it exits or the time runs out first."""
    deadline = time.monotonic() + timeout
    while text not in process.log():
        if not process.running:
            raise PeerError(
                f"{process.name} exited (status {process.returncode}) before logging {text!r}\n"
                f"{process.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise PeerError(
                f"{process.name}: {text!r} not logged within {timeout:.1f} s\n{process.log_tail()}"
            )
        time.sleep(0.02)


class PeerProcess:
    """One external program in its own process group, output to `log_path`, killed (with its group) on stop."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = [require_binary(argv[0]), *argv[1:]]
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.env = env
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> PeerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,  # own process group: killpg reaches its children too
            )
        _LIVE.add(self)
        return self

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise PeerError(f"{self.name} was never started")
        return self._popen.pid

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def wait(self, timeout: float) -> int:
        """Wait for a normal exit; on overrun kill the group and raise PeerError with the log tail."""
        if self._popen is None:
            raise PeerError(f"{self.name} was never started")
        try:
            code = self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise PeerError(
                f"{self.name} did not finish within {timeout:.1f} s; killed\n{self.log_tail()}"
            ) from None
        self._reap_group()
        return code

    def send_signal(self, signum: int) -> None:
        if self.running:
            self._killpg(signum)

    def stop(self, grace: float = 5.0, signum: int = signal.SIGTERM) -> int | None:
        """Ask the group to end with `signum`, then SIGKILL after `grace` seconds. Returns the exit status."""
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            self._killpg(signum)
            try:
                self._popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap_group()
        return self._popen.returncode

    def kill(self) -> None:
        if self._popen is None:
            return
        self._killpg(signal.SIGKILL)
        self._popen.wait()
        _LIVE.discard(self)

    def _reap_group(self) -> None:
        # The leader is gone; anything it left in its group goes too.
        self._killpg(signal.SIGKILL)
        _LIVE.discard(self)

    def _killpg(self, signum: int) -> None:
        # The group may already be gone: nothing left to signal is the goal.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        text = self.log().splitlines()[-lines:]
        header = f"----- last {len(text)} lines of {self.name} log ({self.log_path}) -----"
        return "\n".join([header, *text, "-" * len(header)])


_LIVE: set[PeerProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    """A test interrupted mid-way must not leave peers running after the interpreter exits."""
    for proc in list(_LIVE):
        proc.kill()


class ListeningPeer:
    """A peer process with a work directory, ready once it listens on a TCP port.

    Subclasses set ``process``, ``dir``, ``listen_address()`` and optionally ``stop_grace``; as a
    context manager it starts the process, waits for the port (killing it on failure), and on exit
    stops it, printing its log tail when the block failed or removing its directory otherwise.
    """

    process: PeerProcess
    dir: Path
    stop_grace: float = 2.0

    def listen_address(self) -> tuple[str, int]:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.process.start()
        host, port = self.listen_address()
        try:
            wait_port(host, port, "tcp", timeout=10.0, process=self.process)
        except BaseException:
            self.process.kill()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.process.stop(grace=self.stop_grace)
        if exc_type is not None:
            print(self.process.log_tail(), file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
