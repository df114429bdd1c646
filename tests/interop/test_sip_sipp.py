"""SIPp against the product's CLI: SIPp's stock UAC calls `sip answer`, SIPp's stock UAS answers `sip call`.

Every call must succeed: SIPp exits 0 only when no call failed, and its CSV counters say how many ran.
"""

from __future__ import annotations

import pytest

from tests.interop.test_sip_cli import HOST, Answerer, sip_call
from tests.peers import SippProcess, free_port, run_sipp

pytestmark = pytest.mark.interop

CALLS = 50
RATE = 20


def _uac(port: int, transport: str, *extra: str) -> list[str]:
    return [
        "-sn", "uac", f"{HOST}:{port}", "-i", HOST, "-p", str(free_port("both")),
        "-t", transport, "-m", str(CALLS), "-r", str(RATE), "-l", "20", "-d", "200",
        "-recv_timeout", "10000", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_uac_calls_sip_answer(transport: str) -> None:
    with Answerer(f"{transport}:{HOST}:0") as answerer:
        result = run_sipp(
            _uac(answerer.port(transport), "u1" if transport == "udp" else "t1"), timeout=60
        )
        assert answerer.running, answerer.output()
    assert result.ok, result.explain()
    assert (result.successful, result.failed, result.created) == (CALLS, 0, CALLS), result.explain()
    # Every INVITE was answered and every call ended: the answerer's counters agree with SIPp's.
    stats = answerer.output().rsplit("stopping; stats", 1)[-1]
    assert f"'answered': {CALLS}" in stats, answerer.output()


def test_sip_call_to_sipp_uas() -> None:
    # UDP only: SIPp's stock UAS keeps each call 4 s in "timewait" after the BYE and counts it failed
    # when the caller's TCP connection closes meanwhile (our CLI exits right after its BYE). The TCP
    # caller is proven through Kamailio in test_sip_proxy.py, where the connection stays up.
    port = free_port("both")
    args = ["-sn", "uas", "-i", HOST, "-p", str(port), "-t", "u1"]
    with SippProcess(args, listen=(HOST, port, "udp"), name="sipp-uas") as uas:
        run = sip_call(f"sip:service@{HOST}:{port}", hangup_after=0.5)
    assert run.returncode == 0, run.explain()
    lines = run.output.splitlines()
    assert any(line.startswith("answered 200 call-id ") for line in lines), run.explain()
    assert "progress 180 Ringing" in lines, run.explain()
    assert lines[-1] == "ended: bye", run.explain()
    # SIPp counts a call as successful only once its scenario got the ACK and the BYE and said 200.
    assert uas.result is not None
    assert (uas.result.successful, uas.result.failed) == (1, 0), uas.result.explain()
