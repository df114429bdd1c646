"""A private `redis-server` on a free loopback port, for tests that cause Redis faults for real.

Nothing is written to disk (`--save '' --appendonly no`); `kill()` is a SIGKILL (a crash),
`freeze()`/`thaw()` SIGSTOP/SIGCONT it (a Redis that accepts connections and never answers, as a
stalled or partitioned server looks), `restart()` starts a fresh one on the same port.
"""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from types import TracebackType

from .proc import PeerProcess, free_port, wait_port

HOST = "127.0.0.1"


class RedisServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port("tcp")
        self.dir = Path(tempfile.mkdtemp(prefix="redis-"))
        self.process: PeerProcess | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> RedisServer:
        self.starts += 1
        argv = ["redis-server", "--bind", HOST, "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--dir", str(self.dir)]  # fmt: skip
        self.process = PeerProcess(
            "redis-server", argv, log_path=self.dir / f"redis-{self.starts}.log"
        )
        self.process.start()
        wait_port(HOST, self.port, "tcp", timeout=10.0, process=self.process)
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        if self.process is not None and self.process.running:
            self.process.kill()
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None:
            self.thaw()  # a stopped process ignores SIGTERM until continued
            self.process.kill()
