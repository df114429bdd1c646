"""A small, bounded, feedback-driven fuzzing loop in pure Python.

Feedback without a coverage tracer: every input is classified by its *outcome signature* (the
exception type and its message with the numbers and quoted parts blanked, or the type of value
that parsed). An input with a signature not seen before reached a code path or a branch of an
error message not reached before, so it joins the pool that mutations start from. That keeps the
loop fast (no tracer) while still walking deeper into the grammars than blind mutation of seeds.

Hangs: each input gets ``per_input`` seconds of CPU (``ITIMER_VIRTUAL``, so pytest-timeout's
``SIGALRM`` is left alone) and of wall time; over either is a violation. Memory: inputs are capped
at ``mutate.MAX_INPUT`` bytes, and the run fails if the process's peak RSS grows by more than
``max_rss_growth`` bytes.
"""

from __future__ import annotations

import hashlib
import random
import re
import resource
import signal
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from . import mutate
from .targets import Target

CRASH_DIR = Path(__file__).resolve().parent / "crashes"
POOL_MAX = 4096
HEX_SHOWN = 4000  # hex digits of an input shown in a report; the saved file has all of it

_BLANKS = re.compile(r"'[^']*'|\"[^\"]*\"|b'[^']*'|\d+")


class Hang(BaseException):
    """Raised by the CPU timer inside a target. A BaseException, so no ``except`` in the code
    under test can swallow it."""


@dataclass(slots=True)
class Violation:
    target: str
    data: bytes
    error: str  # exception type and message, or "hang"
    trace: str
    saved: Path | None = None

    def describe(self) -> str:
        where = f"saved to {self.saved}" if self.saved else "not saved"
        shown = self.data.hex()
        if len(shown) > HEX_SHOWN:
            shown = f"{shown[: HEX_SHOWN // 2]}...{shown[-HEX_SHOWN // 2 :]} (cut; see the file)"
        error = self.error if len(self.error) < 2000 else self.error[:2000] + "..."
        trace = self.trace if len(self.trace) < 4000 else "..." + self.trace[-4000:]
        return f"[{self.target}] {error}\n  input ({len(self.data)} bytes, {where}):\n  {shown}\n{trace}"


@dataclass(slots=True)
class Stats:
    target: str
    executions: int = 0
    seconds: float = 0.0
    pool: int = 0
    signatures: int = 0
    slowest: float = 0.0
    violations: list[Violation] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.executions / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"{self.target:<9} {self.executions:>9} execs {self.seconds:7.1f} s "
            f"{self.rate:9.0f}/s  pool {self.pool:>5}  signatures {self.signatures:>5}  "
            f"slowest {self.slowest * 1000:7.1f} ms  violations {len(self.violations)}"
        )


def _on_timer(signum: int, frame: FrameType | None) -> None:
    raise Hang


@contextmanager
def cpu_timer() -> Iterator[None]:
    """Install the SIGVTALRM handler for the duration of a run and restore what was there."""
    previous = signal.signal(signal.SIGVTALRM, _on_timer)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


def signature(outcome: BaseException | None, label: str | None = None) -> str:
    if outcome is None:
        return f"ok:{label}"[:120]
    return f"{type(outcome).__name__}:{_BLANKS.sub('_', str(outcome))[:80]}"


def execute(
    target: Target, data: bytes, per_input: float
) -> tuple[BaseException | None, str | None, float]:
    """Run one input under the CPU timer; return (exception or None, label, wall seconds)."""
    label = None
    start = time.perf_counter()
    signal.setitimer(signal.ITIMER_VIRTUAL, per_input)
    try:
        label = target.run(data)
    except BaseException as exc:  # classified by the caller: allowed, hang, or a bug
        outcome: BaseException | None = exc
    else:
        outcome = None
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
    return outcome, label, time.perf_counter() - start


def save(violation: Violation, directory: Path = CRASH_DIR) -> None:
    """Write the input as ``<target>-<sha1>.bin`` (raw bytes) so it can be replayed."""
    name = f"{violation.target}-{hashlib.sha1(violation.data).hexdigest()[:16]}.bin"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(violation.data)
    except OSError:
        return
    violation.saved = directory / name


def check(target: Target, data: bytes, per_input: float) -> tuple[str, Violation | None, float]:
    """Run one input; return (signature, violation or None, wall seconds)."""
    outcome, label, wall = execute(target, data, per_input)
    if isinstance(outcome, Hang) or wall > per_input:
        error = f"hang: over {per_input} s for one input (wall {wall:.2f} s)"
        return "hang", Violation(target.name, data, error, ""), wall
    if isinstance(outcome, KeyboardInterrupt | SystemExit):
        raise outcome
    if outcome is None or isinstance(outcome, target.allowed):
        return signature(outcome, label), None, wall
    trace = "".join(traceback.format_exception(outcome))
    error = f"{type(outcome).__name__}: {outcome}"
    return signature(outcome), Violation(target.name, data, error, trace), wall


def _crash_key(v: Violation) -> str:
    """Same exception type raised from the same line: one bug, however many inputs reach it."""
    last = v.trace.strip().splitlines()
    lines = [line for line in last if line.lstrip().startswith("File ")]
    return f"{v.error.split(':', 1)[0]}@{lines[-1].strip() if lines else ''}"


def fuzz(
    target: Target,
    seconds: float,
    *,
    seed: int,
    per_input: float = 1.0,
    stop_on_first: bool = True,
    max_rss_growth: int = 512 * 1024 * 1024,
    crash_dir: Path = CRASH_DIR,
) -> Stats:
    """Fuzz one target for about ``seconds``; every seed is run first, whatever the budget."""
    rng = random.Random(seed)
    stats = Stats(target.name)
    seeds = target.seeds()
    pool: list[bytes] = list(seeds)
    seen: set[str] = set()
    crashes: set[str] = set()
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    deadline = start + seconds
    queue = iter(seeds)
    with cpu_timer():
        while True:
            data = next(queue, None)
            if data is None:
                if time.perf_counter() >= deadline:
                    break
                data = mutate.mutate(rng.choice(pool), rng, pool)
            sig, violation, wall = check(target, data, per_input)
            stats.executions += 1
            stats.slowest = max(stats.slowest, wall)
            if sig not in seen:
                seen.add(sig)
                if len(pool) < POOL_MAX:
                    pool.append(data)
                else:
                    pool[rng.randrange(len(seeds), POOL_MAX)] = data
            if violation is not None:
                key = _crash_key(violation) if sig != "hang" else "hang"
                if key not in crashes:
                    crashes.add(key)
                    save(violation, crash_dir)
                    stats.violations.append(violation)
                if stop_on_first:
                    break
    stats.seconds = time.perf_counter() - start
    stats.pool, stats.signatures = len(pool), len(seen)
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_start
    if growth > max_rss_growth:
        stats.violations.append(
            Violation(target.name, b"", f"memory: peak RSS grew by {growth >> 20} MiB", "")
        )
    return stats
