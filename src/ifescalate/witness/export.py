"""Offline export and verification: JSON Lines of canonical events plus a signed manifest.

``events.jsonl``: one canonical event (RFC 8785, with hash and signature) per line, in order.
``events.jsonl.manifest.json``: the public key (PEM and raw hex) and the head (last sequence and
hash) at export time, signed by the same key. The manifest is what catches a cut-off tail: a chain
with its last events removed still verifies on its own, but no longer ends at the signed head.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .core import (
    ChainHead,
    EventError,
    SignatureCheck,
    Signer,
    VerifyResult,
    WitnessError,
)
from .jcs import canonicalize
from .keys import parse_public_key, public_key_hex, public_key_pem
from .store import WitnessStore, row_to_event

MANIFEST_FORMAT = "ifescalate-witness-export/1"
MANIFEST_SUFFIX = ".manifest.json"


class ManifestError(WitnessError):
    """The manifest is missing, malformed, for another key, or not signed by its key."""


@dataclass(frozen=True, slots=True)
class Manifest:
    public_key: Ed25519PublicKey
    head: ChainHead
    count: int


def manifest_path_for(events_path: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(events_path)}{MANIFEST_SUFFIX}")


async def export_store(store: WitnessStore, out: IO[bytes]) -> tuple[int, ChainHead]:
    """Write every stored event as a canonical JSON line; returns (count, head)."""
    count, head = 0, ChainHead()
    async for row in store.iter_rows():
        try:
            event = row_to_event(row)
        except EventError as exc:
            raise WitnessError(f"cannot export sequence {row[0]}: {exc}") from exc
        out.write(event.to_json() + b"\n")
        count, head = count + 1, ChainHead(event.seq, event.hash)
    return count, head


def build_manifest(signer: Signer, head: ChainHead, count: int) -> bytes:
    """The signed manifest (canonical JSON + newline)."""
    key = signer.public_key()
    body: dict[str, object] = {
        "format": MANIFEST_FORMAT,
        "public_key_hex": public_key_hex(key),
        "public_key_pem": public_key_pem(key).decode("ascii"),
        "head_seq": head.seq,
        "head_hash": head.hash,
        "count": count,
    }
    body["signature"] = signer.sign(hashlib.sha256(canonicalize(body)).digest()).hex()
    return canonicalize(body) + b"\n"


def read_manifest(path: str | os.PathLike[str], pinned: Ed25519PublicKey | None) -> Manifest:
    """Parse and check a manifest; ``pinned`` (the key you trust) must match the manifest's."""
    try:
        data = json.loads(Path(path).read_bytes())
        signature = bytes.fromhex(data.pop("signature"))
        key = parse_public_key(data["public_key_hex"])
        head = ChainHead(int(data["head_seq"]), str(data["head_hash"]))
        count = int(data["count"])
        if data.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"{path}: unknown format {data.get('format')!r}")
        digest = hashlib.sha256(canonicalize(data)).digest()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ManifestError(f"{path}: unreadable manifest: {exc}") from exc
    if pinned is not None and public_key_hex(pinned) != public_key_hex(key):
        raise ManifestError(
            f"{path}: manifest is for key {public_key_hex(key)}, not the pinned key"
        )
    try:
        key.verify(signature, digest)
    except InvalidSignature:
        raise ManifestError(f"{path}: manifest signature invalid") from None
    return Manifest(key, head, count)


def iter_export_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for each non-empty line; a torn last line comes through as is."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            stripped = line.rstrip(b"\n")
            if stripped:
                yield number, stripped


def verify_export(
    path: str | os.PathLike[str],
    *,
    public_key: Ed25519PublicKey | None = None,
    manifest: Manifest | None = None,
    signatures: SignatureCheck = "all",
    jobs: int | None = 1,
) -> VerifyResult:
    """Verify an export file offline, against the pinned key or the manifest's key.

    ``jobs``: worker processes (None: every core); the answer is the same for any value. Each
    worker reads its own byte range of the file (:mod:`.ranges`).
    """
    from .ranges import verify_file  # ranges imports the store; keep export light

    key = public_key or (manifest.public_key if manifest else None)
    if key is None:
        raise ManifestError("no public key: pass one or a manifest")
    return verify_file(
        path,
        key,
        jobs=jobs,
        signatures=signatures,
        expected_head=manifest.head if manifest else None,
    )


def verify_export_parallel(
    path: str | os.PathLike[str],
    *,
    public_key: Ed25519PublicKey | None = None,
    manifest: Manifest | None = None,
    jobs: int | None = None,
) -> VerifyResult:
    """:func:`verify_export` with every signature, on ``jobs`` processes (None: every core)."""
    return verify_export(path, public_key=public_key, manifest=manifest, jobs=jobs)
