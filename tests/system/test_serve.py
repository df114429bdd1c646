"""`ifescalate serve` as a person starts it: embedded defaults, dev certificate, clear errors."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "ifescalate.cli"]
_LISTENING = re.compile(r"listening on (udp|tcp|tls):([^\s]+):(\d+)")


def _start_serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], dict[str, int], str]:
    proc = subprocess.Popen(
        [*CLI, "serve", "--data-dir", str(tmp_path / "data"), "--api", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    ports: dict[str, int] = {}
    seen = ""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        m = _LISTENING.search(line)
        if m:
            ports[m.group(1)] = int(m.group(3))
        if line.strip() == "ready":
            return proc, ports, seen
    proc.kill()
    raise AssertionError(f"serve did not become ready; output:\n{seen}")


def _cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def test_serve_defaults_answer_options_over_udp_and_verified_tls(tmp_path: Path) -> None:
    proc, ports, output = _start_serve(
        tmp_path, "--listen", "udp:127.0.0.1:0", "--listen", "tls:127.0.0.1:0"
    )
    try:
        cert = tmp_path / "data" / "tls" / "dev-cert.pem"
        assert f"development TLS certificate: {cert}" in output
        assert re.search(r"api on http://127\.0\.0\.1:\d+", output)
        assert "api token (council, shown once): ife_" in output
        assert cert.exists()
        assert (tmp_path / "data" / "tls" / "dev-key.pem").stat().st_mode & 0o777 == 0o600
        udp = _cli("sip", "options", f"sip:probe@127.0.0.1:{ports['udp']}")
        assert udp.returncode == 0, udp.stdout + udp.stderr
        assert "200 OK" in udp.stdout
        tls = _cli(
            "sip",
            "options",
            f"sip:probe@127.0.0.1:{ports['tls']};transport=tls",
            "--tls-ca",
            str(cert),
        )
        assert tls.returncode == 0, tls.stdout + tls.stderr
        assert "200 OK" in tls.stdout
        # Without the CA the self-signed certificate must be refused, with a clear reason.
        unverified = _cli("sip", "options", f"sip:probe@127.0.0.1:{ports['tls']};transport=tls")
        assert unverified.returncode != 0
        assert "certificate verify failed" in unverified.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "stopping" in out


def test_serve_reuses_its_certificate_and_prints_tokens_once(tmp_path: Path) -> None:
    proc, _, first = _start_serve(tmp_path, "--listen", "tls:127.0.0.1:0")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=15)
    cert = (tmp_path / "data" / "tls" / "dev-cert.pem").read_bytes()
    proc, _, second = _start_serve(tmp_path, "--listen", "tls:127.0.0.1:0")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=15)
    assert (tmp_path / "data" / "tls" / "dev-cert.pem").read_bytes() == cert
    assert "shown once" in first
    assert "shown once" not in second


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("sip:\n  listne: []\n", "unknown setting 'listne'"),
        ("- just\n- a list\n", "must be a mapping"),
        ("sip:\n  listen: udp:127.0.0.1:5060\n", "sip.listen: expected list, got str"),
        ("sip: [unclosed\n", "cannot read config"),
        ("escalation:\n  ring_timeout: soon\n", "ring_timeout: expected float, got str"),
    ],
)
def test_serve_rejects_bad_config_with_a_reason(tmp_path: Path, config: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(config)
    done = _cli("serve", "--config", str(path), "--data-dir", str(tmp_path / "d"))
    assert done.returncode == 2
    assert message in done.stderr


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    bad_listen = _cli("sip", "answer", "--listen", "udp:nowhere")
    assert bad_listen.returncode == 2
    assert "listen address needs HOST:PORT" in bad_listen.stderr
    no_cert = _cli("sip", "answer", "--listen", "tls:127.0.0.1:0")
    assert no_cert.returncode == 2
    assert "needs --tls-cert and --tls-key" in no_cert.stderr
    bad_auth = _cli("sip", "answer", "--listen", "udp:127.0.0.1:0", "--auth", "nopassword")
    assert bad_auth.returncode == 2
    assert "USER:PASSWORD" in bad_auth.stderr
    # Nothing listens on this TCP port: the connection is refused at once, and said so.
    refused = _cli("sip", "call", "sip:x@127.0.0.1:9;transport=tcp")
    assert refused.returncode == 2
    assert "ifescalate: error:" in refused.stderr
