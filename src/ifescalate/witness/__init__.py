"""IF.witness: an append-only, hash-chained, Ed25519-signed audit log anyone can verify offline.

core (pure): events, RFC 8785 canonical encoding, chain, signing, verifying.
store/pg: SQLite (embedded) and PostgreSQL stores. service: the asyncio Witness (group commit).
export: JSON Lines + signed manifest. cli: ``witness verify`` / ``witness export``.
"""

from .core import (
    GENESIS_HASH,
    ChainBrokenError,
    ChainHead,
    Ed25519Signer,
    Event,
    EventError,
    EventType,
    Signer,
    Verifier,
    VerifyResult,
    WitnessError,
    format_time,
    seal,
    verify,
)
from .jcs import CanonicalizationError, canonicalize
from .keys import load_or_create_signer, parse_public_key, public_key_hex, public_key_pem
from .service import Witness, WitnessClosedError, verify_store
from .store import SqliteStore, StoreError, WitnessStore

__all__ = [
    "GENESIS_HASH",
    "CanonicalizationError",
    "ChainBrokenError",
    "ChainHead",
    "Ed25519Signer",
    "Event",
    "EventError",
    "EventType",
    "Signer",
    "SqliteStore",
    "StoreError",
    "Verifier",
    "VerifyResult",
    "Witness",
    "WitnessClosedError",
    "WitnessError",
    "WitnessStore",
    "canonicalize",
    "format_time",
    "load_or_create_signer",
    "parse_public_key",
    "public_key_hex",
    "public_key_pem",
    "seal",
    "verify",
    "verify_store",
]
