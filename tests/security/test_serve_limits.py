"""serve with its ``security:`` section: the per-expert limit answers 429 with Retry-After (a true
sliding window), unknown experts and wrong passwords look the same, and every rejection reaches
the witness as an aggregated SECURITY_REJECTED entry naming layer and reason."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.system.test_callin import Service, _registry

from .sipclient import SDP, SipClient, free_udp_tcp_port
from .test_slowloris import Attackers

CLI = [sys.executable, "-m", "ifescalate.cli"]


def test_serve_per_expert_limit_429_and_witnessed(tmp_path: Path) -> None:
    registry = tmp_path / "experts.yaml"
    _registry(registry, 9, ["127.0.0.0/8"])
    # The expert's own record sets their limit (it wins over security.expert_calls).
    registry.write_text(registry.read_text() + "    calls_per_minute: 3\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"experts_file: {registry}\n"
        "security:\n  flood: 1000/10\n  expert_calls: 3/60\n  lockout: 5/300\n"
    )
    svc = Service(tmp_path / "data", config)
    try:
        c = SipClient(("127.0.0.1", svc.sip_port), source="127.0.0.2", timeout=3.0)
        statuses = []
        for _ in range(3):
            resp, _ = c.authed("INVITE", "erin", "erin-secret", body=SDP)
            statuses.append(resp.status if resp else None)
        # Admitted by the security layers, then no escalation is ringing them: 404.
        assert statuses == [404, 404, 404]
        limited, _ = c.authed("INVITE", "erin", "erin-secret", body=SDP)
        assert limited is not None and (limited.status, limited.reason) == (
            429,
            "Too Many Requests",
        )
        assert 55 <= int(limited.headers.get("Retry-After") or 0) <= 60
        spoof, _ = c.authed(
            "INVITE", "erin", "erin-secret", body=SDP, headers=[("X-IF-Signature", "forged")]
        )
        assert spoof is not None and spoof.status == 429  # a forged header buys nothing
        unknown, _ = c.authed("INVITE", "nobody", "x", body=SDP)
        wrong, _ = c.authed("INVITE", "erin", "x", body=SDP)
        assert unknown is not None and wrong is not None
        assert (
            (unknown.status, unknown.reason)
            == (wrong.status, wrong.reason)
            == (
                401,
                "Unauthorized",
            )
        )
    finally:
        svc.stop()
    done = subprocess.run(
        [*CLI, "witness", "export", "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    rejected = [e for e in events if e.get("type") == "SECURITY_REJECTED"]
    layers = {(e["details"]["layer"], e["details"]["reason"]) for e in rejected}
    assert ("expert_limit", "expert_rate") in layers, rejected
    assert ("digest", "bad_credentials") in layers, rejected
    # Two 429s from one source in one window: one immediate entry + one summary (at shutdown).
    limit_entries = [e for e in rejected if e["details"]["layer"] == "expert_limit"]
    assert sum(e["details"]["count"] for e in limit_entries) == 2, limit_entries


def test_serve_sip_stream_limits_cut_a_slow_message_and_show_in_metrics(tmp_path: Path) -> None:
    registry = tmp_path / "experts.yaml"
    _registry(registry, 9, ["127.0.0.0/8"])
    config = tmp_path / "config.yaml"
    config.write_text(
        f"experts_file: {registry}\n"
        "sip:\n  message_timeout: 1.5\n  max_connections_per_peer: 2\n"
        "security:\n  flood: 1000/10\n"
    )
    tcp_port = free_udp_tcp_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--data-dir", str(tmp_path / "data"), "--config", str(config),
         "--listen", "udp:127.0.0.1:0", "--listen", f"tcp:127.0.0.1:{tcp_port}",
         "--api", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, api, tokens = "", "", {}
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "ready" not in out.splitlines():
            line = proc.stdout.readline()
            if not line:
                break
            out += line
            if m := re.match(r"api on (\S+)", line):
                api = m.group(1)
            if m := re.match(r"api token \((\w+), shown once\): (\S+)", line):
                tokens[m.group(1)] = m.group(2)
        assert api and "operator" in tokens, out
        attack = Attackers()
        try:
            socks = attack.connect(tcp_port, "127.0.0.2", 3)
            attack.dribble(socks, 0)  # the first byte of an INVITE, and never the rest
            attack.poll(4.0)
        finally:
            attack.close_all()
        lived = sorted(attack.closed[s] - attack.opened[s] for s in socks)
        assert lived[0] < 1.0 and 1.5 <= lived[1] <= lived[2] < 3.5, lived  # refused; cut at 1.5 s
        req = urllib.request.Request(api + "/metrics")
        req.add_header("Authorization", f"Bearer {tokens['operator']}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            metrics = resp.read().decode()
        assert 'sip_errors_total{kind="message_timeout"} 2.0' in metrics
        assert 'sip_errors_total{kind="connections_refused"} 1.0' in metrics
        assert "sip_stream_connections 0.0" in metrics
        assert (
            'security_rejections_total{layer="transport",reason="message_timeout"} 2.0' in metrics
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
