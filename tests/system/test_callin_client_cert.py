"""An expert pinned to a TLS client certificate calls in through `openssl s_client` (a real TLS peer).

`serve` listens on TLS with `sip.tls_client_ca` (a test CA); the registry pins erin to her certificate
by SHA-256. Over real TLS sessions: no client certificate -> 403 Client Certificate Required, a
certificate from the same CA that is not erin's -> 403 Client Certificate Mismatch (both after a
correct digest answer, so the certificate is what is refused), a certificate from no trusted CA ->
the handshake itself fails, and erin's own -> 200, she joins the escalation. Each refusal is a
SECURITY_REJECTED witness entry and a metric with its own label.
"""

from __future__ import annotations

import re
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ifescalate.sip.digest import ha1
from tests.peers import PeerError
from tests.peers.openssl_client import OpenSslClient, SipOverTls
from tests.peers.tls import cert_sha256, dev_tls_cert, issue_client_cert, make_ca

from .conftest import HOST, Service, assert_chain_ok

REALM = "ifescalate"


def erin_registry(tmp_path: Path, sip_uri: str, pins: list[str], **fields: Any) -> Path:
    """experts.yaml with the one expert erin, pinned to ``pins``, plus any other ``fields``."""
    erin = {
        "id": "erin",
        "name": "Erin Example",
        "sip_uri": sip_uri,
        "org": "example-lab",
        "specializations": ["safety"],
        "cert_fingerprints": pins,
        **fields,
    }
    registry = tmp_path / "experts.yaml"
    registry.write_text(yaml.safe_dump({"experts": [erin]}))
    return registry


@pytest.fixture(params=["gate", "service"])
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, dev_cert: tuple[Path, Path]
) -> Iterator[tuple[Service, Path]]:
    """serve with the security gate in front (the default), or with it switched off so the
    call-in path's own check (escalation.callin.cert_rejection) is what refuses."""
    certs = tmp_path / "certs"
    ca = make_ca(certs)
    erin = issue_client_cert(ca, certs, "erin")
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # rings forever, never answers
    silent.bind((HOST, 0))
    registry = erin_registry(
        tmp_path,
        f"sip:erin@{HOST}:{silent.getsockname()[1]}",
        [cert_sha256(erin[0])],
        networks=["127.0.0.0/8"],
        availability=["always"],
        calls_per_minute=100,
        digest={
            "username": "erin",
            "realm": REALM,
            "ha1_sha256": ha1("erin", REALM, "erin-secret", "SHA-256"),
        },
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "experts_file": str(registry),
                "escalation": {"ring_timeout": 60, "deadline": 120},
                "media": {"enabled": False},
                "security": {"enabled": request.param == "gate"},
                "sip": {
                    "tls_cert": str(dev_cert[0]),
                    "tls_key": str(dev_cert[1]),
                    "tls_client_ca": str(ca[0]),
                },
            }
        )
    )
    svc = Service(tmp_path / "data", config, listen=[f"udp:{HOST}:0", f"tls:{HOST}:0"])
    with svc:
        yield svc, certs
    silent.close()
    assert_chain_ok(tmp_path / "data")


def _tls_port(svc: Service) -> int:
    m = re.search(r"^listening on tls:\S+:(\d+)$", svc.output(), re.MULTILINE)
    assert m is not None, svc.output()
    return int(m.group(1))


def _metrics(svc: Service) -> str:
    req = urllib.request.Request(
        svc.api_url + "/metrics", headers={"Authorization": f"Bearer {svc.tokens['auditor']}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(resp.read().decode())


def test_pinned_expert_calls_in_only_with_her_certificate(
    setup: tuple[Service, Path], tmp_path: Path
) -> None:
    svc, certs = setup
    port = _tls_port(svc)
    uri = f"sip:ifescalate@{HOST}:{port};transport=tls"
    esc = svc.escalate()
    svc.wait_state(esc["id"], "ringing")
    selector = f"X-IF-Escalation-ID: {esc['id']}"

    with OpenSslClient((HOST, port)) as conn:
        resp = SipOverTls(conn, uri, user="erin").invite("erin", "erin-secret", selector)
    assert resp is not None and (resp.status, resp.reason) == (
        403,
        "Forbidden - Client Certificate Required",
    ), conn.log()

    # Same CA, so the handshake passes; the certificate is simply not erin's.
    mallory = issue_client_cert(
        (certs / "test-ca-cert.pem", certs / "test-ca-key.pem"), certs, "mallory"
    )
    with OpenSslClient((HOST, port), cert=mallory[0], key=mallory[1]) as conn:
        resp = SipOverTls(conn, uri, user="erin").invite("erin", "erin-secret", selector)
    assert resp is not None and (resp.status, resp.reason) == (
        403,
        "Forbidden - Client Certificate Mismatch",
    ), conn.log()

    # A certificate no trusted CA signed never gets a TLS session, let alone a SIP answer.
    stranger = dev_tls_cert(tmp_path / "stranger", common_name="erin", stem="stranger")
    with OpenSslClient((HOST, port), cert=stranger[0], key=stranger[1]) as conn:
        try:
            refused = SipOverTls(conn, uri, user="erin").invite("erin", "erin-secret", selector)
        except PeerError:  # s_client already gone: the write hit a closed pipe
            refused = None
        assert refused is None
        assert conn.wait_closed(5.0)
        # TLS 1.3: the client finishes first, then the server drops the unverifiable session.
        assert re.search(r"alert|unexpected eof|errno=104", conn.log(), re.I), conn.log()
    assert svc.escalation(esc["id"])["state"] == "ringing"

    erin = (certs / "erin-cert.pem", certs / "erin-key.pem")
    with OpenSslClient((HOST, port), cert=erin[0], key=erin[1]) as conn:
        dialog = SipOverTls(conn, uri, user="erin")
        ok = dialog.invite("erin", "erin-secret", selector)
        assert ok is not None and ok.status == 200, (ok, conn.log())
        view = svc.wait_state(esc["id"], "connected")
        assert view["connected_expert"] == "erin"
        bye = dialog.ack_and_bye(ok)
        assert bye is not None and bye.status == 200
    view = svc.wait_state(esc["id"], "ended")
    assert view["outcome"] == "completed"

    _, page = svc.request("GET", "/v1/witness?limit=1000", role="auditor")
    rejected = [e["details"] for e in page["events"] if e["type"] == "SECURITY_REJECTED"]
    reasons = {(d["layer"], d["reason"]) for d in rejected}
    assert ("transport", "client_cert_required") in reasons, rejected
    assert ("transport", "client_cert_mismatch") in reasons, rejected
    metrics = _metrics(svc)
    for label in ("client_cert_required", "client_cert_mismatch"):
        assert f'security_rejections_total{{layer="transport",reason="{label}"}} 1' in metrics


def test_pins_without_a_client_ca_are_reported_at_start(tmp_path: Path) -> None:
    registry = erin_registry(tmp_path, f"sip:erin@{HOST}:5999", ["ab" * 32])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"experts_file": str(registry)}))
    with Service(tmp_path / "data", config) as svc:
        assert "experts erin pin TLS client certificates but sip.tls_client_ca is not set" in (
            svc.output()
        )
    assert_chain_ok(tmp_path / "data")
