"""SIPp (Debian package sip-tester) as a load generator and scripted UAC/UAS.

SIPp 3.6.1 here has no TLS: put `Stunnel` in front of a TLS listener and run SIPp over TCP (`-t t1`).
Exit status: 0 every call succeeded, 1 at least one failed, 97/99 ended by command or with no call,
255/254 (-1/-2) fatal error or socket bind error.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from .proc import PeerError, PeerProcess, require_binary, wait_port

SCENARIOS = Path(__file__).with_name("scenarios")
"""Scenario files shipped with the helpers: uac_rr.xml / uas_rr.xml keep the Record-Route set."""

PCAP_DIR = Path("/usr/share/sip-tester")
"""G.711 and RFC 4733 DTMF pcaps for `-sn uac_pcap` (run SIPp with this as the parent of its `pcap/`)."""


@dataclass(frozen=True, slots=True)
class SippResult:
    """What one SIPp run did, from its exit status and the last row of its `-trace_stat` CSV."""

    returncode: int
    successful: int
    failed: int
    retransmissions: int
    created: int
    call_rate: float
    """Average calls/s over the whole run (`CallRate(C)`)."""
    elapsed: float
    """Wall-clock seconds from start to exit, measured here."""
    stats: dict[str, str] = field(repr=False)
    """The whole last CSV row, by column name (e.g. `FailedTimeoutOnRecv(C)`)."""
    log: str = field(repr=False)

    @property
    def ok(self) -> bool:
        """SIPp exited 0, at least one call succeeded and none failed."""
        return self.returncode == 0 and self.successful > 0 and self.failed == 0

    def counter(self, name: str) -> int:
        """A cumulative counter by its column name without the `(C)` suffix, e.g. `FailedTimeoutOnRecv`."""
        return int(self.stats.get(f"{name}(C)", "0") or 0)

    def explain(self) -> str:
        """One line for assertion messages, plus the log tail when something failed."""
        line = (
            f"sipp exit {self.returncode}: {self.successful} ok, {self.failed} failed, "
            f"{self.retransmissions} retransmissions, {self.call_rate:.1f} calls/s, {self.elapsed:.1f} s"
        )
        if self.ok:
            return line
        tail = "\n".join(self.log.splitlines()[-40:])
        return f"{line}\n{tail}"


def read_stat_file(path: Path) -> dict[str, str]:
    """The last data row of a SIPp `-trace_stat` CSV (semicolon separated), by column name; {} if none."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except FileNotFoundError:
        return {}
    if len(lines) < 2:
        return {}
    names = lines[0].split(";")
    values = lines[-1].split(";")
    return {name: value for name, value in zip(names, values, strict=False) if name}


def _result(returncode: int, stat_file: Path, log: str, elapsed: float) -> SippResult:
    stats = read_stat_file(stat_file)

    def number(name: str) -> int:
        return int(stats.get(name, "0") or 0)

    return SippResult(
        returncode=returncode,
        successful=number("SuccessfulCall(C)"),
        failed=number("FailedCall(C)"),
        retransmissions=number("Retransmissions(C)"),
        created=number("TotalCallCreated"),
        call_rate=float(stats.get("CallRate(C)", "0") or 0),
        elapsed=elapsed,
        stats=stats,
        log=log,
    )


def _argv(args: Sequence[str], stat_file: Path) -> list[str]:
    # -nostdin: no keyboard; -fd 1: a stats row every second so a killed run still leaves counters.
    return ["sipp", *args, "-nostdin", "-trace_stat", "-stf", str(stat_file), "-fd", "1"]


def run_sipp(
    args: Sequence[str],
    *,
    timeout: float,
    cwd: Path | str | None = None,
    prefix: Sequence[str] = (),
) -> SippResult:
    """Run SIPp in the foreground with `args` and return its result; kill it and raise PeerError on overrun.

    Example: `run_sipp(["-sn", "uac", "127.0.0.1:5060", "-m", "10", "-r", "20"], timeout=30)`.
    A non-zero exit is returned, not raised: check `result.ok` and print `result.explain()`.
    `prefix` wraps the command (`NetNs.exec_prefix()` runs SIPp inside a network namespace).
    """
    with tempfile.TemporaryDirectory(prefix="sipp-") as tmp:
        stat_file = Path(tmp) / "stat.csv"
        argv = [*prefix, *_argv(args, stat_file)]
        if prefix:
            require_binary("sipp")  # the wrapper is what PeerProcess checks
        proc = PeerProcess("sipp", argv, log_path=Path(tmp) / "sipp.log", cwd=cwd)
        started = time.monotonic()
        proc.start()
        try:
            code = proc.wait(timeout)
        except PeerError as exc:
            raise PeerError(
                f"{exc}\nlast stats: {_result(-9, stat_file, '', 0).explain()}"
            ) from None
        return _result(code, stat_file, proc.log(), time.monotonic() - started)


class SippProcess:
    """A long-running SIPp (typically a UAS) for the length of a `with` block.

    `listen` = (host, port, "udp"|"tcp") is awaited before the block starts. On exit SIPp gets SIGUSR1
    (finish current calls, then quit), then SIGTERM/SIGKILL after `grace`; `result` holds its counters.
    `max_lifetime` is passed to SIPp as `-timeout` so it ends by itself even if nobody stops it.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        listen: tuple[str, int, Literal["udp", "tcp"]] | None = None,
        cwd: Path | str | None = None,
        max_lifetime: float = 300.0,
        grace: float = 5.0,
        name: str = "sipp",
    ) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self.stat_file = self._tmp / "stat.csv"
        argv = [*_argv(args, self.stat_file), "-timeout", f"{int(max_lifetime)}s"]
        self.process = PeerProcess(name, argv, log_path=self._tmp / "sipp.log", cwd=cwd)
        self.listen = listen
        self.grace = grace
        self.result: SippResult | None = None
        self._started = 0.0

    def __enter__(self) -> SippProcess:
        self._started = time.monotonic()
        self.process.start()
        try:
            if self.listen is not None:
                host, port, kind = self.listen
                wait_port(host, port, kind, timeout=10.0, process=self.process)
        except BaseException:
            self.process.kill()
            raise
        return self

    def stats(self) -> dict[str, str]:
        """The latest CSV row (written once a second)."""
        return read_stat_file(self.stat_file)

    def stop(self) -> SippResult:
        if self.result is None:
            code = self.process.stop(grace=self.grace, signum=signal.SIGUSR1)
            self.result = _result(
                -9 if code is None else code,
                self.stat_file,
                self.process.log(),
                time.monotonic() - self._started,
            )
        return self.result

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        result = self.stop()
        if exc_type is not None:
            print(f"{self.process.name}: {result.explain()}", file=sys.stderr)
        else:
            shutil.rmtree(self._tmp, ignore_errors=True)
