"""serve with ``security.trusted_proxies``: the per-expert network binding (layer 2 after digest)
and the witness act on the caller a trusted proxy names in X-IF-Source, never on a header from
anyone else.

The proxy here is a hand-written client on 127.0.0.1 (a loopback peer, so UDP is an unforgeable
hop); tests/interop/test_kamailio_edge.py runs the same path through the real Kamailio edge.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.system.test_callin import Service, _registry

from .sipclient import SDP, SipClient


def _invite(svc: Service, source: str, claimed: str | None) -> tuple[int, str] | None:
    headers = () if claimed is None else (("X-IF-Source", claimed),)
    client = SipClient(("127.0.0.1", svc.sip_port), source=source, timeout=3.0)
    try:
        resp, _ = client.authed("INVITE", "erin", "erin-secret", body=SDP, headers=headers)
    finally:
        client.close()
    return None if resp is None else (resp.status, resp.reason)


def _rejections(svc: Service) -> list[dict[str, Any]]:
    events = svc.request("GET", "/v1/witness?limit=1000", role="auditor")["events"]
    return [e["details"] for e in events if e["type"] == "SECURITY_REJECTED"]


def test_expert_networks_bind_the_caller_the_proxy_names(tmp_path: Path) -> None:
    registry = tmp_path / "experts.yaml"
    _registry(registry, 9, ["127.0.0.2/32"])  # erin calls from 127.0.0.2 only
    config = tmp_path / "config.yaml"
    config.write_text(
        f"experts_file: {registry}\nsecurity:\n  flood: 1000/10\n"
        '  trusted: ["127.0.0.1/32"]\n  trusted_proxies: ["127.0.0.1/32"]\n'
    )
    svc = Service(tmp_path / "data", config)
    try:
        # Through the proxy, from erin's network: admitted by every layer, then no escalation
        # rings her (404). From elsewhere: refused by her network binding.
        assert _invite(svc, "127.0.0.1", "udp:127.0.0.2:5070") == (
            404,
            "Not Found - No Pending Escalation",
        )
        refused = _invite(svc, "127.0.0.1", "tls:192.0.2.7:5061")
        assert refused == (403, "Forbidden - IP Not Allowlisted")
        # A caller that is not the proxy cannot claim her network; her own address decides.
        assert _invite(svc, "127.0.0.3", "udp:127.0.0.2:5070") == refused
        assert _invite(svc, "127.0.0.2", "udp:192.0.2.7:5060")[0] == 404  # type: ignore[index]
        # The proxy's malformed claim is refused, not taken as the (trusted) proxy itself.
        assert _invite(svc, "127.0.0.1", "udp:not-an-ip:5060") == (
            400,
            "Bad Request - Invalid X-IF-Source",
        )
        # Witness appends run in the background: wait (bounded) for the three refusals of the
        # gate and the escalation service's two 404s.
        deadline = time.monotonic() + 10
        while True:
            rejections = _rejections(svc)
            entries = [d for d in rejections if d["layer"] == "allowlist"]
            not_pending = [d for d in rejections if d["reason"] == "no_pending_escalation"]
            done = len(entries) >= 3 and len(not_pending) >= 2
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        # The call-in path's own refusal names the caller the proxy vouched for and the proxy
        # (as the gate's entries do), not the edge as the transport saw it.
        assert len(not_pending) == 2, not_pending
        proxied, direct = not_pending
        assert (proxied["source"], proxied["proxy"]) == ("127.0.0.2", "127.0.0.1"), proxied
        assert proxied["layer"] == "escalation" and proxied["expert_id"] is not None
        assert direct["source"].startswith("127.0.0.2:") and "proxy" not in direct, direct
        by_source = {d["source"]: d for d in entries if d["reason"] == "not_expert_network"}
        assert by_source["192.0.2.7"]["proxy"] == "127.0.0.1"  # the caller and the proxy
        assert "proxy" not in by_source["127.0.0.3"]  # a direct caller: no proxy
        bad = [d for d in entries if d["reason"] == "bad_proxy_source"]
        assert bad and bad[0]["source"] == "127.0.0.1" and bad[0]["status"] == 400
    finally:
        svc.stop()
