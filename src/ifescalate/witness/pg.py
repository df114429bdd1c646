"""The PostgreSQL witness store (asyncpg), for the scale-out deployment.

Same contract as :class:`~ifescalate.witness.store.SqliteStore`: one transaction per batch,
returning only after COMMIT. With PostgreSQL's default ``synchronous_commit=on`` a COMMIT returns
after the WAL is flushed, so an acknowledged event survives a crash of the server.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs; the surface used here is small
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .core import ChainBrokenError, ChainHead, Event, EventError, Verifier
from .store import COLUMNS, Row, StoreError, event_to_row, row_to_event

_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _schema_sql(schema: str) -> str:
    s = f'"{schema}"'
    return f"""
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.witness_events (
    seq BIGINT PRIMARY KEY,
    time TEXT NOT NULL,
    trace_id TEXT,
    escalation_id TEXT,
    type TEXT NOT NULL,
    actor TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS witness_events_escalation ON {s}.witness_events (escalation_id);
CREATE TABLE IF NOT EXISTS {s}.witness_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE OR REPLACE FUNCTION {s}.witness_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'witness events are append-only'; END $$;
DROP TRIGGER IF EXISTS witness_events_append_only ON {s}.witness_events;
CREATE TRIGGER witness_events_append_only BEFORE UPDATE OR DELETE ON {s}.witness_events
FOR EACH ROW EXECUTE FUNCTION {s}.witness_append_only();
"""


class PostgresStore:
    """Witness events in ``<schema>.witness_events``; ``dsn`` is an asyncpg/libpq URL."""

    def __init__(self, dsn: str, *, schema: str = "public", pool_size: int = 4) -> None:
        if not _IDENT.fullmatch(schema):
            raise StoreError(f"schema name {schema!r} must match {_IDENT.pattern}")
        self.dsn = dsn
        self.schema = schema
        self._pool_size = pool_size
        self._pool: Any = None  # asyncpg.Pool
        self._table = f'"{schema}".witness_events'
        self._meta = f'"{schema}".witness_meta'
        self._select = f"SELECT {', '.join(COLUMNS)} FROM {self._table}"
        self._lock = f"ifescalate-witness-append:{schema}"  # one advisory lock per chain

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self._pool_size)
            # The chain's advisory lock serialises schema creation by several instances, and
            # with appends by running ones (the trigger DDL would deadlock with a COPY).
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._lock)
                await conn.execute(_schema_sql(self.schema))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self.close()
            raise StoreError(f"cannot open PostgreSQL witness store: {exc}") from exc

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _require(self) -> Any:
        if self._pool is None:
            raise StoreError("store is not open")
        return self._pool

    async def append(self, events: Sequence[Event]) -> None:
        rows = [event_to_row(event) for event in events]
        try:
            async with self._require().acquire() as conn, conn.transaction():
                # COPY is the fastest bulk path; the transaction makes the batch all-or-nothing.
                await conn.copy_records_to_table(
                    "witness_events", schema_name=self.schema, columns=COLUMNS, records=rows
                )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"append failed: {exc}") from exc

    async def append_at_tail(
        self,
        seal: Callable[[ChainHead], Awaitable[Sequence[Event]]],
        public_key: Ed25519PublicKey,
    ) -> Sequence[Event]:
        """Seal and append a batch after the chain's real tail, serialised with every other writer
        of this schema: several instances may share one chain.

        One transaction holds ``pg_advisory_xact_lock`` for the chain, reads the last stored event,
        checks it (hash and signature by ``public_key``: never continue a forged tail), lets
        ``seal`` number and sign the batch after it, and COPYs it in. The lock is released at
        COMMIT or ROLLBACK, so a writer that dies mid-batch frees it and leaves nothing behind.
        """
        try:
            async with self._require().acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._lock)
                record = await conn.fetchrow(f"{self._select} ORDER BY seq DESC LIMIT 1")
                head = _checked_tail(None if record is None else tuple(record), public_key)
                events = await seal(head)
                if events:
                    rows = [event_to_row(event) for event in events]
                    await conn.copy_records_to_table(
                        "witness_events", schema_name=self.schema, columns=COLUMNS, records=rows
                    )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"append failed: {exc}") from exc
        return events

    async def last_row(self) -> Row | None:
        record = await self._require().fetchrow(f"{self._select} ORDER BY seq DESC LIMIT 1")
        return None if record is None else tuple(record)

    async def iter_rows(self, *, after_seq: int = 0, page: int = 5000) -> AsyncIterator[Row]:
        query = f"{self._select} WHERE seq > $1 ORDER BY seq LIMIT $2"
        while True:
            records = await self._require().fetch(query, after_seq, page)
            for record in records:
                yield tuple(record)
            if len(records) < page:
                return
            after_seq = int(records[-1]["seq"])

    async def get_meta(self, key: str) -> str | None:
        value = await self._require().fetchval(
            f"SELECT value FROM {self._meta} WHERE key = $1", key
        )
        return None if value is None else str(value)

    async def set_meta(self, key: str, value: str) -> None:
        await self._require().execute(
            f"INSERT INTO {self._meta} (key, value) VALUES ($1, $2) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            key,
            value,
        )

    async def drop(self) -> None:
        """Drop the whole schema (tests and benchmarks clean up with this)."""
        await self._require().execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


def _checked_tail(row: Row | None, public_key: Ed25519PublicKey) -> ChainHead:
    """The head after ``row`` (the stored tail), once its form, hash and signature check out."""
    if row is None:
        return ChainHead()
    try:
        event = row_to_event(row)
    except EventError as exc:
        raise ChainBrokenError(int(row[0]), f"malformed stored tail: {exc}") from None
    verifier = Verifier(public_key, start=ChainHead(event.seq - 1, event.prev_hash))
    if not verifier.feed(event):
        failure = verifier.failure
        assert failure is not None
        raise ChainBrokenError(event.seq, f"stored tail: {failure.reason}")
    return ChainHead(event.seq, event.hash)
