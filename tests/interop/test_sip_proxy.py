"""Our caller through Kamailio as a record-routing stateful proxy to a SIPp UAS and back.

The proof that the route set was used (RFC 3261 sections 12.1.2, 12.2.1.1): Kamailio logs the ACK and
the BYE arriving from our caller with its own Record-Route as their Route header, and the SIPp UAS
(scenario uas_proxied.xml) fails any call whose ACK or BYE reaches it without the proxy's Via.
"""

from __future__ import annotations

import re

import pytest

from tests.interop.test_sip_cli import HOST, sip_call
from tests.peers import SCENARIOS, Kamailio, SippProcess, free_port, proxy_config

pytestmark = pytest.mark.interop


def proxied_uas(port: int) -> SippProcess:
    """SIPp answering on UDP `port` and checking each ACK and BYE came through a proxy."""
    args = ["-sf", str(SCENARIOS / "uas_proxied.xml"), "-i", HOST, "-p", str(port), "-d", "0"]
    return SippProcess(args, listen=(HOST, port, "udp"), name="sipp-uas-proxied")


def routed_requests(log: str, method: str, proxy_port: int) -> list[str]:
    """Kamailio `log_requests` lines for `method` whose Route is the proxy's own Record-Route entry."""
    pattern = (
        rf"REQUEST {method} \S+ route=<sips?:{re.escape(HOST)}:{proxy_port}[^ >]*;lr\S* from (\S+)"
    )
    return re.findall(pattern, log)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sip_call_keeps_kamailio_on_the_path(transport: str) -> None:
    uas_port, proxy_port = free_port("both"), free_port("both")
    config = proxy_config(port=proxy_port, target=(HOST, uas_port, "udp"), log_requests=True)
    suffix = "" if transport == "udp" else ";transport=tcp"
    with (
        proxied_uas(uas_port) as uas,
        Kamailio(config, wait_for=(HOST, proxy_port, "udp")) as kamailio,
    ):
        runs = [
            sip_call(f"sip:bob@{HOST}:{proxy_port}{suffix}", hangup_after=0.3) for _ in range(2)
        ]
        log = kamailio.log()
    for run in runs:
        assert run.returncode == 0, run.explain()
        assert re.search(r"^answered 200 call-id \S+$", run.output, re.MULTILINE), run.explain()
        assert run.output.splitlines()[-1] == "ended: bye", run.explain()
    # Both in-dialog requests of both calls went to the proxy, addressed by its Record-Route.
    for method in ("ACK", "BYE"):
        sources = routed_requests(log, method, proxy_port)
        assert len(sources) == 2, f"{method}: {sources}\n{log[-3000:]}"
        assert all(src.startswith(f"{transport}:{HOST}:") for src in sources), sources
    # The UAS saw the proxy's Via on every ACK and BYE (its checks fail the call otherwise).
    assert uas.result is not None
    assert (uas.result.successful, uas.result.failed) == (2, 0), uas.result.explain()


def test_sipp_uas_check_fails_a_call_that_bypasses_the_proxy() -> None:
    # The scenario's own check, shown to bite: a direct call (one Via) is counted as failed.
    uas_port = free_port("both")
    with proxied_uas(uas_port) as uas:
        run = sip_call(f"sip:bob@{HOST}:{uas_port}", hangup_after=0.3)
    assert run.returncode == 0, run.explain()
    assert uas.result is not None
    assert (uas.result.successful, uas.result.failed) == (0, 1), uas.result.explain()
    assert uas.result.counter("FailedRegexpHdrNotFound") == 1, uas.result.stats
