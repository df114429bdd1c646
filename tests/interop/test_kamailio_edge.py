"""The shipped edge config (deploy/kamailio/kamailio.cfg) run by a real Kamailio in front of two real
`ifescalate sip answer` processes, with SIPp calling through it.

Only the `#!define` settings at the top of the file are rewritten (loopback address, free ports, a
dispatcher list naming the two instances, short timers); the routing logic under test is the shipped
text. What is proven:
- dispatch: 20 calls through the edge reach both instances (round robin), every call completes with
  ACK and BYE routed back through the edge (SIPp's uac_rr.xml follows the Record-Route set);
- failover: one instance is SIGKILLed; the next 10 calls all complete on the other, at least one of them
  by failing over after the dead instance stayed silent (Kamailio logs FAILOVER ... after 408); the dead
  one is then marked down and, with its OPTIONS probes failing, no later call is even tried on it;
- the edge allowlist acts on the real source address: a request from 127.0.0.2 gets
  403 Forbidden - IP Not Allowlisted while the same request from 127.0.0.1 is answered by an instance.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.interop.test_sip_cli import HOST, Answerer
from tests.peers import SCENARIOS, Kamailio, free_port, run_sipp

pytestmark = pytest.mark.interop

EDGE_CFG = Path(__file__).parents[2] / "deploy" / "kamailio" / "kamailio.cfg"

_DEFINE = r"^(#!define {name}) .*$"


def edge_config(defines: Mapping[str, str]) -> str:
    """The shipped config with each named `#!define` value replaced (each must exist exactly once)."""
    text = EDGE_CFG.read_text()
    for name, value in defines.items():
        text, n = re.subn(_DEFINE.format(name=name), rf"\g<1> {value}", text, flags=re.MULTILINE)
        assert n == 1, f"#!define {name} appears {n} times in {EDGE_CFG}"
    return text


def instance(tmp: Path) -> Answerer:
    # The edge is the transport peer of every request: trusting it keeps the instance's own flood
    # layer from counting all callers as one source (docs/runbook.md, "Behind Kamailio").
    return Answerer(f"udp:{HOST}:0", verbose=True, extra=["--trusted", f"{HOST}/32"])


def calls_seen(answerer: Answerer) -> int:
    return len(re.findall(r"^incoming call ", answerer.output(), re.MULTILINE))


def call_through(edge_port: int, calls: int) -> None:
    """`calls` SIPp calls (record-route aware) through the edge, 5 per second; all must complete."""
    result = run_sipp(
        [
            "-sf", str(SCENARIOS / "uac_rr.xml"), f"{HOST}:{edge_port}",
            "-s", "bob", "-i", HOST, "-p", str(free_port("udp")),
            "-m", str(calls), "-r", "5", "-l", "10", "-d", "200",
            "-recv_timeout", "8000",
        ],
        timeout=60,
    )  # fmt: skip
    assert result.ok and result.successful == calls, result.explain()


def options_from(source: str, edge_port: int) -> str:
    """One out-of-dialog OPTIONS to a user at the edge, sent from `source`; the final status line."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(1.0)
        port = sock.getsockname()[1]
        call_id = uuid.uuid4().hex
        msg = (
            f"OPTIONS sip:bob@{HOST}:{edge_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bK{call_id[:16]};rport\r\n"
            f"From: <sip:probe@{source}>;tag={call_id[:8]}\r\n"
            f"To: <sip:bob@{HOST}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline:
            sock.sendto(msg, (HOST, edge_port))
            try:
                while True:
                    data = sock.recv(65535).decode(errors="replace")
                    status = data.split("\r\n", 1)[0]
                    if not status.startswith("SIP/2.0 1"):
                        return status
            except TimeoutError:
                continue
    raise AssertionError(f"no final answer to OPTIONS from {source} in 8 s")


def test_edge_dispatches_fails_over_and_allowlists(tmp_path: Path) -> None:
    edge_port = free_port("both")
    with instance(tmp_path / "a") as a, instance(tmp_path / "b") as b:
        dispatcher = tmp_path / "dispatcher.list"
        dispatcher.write_text(
            f"1 sip:{HOST}:{a.port('udp')} 0 0\n1 sip:{HOST}:{b.port('udp')} 0 0\n"
        )
        config = edge_config(
            {
                "LISTEN_IP": HOST,
                "SIP_PORT": str(edge_port),
                "DISPATCHER_LIST": f'"{dispatcher}"',
                "PROBE_INTERVAL": "1",
                "PROBE_THRESHOLD": "1",
                "FR_TIMER": "1000",
                "PIKE_REQS": "1000",
                "WORKERS": "2",
                "ALLOW_NETS": f'"{HOST}/32"',
            }
        )
        with Kamailio(config, wait_for=(HOST, edge_port, "udp")) as kamailio:
            # Dispatch: round robin over both instances.
            call_through(edge_port, 20)
            seen_a, seen_b = calls_seen(a), calls_seen(b)
            assert seen_a + seen_b == 20, (seen_a, seen_b)
            assert seen_a >= 5 and seen_b >= 5, (seen_a, seen_b)
            assert "FAILOVER" not in kamailio.log()

            # The allowlist decides on the real source address, not on anything in the message.
            assert (
                options_from("127.0.0.2", edge_port) == "SIP/2.0 403 Forbidden - IP Not Allowlisted"
            )
            assert options_from(HOST, edge_port).startswith("SIP/2.0 200"), kamailio.log()[-2000:]

            # Failover: B dies without a word; calls keep completing on A.
            b.process.kill()
            before_a = calls_seen(a)
            call_through(edge_port, 10)
            log = kamailio.log()
            assert calls_seen(a) - before_a == 10, (before_a, calls_seen(a))
            failovers = re.findall(r"FAILOVER INVITE \S+ to sip:\S+ after (\d+)", log)
            assert failovers and set(failovers) == {"408"}, log[-3000:]

            # Marked down (by the failover, kept down by the failing OPTIONS probes): no more calls
            # are even tried on the dead instance.
            time.sleep(2.5)  # two probe intervals, so a wrongly revived destination would be back
            mark = len(kamailio.log())
            call_through(edge_port, 5)
            later = kamailio.log()[mark:]
            assert calls_seen(a) - before_a == 15
            assert len(re.findall(r"DISPATCH INVITE", later)) == 5, later[-3000:]
            assert f"to sip:{HOST}:{b.port('udp')}" not in later, later[-3000:]
            assert "FAILOVER" not in later, later[-3000:]
