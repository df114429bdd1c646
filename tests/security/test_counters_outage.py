"""Redis, holding the security counters, fails for real under a running ``sip answer``.

A private ``redis-server`` on a free port is SIGKILLed (a crash) and SIGSTOPped (a Redis that
accepts connections and never answers); SIPp calls throughout. Proven: a new INVITE during the
outage gets ``503 Service Unavailable - Security Counters Down`` with Retry-After (not silence), a
call established before the crash still ends with its BYE (in-dialog requests need no counter),
the process logs the outage once and its end once, and calls work again as soon as Redis is back on
the same port, without a restart. The hanging Redis costs at most ``--counters-timeout``: SIPp's
INVITE is answered before its own 5 s wait and without the process stalling. And ``serve``: it
starts without Redis, ``/ready`` names the failing check, ``/metrics`` counts the refusals.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ifescalate.sip.message import Response
from tests.interop.test_sip_cli import HOST, Answerer
from tests.peers import SCENARIOS, SippProcess, free_port, run_sipp
from tests.peers.proc import wait_log
from tests.peers.redis_server import RedisServer
from tests.system.test_callin import Service, _registry

from .sipclient import SDP, SipClient

DOWN = "security counters unavailable"
BACK = "security counters answer again"


def sipp_args(answerer: Answerer, *, calls: int, hold_ms: int = 0) -> list[str]:
    return [
        "-sn", "uac", f"{HOST}:{answerer.port('udp')}", "-s", "bob", "-i", HOST,
        "-p", str(free_port("udp")), "-m", str(calls), "-r", "5", "-d", str(hold_ms),
        "-recv_timeout", "5000",
    ]  # fmt: skip


def call(answerer: Answerer, calls: int = 1) -> None:
    result = run_sipp(sipp_args(answerer, calls=calls), timeout=30)
    assert result.ok and result.successful == calls, result.explain()


def expect_counters_down(answerer: Answerer, calls: int = 1) -> None:
    result = run_sipp(
        ["-sf", str(SCENARIOS / "uac_expect_counters_down.xml"), f"{HOST}:{answerer.port('udp')}",
         "-s", "bob", "-i", HOST, "-p", str(free_port("udp")), "-m", str(calls), "-r", "5"],
        timeout=30,
    )  # fmt: skip
    assert result.ok and result.successful == calls, result.explain()


def incoming(answerer: Answerer) -> int:
    return len(re.findall(r"^incoming call ", answerer.output(), re.MULTILINE))


def test_redis_crash_answers_503_keeps_dialogs_and_recovers() -> None:
    with RedisServer() as redis:
        flags = ["--flood", "1000/10", "--counters", redis.url,
                 "--counters-prefix", f"test:outage:{os.urandom(4).hex()}:"]  # fmt: skip
        with Answerer(f"udp:{HOST}:0", verbose=True, extra=flags) as a:
            call(a)
            # A call that is up when Redis dies: its ACK came before, its BYE comes during.
            with SippProcess(sipp_args(a, calls=1, hold_ms=4000), name="held") as held:
                deadline = time.monotonic() + 10
                while incoming(a) < 2 and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(0.5)  # the ACK of the held call's 200
                redis.kill()
                expect_counters_down(a, calls=3)
                assert held.process.wait(15) == 0, held.stop().explain()
            assert held.stop().successful == 1
            assert a.process.running
            log = a.output()
            assert log.count(DOWN) == 1, log  # one line per outage, not per request
            assert "Traceback" not in log, log

            redis.restart()
            wait_log(a.process, BACK, timeout=10)
            call(a, 3)
            assert a.output().count(BACK) == 1
        stats = a.output()
        assert "'flood:counters_unavailable': 3" in stats, stats
        assert "'counters_outages': 1" in stats, stats


def test_redis_hanging_is_bounded_by_the_timeout() -> None:
    with RedisServer() as redis:
        flags = ["--flood", "1000/10", "--counters", redis.url, "--counters-timeout", "0.3",
                 "--counters-prefix", f"test:outage:{os.urandom(4).hex()}:"]  # fmt: skip
        with Answerer(f"udp:{HOST}:0", verbose=True, extra=flags) as a:
            call(a)
            redis.freeze()  # accepts TCP (the kernel does), answers nothing
            try:
                expect_counters_down(a, calls=2)
                log = a.output()
                assert log.count(DOWN) == 1 and "no answer within 0.3 s" in log, log
            finally:
                redis.thaw()
            wait_log(a.process, BACK, timeout=10)
            call(a, 2)
            assert "Traceback" not in a.output()


def _get(svc: Service, path: str, role: str) -> tuple[int, str]:
    req = urllib.request.Request(
        svc.api + path, headers={"Authorization": f"Bearer {svc.tokens[role]}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _invite(svc: Service) -> Response | None:
    client = SipClient(("127.0.0.1", svc.sip_port), source="127.0.0.2", timeout=3.0)
    try:
        resp, _ = client.authed("INVITE", "erin", "erin-secret", body=SDP)
        return resp
    finally:
        client.close()


def _wait_ready(svc: Service, ready: bool, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = _get(svc, "/ready", "operator")
        if (status == 200) == ready or time.monotonic() > deadline:
            assert (status == 200) == ready, (status, body)
            return dict(json.loads(body))
        time.sleep(0.1)


def test_serve_started_without_redis_reports_it_and_recovers(tmp_path: Path) -> None:
    """serve starts while Redis is down (not ready, 503s), becomes ready when Redis starts (and
    shares the digest nonce key then), reports a crash in /ready and /metrics, and recovers."""
    redis = RedisServer()  # not started yet
    registry = tmp_path / "experts.yaml"
    _registry(registry, 9, ["127.0.0.0/8"])
    config = tmp_path / "config.yaml"
    config.write_text(
        f"experts_file: {registry}\nsecurity:\n  flood: 1000/10\n"
        f'  counters_url: {redis.url}\n  counters_prefix: "test:outage:{os.urandom(4).hex()}:"\n'
        "  counters_probe: 0.5\n"
    )
    svc = Service(tmp_path / "data", config)
    try:
        body = _wait_ready(svc, False)
        assert "security counters unreachable" in body["checks"]["security_counters"], body
        resp = _invite(svc)
        assert resp is not None and resp.status == 503, resp
        assert resp.reason == "Service Unavailable - Security Counters Down"
        assert resp.headers.get("Retry-After") == "3"  # 5 probe intervals, rounded up

        with redis:
            body = _wait_ready(svc, True)
            assert body["checks"]["security_counters"] == "ok", body
            # Admitted by every layer (digest with the shared key, nonce-count in Redis), then
            # no escalation rings erin: 404.
            resp = _invite(svc)
            assert resp is not None and resp.status == 404, resp

            redis.kill()
            resp = _invite(svc)
            assert resp is not None and (resp.status, resp.reason) == (
                503,
                "Service Unavailable - Security Counters Down",
            )
            body = _wait_ready(svc, False)
            assert "ConnectionError" in body["checks"]["security_counters"], body
            _, metrics = _get(svc, "/metrics", "auditor")
            assert "security_counters_up 0.0" in metrics
            assert re.search(
                r'security_rejections_total\{layer="flood",reason="counters_unavailable"\} [1-9]',
                metrics,
            ), metrics

            redis.restart()
            _wait_ready(svc, True)
            resp = _invite(svc)
            assert resp is not None and resp.status == 404, resp
            _, metrics = _get(svc, "/metrics", "auditor")
            assert "security_counters_up 1.0" in metrics
    finally:
        svc.stop()
