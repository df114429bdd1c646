"""An expert calls in: digest against the registry's HA1, allowlisted source, joins their escalation."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ifescalate.sip.digest import ha1

CLI = [sys.executable, "-m", "ifescalate.cli"]


def _silent_udp_port() -> tuple[socket.socket, int]:
    """A bound UDP socket that never answers: the outbound INVITE to the expert rings forever."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def _registry(path: Path, expert_port: int, networks: list[str]) -> None:
    digest = ha1("erin", "ifescalate", "erin-secret", "SHA-256")
    path.write_text(
        f"""experts:
  - id: erin
    name: Erin Example
    sip_uri: sip:erin@127.0.0.1:{expert_port}
    org: example-lab
    networks: {json.dumps(networks)}
    specializations: [safety]
    clearance: 3
    availability: [always]
    digest:
      username: erin
      realm: ifescalate
      ha1_sha256: {digest}
"""
    )


class Service:
    def __init__(self, data_dir: Path, config: Path) -> None:
        self.proc = subprocess.Popen(
            [*CLI, "serve", "--data-dir", str(data_dir), "--config", str(config),
             "--listen", "udp:127.0.0.1:0", "--api", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            text=True, start_new_session=True,
        )  # fmt: skip
        self.output = ""
        self.sip_port = 0
        self.api = ""
        self.token = ""
        self.tokens: dict[str, str] = {}
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output += line
            if m := re.match(r"listening on udp:127\.0\.0\.1:(\d+)", line):
                self.sip_port = int(m.group(1))
            if m := re.match(r"api on (\S+)", line):
                self.api = m.group(1)
            if m := re.match(r"api token \((\w+), shown once\): (\S+)", line):
                self.tokens[m.group(1)] = m.group(2)
                self.token = self.tokens.get("council", "")
            if line.strip() == "ready":
                return
        self.proc.kill()
        raise AssertionError(f"serve did not start:\n{self.output}")

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, role: str = "council"
    ) -> Any:
        req = urllib.request.Request(
            self.api + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": f"Bearer {self.tokens[role]}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def wait_state(self, esc_id: str, state: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        view: dict[str, Any] = {}
        while time.monotonic() < deadline:
            view = self.request("GET", f"/v1/escalations/{esc_id}")
            if view["state"] == state:
                return view
            time.sleep(0.1)
        raise AssertionError(f"escalation never reached {state}: {view}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Path, Path, int]]:
    sock, port = _silent_udp_port()
    config = tmp_path / "config.yaml"
    registry = tmp_path / "experts.yaml"
    config.write_text(
        f"experts_file: {registry}\nescalation:\n  ring_timeout: 30\n  deadline: 60\n"
    )
    yield tmp_path, registry, port
    sock.close()


def _call(sip_port: int, auth: str, *headers: str, hangup_after: float = 1.0) -> str:
    argv = [*CLI, "sip", "call", f"sip:ifescalate@127.0.0.1:{sip_port}", "--auth", auth,
            "--hangup-after", str(hangup_after)]  # fmt: skip
    for h in headers:
        argv += ["--header", h]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )
    return done.stdout + done.stderr


def _verify(data_dir: Path) -> str:
    done = subprocess.run(
        [*CLI, "witness", "verify", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_expert_calls_in_and_joins_their_escalation(setup: tuple[Path, Path, int]) -> None:
    tmp, registry, port = setup
    _registry(registry, port, ["127.0.0.0/8"])
    svc = Service(tmp / "data", tmp / "config.yaml")
    try:
        esc = svc.request("POST", "/v1/escalations", {"hazard": "safety", "question": "Deploy?"})
        svc.wait_state(esc["id"], "ringing")
        wrong = _call(svc.sip_port, "erin:wrong-password", f"X-IF-Escalation-ID: {esc['id']}")
        assert "call failed: 401" in wrong
        out = _call(svc.sip_port, "erin:erin-secret", f"X-IF-Escalation-ID: {esc['id']}")
        assert "answered 200" in out, out
        view = svc.wait_state(esc["id"], "ended")
        assert view["outcome"] == "completed"
        assert view["connected_expert"] == "erin"
        events = svc.request("GET", f"/v1/witness?escalation_id={esc['id']}", role="auditor")
        types = [e["type"] for e in events["events"]]
        assert "CONNECTED" in types and types[-1] == "TERMINATED"
    finally:
        svc.stop()
    assert "OK:" in _verify(tmp / "data")


def test_call_in_refused_from_outside_the_allowlist(setup: tuple[Path, Path, int]) -> None:
    tmp, registry, port = setup
    _registry(registry, port, ["192.0.2.0/24"])  # not loopback: our caller is not allowed
    svc = Service(tmp / "data", tmp / "config.yaml")
    try:
        esc = svc.request("POST", "/v1/escalations", {"hazard": "safety", "question": "Deploy?"})
        svc.wait_state(esc["id"], "ringing")
        out = _call(svc.sip_port, "erin:erin-secret")
        assert "call failed: 403 Forbidden - IP Not Allowlisted" in out, out
        assert svc.request("GET", f"/v1/escalations/{esc['id']}")["state"] == "ringing"
        events = svc.request("GET", "/v1/witness?limit=1000", role="auditor")["events"]
        rejected = [e for e in events if e["type"] == "SECURITY_REJECTED"]
        assert rejected and rejected[-1]["details"]["layer"] == "allowlist"
    finally:
        svc.stop()
    _verify(tmp / "data")


def test_call_in_for_someone_elses_escalation_id_is_refused(setup: tuple[Path, Path, int]) -> None:
    tmp, registry, port = setup
    _registry(registry, port, ["127.0.0.0/8"])
    svc = Service(tmp / "data", tmp / "config.yaml")
    try:
        esc = svc.request("POST", "/v1/escalations", {"hazard": "safety", "question": "Deploy?"})
        svc.wait_state(esc["id"], "ringing")
        out = _call(svc.sip_port, "erin:erin-secret", "X-IF-Escalation-ID: not-an-escalation")
        assert "call failed: 404" in out, out
        assert svc.request("GET", f"/v1/escalations/{esc['id']}")["state"] == "ringing"
    finally:
        svc.stop()
