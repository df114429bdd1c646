"""SIP over TLS (RFC 3261 section 26.2, RFC 5630) between the product and real TLS peers.

- SIPp has no TLS: it speaks TCP into stunnel (client mode, TLS 1.2 or newer, verifying our development
  certificate by IP), which carries every call into `sip answer`'s `tls:` listener.
- Our caller speaks TLS to Kamailio's TLS listener (verifying Kamailio's certificate) and Kamailio relays
  to a SIPp UAS over UDP, or over TLS again to our own answerer.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.interop.test_sip_cli import HOST, Answerer, sip_call
from tests.interop.test_sip_proxy import proxied_uas, routed_requests
from tests.peers import Kamailio, ProxyTls, Stunnel, free_port, proxy_config, run_sipp

pytestmark = pytest.mark.interop

CALLS = 20


def test_sipp_through_stunnel_into_our_tls_listener(dev_cert: tuple[Path, Path]) -> None:
    cert, _ = dev_cert
    with (
        Answerer(f"tls:{HOST}:0", tls=dev_cert) as answerer,
        Stunnel((HOST, answerer.port("tls")), ca=cert, verify_ip=HOST, debug="info") as tunnel,
    ):
        host, port = tunnel.address
        args = [
            "-sn", "uac", f"{host}:{port}", "-i", HOST, "-p", str(free_port("both")), "-t", "t1",
            "-m", str(CALLS), "-r", "10", "-d", "200", "-recv_timeout", "10000",
        ]  # fmt: skip
        result = run_sipp(args, timeout=60)
        tunnel_log = tunnel.log()
    assert result.ok, result.explain()
    assert (result.successful, result.failed) == (CALLS, 0), result.explain()
    # stunnel verified our certificate and negotiated TLS 1.2 or newer.
    assert "Certificate accepted" in tunnel_log, tunnel_log
    assert re.search(r"TLSv1\.[23]", tunnel_log), tunnel_log
    stats = answerer.output().rsplit("stopping; stats", 1)[-1]
    assert f"'answered': {CALLS}" in stats, answerer.output()


def _tls_proxy(
    dev_cert: tuple[Path, Path], target: tuple[str, int, str]
) -> tuple[Kamailio, int, int]:
    cert, key = dev_cert
    proxy_port, tls_port = free_port("both"), free_port("tcp")
    tls = ProxyTls(cert=cert, key=key, port=tls_port)
    config = proxy_config(
        port=proxy_port,
        target=target,  # type: ignore[arg-type]
        tls=tls,
        log_requests=True,
    )
    return Kamailio(config, wait_for=(HOST, tls_port, "tcp"), tls=tls), proxy_port, tls_port


def _assert_answered(run_output: str, returncode: int) -> None:
    assert returncode == 0, run_output
    assert re.search(r"^answered 200 call-id \S+$", run_output, re.MULTILINE), run_output
    assert run_output.splitlines()[-1] == "ended: bye", run_output


def test_our_tls_caller_through_kamailio_to_sipp(dev_cert: tuple[Path, Path]) -> None:
    cert, _ = dev_cert
    uas_port = free_port("both")
    kamailio, _, tls_port = _tls_proxy(dev_cert, (HOST, uas_port, "udp"))
    with proxied_uas(uas_port) as uas, kamailio:
        run = sip_call(f"sips:bob@{HOST}:{tls_port}", "--tls-ca", str(cert), hangup_after=0.3)
        log = kamailio.log()
    _assert_answered(run.output, run.returncode)
    # INVITE, ACK and BYE all arrived over TLS; ACK and BYE by the proxy's TLS-side Record-Route.
    assert re.search(r"REQUEST INVITE \S+ route=<null> from tls:", log), log[-3000:]
    for method in ("ACK", "BYE"):
        sources = routed_requests(log, method, tls_port)
        assert len(sources) == 1 and sources[0].startswith("tls:"), f"{method} {sources}\n{log}"
    assert uas.result is not None
    assert (uas.result.successful, uas.result.failed) == (1, 0), uas.result.explain()


def test_our_tls_caller_refuses_an_unverified_proxy(
    dev_cert: tuple[Path, Path], tmp_path: Path
) -> None:
    from tests.peers import dev_tls_cert

    other_ca, _ = dev_tls_cert(tmp_path, stem="other")
    uas_port = free_port("both")
    kamailio, _, tls_port = _tls_proxy(dev_cert, (HOST, uas_port, "udp"))
    with proxied_uas(uas_port) as uas, kamailio:
        run = sip_call(f"sips:bob@{HOST}:{tls_port}", "--tls-ca", str(other_ca), timeout=60)
    assert run.returncode != 0, run.output
    assert "answered" not in run.output
    assert uas.result is not None
    assert uas.result.created == 0, uas.result.explain()


def test_tls_end_to_end_through_kamailio_to_our_answerer(dev_cert: tuple[Path, Path]) -> None:
    cert, _ = dev_cert
    with Answerer(f"tls:{HOST}:0", tls=dev_cert) as answerer:
        kamailio, _, tls_port = _tls_proxy(dev_cert, (HOST, answerer.port("tls"), "tls"))
        with kamailio:
            run = sip_call(f"sips:bob@{HOST}:{tls_port}", "--tls-ca", str(cert), hangup_after=0.3)
            log = kamailio.log()
    _assert_answered(run.output, run.returncode)
    for method in ("ACK", "BYE"):
        assert len(routed_requests(log, method, tls_port)) == 1, log[-3000:]
    stats = answerer.output().rsplit("stopping; stats", 1)[-1]
    assert "'answered': 1" in stats, answerer.output()
