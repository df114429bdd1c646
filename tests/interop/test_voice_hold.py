"""Hold and resume by re-INVITE reach the RTP session (RFC 3264 §8.4), against SIPp and baresip.

Our answerer runs a 2 s no-media timeout. A held call must outlive it (no RTP is due while held), we
must answer each hold with the matching direction and send nothing toward the party that holds, and a
resumed call that then carries no RTP must still be ended by the timeout.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from tests.interop.test_sip_cli import HOST, Answerer, CliRun, sip_call
from tests.interop.test_voice_baresip import assert_tone, wait_output
from tests.peers import SCENARIOS, Baresip, free_port, run_sipp, write_tone_wav
from tests.peers.baresip import TERMINATED

pytestmark = pytest.mark.interop

NO_MEDIA = 2.0


def own_rtp_ports() -> list[str]:
    """``--rtp-ports`` on a range of our own: every answerer's default pool starts at 40000, and on
    a loopback shared with other runs a stale stream aimed there would be latched instead of ours."""
    low = free_port("udp") & ~1
    return ["--rtp-ports", f"{low}-{min(low + 19, 65535)}"]


ANSWER = ["--media", "--no-media-timeout", str(NO_MEDIA)]
DIRECTION = r"^media (\w+) call-id \S+ sent (\d+)$"


def _directions(output: str) -> list[tuple[str, int]]:
    return [(d, int(n)) for d, n in re.findall(DIRECTION, output, re.M)]


def test_sipp_holds_three_ways_then_resumes_and_goes_silent(tmp_path: Path) -> None:
    # uac_hold.xml: sendonly (2.7 s), inactive, c=0.0.0.0 (1.5 s each: 5.7 s held > the 2 s timeout),
    # then sendrecv; it checks each 200's direction and then waits for our BYE. SIPp sends no RTP.
    # The first hold's 200 is ACKed only after 1.2 s: by then we must have sent it again (T1).
    messages = tmp_path / "sipp-messages.log"
    with Answerer(f"udp:{HOST}:0", verbose=True, extra=ANSWER + own_rtp_ports()) as answerer:
        started = time.monotonic()
        result = run_sipp(
            [
                "-sf", str(SCENARIOS / "uac_hold.xml"), f"{HOST}:{answerer.port('udp')}",
                "-s", "bob", "-i", HOST, "-p", str(free_port("udp")), "-m", "1",
                "-recv_timeout", "20000", "-trace_msg", "-message_file", str(messages),
            ],
            timeout=60,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        assert result.ok, result.explain()
        stats = wait_output(answerer, r"^media ended (.*)$").group(1)
    trace = messages.read_text(errors="replace").split(
        "-----------------------------------------------"
    )
    hold_2xx = [m for m in trace if "SIP/2.0 200 OK" in m and "CSeq: 2 INVITE" in m]
    assert len(hold_2xx) >= 2, f"the unACKed 200 of the hold re-INVITE was not resent: {hold_2xx}"
    output = answerer.output()
    directions = _directions(output)
    assert [d for d, _ in directions] == ["recvonly", "inactive", "recvonly", "sendrecv"], output
    # Nothing sent while held: the counter did not move from the first hold to the resume.
    assert len({n for _, n in directions}) == 1, directions
    assert "no RTP for 2 s: hanging up (no-media)" in output, output
    # The BYE came from the timeout after the resume, not from one during the 4.5 s hold.
    assert elapsed > 1.0 + 1.2 + 4.5 + NO_MEDIA, f"{elapsed:.1f} s\n{output}"
    assert "'received': 0" in stats, stats


def test_sipp_holds_and_resumes_by_update() -> None:
    # RFC 3311: the same offer/answer in an UPDATE (we list UPDATE in Allow), 4.5 s held.
    with Answerer(f"udp:{HOST}:0", verbose=True, extra=ANSWER + own_rtp_ports()) as answerer:
        started = time.monotonic()
        result = run_sipp(
            [
                "-sf", str(SCENARIOS / "uac_update_hold.xml"), f"{HOST}:{answerer.port('udp')}",
                "-s", "bob", "-i", HOST, "-p", str(free_port("udp")), "-m", "1",
                "-recv_timeout", "20000",
            ],
            timeout=60,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        assert result.ok, result.explain()
        wait_output(answerer, r"^media ended ")
    output = answerer.output()
    assert [d for d, _ in _directions(output)] == ["recvonly", "sendrecv"], output
    assert "no RTP for 2 s: hanging up (no-media)" in output, output
    assert elapsed > 1.0 + 4.5 + NO_MEDIA, f"{elapsed:.1f} s\n{output}"


def test_baresip_holds_and_resumes_our_answerer(tmp_path: Path) -> None:
    mic = write_tone_wav(tmp_path / "tone-440.wav", seconds=40.0)
    ours = write_tone_wav(tmp_path / "tone-1000.wav", seconds=5.0, freq=1000)
    extra = [*ANSWER, *own_rtp_ports(), "--play", str(ours)]
    with Answerer(f"udp:{HOST}:0", verbose=True, extra=extra) as answerer:
        with Baresip(
            "alice", dial=answerer.uri("udp"), duration=12, control=True, record=True,
            audio=mic, sip_trace=True,
        ) as alice:  # fmt: skip
            alice.wait_established(timeout=10)
            time.sleep(1.0)
            assert alice.command("hold")["ok"], alice.log()
            held = wait_output(answerer, DIRECTION)
            assert held.group(1) == "recvonly", answerer.output()
            # baresip stops its RTP while holding; our 2 s timeout must not end the call.
            time.sleep(2.5 * NO_MEDIA)
            assert TERMINATED.search(alice.log()) is None, alice.log()[-3000:]
            assert "no-media" not in answerer.output(), answerer.output()
            assert alice.command("resume")["ok"], alice.log()
            wait_output(answerer, r"^media sendrecv call-id ")
            alice.wait_for(TERMINATED, timeout=15)  # its -t 12 hangs up
            log = alice.log()
            heard = alice.recordings("dec")
            assert len(heard) == 1, log[-3000:]
            assert_tone(heard[0], 1000)  # our tone again after the resume
        stats = wait_output(answerer, r"^media ended (.*)$").group(1)
    directions = _directions(answerer.output())
    assert [d for d, _ in directions] == ["recvonly", "sendrecv"], answerer.output()
    assert directions[0][1] == directions[1][1], directions  # nothing sent while held
    assert int(re.search(r"'sent': (\d+)", stats).group(1)) > directions[1][1] + 100, stats  # type: ignore[union-attr]
    assert "no-media" not in answerer.output()
    # baresip's hold re-INVITE and our answer, as seen on its side (RFC 3264 §6.1).
    assert re.search(r"^a=sendonly\r?$", log, re.M) and re.search(r"^a=recvonly\r?$", log, re.M)


def test_baresip_holds_an_srtp_call_over_tls(dev_cert: tuple[Path, Path]) -> None:
    # baresip's hold re-INVITE repeats its SDES key (RFC 4568 §7.1.4): we must answer with our same key,
    # not 488 it, and SRTP must carry on both ways after the resume.
    cert, _ = dev_cert
    extra = [*ANSWER, *own_rtp_ports()]
    with Answerer(f"tls:{HOST}:0", tls=dev_cert, verbose=True, extra=extra) as answerer:
        uri = f"sip:bob@{HOST}:{answerer.port('tls')};transport=tls"
        secure = {"tls": dev_cert, "ca": cert, "srtp": True}
        with Baresip(
            "alice",
            dial=uri,
            duration=9,
            control=True,
            sip_trace=True,
            **secure,  # type: ignore[arg-type]
        ) as alice:
            alice.wait_established(timeout=10)
            time.sleep(1.0)
            assert alice.command("hold")["ok"], alice.log()
            wait_output(answerer, r"^media recvonly call-id ")
            time.sleep(1.5 * NO_MEDIA)
            assert alice.command("resume")["ok"], alice.log()
            wait_output(answerer, r"^media sendrecv call-id ")
            alice.wait_for(TERMINATED, timeout=15)
            log = alice.log()
        stats = wait_output(answerer, r"^media ended (.*)$").group(1)
    assert re.search(r"^media \S+ PCMU port \d+ srtp True$", answerer.output(), re.M)
    assert "no-media" not in answerer.output()
    # Our three 200s (INVITE, hold, resume) carry one and the same key; so do baresip's offers.
    ours = re.findall(r"SIP/2.0 200 OK.*?a=crypto:\d+ \S+ (inline:\S+)", log, re.S)
    assert len(ours) >= 3 and len(set(ours)) == 1, ours
    # SRTP kept authenticating after the resume: 7 of the 9 s carried RTP, none of it lost. ('dropped'
    # is not asserted: baresip also sends lone RTCP APP "PING"/"PONG" packets, reduced-size RTCP as
    # in RFC 5506, which our parser refuses as not starting with SR/RR, RFC 3550 §6.1.)
    received = int(re.search(r"'received': (\d+)", stats).group(1))  # type: ignore[union-attr]
    assert received > 150 and "'lost': 0" in stats, stats


def test_baresip_holds_our_outgoing_call() -> None:
    # We call (our SDP was the offer); baresip holds and resumes. The call must outlive our 2 s
    # no-media timeout while held and end by our own hang-up ("ended: bye"), not by "no-media".
    with Baresip("bob", duration=30, control=True, sip_trace=True) as bob:
        runs: list[CliRun] = []
        caller = threading.Thread(
            target=lambda: runs.append(
                sip_call(bob.uri, *ANSWER, *own_rtp_ports(), hangup_after=8.0, timeout=30)
            )
        )
        caller.start()
        try:
            bob.wait_established(timeout=10)
            time.sleep(1.0)
            assert bob.command("hold")["ok"], bob.log()
            time.sleep(2.0 * NO_MEDIA)
            assert bob.command("resume")["ok"], bob.log()
        finally:
            caller.join(timeout=30)
        bob.wait_for(TERMINATED, timeout=10)
        log = bob.log()
    (run,) = runs
    assert run.returncode == 0 and "ended: bye" in run.output, run.explain()
    assert "no-media" not in run.output, run.explain()
    assert re.search(r"^a=sendonly\r?$", log, re.M) and re.search(r"^a=recvonly\r?$", log, re.M)
