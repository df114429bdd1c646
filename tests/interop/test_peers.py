"""The real-peer helpers themselves, run for real: if these fail, every interop test built on them is void."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import time
from pathlib import Path
from typing import Literal

import pytest

from tests.peers import (
    SCENARIOS,
    Baresip,
    Kamailio,
    OpenSslServer,
    PeerError,
    ProxyTls,
    SippProcess,
    Stunnel,
    dev_tls_cert,
    free_port,
    port_is_bound,
    proxy_config,
    read_wav_samples,
    rms,
    run_sipp,
    wait_port,
)

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"


def _uas(port: int, *, transport: str = "u1") -> SippProcess:
    """SIPp answering with the Record-Route-aware scenario on HOST:port."""
    args = ["-sf", str(SCENARIOS / "uas_rr.xml"), "-i", HOST, "-p", str(port), "-t", transport]
    kind: Literal["udp", "tcp"] = "udp" if transport.startswith("u") else "tcp"
    return SippProcess(args, listen=(HOST, port, kind), name="sipp-uas")


def _uac_args(target: str, calls: int, *, transport: str = "u1") -> list[str]:
    return [
        "-sf", str(SCENARIOS / "uac_rr.xml"), target, "-s", "bob", "-i", HOST,
        "-p", str(free_port("both")), "-t", transport, "-m", str(calls), "-r", "20", "-d", "100",
    ]  # fmt: skip


# -- ports ---------------------------------------------------------------------------------------


def test_free_port_is_bindable_and_wait_port_sees_a_bound_socket() -> None:
    port = free_port("both")
    assert not port_is_bound(HOST, port, "udp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((HOST, port))
        wait_port(HOST, port, "udp", timeout=1.0)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind((HOST, port))
        # Bound but not listening is not "ready" for TCP.
        assert not port_is_bound(HOST, port, "tcp")
        tcp.listen()
        wait_port(HOST, port, "tcp", timeout=1.0)


def test_wait_port_times_out_on_an_unbound_port() -> None:
    with pytest.raises(PeerError, match="not bound after"):
        wait_port(HOST, free_port("udp"), "udp", timeout=0.2)


# -- SIPp ----------------------------------------------------------------------------------------


def test_sipp_uac_completes_calls_against_sipp_uas() -> None:
    port = free_port("both")
    with _uas(port) as uas:
        result = run_sipp(_uac_args(f"{HOST}:{port}", 10), timeout=30)
    assert result.ok, result.explain()
    assert (result.successful, result.failed, result.created) == (10, 0, 10)
    assert result.call_rate > 0
    assert uas.result is not None
    assert uas.result.successful == 10, uas.result.explain()


def test_sipp_result_counts_failed_calls() -> None:
    # Nothing listens on the target: the INVITE goes unanswered and the call fails after -recv_timeout.
    args = ["-sn", "uac", f"{HOST}:{free_port('udp')}", "-i", HOST, "-p", str(free_port("both"))]
    result = run_sipp([*args, "-m", "1", "-recv_timeout", "500"], timeout=30)
    assert not result.ok
    assert result.returncode == 1
    assert (result.successful, result.failed) == (0, 1), result.explain()


def test_run_sipp_kills_an_overrunning_sipp() -> None:
    args = ["-sn", "uas", "-i", HOST, "-p", str(free_port("both"))]  # a UAS never ends by itself
    started = time.monotonic()
    with pytest.raises(PeerError, match=r"did not finish within 1\.0 s"):
        run_sipp(args, timeout=1.0)
    assert time.monotonic() - started < 10


# -- Kamailio ------------------------------------------------------------------------------------


def test_kamailio_check_rejects_a_broken_config(tmp_path: Path) -> None:
    port = free_port("both")
    broken = "#!KAMAILIO\nrequest_route {\n"
    kamailio = Kamailio(broken, wait_for=(HOST, port, "udp"), workdir=tmp_path)
    with pytest.raises(PeerError, match="kamailio -c rejected"):
        kamailio.check()


def test_kamailio_proxy_relays_calls_and_stays_on_the_path() -> None:
    uas_port, proxy_port = free_port("both"), free_port("both")
    config = proxy_config(port=proxy_port, target=(HOST, uas_port, "udp"), log_requests=True)
    with (
        _uas(uas_port) as uas,
        Kamailio(config, wait_for=(HOST, proxy_port, "udp")) as kamailio,
    ):
        result = run_sipp(_uac_args(f"{HOST}:{proxy_port}", 10), timeout=60)
        log = kamailio.log()
    assert result.ok, result.explain()
    assert result.successful == 10
    assert uas.result is not None and uas.result.successful == 10, uas.result
    # ACK and BYE came through the proxy with its Record-Route as Route (RFC 3261 section 16.12).
    routed = re.findall(rf"REQUEST (ACK|BYE) \S+ route=<sip:{re.escape(HOST)}:{proxy_port};lr", log)
    assert routed.count("ACK") == 10, log[-3000:]
    assert routed.count("BYE") == 10, log[-3000:]


def _udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(5.0)
    return sock


def test_kamailio_answers_options_addressed_to_itself() -> None:
    proxy_port = free_port("both")
    config = proxy_config(port=proxy_port, target=(HOST, free_port("udp"), "udp"))
    with Kamailio(config, wait_for=(HOST, proxy_port, "udp")), _udp_socket() as sock:
        local_port = sock.getsockname()[1]
        request = (
            f"OPTIONS sip:{HOST}:{proxy_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{local_port};branch=z9hG4bK-peers-{os.getpid()}\r\n"
            f"From: <sip:probe@{HOST}>;tag=1\r\nTo: <sip:{HOST}:{proxy_port}>\r\n"
            f"Call-ID: options-{os.getpid()}@{HOST}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), (HOST, proxy_port))
        reply = sock.recv(65535).decode()
    assert reply.startswith("SIP/2.0 200 OK\r\n"), reply


def test_kamailio_tls_listener_through_stunnel(dev_cert: tuple[Path, Path]) -> None:
    # SIPp (TCP) -> stunnel -> Kamailio TLS -> UDP -> SIPp: the path TLS load tests take.
    cert, key = dev_cert
    uas_port, proxy_port, tls_port = free_port("both"), free_port("both"), free_port("tcp")
    tls = ProxyTls(cert=cert, key=key, port=tls_port)
    config = proxy_config(
        port=proxy_port, target=(HOST, uas_port, "udp"), tls=tls, log_requests=True
    )
    with (
        _uas(uas_port) as uas,
        Kamailio(config, wait_for=(HOST, tls_port, "tcp"), tls=tls) as kamailio,
        Stunnel((HOST, tls_port), ca=cert, verify_ip=HOST) as tunnel,
    ):
        target = f"{tunnel.address[0]}:{tunnel.address[1]}"
        result = run_sipp(_uac_args(target, 5, transport="t1"), timeout=60)
        log = kamailio.log()
    assert result.ok, result.explain()
    assert uas.result is not None and uas.result.successful == 5, uas.result
    assert len(re.findall(r"REQUEST INVITE \S+ route=\S* from tls:", log)) == 5, log[-3000:]
    # Double Record-Route (TLS side, UDP side): the BYE is routed by the TLS-side entry first.
    tls_route = rf"route=<sip:{re.escape(HOST)}:{tls_port};transport=tls;r2=on;lr"
    assert len(re.findall(rf"REQUEST BYE \S+ {tls_route}.* from tls:", log)) == 5, log[-3000:]


def test_kamailio_forwards_over_tls_to_baresip(dev_cert: tuple[Path, Path], tone_wav: Path) -> None:
    # SIPp (UDP) -> Kamailio -> TLS -> baresip: the proxy as a TLS client, the way it reaches a phone.
    cert, key = dev_cert
    proxy_port = free_port("both")
    tls = ProxyTls(cert=cert, key=key, port=free_port("tcp"))
    with Baresip("bob", duration=30, tls=dev_cert, transport="tls", audio=tone_wav) as bob:
        config = proxy_config(port=proxy_port, target=(HOST, bob.tls_port, "tls"), tls=tls)
        with Kamailio(config, wait_for=(HOST, proxy_port, "udp"), tls=tls):
            result = run_sipp(_uac_args(f"{HOST}:{proxy_port}", 2), timeout=60)
        assert result.ok, result.explain()
        assert bob.log().count("Call established") == 2, bob.log()[-3000:]


def test_kamailio_start_fails_when_a_worker_cannot_initialise(
    dev_cert: tuple[Path, Path], tmp_path: Path
) -> None:
    # The sockets are bound before tls loads the certificate in each worker: waiting for the port alone
    # would report a dead proxy as started.
    cert, _ = dev_cert
    proxy_port = free_port("both")
    tls = ProxyTls(cert=cert, key=tmp_path / "missing-key.pem", port=free_port("tcp"))
    config = proxy_config(port=proxy_port, target=(HOST, free_port("udp"), "udp"), tls=tls)
    with (
        pytest.raises(PeerError, match=r"exited .* before logging 'kamailio-ready'"),
        Kamailio(config, wait_for=(HOST, proxy_port, "udp"), tls=tls, workdir=tmp_path),
    ):
        pass


def test_kamailio_dying_during_use_is_an_error(tmp_path: Path) -> None:
    proxy_port = free_port("both")
    config = proxy_config(port=proxy_port, target=(HOST, free_port("udp"), "udp"))
    with (
        pytest.raises(PeerError, match="kamailio exited with status"),
        Kamailio(config, wait_for=(HOST, proxy_port, "udp"), workdir=tmp_path) as kamailio,
    ):
        os.killpg(kamailio.process.pid, signal.SIGKILL)
        kamailio.process.wait(timeout=5)


# -- stunnel and openssl ---------------------------------------------------------------------------


def _exchange(address: tuple[str, int], payload: bytes) -> bytes:
    """Send one line through the tunnel, return what came back before the tunnel closed (b"" on reset)."""
    received = b""
    with socket.create_connection(address, timeout=5) as conn:
        try:
            conn.sendall(payload)
        except (ConnectionResetError, BrokenPipeError):
            return received  # stunnel already dropped the connection (verification failed)
        while not received.endswith(b"\n"):
            try:
                chunk = conn.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return received


def test_stunnel_carries_tcp_over_verified_tls(dev_cert: tuple[Path, Path]) -> None:
    cert, key = dev_cert
    with (
        OpenSslServer(cert, key) as server,
        Stunnel((server.host, server.port), ca=cert, verify_ip=HOST) as tunnel,
    ):
        assert _exchange(tunnel.address, b"hello over tls\n") == b"slt revo olleh\n"
        assert "Certificate accepted" in tunnel.log()


def test_stunnel_refuses_a_server_it_cannot_verify(
    dev_cert: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = dev_cert
    other_ca, _ = dev_tls_cert(tmp_path, stem="other")
    with (
        OpenSslServer(cert, key) as server,
        Stunnel((server.host, server.port), ca=other_ca) as tunnel,
    ):
        assert _exchange(tunnel.address, b"hello\n") == b""
        assert "certificate verify failed" in tunnel.log()


def test_dev_tls_cert_verifies_by_ip_and_name_with_python_ssl(dev_cert: tuple[Path, Path]) -> None:
    cert, key = dev_cert
    context = ssl.create_default_context(cafile=str(cert))
    with OpenSslServer(cert, key) as server:
        for name in ("127.0.0.1", "localhost"):
            with (
                socket.create_connection((server.host, server.port), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname=name) as conn,
            ):
                assert conn.version() in ("TLSv1.2", "TLSv1.3")
                conn.sendall(b"abc\n")
                assert conn.recv(16) == b"cba\n"
        with (
            socket.create_connection((server.host, server.port), timeout=5) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            context.wrap_socket(raw, server_hostname="example.org")


# -- baresip -------------------------------------------------------------------------------------


def test_two_baresips_call_each_other_over_udp(tone_wav: Path) -> None:
    with Baresip("bob", record=True, duration=30, audio=tone_wav) as bob:
        with Baresip("alice", dial=bob.uri, duration=3, audio=tone_wav) as alice:
            assert alice.wait_established(timeout=10) == bob.uri
            assert bob.wait_established(timeout=5) == f"sip:alice@{HOST}"  # alice's From URI
            alice.wait_exit(timeout=15)  # -t 3: alice hangs up, BYE reaches bob
        bob.wait_for(r"terminated \(duration: \d+ secs\)", timeout=10)
        recordings = bob.recordings("dec")
        assert len(recordings) == 1
        received = read_wav_samples(recordings[0])
        # Bob heard about alice's 3 s of 440 Hz tone (amplitude 8000 -> RMS ~5657) through PCMU.
        assert len(received) > 8000 * 2
        assert 4000 < rms(received) < 7000


def test_baresip_tls_with_mandatory_srtp(dev_cert: tuple[Path, Path], tone_wav: Path) -> None:
    common = {"tls": dev_cert, "transport": "tls", "srtp": True, "audio": tone_wav}
    with Baresip("bob", duration=30, sip_trace=True, **common) as bob:  # type: ignore[arg-type]
        assert bob.uri == f"sip:bob@{HOST}:{bob.tls_port};transport=tls"
        with Baresip("alice", dial=bob.uri, duration=2, **common) as alice:  # type: ignore[arg-type]
            alice.wait_established(timeout=10)
            bob.wait_established(timeout=5)
        log = bob.log()
    # baresip's -s trace: "TLS src -> dst" then the message. The INVITE came over TLS to bob's TLS port
    # and offered SDES-SRTP (RFC 4568): RTP/SAVP with an a=crypto line.
    invite = re.search(
        rf"^TLS {re.escape(HOST)}:\d+ -> {re.escape(HOST)}:{bob.tls_port}\n"
        rf"INVITE {re.escape(bob.uri)} SIP/2\.0\n(?:.+\n)+?\nv=0\n(?:.+\n)*?m=audio \d+ RTP/SAVP ",
        log,
        re.M,
    )
    assert invite is not None, log[-3000:]
    assert re.search(r"^a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:", log, re.M)
    assert "starting mediaenc 'srtp-mand'" in log
