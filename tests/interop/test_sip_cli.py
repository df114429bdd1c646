"""The product's own CLI run as a person runs it, plus the helpers every `test_sip_*` module uses.

`Answerer` runs `ifescalate sip answer` as a subprocess (own process group, bounded, killed afterwards) and
reads the bound ports from its "listening on ..." lines; `sip_call` runs `ifescalate sip call` to the end.
The tests here check the CLI's own contract (ports, "ready", OPTIONS, exit codes) over UDP and TCP.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

from tests.peers import PeerError, PeerProcess

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"

_LISTENING = re.compile(r"^listening on (udp|tcp|tls):(\S+):(\d+)$", re.MULTILINE)


def cli_binary() -> str:
    """The `ifescalate` console script installed next to this interpreter (not a shim on PATH)."""
    beside = Path(sys.executable).with_name("ifescalate")
    if beside.exists():
        return str(beside)
    found = shutil.which("ifescalate")
    if found is None:
        raise PeerError("the `ifescalate` command is not installed: pip install -e '.[dev]'")
    return found


class Answerer:
    """`ifescalate sip answer` for the length of a `with` block.

    `listen` are CLI listen specs (port 0: the kernel picks; the real port is read from the output).
    On exit it gets SIGTERM (it prints its stats and stops), then SIGKILL after a grace period.
    """

    def __init__(
        self,
        *listen: str,
        auth: str | None = None,
        ring_ms: int = 0,
        tls: tuple[Path, Path] | None = None,
        verbose: bool = False,
        extra: Sequence[str] = (),
        start_timeout: float = 10.0,
    ) -> None:
        argv = [cli_binary(), "sip", "answer"]
        for spec in listen or (f"udp:{HOST}:0",):
            argv += ["--listen", spec]
        if auth is not None:
            argv += ["--auth", auth]
        if ring_ms:
            argv += ["--ring-ms", str(ring_ms)]
        if tls is not None:
            argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        if verbose:
            argv.append("--verbose")
        argv += extra
        self.dir = Path(tempfile.mkdtemp(prefix="sip-answer-"))
        self.process = PeerProcess("sip-answer", argv, log_path=self.dir / "answer.log")
        self.start_timeout = start_timeout
        self.ports: dict[str, int] = {}
        self.exit_code: int | None = None
        self._final_output: str | None = None

    def __enter__(self) -> Answerer:
        self.process.start()
        try:
            self._wait_ready()
        except BaseException:
            self.process.kill()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while "\nready" not in "\n" + self.output():
            if not self.process.running:
                raise PeerError(f"sip answer exited early\n{self.process.log_tail()}")
            if time.monotonic() > deadline:
                raise PeerError(f"sip answer not ready in time\n{self.process.log_tail()}")
            time.sleep(0.02)
        for kind, _host, port in _LISTENING.findall(self.output()):
            self.ports[kind] = int(port)

    def output(self) -> str:
        """Everything it printed so far (kept after exit, when its directory is gone)."""
        if self._final_output is not None:
            return self._final_output
        return self.process.log()

    def port(self, kind: str = "udp") -> int:
        return self.ports[kind]

    def uri(self, kind: str = "udp", user: str = "bob") -> str:
        if kind == "tls":
            return f"sips:{user}@{HOST}:{self.ports['tls']}"
        suffix = "" if kind == "udp" else f";transport={kind}"
        return f"sip:{user}@{HOST}:{self.ports[kind]}{suffix}"

    @property
    def running(self) -> bool:
        return self.process.running

    def stop(self) -> int | None:
        if self.exit_code is None:
            self.exit_code = self.process.stop(grace=5.0, signum=signal.SIGTERM)
            self._final_output = self.process.log()
        return self.exit_code

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc_type is not None:
            print(self.process.log_tail(), file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class CliRun:
    """One finished CLI run: exit status and combined output."""

    returncode: int
    output: str

    def explain(self) -> str:
        return f"exit {self.returncode}\n{self.output}"


def run_cli(args: Sequence[str], *, timeout: float) -> CliRun:
    """Run `ifescalate ARGS` to the end (killed, with its group, on overrun)."""
    try:
        done = subprocess.run(
            [cli_binary(), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            text=True,
            check=False,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else ""
        raise PeerError(f"ifescalate {' '.join(args)} overran {timeout} s\n{out}") from None
    return CliRun(done.returncode, done.stdout)


def sip_call(
    uri: str, *extra: str, hangup_after: float | None = 0.5, timeout: float = 30.0
) -> CliRun:
    """`ifescalate sip call URI [--hangup-after S] EXTRA...`."""
    args = ["sip", "call", uri]
    if hangup_after is not None:
        args += ["--hangup-after", str(hangup_after)]
    return run_cli([*args, *extra], timeout=timeout)


# -- the CLI's own contract -----------------------------------------------------------------------


def test_answer_prints_its_ports_and_answers_options_over_udp_and_tcp() -> None:
    with Answerer(f"udp:{HOST}:0", f"tcp:{HOST}:0") as answerer:
        assert set(answerer.ports) == {"udp", "tcp"}
        assert answerer.port("udp") > 0 and answerer.port("tcp") > 0
        for kind in ("udp", "tcp"):
            run = run_cli(["sip", "options", answerer.uri(kind)], timeout=15)
            assert run.returncode == 0, run.explain()
            assert run.output.splitlines()[-1].startswith("Allow:") or "200 OK" in run.output
            assert re.search(r"^200 OK$", run.output, re.MULTILINE), run.explain()
        assert answerer.running
    # SIGTERM: a clean stop with its counters, exit 0.
    assert answerer.exit_code == 0, answerer.output()
    assert "stopping; stats" in answerer.output()


def test_call_to_our_own_answerer_over_udp_and_tcp() -> None:
    with Answerer(f"udp:{HOST}:0", f"tcp:{HOST}:0", ring_ms=100) as answerer:
        for kind in ("udp", "tcp"):
            run = sip_call(answerer.uri(kind), hangup_after=0.3)
            assert run.returncode == 0, run.explain()
            lines = run.output.splitlines()
            assert "progress 180 Ringing" in lines, run.explain()
            assert any(line.startswith("answered 200 call-id ") for line in lines), run.explain()
            assert lines[-1] == "ended: bye", run.explain()


def test_call_to_nobody_fails_with_a_timeout_status() -> None:
    with Answerer(f"tcp:{HOST}:0") as answerer:
        port = answerer.port("tcp")
    # The answerer is gone: TCP connect is refused at once; the CLI must say so and exit non-zero.
    run = sip_call(f"sip:bob@{HOST}:{port};transport=tcp", timeout=60)
    assert run.returncode != 0, run.explain()
    assert "answered" not in run.output
