"""What the API reads from IF.witness: events filtered by trace or escalation, and the public key.

:class:`StoreWitnessReader` answers from any :class:`~ifescalate.witness.WitnessStore` by paging
through ``iter_rows`` and filtering; that is a scan from ``after`` onwards. A store-side query on
the ``escalation_id`` index would make filtered reads cheap (see the report: a witness change).
"""

from __future__ import annotations

from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..witness import Event, Witness, WitnessStore
from ..witness.store import row_to_event

__all__ = ["StoreWitnessReader", "WitnessReader"]


class WitnessReader(Protocol):
    async def events(
        self, *, trace_id: str | None, escalation_id: str | None, after: int, limit: int
    ) -> list[Event]:
        """Events with ``seq > after`` matching every given filter, in order, at most ``limit``."""
        ...

    def public_key(self) -> Ed25519PublicKey: ...


class StoreWitnessReader:
    """Reads a witness store directly (the same store the running :class:`Witness` writes)."""

    def __init__(self, store: WitnessStore, public_key: Ed25519PublicKey) -> None:
        self._store = store
        self._key = public_key

    @classmethod
    def of(cls, witness: Witness) -> StoreWitnessReader:
        return cls(witness.store, witness.signer.public_key())

    def public_key(self) -> Ed25519PublicKey:
        return self._key

    async def events(
        self, *, trace_id: str | None, escalation_id: str | None, after: int, limit: int
    ) -> list[Event]:
        found: list[Event] = []
        if limit <= 0:
            return found
        page = min(max(limit, 100), 5000)
        rows = self._store.iter_rows(after_seq=after, page=page)
        try:
            async for row in rows:
                event = row_to_event(row)
                if trace_id is not None and event.trace_id != trace_id:
                    continue
                if escalation_id is not None and event.escalation_id != escalation_id:
                    continue
                found.append(event)
                if len(found) >= limit:
                    break
        finally:
            close = getattr(rows, "aclose", None)
            if close is not None:
                await close()
        return found
