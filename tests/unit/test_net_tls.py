"""TLS for SIP on loopback: the server context's floor and suites, client certificates, TlsFacts.

Every refusal is paired with a control: the same client against a permissive server succeeds, so a
refusal means our context refused, not that this OpenSSL cannot speak the old protocol at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from tests.peers.tls import dev_tls_cert

from ifescalate.net.endpoint import SipEndpoint, Target
from ifescalate.net.tls import (
    STRONG_TLS12_CIPHERS,
    TlsConfigError,
    TlsOptions,
    client_context,
    server_context,
)
from ifescalate.net.transport import ListenSpec, Source, StreamLimits
from ifescalate.net.ua import UaConfig, UserAgent
from ifescalate.sip.message import Request
from ifescalate.sip.transaction import Timers

pytestmark = pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 10.0) -> T:
    async def main() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A second self-signed certificate, for the client side."""
    return dev_tls_cert(tmp_path_factory.mktemp("client-cert"), common_name="expert", stem="client")


def _sha256_of(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def _old_client(
    max_version: ssl.TLSVersion,
    ciphers: str = "ALL:@SECLEVEL=0",
    cert: tuple[Path, Path] | None = None,
) -> ssl.SSLContext:
    """A client that will speak whatever it is allowed to, down to TLS 1.0 and CBC/SHA-1 suites."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = max_version
    ctx.set_ciphers(ciphers)
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def _permissive_server(cert: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


@contextlib.asynccontextmanager
async def tls_endpoint(
    ctx: ssl.SSLContext, limits: StreamLimits | None = None
) -> AsyncIterator[tuple[SipEndpoint, UserAgent, int]]:
    ua = UserAgent(UaConfig(user="bob"))
    ep = SipEndpoint(ua, timers=Timers(t1=0.05), limits=limits or StreamLimits())
    ua.attach(ep)
    bound = await ep.listen(ListenSpec("TLS", "127.0.0.1", 0), ctx)
    try:
        yield ep, ua, bound.port
    finally:
        await ep.close()


async def _handshake(port: int, ctx: ssl.SSLContext) -> tuple[str, str] | None:
    """Version and cipher if the server accepted the session, None if it refused it.

    With TLS 1.3 a server that wants a client certificate refuses after the client finished its
    half of the handshake, so a session only counts once an OPTIONS got its answer over it.
    """
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    except (ssl.SSLError, ConnectionResetError):
        return None
    try:
        writer.write(_options())
        data = await asyncio.wait_for(reader.read(65535), 2)
    except (ssl.SSLError, ConnectionResetError):
        return None
    finally:
        writer.close()
    if not data.startswith(b"SIP/2.0 200"):
        return None
    sslobj = writer.get_extra_info("ssl_object")
    return sslobj.version(), sslobj.cipher()[0]


def _options() -> bytes:
    return (
        b"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK-tls1;rport\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\n"
        b"Call-ID: tls1@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )


async def _control(cert: tuple[Path, Path], client: ssl.SSLContext) -> str:
    """Prove ``client`` can connect to a server that allows everything; return the version used."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=_permissive_server(cert))
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    version: str = writer.get_extra_info("ssl_object").version()
    writer.close()
    server.close()
    return version


# ------------------------------------------------------------------------- protocol floor


@pytest.mark.parametrize(
    ("max_version", "name"),
    [(ssl.TLSVersion.TLSv1, "TLSv1"), (ssl.TLSVersion.TLSv1_1, "TLSv1.1")],
)
def test_server_refuses_tls_1_0_and_1_1(
    max_version: ssl.TLSVersion, name: str, dev_cert: tuple[Path, Path]
) -> None:
    async def main() -> None:
        assert await _control(dev_cert, _old_client(max_version)) == name
        ctx = server_context(TlsOptions(cert_file=dev_cert[0], key_file=dev_cert[1]))
        async with tls_endpoint(ctx) as (ep, _, port):
            assert await _handshake(port, _old_client(max_version)) is None
            assert ep.connections == {}

    run(main())


@pytest.mark.parametrize(
    ("max_version", "name"),
    [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")],
)
def test_server_accepts_tls_1_2_and_1_3(
    max_version: ssl.TLSVersion, name: str, dev_cert: tuple[Path, Path]
) -> None:
    async def main() -> None:
        ctx = server_context(TlsOptions(cert_file=dev_cert[0], key_file=dev_cert[1]))
        async with tls_endpoint(ctx) as (_, _, port):
            got = await _handshake(port, _old_client(max_version, "DEFAULT"))
            assert got is not None and got[0] == name

    run(main())


# ------------------------------------------------------------------------------- cipher suites


@pytest.mark.parametrize(
    "weak",
    ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA256"],
)
def test_server_refuses_cbc_suites_on_tls_1_2(weak: str, dev_cert: tuple[Path, Path]) -> None:
    async def main() -> None:
        client = _old_client(ssl.TLSVersion.TLSv1_2, f"{weak}:@SECLEVEL=0")
        assert await _control(dev_cert, client) == "TLSv1.2"
        ctx = server_context(TlsOptions(cert_file=dev_cert[0], key_file=dev_cert[1]))
        async with tls_endpoint(ctx) as (_, _, port):
            assert await _handshake(port, client) is None

    run(main())


@pytest.mark.parametrize(
    "strong",
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ],
)
def test_server_accepts_aead_ecdhe_suites(strong: str, dev_cert: tuple[Path, Path]) -> None:
    async def main() -> None:
        ctx = server_context(TlsOptions(cert_file=dev_cert[0], key_file=dev_cert[1]))
        async with tls_endpoint(ctx) as (_, _, port):
            got = await _handshake(port, _old_client(ssl.TLSVersion.TLSv1_2, strong))
            assert got == ("TLSv1.2", strong)

    run(main())


def test_contexts_offer_only_aead_suites_with_forward_secrecy(dev_cert: tuple[Path, Path]) -> None:
    for ctx in (
        server_context(TlsOptions(cert_file=dev_cert[0], key_file=dev_cert[1])),
        client_context(TlsOptions(ca_file=dev_cert[0])),
    ):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        assert ctx.options & ssl.OP_NO_COMPRESSION
        suites = ctx.get_ciphers()
        tls12 = [c for c in suites if c["protocol"] == "TLSv1.2"]
        assert {c["name"] for c in tls12} == set(STRONG_TLS12_CIPHERS.split(":"))
        assert all(
            c["aead"] and c["kea"] == "kx-ecdhe" for c in suites if c["protocol"] == "TLSv1.2"
        )
        assert all(c["aead"] for c in suites)


# ------------------------------------------------------------------------- client certificates


def test_required_client_cert_refuses_a_client_without_one(
    dev_cert: tuple[Path, Path], client_cert: tuple[Path, Path]
) -> None:
    async def main() -> None:
        opts = TlsOptions(
            cert_file=dev_cert[0],
            key_file=dev_cert[1],
            ca_file=client_cert[0],
            require_client_cert=True,
        )
        async with tls_endpoint(server_context(opts)) as (_, _, port):
            for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
                assert await _handshake(port, _old_client(version, "DEFAULT")) is None

    run(main())


def test_required_client_cert_refuses_a_cert_from_another_ca(
    dev_cert: tuple[Path, Path], client_cert: tuple[Path, Path]
) -> None:
    async def main() -> None:
        opts = TlsOptions(
            cert_file=dev_cert[0],
            key_file=dev_cert[1],
            ca_file=client_cert[0],
            require_client_cert=True,
        )
        async with tls_endpoint(server_context(opts)) as (_, _, port):
            stranger = _old_client(ssl.TLSVersion.TLSv1_3, "DEFAULT", cert=dev_cert)
            assert await _handshake(port, stranger) is None

    run(main())


def test_required_client_cert_accepts_a_trusted_one_and_reports_its_fingerprint(
    dev_cert: tuple[Path, Path], client_cert: tuple[Path, Path]
) -> None:
    async def main() -> None:
        opts = TlsOptions(
            cert_file=dev_cert[0],
            key_file=dev_cert[1],
            ca_file=client_cert[0],
            require_client_cert=True,
        )
        async with tls_endpoint(server_context(opts)) as (_ep, ua, port):
            sources: list[Source] = []
            ua.on_message = lambda req, src: sources.append(src)
            caller = UserAgent(UaConfig(user="alice"))
            client_tls = client_context(
                TlsOptions(cert_file=client_cert[0], key_file=client_cert[1], ca_file=dev_cert[0])
            )
            cep = SipEndpoint(caller, timers=Timers(t1=0.05), tls_client_context=client_tls)
            caller.attach(cep)
            await cep.listen(
                ListenSpec("TLS", "127.0.0.1", 0),
                server_context(TlsOptions(cert_file=dev_cert[0], key_file=dev_cert[1])),
            )
            try:
                resp = await caller.message(f"sips:bob@127.0.0.1:{port}", b"hi")
            finally:
                await cep.close()
            assert resp.status == 200
            (src,) = sources
            assert src.transport == "TLS"
            assert src.tls is not None
            assert src.tls.version in ("TLSv1.2", "TLSv1.3")
            assert src.tls.cipher
            assert src.tls.peer_cert_sha256 == _sha256_of(client_cert[0])

    run(main())


def test_tls_facts_without_client_cert(dev_cert: tuple[Path, Path]) -> None:
    async def main() -> None:
        ctx = server_context(TlsOptions(cert_file=dev_cert[0], key_file=dev_cert[1]))
        async with tls_endpoint(ctx) as (_ep, ua, port):
            got: list[tuple[Request, Source]] = []
            ua.on_message = lambda req, src: got.append((req, src))
            caller = UserAgent(UaConfig(user="alice"))
            cep = SipEndpoint(
                caller, tls_client_context=client_context(TlsOptions(ca_file=dev_cert[0]))
            )
            caller.attach(cep)
            await cep.listen(ListenSpec("UDP", "127.0.0.1", 0))
            try:
                resp = await caller.message(
                    f"sips:bob@127.0.0.1:{port}", b"x", target=Target("TLS", "127.0.0.1", port)
                )
            finally:
                await cep.close()
            assert resp.status == 200
            ((_, src),) = got
            assert src.tls is not None
            assert src.tls.version == "TLSv1.3"
            assert src.tls.cipher.startswith("TLS_")
            assert src.tls.peer_cert_sha256 is None

    run(main())


def test_client_refuses_a_server_it_does_not_trust(
    dev_cert: tuple[Path, Path], client_cert: tuple[Path, Path]
) -> None:
    async def main() -> None:
        ctx = server_context(TlsOptions(cert_file=dev_cert[0], key_file=dev_cert[1]))
        async with tls_endpoint(ctx) as (_, _, port):
            caller = UserAgent(UaConfig(user="alice"))
            # Trusts only the client certificate, not the server's.
            cep = SipEndpoint(
                caller, tls_client_context=client_context(TlsOptions(ca_file=client_cert[0]))
            )
            caller.attach(cep)
            await cep.listen(ListenSpec("UDP", "127.0.0.1", 0))
            try:
                with pytest.raises(ssl.SSLCertVerificationError):
                    await caller.options(f"sips:bob@127.0.0.1:{port}")
            finally:
                await cep.close()

    run(main())


# --------------------------------------------------------------------------- configuration errors


def test_config_errors_name_what_is_wrong(dev_cert: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match="needs --tls-cert"):
        server_context(TlsOptions())
    with pytest.raises(TlsConfigError, match="CA file"):
        server_context(
            TlsOptions(cert_file=dev_cert[0], key_file=dev_cert[1], require_client_cert=True)
        )
    missing = tmp_path / "missing.pem"
    with pytest.raises(TlsConfigError, match=r"missing\.pem"):
        server_context(TlsOptions(cert_file=missing, key_file=dev_cert[1]))
    with pytest.raises(TlsConfigError, match=r"missing\.pem"):
        client_context(TlsOptions(ca_file=missing))
    with pytest.raises(TlsConfigError, match=r"missing\.pem"):
        server_context(TlsOptions(cert_file=dev_cert[0], key_file=dev_cert[1], ca_file=missing))


def test_optional_client_cert_when_only_a_ca_is_given(dev_cert: tuple[Path, Path]) -> None:
    ctx = server_context(
        TlsOptions(cert_file=dev_cert[0], key_file=dev_cert[1], ca_file=dev_cert[0])
    )
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    ctx = server_context(
        TlsOptions(
            cert_file=dev_cert[0],
            key_file=dev_cert[1],
            ca_file=dev_cert[0],
            require_client_cert=True,
        )
    )
    assert ctx.verify_mode == ssl.CERT_REQUIRED


def test_handshake_deadline_and_failures_are_counted_per_connection(
    dev_cert: tuple[Path, Path],
) -> None:
    async def main() -> None:
        ctx = server_context(TlsOptions(cert_file=dev_cert[0], key_file=dev_cert[1]))
        limits = StreamLimits(tls_handshake_timeout=0.3, max_per_peer=2)
        async with tls_endpoint(ctx, limits) as (ep, _, port):
            loop = asyncio.get_running_loop()
            silent, silent_w = await asyncio.open_connection("127.0.0.1", port)
            plain, plain_w = await asyncio.open_connection("127.0.0.1", port)
            # A third handshake from the same address: the two pending ones hold its slots.
            third, third_w = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(third.read(), 1) == b""
            assert ep.stats["connections_refused"] == 1 and ep.stream_connections == 2
            plain_w.write(_options())  # plaintext SIP where a ClientHello belongs
            assert await asyncio.wait_for(plain.read(), 1) == b""
            assert ep.stats["tls_handshake_failed"] == 1
            started = loop.time()
            assert await asyncio.wait_for(silent.read(), 2) == b""
            assert 0.1 <= loop.time() - started < 1.0  # 0.3 s after accept, swept every 0.15 s
            assert ep.stats["tls_handshake_timeout"] == 1 and ep.stream_connections == 0
            assert await _handshake(port, _old_client(ssl.TLSVersion.TLSv1_3)) is not None
            for w in (silent_w, plain_w, third_w):
                w.close()

    run(main())
