"""Witness stores: the interface, row conversion, and the embedded SQLite store.

A store only persists sealed events; numbering, hashing and signing happen in the core. Every
``append`` is one transaction, so a crash leaves either the whole batch or none of it: a torn batch
can never leave a gap or a half-written event in the chain.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .core import Event, EventError, WitnessError
from .jcs import canonical_str

DB_FILE = "witness.sqlite3"
_T = TypeVar("_T")

# Column order of every row written and read; matches Event's fields.
COLUMNS = (
    "seq",
    "time",
    "trace_id",
    "escalation_id",
    "type",
    "actor",
    "details",
    "prev_hash",
    "hash",
    "signature",
)
Row = tuple[Any, ...]


class StoreError(WitnessError):
    """The store could not be opened or written."""


class WitnessStore(Protocol):
    """What :class:`~ifescalate.witness.service.Witness` needs from a store."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, events: Sequence[Event]) -> None:
        """Persist ``events`` in one transaction; return only after COMMIT is durable."""
        ...

    async def last_row(self) -> Row | None: ...

    def iter_rows(self, *, after_seq: int = 0, page: int = 5000) -> AsyncIterator[Row]: ...

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...


def event_to_row(event: Event) -> Row:
    return (
        event.seq,
        event.time,
        event.trace_id,
        event.escalation_id,
        event.type.value,
        event.actor,
        canonical_str(event.details),
        event.prev_hash,
        event.hash,
        event.signature,
    )


def row_to_event(row: Row) -> Event:
    """Rebuild an event from a stored row; :class:`EventError` if the row was tampered into junk."""
    data: dict[str, object] = dict(zip(COLUMNS, row, strict=True))
    try:
        data["details"] = json.loads(str(data["details"]))
    except json.JSONDecodeError as exc:
        raise EventError(f"details are not JSON: {exc}") from None
    return Event.from_dict(data)


def row_seq(row: Row) -> int:
    return int(row[0])


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS witness_events (
    seq INTEGER PRIMARY KEY,
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
CREATE INDEX IF NOT EXISTS witness_events_escalation ON witness_events (escalation_id);
CREATE TABLE IF NOT EXISTS witness_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Append-only by construction, not by convention: the database itself refuses edits. (Someone
-- with file access can drop these triggers; the hash chain and signatures catch that.)
CREATE TRIGGER IF NOT EXISTS witness_events_no_update BEFORE UPDATE ON witness_events
BEGIN SELECT RAISE(ABORT, 'witness events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS witness_events_no_delete BEFORE DELETE ON witness_events
BEGIN SELECT RAISE(ABORT, 'witness events are append-only'); END;
"""
_INSERT = f"INSERT INTO witness_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 10)})"
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM witness_events"


class SqliteStore:
    """The embedded store: one SQLite file in WAL mode with ``synchronous=FULL``.

    Durability: in WAL mode ``synchronous=NORMAL`` does not fsync the WAL at COMMIT, so a power
    loss may roll back transactions that were already acknowledged (the file stays consistent, the
    events are just gone). ``FULL`` fsyncs the WAL at every COMMIT, so an event is on stable storage
    before its caller hears about it; group commit pays that one fsync per batch, not per event.

    All SQLite work runs on one dedicated thread (a connection is bound to its thread), so the
    event loop never blocks on disk.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def in_data_dir(cls, data_dir: str | os.PathLike[str]) -> SqliteStore:
        return cls(Path(data_dir) / DB_FILE)

    async def _run(self, fn: Callable[[], _T]) -> _T:
        if self._executor is None:
            raise StoreError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="witness-sqlite")
        await self._run(self._open_sync)

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per batch.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch to WAL (journal_mode={mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(_SQLITE_SCHEMA)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"{self.path}: {exc}") from exc
        self._conn = conn

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._run(self._close_sync)
        self._executor.shutdown(wait=True)
        self._executor = None

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("store is not open")
        return self._conn

    async def append(self, events: Sequence[Event]) -> None:
        rows = [event_to_row(event) for event in events]
        await self._run(lambda: self._append_sync(rows))

    def _append_sync(self, rows: list[Row]) -> None:
        conn = self._db()
        try:
            # IMMEDIATE takes the write lock up front, so a second writer fails fast and whole.
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT, rows)
            except sqlite3.Error:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: append failed: {exc}") from exc

    async def last_row(self) -> Row | None:
        query = f"{_SELECT} ORDER BY seq DESC LIMIT 1"
        return await self._run(lambda: self._db().execute(query).fetchone())

    async def iter_rows(self, *, after_seq: int = 0, page: int = 5000) -> AsyncIterator[Row]:
        query = f"{_SELECT} WHERE seq > ? ORDER BY seq LIMIT ?"
        while True:
            rows: list[Row] = await self._run(partial(self._fetch, query, (after_seq, page)))
            for row in rows:
                yield row
            if len(rows) < page:
                return
            after_seq = row_seq(rows[-1])

    def _fetch(self, query: str, params: tuple[object, ...]) -> list[Row]:
        rows: list[Row] = self._db().execute(query, params).fetchall()
        return rows

    async def get_meta(self, key: str) -> str | None:
        query = "SELECT value FROM witness_meta WHERE key = ?"
        row = await self._run(lambda: self._db().execute(query, (key,)).fetchone())
        return None if row is None else str(row[0])

    async def set_meta(self, key: str, value: str) -> None:
        query = "INSERT OR REPLACE INTO witness_meta (key, value) VALUES (?, ?)"
        await self._run(lambda: self._db().execute(query, (key, value)))
