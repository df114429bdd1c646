"""Development certificates for loopback TLS (Kamailio, stunnel, baresip, the product's own TLS).

The generator is the product's own (`ifescalate.net.devcert`, which `serve` uses on first run); this
module adds what only the peers need.
"""

from __future__ import annotations

from pathlib import Path

from ifescalate.net.devcert import DEFAULT_NAMES, dev_tls_cert

__all__ = ["DEFAULT_NAMES", "combined_pem", "dev_tls_cert"]


def combined_pem(cert_path: Path | str, key_path: Path | str, out_path: Path | str) -> Path:
    """Write certificate and key into one PEM file (baresip's `sip_certificate` wants both in one)."""
    out = Path(out_path)
    out.write_bytes(Path(cert_path).read_bytes() + Path(key_path).read_bytes())
    out.chmod(0o600)
    return out
