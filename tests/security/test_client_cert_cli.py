"""`sip answer --auth USER:PW --tls-ca CA --client-cert-fingerprint SHA256`: the one user is pinned to
a TLS client certificate; `openssl s_client` is the caller (no certificate, another one from the same
CA, the right one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.peers.openssl_client import OpenSslClient, SipOverTls
from tests.peers.tls import cert_sha256, issue_client_cert, make_ca

from .sipclient import answerer, free_udp_tcp_port, security_stats


def test_answer_pins_the_auth_user_to_a_client_certificate(
    tmp_path: Path, dev_cert: tuple[Path, Path]
) -> None:
    ca = make_ca(tmp_path)
    erin = issue_client_cert(ca, tmp_path, "erin")
    other = issue_client_cert(ca, tmp_path, "other")
    tls = free_udp_tcp_port()
    flags = ("--auth", "erin:pw", "--tls-cert", str(dev_cert[0]), "--tls-key", str(dev_cert[1]),
             "--tls-ca", str(ca[0]), "--client-cert-fingerprint", cert_sha256(erin[0]).upper())  # fmt: skip
    uri = f"sip:bob@127.0.0.1:{tls};transport=tls"
    with answerer(*flags, extra_listen=[f"tls:127.0.0.1:{tls}"]) as (_, out):
        got = []
        for cert, key in ((None, None), other, erin):
            with OpenSslClient(("127.0.0.1", tls), cert=cert, key=key) as conn:
                resp = SipOverTls(conn, uri, user="erin").invite("erin", "pw")
                assert resp is not None, conn.log()
                got.append((resp.status, resp.reason))
    assert got == [
        (403, "Forbidden - Client Certificate Required"),
        (403, "Forbidden - Client Certificate Mismatch"),
        (200, "OK"),
    ]
    stats = security_stats(out)
    assert "'transport:client_cert_required': 1" in stats
    assert "'transport:client_cert_mismatch': 1" in stats


def test_fingerprint_without_auth_or_malformed_is_a_usage_error() -> None:
    base = [sys.executable, "-m", "ifescalate.cli", "sip", "answer", "--listen", "udp:127.0.0.1:0"]
    for extra, words in (
        (["--client-cert-fingerprint", "ab" * 32], "give --auth too"),
        (["--auth", "a:b", "--client-cert-fingerprint", "abc"], "not a SHA-256 fingerprint"),
    ):
        done = subprocess.run(
            [*base, *extra], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
        assert done.returncode == 2 and words in done.stderr, done.stderr
