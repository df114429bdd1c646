"""Verify a chain on every core: the hash chain in this process, signatures in worker processes.

Ed25519 verification (~90 µs an event here) dominates a full verify and is independent per event,
while the chain check is sequential but cheap. The result is the same as
:func:`~ifescalate.witness.core.verify` with ``signatures="all"``: the first failing event wins,
whichever check found it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .core import ChainHead, Event, VerifyResult, verify

_SIGNATURE_REASON = "signature invalid (forged, replaced, or another key)"
MIN_PARALLEL = 4000  # below this, starting workers costs more than it saves


def _first_bad_signature(raw_key: bytes, offset: int, pairs: list[tuple[str, str]]) -> int | None:
    key = Ed25519PublicKey.from_public_bytes(raw_key)
    for index, (digest, signature) in enumerate(pairs):
        try:
            key.verify(bytes.fromhex(signature), bytes.fromhex(digest))
        except InvalidSignature:
            return offset + index
    return None


def verify_parallel(
    events: Sequence[Event],
    public_key: Ed25519PublicKey,
    *,
    jobs: int | None = None,
    start: ChainHead | None = None,
    expected_head: ChainHead | None = None,
) -> VerifyResult:
    """:func:`verify` with every signature checked, spread over ``jobs`` processes."""
    jobs = jobs or os.cpu_count() or 1
    if jobs <= 1 or len(events) < MIN_PARALLEL:
        return verify(events, public_key, start=start, expected_head=expected_head)
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    size = -(-len(events) // (jobs * 4))  # a few chunks per worker evens out the load
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [
            pool.submit(
                _first_bad_signature,
                raw,
                offset,
                [(e.hash, e.signature) for e in events[offset : offset + size]],
            )
            for offset in range(0, len(events), size)
        ]
        chain = verify(
            events, public_key, start=start, expected_head=expected_head, signatures="none"
        )
        bad = [index for f in futures if (index := f.result()) is not None]
    if not bad:
        return chain
    first = min(bad)
    base = (start or ChainHead()).seq
    if chain.ok or (chain.first_bad_seq is not None and base + first + 1 < chain.first_bad_seq):
        previous = events[first - 1] if first else None
        head = ChainHead.of(previous) if previous else (start or ChainHead())
        return VerifyResult(False, first, base + first + 1, _SIGNATURE_REASON, head)
    return chain
