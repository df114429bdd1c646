"""TLS contexts for SIP over TLS (RFC 3261 §26.2.1, RFC 5630) with a TLS 1.2 floor.

Only AEAD suites with forward secrecy are offered on TLS 1.2 (TLS 1.3 suites are all strong). The
peer's certificate facts (verified or not, fingerprint) come from the live session, never from
anything the peer writes in a message.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

#: TLS 1.2 suites: ECDHE key exchange and AEAD ciphers only (no CBC, no RSA key transport, no SHA-1 MAC).
STRONG_TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)


class TlsConfigError(ValueError):
    """The TLS options cannot make a working context (missing file, bad key, ...)."""


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """What an operator configures for TLS."""

    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    #: Server side: ask for a client certificate and refuse the handshake without a valid one.
    require_client_cert: bool = False
    #: Client side: verify the server's certificate against ``ca_file`` (or the system store).
    verify_server: bool = True
    #: Server side: the CAs client certificates must chain to (defaults to ``ca_file``). With
    #: either set the server asks every client for a certificate (CERT_OPTIONAL).
    client_ca_file: Path | None = None


def _harden(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(STRONG_TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE


def server_context(opts: TlsOptions) -> ssl.SSLContext:
    """A server context; raises TlsConfigError naming the file that is wrong."""
    if opts.cert_file is None or opts.key_file is None:
        raise TlsConfigError("a TLS listener needs --tls-cert and --tls-key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx)
    try:
        ctx.load_cert_chain(str(opts.cert_file), str(opts.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(
            f"cannot load TLS certificate {opts.cert_file} / key {opts.key_file}: {exc}"
        ) from exc
    # Client certificates are verified against a CA bundle, then pinned per expert by fingerprint
    # (security.layers.TransportLayer.decide_expert). The stdlib has no verify callback, so a
    # server cannot ask for a certificate without verifying it: a self-signed client certificate
    # is trusted by listing it in the bundle itself (it is its own anchor).
    ca = opts.client_ca_file or opts.ca_file
    if opts.require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        if ca is None:
            raise TlsConfigError("client certificate verification needs a CA file")
    if ca is not None:
        try:
            ctx.load_verify_locations(str(ca))
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(f"cannot load CA file {ca}: {exc}") from exc
        if not opts.require_client_cert:
            ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_context(opts: TlsOptions) -> ssl.SSLContext:
    """A client context; verifies the server unless ``verify_server`` is off (tests, dev certs)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(ctx)
    if opts.verify_server:
        if opts.ca_file is not None:
            try:
                ctx.load_verify_locations(str(opts.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise TlsConfigError(f"cannot load CA file {opts.ca_file}: {exc}") from exc
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if opts.cert_file is not None and opts.key_file is not None:
        try:
            ctx.load_cert_chain(str(opts.cert_file), str(opts.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(f"cannot load client certificate {opts.cert_file}: {exc}") from exc
    return ctx


@dataclass(frozen=True, slots=True)
class TlsFacts:
    """What the TLS session itself proves about a connection."""

    version: str
    cipher: str
    peer_cert_sha256: str | None


def tls_facts(obj: ssl.SSLObject | ssl.SSLSocket) -> TlsFacts:
    """Read version, cipher and the peer certificate fingerprint from a live session."""
    der = obj.getpeercert(binary_form=True)
    cipher = obj.cipher()
    return TlsFacts(
        version=obj.version() or "",
        cipher=cipher[0] if cipher else "",
        peer_cert_sha256=hashlib.sha256(der).hexdigest() if der else None,
    )
