"""RTP/RTCP multiplexing (RFC 5761) with baresip, and the fallback to separate ports.

baresip calls our answerer, with its global `rtcp_mux` on or off. Over ~9 s both sides send RTCP
(our first report after 2.5 s, RFC 3550 §6.2). A round-trip time on our side can only come from a
report block of baresip's that names our SR (RFC 3550 §6.4.1 LSR/DLSR), so it proves our SR reached
baresip and its report came back, on whichever ports were negotiated.
"""

from __future__ import annotations

import ast
import re

import pytest

from tests.interop.test_sip_cli import HOST, Answerer
from tests.interop.test_voice_baresip import wait_output
from tests.interop.test_voice_hold import own_rtp_ports
from tests.peers import Baresip
from tests.peers.baresip import TERMINATED

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("mux", [True, False], ids=["muxed", "separate"])
def test_rtcp_flows_with_baresip(mux: bool) -> None:
    with Answerer(f"udp:{HOST}:0", verbose=True, extra=["--media", *own_rtp_ports()]) as answerer:
        with Baresip(
            "alice", dial=answerer.uri("udp"), duration=9, rtcp_mux=mux, sip_trace=True
        ) as alice:
            alice.wait_established(timeout=10)
            alice.wait_for(TERMINATED, timeout=20)
            log = alice.log()
        stats = ast.literal_eval(wait_output(answerer, r"^media ended (.*)$").group(1))
    # Our answer carries a=rtcp-mux exactly when baresip offered it (RFC 5761 §5.1.1).
    assert len(re.findall(r"^a=rtcp-mux\r?$", log, re.M)) == (2 if mux else 0), log[-3000:]
    assert stats["rtcp_mux"] is mux, stats
    assert ("audio: RTP/RTCP multiplexing enabled" in log) is mux, log[-3000:]
    assert stats["rtcp_sent"] >= 2 and stats["rtcp_received"] >= 1, stats
    assert stats["rtt"] is not None and 0 <= stats["rtt"] < 0.5, stats
    assert stats["received"] > 300 and stats["lost"] == 0, stats
