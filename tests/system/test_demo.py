"""`ifescalate demo` as a person runs it on a fresh machine, plus its own outcome checks.

The subprocess tests run the real thing (service, two SIP user agents, HTTP, witness) on loopback;
the pure tests pin what the demo counts as success, so a wrong outcome cannot pass as OK.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ifescalate.demo import ExpertReport, check_outcome, describe, read_sse

CLI = [sys.executable, "-m", "ifescalate.cli"]
_STEP = re.compile(r"^  \+\s*(\d+) ms  (\S.*)$")


def _demo(*args: str, timeout: float = 40) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [*CLI, "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return done, time.monotonic() - started


def _steps(stdout: str) -> list[tuple[int, str]]:
    """The live progress lines as (elapsed ms, text)."""
    found = [_STEP.match(line) for line in stdout.splitlines()]
    return [(int(m.group(1)), m.group(2)) for m in found if m]


def _at(steps: list[tuple[int, str]], prefix: str) -> int:
    hits = [ms for ms, text in steps if text.startswith(prefix)]
    assert len(hits) == 1, f"expected one line starting {prefix!r}, got {hits} in {steps}"
    return hits[0]


def test_demo_on_a_fresh_machine(tmp_path: Path) -> None:
    done, took = _demo()
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert took < 20, f"demo took {took:.1f} s"
    steps = _steps(out)
    requested = _at(steps, "ESCALATION_REQUESTED hazard safety")
    _at(steps, "GUARD_DECISION       dana permit, eli permit")
    rung_dana = _at(steps, "INVITE               dana at sip:dana@127.0.0.1:")
    gave_up = _at(steps, "NO_ANSWER            dana (ring timeout)")
    _at(steps, "expert dana:         call ended while ringing (cancelled")
    _at(
        steps,
        "expert eli:          INVITE received, ringing (180), will answer; X-IF-Signature verified",
    )
    connected = _at(steps, "CONNECTED            eli")
    _at(steps, "expert eli:          pressed 1 (approve): SIP INFO dtmf-relay -> 200")
    verdict = _at(steps, "VERDICT              eli: approve")
    ended = _at(steps, "TERMINATED           completed: hangup by expert")
    # The elapsed times are the events' own: the ring timeout (3 s) and the expert's pauses show.
    assert requested < rung_dana < gave_up < connected < verdict < ended
    assert 2900 <= gave_up - rung_dana <= 4500
    assert 800 <= verdict - connected <= 2500
    # Every step is a witness entry, numbered in order.
    seqs = [int(n) for n in re.findall(r"\[witness #(\d+)\]", out)]
    total = re.search(r"witness: OK: (\d+) events, chain and signatures valid", out)
    assert total is not None, out
    # The ten escalation steps plus the council room's (expert joined, announcement, left).
    assert int(total.group(1)) >= 10
    assert seqs == list(range(1, int(total.group(1)) + 1))
    assert "outcome completed, verdict approve, connected expert eli" in out
    assert re.search(r"ladder 1\. dana\s+timeout", out)
    assert re.search(r"ladder 2\. eli\s+answered", out)
    # Without --data-dir the state lived in a temporary directory, gone afterwards.
    data_dir = re.search(r"^data dir: (.+)$", out, re.M)
    assert data_dir is not None
    assert not Path(data_dir.group(1)).exists()


def test_demo_kept_dir_reruns_and_refuses_a_tampered_log(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    first, _ = _demo("--data-dir", str(data))
    assert first.returncode == 0, first.stdout + first.stderr
    assert (data / "demo-experts.yaml").exists()
    # The log verifies with the standalone verifier too.
    verify = subprocess.run(
        [*CLI, "witness", "verify", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    once = re.search(r"OK: (\d+) events", verify.stdout)
    assert once is not None and int(once.group(1)) >= 10
    # A second run on the same dir (tokens already issued, registry already there) appends.
    second, _ = _demo("--data-dir", str(data))
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"witness: OK: {2 * int(once.group(1))} events" in second.stdout
    # Rewrite one recorded verdict behind the witness's back: the demo must not report OK.
    with sqlite3.connect(data / "witness.sqlite3") as db:
        db.execute("DROP TRIGGER witness_events_no_update")
        changed = db.execute(
            "UPDATE witness_events SET details = replace(details, 'approve', 'reject') "
            "WHERE type = 'VERDICT' AND seq <= ?",
            (int(once.group(1)),),
        ).rowcount
    assert changed == 1
    third, _ = _demo("--data-dir", str(data))
    assert third.returncode == 1
    assert "demo: FAILED: service not ready (503): witness: witness chain broken" in third.stderr
    assert "Traceback" not in third.stderr
    assert "demo: OK" not in third.stdout


def test_demo_unusable_data_dir_is_a_clear_failure(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    done, _ = _demo("--data-dir", str(not_a_dir))
    assert done.returncode == 1
    assert "demo: FAILED:" in done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------- what the demo counts as success


def _final(**changes: Any) -> dict[str, Any]:
    final: dict[str, Any] = {
        "outcome": "completed",
        "verdict": "approve",
        "connected_expert": "eli",
        "ladder": [
            {"expert_id": "dana", "rank": 1, "result": "timeout"},
            {"expert_id": "eli", "rank": 2, "result": "answered"},
        ],
    }
    return final | changes


def _dana() -> ExpertReport:
    return ExpertReport(invites=1, signature_ok=True, end_reason="cancelled")


def _eli() -> ExpertReport:
    return ExpertReport(
        invites=1, signature_ok=True, answered=True, info_status=200, hung_up=True, end_reason="bye"
    )


def test_check_outcome_accepts_the_expected_run() -> None:
    assert check_outcome(_final(), _dana(), _eli()) == []


@pytest.mark.parametrize(
    ("final", "dana", "eli", "message"),
    [
        (_final(verdict="reject"), _dana(), _eli(), "verdict should be 'approve'"),
        (_final(outcome="no_answer"), _dana(), _eli(), "outcome should be 'completed'"),
        (_final(connected_expert="dana"), _dana(), _eli(), "connected_expert should be 'eli'"),
        (
            _final(ladder=[{"expert_id": "dana", "rank": 1, "result": "answered"}]),
            _dana(),
            _eli(),
            "dana should not have answered",
        ),
        (
            _final(),
            ExpertReport(invites=1, signature_ok=False, end_reason="cancelled"),
            _eli(),
            "X-IF-Signature did not verify",
        ),
        (
            _final(),
            ExpertReport(invites=1, signature_ok=True, end_reason="rejected-486"),
            _eli(),
            "should end by CANCEL",
        ),
        (
            _final(),
            _dana(),
            ExpertReport(invites=1, signature_ok=True, answered=True, info_status=481),
            "eli's INFO answered 481",
        ),
    ],
)
def test_check_outcome_names_what_went_wrong(
    final: dict[str, Any], dana: ExpertReport, eli: ExpertReport, message: str
) -> None:
    problems = check_outcome(final, dana, eli)
    assert any(message in p for p in problems), problems


def test_describe_guard_decision_and_verdict() -> None:
    guard = {
        "decisions": [
            {"expert_id": "dana", "permit": True},
            {"expert_id": "zed", "permit": False},
        ],
        "witness_seq": 2,
    }
    assert describe("GUARD_DECISION", guard) == (
        "GUARD_DECISION       dana permit, zed deny  [witness #2]"
    )
    verdict = {"expert_id": "eli", "verdict": "approve", "witness_seq": 9}
    assert describe("VERDICT", verdict) == "VERDICT              eli: approve  [witness #9]"


def test_read_sse_parses_frames_and_skips_heartbeats() -> None:
    wire = (
        b": heartbeat\n\n"
        b'id: 1\nevent: RINGING\ndata: {"seq": 1}\n\n'
        b'id: 2\r\nevent: VERDICT\r\ndata:{"seq": 2}\r\n\r\n'
        b'event: CUT\ndata: {"seq": 3}\n'  # no blank line: an unfinished frame is not an event
    )

    async def lines() -> AsyncIterator[bytes]:
        for line in wire.splitlines(keepends=True):
            yield line

    async def run() -> list[tuple[str, dict[str, Any]]]:
        return [item async for item in read_sse(lines())]

    assert asyncio.run(run()) == [("RINGING", {"seq": 1}), ("VERDICT", {"seq": 2})]
