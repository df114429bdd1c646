"""The witness signing key on disk: generated on first run into the data dir, mode 0600.

The private key is PKCS#8 PEM (unencrypted: the data dir is the trust boundary, like the TLS key).
The public key is exported as SubjectPublicKeyInfo PEM and as raw 32-byte hex (RFC 8032 encoding).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .core import Ed25519Signer, WitnessError

KEY_FILE = "witness_ed25519.pem"
PUBLIC_KEY_FILE = "witness_ed25519.pub.pem"


class KeyFileError(WitnessError):
    """The key file is unreadable, of the wrong type, or too widely readable."""


def load_or_create_signer(data_dir: str | os.PathLike[str]) -> Ed25519Signer:
    """The data dir's signer, generating and saving a new key (0600) when there is none.

    Also (re)writes the public key next to it, so operators can hand it to verifiers.
    """
    directory = Path(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / KEY_FILE
    if path.exists():
        key = _read_private(path)
    else:
        key = Ed25519PrivateKey.generate()
        _write_private(path, key)
    public_path = directory / PUBLIC_KEY_FILE
    pem = public_key_pem(key.public_key())
    if not public_path.exists() or public_path.read_bytes() != pem:
        public_path.write_bytes(pem)
    return Ed25519Signer(key)


def _write_private(path: Path, key: Ed25519PrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL + mode at creation: the key is never readable by others, not even briefly; a racing
    # second process fails here instead of silently overwriting the first one's key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _read_private(path: Path) -> Ed25519PrivateKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(f"{path}: mode {mode:o} lets others read the witness key; chmod 600 it")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key")
    return key


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def parse_public_key(text: str | bytes) -> Ed25519PublicKey:
    """A public key from PEM or from 64 hex digits (raw RFC 8032 encoding)."""
    data = text.encode() if isinstance(text, str) else text
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(stripped)
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError("not an Ed25519 public key")
        return key
    try:
        raw = bytes.fromhex(stripped.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise KeyFileError("public key is neither PEM nor hex") from None
    if len(raw) != 32:
        raise KeyFileError(f"a raw Ed25519 public key is 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    return parse_public_key(Path(path).read_bytes())
