"""baresip 1.0 (headless) as a real SIP phone: answers automatically, or dials one URI at start.

Audio: a WAV file as microphone (`aufile`), a silent sink as speaker (`aubridge`); with `record=True` the
`sndfile` module writes what was sent (`*-enc.wav`) and received (`*-dec.wav`) per call into `rec/`.
Start the callee first (the context waits for its SIP port), then the caller with `dial=callee.uri`.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

from .audio import write_tone_wav
from .proc import PeerError, PeerProcess, free_port, wait_port
from .tls import combined_pem

MODULE_PATH = "/usr/lib/baresip/modules"

ESTABLISHED = re.compile(r"Call established: (\S+)")
TERMINATED = re.compile(r"Call with (\S+) terminated \(duration: (\d+) secs?\)")

#: baresip's codec modules by the SDP encoding name its `audio_codecs` account parameter takes.
CODEC_MODULES = {"PCMU": "g711", "PCMA": "g711", "G722": "g722", "opus": "opus"}
#: How `audio_codecs` must spell them: a bare name is looked up at 8000 Hz, one channel.
_ACCOUNT_CODEC = {"G722": "G722/16000/1", "opus": "opus/48000/2"}


class Baresip:
    """One baresip user agent `name`@host:port, its config in a fresh temporary directory.

    - `dial`: a SIP URI to call right after start (`-e "/dial URI"`).
    - `duration`: seconds until baresip quits by itself (`-t`), hanging up any call; a hard bound.
    - `answer`: answer incoming calls automatically (`answermode=auto`), else ring until cancelled.
    - `srtp`: require SDES-SRTP (`mediaenc=srtp-mand`, RFC 4568).
    - `tls`: (cert, key) to listen on TLS as well; `transport="tls"` makes `uri` point at the TLS listener.
    - `audio`: WAV used as microphone (8 kHz mono s16); a 440 Hz tone longer than `duration` by default,
      because aufile ends the call at end of file.
    - `sip_trace`: log every SIP message (`-s`), e.g. to assert on SDP.
    - `workdir`: keep config, log and recordings there (kept after exit); default: a temporary directory
      removed after a clean exit (so inspect recordings inside the `with` block).
    - `codecs`: SDP encoding names baresip may use, best first (`audio_codecs`); each loads its module
      (`CODEC_MODULES`: g711, g722, opus, all shipped in Debian's baresip-core).
    - `control`: listen for `ctrl_tcp` commands (netstring JSON) on a free port; see `command()`.
    - `rtcp_mux`: offer and accept RTP/RTCP multiplexing (RFC 5761; baresip's global `rtcp_mux`).
    """

    def __init__(
        self,
        name: str = "alice",
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        dial: str | None = None,
        duration: float = 30.0,
        answer: bool = True,
        record: bool = False,
        srtp: bool = False,
        tls: tuple[Path, Path] | None = None,
        ca: Path | None = None,
        transport: Literal["udp", "tcp", "tls"] = "udp",
        audio: Path | None = None,
        account_params: str = "",
        extra_config: str = "",
        workdir: Path | None = None,
        sip_trace: bool = False,
        codecs: Sequence[str] = ("PCMU", "PCMA"),
        control: bool = False,
        rtcp_mux: bool = False,
    ) -> None:
        if transport == "tls" and tls is None:
            raise ValueError("transport='tls' needs tls=(cert, key)")
        unknown = [c for c in codecs if c not in CODEC_MODULES]
        if unknown or not codecs:
            raise ValueError(f"codecs must be among {sorted(CODEC_MODULES)}, got {list(codecs)}")
        self.codecs = tuple(codecs)
        self.control_port = free_port("tcp", host) if control else None
        self.rtcp_mux = rtcp_mux
        self.name = name
        self.host = host
        self._auto_port = port is None
        self.port = port if port is not None else _free_port_pair(host)
        self.transport = transport
        self._keep = workdir is not None
        self.dir = (
            workdir if workdir is not None else Path(tempfile.mkdtemp(prefix=f"baresip-{name}-"))
        )
        self.rec_dir = self.dir / "rec"
        self.rec_dir.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        audio_path = audio or write_tone_wav(self.dir / "tone.wav", seconds=duration + 10)
        self._config_args = (audio_path, record, srtp, ca, extra_config)
        self._write_config(audio_path, record=record, srtp=srtp, ca=ca, extra=extra_config)
        self._write_account(answer=answer, srtp=srtp, extra=account_params)
        (self.dir / "contacts").write_text("")
        argv = ["baresip", "-f", str(self.dir), "-n", host, "-t", str(max(1, round(duration)))]
        if sip_trace:
            argv.append("-s")  # every SIP message sent and received goes to the log
        if dial is not None:
            argv += ["-e", f"/dial {dial}"]
        self.process = PeerProcess(f"baresip-{name}", argv, log_path=self.dir / "baresip.log")

    @property
    def tls_port(self) -> int:
        """baresip listens for TLS one port above its UDP/TCP `sip_listen` port."""
        return self.port + 1

    @property
    def uri(self) -> str:
        """The URI to dial this agent at (over its `transport`)."""
        if self.transport == "tls":
            return f"sip:{self.name}@{self.host}:{self.tls_port};transport=tls"
        if self.transport == "tcp":
            return f"sip:{self.name}@{self.host}:{self.port};transport=tcp"
        return f"sip:{self.name}@{self.host}:{self.port}"

    def _write_config(
        self, audio: Path, *, record: bool, srtp: bool, ca: Path | None, extra: str
    ) -> None:
        modules = list(dict.fromkeys(CODEC_MODULES[c] for c in self.codecs))
        modules += ["aufile", "aubridge"]
        if record:
            modules.append("sndfile")
        if srtp:
            modules.append("srtp")
        lines = [
            "poll_method epoll",
            f"sip_listen {self.host}:{self.port}",
            "call_local_timeout 120",
            "call_max_calls 4",
            "audio_path /usr/share/baresip",
            "audio_player aubridge,sink",
            "audio_alert aubridge,alert",
            f"audio_source aufile,{audio}",
            "ausrc_srate 8000",
            "auplay_srate 8000",
            "ausrc_channels 1",
            "auplay_channels 1",
            "rtp_timeout 0",
            f"rtcp_mux {'yes' if self.rtcp_mux else 'no'}",
            f"module_path {MODULE_PATH}",
            *(f"module {name}.so" for name in modules),
            "module_app account.so",
            "module_app contact.so",
            "module_app menu.so",
            *(["module_app ctrl_tcp.so"] if self.control_port is not None else []),
            f"snd_path {self.rec_dir}",
        ]
        if self.control_port is not None:
            lines.append(f"ctrl_tcp_listen {self.host}:{self.control_port}")
        if self.tls is not None:
            pem = combined_pem(self.tls[0], self.tls[1], self.dir / "sip-cert.pem")
            lines.append(f"sip_certificate {pem}")
        if ca is not None:
            lines.append(f"sip_cafile {ca}")
        (self.dir / "config").write_text("\n".join(lines) + "\n" + extra)

    def _write_account(self, *, answer: bool, srtp: bool, extra: str) -> None:
        params = ["regint=0", f"answermode={'auto' if answer else 'manual'}"]
        params.append("audio_codecs=" + ",".join(_ACCOUNT_CODEC.get(c, c) for c in self.codecs))
        if srtp:
            params.append("mediaenc=srtp-mand")
        # No transport parameter in the AOR: baresip would append it again to a dialled URI that has one.
        line = f"<sip:{self.name}@{self.host}>;" + ";".join(params) + extra
        (self.dir / "accounts").write_text(line + "\n")

    # -- observation -------------------------------------------------------------------------------

    def log(self) -> str:
        return self.process.log()

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 10.0) -> re.Match[str]:
        """Wait until the log matches `pattern`; raise PeerError with the log tail on timeout or exit."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.log())
            if found is not None:
                return found
            if not self.process.running:
                raise PeerError(
                    f"{self.process.name} exited before logging {regex.pattern!r}\n"
                    f"{self.process.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise PeerError(
                    f"{self.process.name}: {regex.pattern!r} not logged within {timeout:.1f} s\n"
                    f"{self.process.log_tail()}"
                )
            time.sleep(0.05)

    def wait_established(self, timeout: float = 10.0) -> str:
        """Wait for a call to be established; return the remote URI baresip logged."""
        return self.wait_for(ESTABLISHED, timeout).group(1)

    def recordings(self, kind: Literal["dec", "enc"] = "dec") -> list[Path]:
        """sndfile WAVs of received (`dec`) or sent (`enc`) audio, one per call (needs `record=True`)."""
        return sorted(self.rec_dir.glob(f"dump-*-{kind}.wav"))

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, object]:
        """Run a baresip command (`hold`, `resume`, `hangup`, ...) through `ctrl_tcp`; its JSON reply.

        ctrl_tcp frames JSON as netstrings (`LEN:JSON,`) both ways and interleaves events with the
        reply: read frames until the one whose `token` is ours. Needs `control=True`.
        """
        if self.control_port is None:
            raise PeerError("baresip was started without control=True")
        token = f"t{time.monotonic_ns()}"
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        with socket.create_connection((self.host, self.control_port), timeout=timeout) as conn:
            conn.sendall(b"%d:%s," % (len(body), body))
            buffer = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                while (frame := _netstring(buffer)) is not None:
                    message, buffer = frame
                    reply = json.loads(message)
                    if reply.get("response") and reply.get("token") == token:
                        return dict(reply)
                chunk = conn.recv(65536)
                if not chunk:
                    break
                buffer += chunk
        raise PeerError(
            f"baresip: no reply to {command!r} over ctrl_tcp\n{self.process.log_tail()}"
        )

    def wait_exit(self, timeout: float) -> int:
        """Wait for baresip to quit by itself (its `duration` ran out); PeerError on overrun."""
        return self.process.wait(timeout)

    # -- lifetime ----------------------------------------------------------------------------------

    def __enter__(self) -> Baresip:
        # A port chosen here can be taken by another process before baresip binds it (exit 98,
        # EADDRINUSE): with an automatic port, choose again and retry a few times.
        for attempt in range(3):
            self.process.start()
            try:
                wait_port(self.host, self.port, "udp", timeout=10.0, process=self.process)
                if self.tls is not None:
                    wait_port(self.host, self.tls_port, "tcp", timeout=10.0, process=self.process)
                if self.control_port is not None:
                    wait_port(
                        self.host, self.control_port, "tcp", timeout=10.0, process=self.process
                    )
            except PeerError:
                self.process.kill()
                if not self._auto_port or attempt == 2 or "status 98" not in str(self._exit_note()):
                    raise
                self.port = _free_port_pair(self.host)
                audio, record, srtp, ca, extra = self._config_args
                self._write_config(audio, record=record, srtp=srtp, ca=ca, extra=extra)
                continue
            except BaseException:
                self.process.kill()
                raise
            return self
        raise AssertionError("unreachable")

    def _exit_note(self) -> str:
        code = self.process.returncode
        return f"status {code}" if code is not None else ""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # SIGTERM hangs up; baresip then waits for open transactions (up to 32 s): do not wait that long.
        self.process.stop(grace=2.0)
        if exc_type is not None:
            print(self.process.log_tail(), file=sys.stderr)
        elif not self._keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def _netstring(buffer: bytes) -> tuple[bytes, bytes] | None:
    """(first netstring's payload, the rest) once a whole one is buffered, else None."""
    length, colon, rest = buffer.partition(b":")
    if not colon or not length.isdigit() or len(rest) <= int(length):
        return None
    size = int(length)
    return rest[:size], rest[size + 1 :]


def _free_port_pair(host: str) -> int:
    """A port free for UDP and TCP whose successor is free for TCP too (baresip's TLS port)."""
    for _ in range(50):
        port = free_port("both", host)
        if port < 65535 and _tcp_bindable(host, port + 1):
            return port
    raise PeerError("no free port pair for baresip")


def _tcp_bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
