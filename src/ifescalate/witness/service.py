"""The asyncio-facing witness: queue, group commit, recovery on open.

``await witness.append(...)`` resolves only after the transaction holding the event has committed.
One writer task drains the queue: it seals everything waiting (up to ``max_batch``) in a worker
thread, hands the batch to the store as one transaction, then resolves each caller. Under load many
events share one COMMIT (and one fsync); alone, an event costs one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .core import (
    ChainBrokenError,
    ChainHead,
    Event,
    EventError,
    EventType,
    SignatureCheck,
    Signer,
    Verifier,
    VerifyResult,
    WitnessError,
    seal,
)
from .jcs import JsonValue, canonical_str
from .keys import public_key_hex
from .ranges import verify_pg, verify_sqlite
from .store import SqliteStore, WitnessStore, row_to_event

log = logging.getLogger(__name__)
PUBLIC_KEY_META = "public_key_hex"
OpenCheck = Literal["full", "chain", "off"]
AppendAtTail = Callable[
    [Callable[[ChainHead], Awaitable[Sequence[Event]]], Ed25519PublicKey],
    Awaitable[Sequence[Event]],
]


class WitnessClosedError(WitnessError):
    """append() after close(), or before start()."""


@dataclass(slots=True)
class _Pending:
    kind: EventType
    trace_id: str | None
    escalation_id: str | None
    actor: str
    details: Mapping[str, JsonValue]
    future: asyncio.Future[Event]


async def verify_store(
    store: WitnessStore,
    public_key: Ed25519PublicKey | bytes,
    *,
    signatures: SignatureCheck = "all",
) -> VerifyResult:
    """Verify every event in ``store``.

    The SQLite and PostgreSQL stores are verified by :mod:`.ranges` (worker processes that read
    their own row ranges, every core) in a thread, so the event loop keeps running; any other
    store is streamed page by page through the reference verifier here.
    """
    from .pg import PostgresStore  # asyncpg only loaded when a store may be PostgreSQL

    if isinstance(store, SqliteStore):
        return await asyncio.to_thread(verify_sqlite, store.path, public_key, signatures=signatures)
    if isinstance(store, PostgresStore):
        return await asyncio.to_thread(
            verify_pg, store.dsn, store.schema, public_key, signatures=signatures
        )
    verifier = Verifier(public_key, signatures=signatures)
    async for row in store.iter_rows():
        try:
            event = row_to_event(row)
        except EventError as exc:
            return verifier.fail(verifier.next_seq, f"malformed stored event: {exc}")
        if not verifier.feed(event):
            break
    return verifier.finish()


class Witness:
    """Append-only, signed, hash-chained audit log over a :class:`WitnessStore`.

    ``verify_on_open``: "full" checks every hash and signature at start, "chain" every hash and
    link but only the last signature (fast for big logs), "off" trusts the stored head.
    """

    def __init__(
        self,
        store: WitnessStore,
        signer: Signer,
        *,
        clock: Callable[[], float] = time.time,
        max_batch: int = 1000,
        verify_on_open: OpenCheck = "full",
    ) -> None:
        if verify_on_open not in ("full", "chain", "off"):
            raise ValueError(f"verify_on_open must be full, chain or off, got {verify_on_open!r}")
        self.store = store
        self.signer = signer
        self._clock = clock
        self._max_batch = max_batch
        self._verify_on_open = verify_on_open
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._head = ChainHead()
        self._broken: ChainBrokenError | None = None
        self._closed = False
        self.open_result: VerifyResult | None = None

    @property
    def head(self) -> ChainHead:
        return self._head

    @property
    def broken(self) -> ChainBrokenError | None:
        """Why appends are refused, if the stored chain did not verify on open."""
        return self._broken

    async def start(self) -> None:
        """Open the store, continue the chain from its last event, start the writer."""
        await self.store.open()
        await self._check_key()
        if self._broken is None:
            await self._recover()
        self._writer = asyncio.create_task(self._write_loop(), name="witness-writer")

    async def _check_key(self) -> None:
        ours = public_key_hex(self.signer.public_key())
        recorded = await self.store.get_meta(PUBLIC_KEY_META)
        if recorded is None:
            await self.store.set_meta(PUBLIC_KEY_META, ours)
        elif recorded != ours:
            # Appending with another key would make the chain unverifiable with either key.
            self._broken = ChainBrokenError(1, f"store was signed by key {recorded}, not {ours}")

    async def _recover(self) -> None:
        if self._verify_on_open == "off":
            row = await self.store.last_row()
            try:
                self._head = ChainHead.of(None if row is None else row_to_event(row))
            except EventError as exc:
                self._broken = ChainBrokenError(int(row[0]) if row else 1, str(exc))
            return
        signatures: SignatureCheck = "all" if self._verify_on_open == "full" else "last"
        result = await verify_store(self.store, self.signer.public_key(), signatures=signatures)
        self.open_result = result
        if result.ok:
            self._head = result.head
        else:
            self._broken = ChainBrokenError(result.first_bad_seq or 1, result.reason)
            log.error("%s", self._broken)

    async def append(
        self,
        kind: EventType,
        *,
        trace_id: str | None,
        escalation_id: str | None,
        actor: str,
        details: Mapping[str, JsonValue],
    ) -> Event:
        """Witness one event; returns it sealed, after it is durably committed."""
        if self._broken is not None:
            raise self._broken
        if self._closed or self._writer is None:
            raise WitnessClosedError("witness is not running")
        if not isinstance(kind, EventType):
            raise EventError(f"type must be an EventType, got {kind!r}")
        # A private canonical copy: validates now (the caller gets CanonicalizationError here) and
        # a caller mutating its dict later cannot make the stored details differ from the hash.
        details = json.loads(canonical_str(details))
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(kind, trace_id, escalation_id, actor, details, future))
        return await future

    async def close(self) -> None:
        """Stop taking events, commit everything queued, close the store."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._writer is not None:
                self._queue.put_nowait(None)
                await self._writer
        finally:
            await self.store.close()

    async def __aenter__(self) -> Witness:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                await self._commit(batch)
            except BaseException as exc:
                # The writer must never die silently with callers waiting forever: fail them all,
                # refuse further appends, and let the error surface on the task.
                self._broken = ChainBrokenError(self._head.seq + 1, f"writer failed: {exc!r}")
                _fail_all(batch, self._broken)
                self._drain(self._broken)
                raise

    def _drain(self, exc: BaseException) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None and not item.future.done():
                item.future.set_exception(exc)

    async def _commit(self, batch: list[_Pending]) -> None:
        if self._broken is not None:
            _fail_all(batch, self._broken)
            return
        now = self._clock()
        append_at_tail = getattr(self.store, "append_at_tail", None)
        if append_at_tail is not None:  # a store several instances may append to (PostgreSQL)
            await self._commit_at_tail(append_at_tail, batch, now)
            return
        # Signing is CPU work (~25 µs an event): do it off the event loop.
        sealed, rejected = await asyncio.to_thread(self._seal_batch, batch, now, self._head)
        _fail_each(rejected)
        if not sealed:
            return
        try:
            await self.store.append([event for _, event in sealed])
        except WitnessError as exc:
            _fail_all([pending for pending, _ in sealed], exc)
            await self._resync()
            return
        last = sealed[-1][1]
        self._head = ChainHead(last.seq, last.hash)
        for pending, event in sealed:
            if not pending.future.done():  # a caller may have been cancelled meanwhile
                pending.future.set_result(event)

    async def _commit_at_tail(
        self, append_at_tail: AppendAtTail, batch: list[_Pending], now: float
    ) -> None:
        """Seal after the chain's real tail under the chain's lock, so several instances can
        append to one chain (:meth:`~.pg.PostgresStore.append_at_tail`)."""
        outcome: list[tuple[list[tuple[_Pending, Event]], list[tuple[_Pending, Exception]]]] = []

        async def seal_after(head: ChainHead) -> list[Event]:
            outcome[:] = [await asyncio.to_thread(self._seal_batch, batch, now, head)]
            return [event for _, event in outcome[0][0]]

        try:
            await append_at_tail(seal_after, self.signer.public_key())
        except ChainBrokenError as exc:  # the stored tail is forged or malformed
            self._broken = exc
            log.error("%s", exc)
            _fail_all(batch, exc)
            return
        except WitnessError as exc:  # rolled back: nothing of the batch was stored
            _fail_all(batch, exc)
            return
        sealed, rejected = outcome[0]
        _fail_each(rejected)
        if sealed:
            last = sealed[-1][1]
            self._head = ChainHead(last.seq, last.hash)
        for pending, event in sealed:
            if not pending.future.done():
                pending.future.set_result(event)

    def _seal_batch(
        self, batch: list[_Pending], now: float, head: ChainHead
    ) -> tuple[list[tuple[_Pending, Event]], list[tuple[_Pending, Exception]]]:
        sealed: list[tuple[_Pending, Event]] = []
        rejected: list[tuple[_Pending, Exception]] = []
        for pending in batch:
            try:
                event = seal(
                    head,
                    self.signer,
                    pending.kind,
                    trace_id=pending.trace_id,
                    escalation_id=pending.escalation_id,
                    actor=pending.actor,
                    details=pending.details,
                    now=now,
                )
            except ValueError as exc:  # CanonicalizationError / EventError: this caller's fault
                rejected.append((pending, exc))
                continue
            sealed.append((pending, event))
            head = ChainHead(event.seq, event.hash)
        return sealed, rejected

    async def _resync(self) -> None:
        """After a failed commit, take the head from the store: it may or may not have landed."""
        try:
            row = await self.store.last_row()
            self._head = ChainHead.of(None if row is None else row_to_event(row))
        except (WitnessError, OSError) as exc:
            self._broken = ChainBrokenError(self._head.seq + 1, f"store unavailable: {exc}")


def _fail_each(rejected: list[tuple[_Pending, Exception]]) -> None:
    for pending, exc in rejected:
        if not pending.future.done():
            pending.future.set_exception(exc)


def _fail_all(batch: list[_Pending], exc: BaseException) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(exc)
