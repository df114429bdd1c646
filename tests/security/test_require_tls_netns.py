"""Layer 3 off loopback, for real: a caller in another network namespace (a veth pair, RFC 2544
addresses) reaches `ifescalate sip answer --require-tls` bound to the host end of the veth.

SIPp in the namespace sends INVITEs over UDP and TCP: each must be answered exactly
"403 Forbidden - TLS Required" (the scenario's check fails the call otherwise). `openssl s_client`
from the same namespace, over TLS to the same host address, gets past layer 3: OPTIONS and an INVITE
are answered 200. The loopback exemption still holds on the 127.0.0.1 listener of the same process.
No `--tls-loopback-strict`: the source really is off loopback.

Namespaces need root; where they cannot be made the test fails with the reason (tests/peers/netns.py),
it never skips.
"""

from __future__ import annotations

from pathlib import Path

from tests.peers.netns import NetNs
from tests.peers.openssl_client import OpenSslClient, SipOverTls
from tests.peers.sipp import SCENARIOS, run_sipp

from .sipclient import SipClient, answerer, free_udp_tcp_port, security_stats


def test_plain_sip_from_another_host_gets_403_tls_required_and_tls_passes(
    dev_cert: tuple[Path, Path],
) -> None:
    cert, key = dev_cert
    with NetNs() as ns:
        plain = free_udp_tcp_port(ns.host_ip)
        tls = free_udp_tcp_port(ns.host_ip)
        listen = [f"udp:{ns.host_ip}:{plain}", f"tcp:{ns.host_ip}:{plain}"]
        listen.append(f"tls:{ns.host_ip}:{tls}")
        flags = ("--require-tls", "--tls-cert", str(cert), "--tls-key", str(key))
        with answerer(*flags, extra_listen=listen) as (loopback_port, out):
            for transport in ("u1", "t1"):
                result = run_sipp(
                    ["-sf", str(SCENARIOS / "uac_expect_tls_required.xml"),
                     f"{ns.host_ip}:{plain}", "-s", "bob", "-i", ns.ns_ip, "-t", transport,
                     "-m", "1", "-timeout", "20s"],
                    timeout=30,
                    prefix=ns.exec_prefix(),
                )  # fmt: skip
                assert result.ok and result.counter("SuccessfulCall") == 1, result.explain()

            uri = f"sip:bob@{ns.host_ip}:{tls};transport=tls"
            with OpenSslClient((ns.host_ip, tls), prefix=ns.exec_prefix()) as conn:
                dialog = SipOverTls(conn, uri)
                options = dialog.options()
                assert options is not None and options.status == 200, conn.log()
                ok = dialog.invite()
                assert ok is not None and ok.status == 200, conn.log()
                bye = dialog.ack_and_bye(ok)
                assert bye is not None and bye.status == 200

            # The same rule leaves loopback alone (RFC 6890 127.0.0.0/8 is this host).
            local = SipClient(("127.0.0.1", loopback_port), source="127.0.0.2")
            resp = local.request("OPTIONS")
            assert resp is not None and resp.status == 200
    stats = security_stats(out)
    assert "'transport:tls_required': 2" in stats, stats
