"""Span-parallel verify: every worker reads its own slice of the chain straight from the source.

The chunked verifier (:mod:`.parallel`) reads every row or line in this process and pickles it to
a worker. Here the parent only plans spans (a range of sequence numbers in a store, a range of
bytes in an export file), each worker reads, parses, hashes and verifies its span itself, and
returns a few words: the first item's ``(seq, prev_hash)``, the last good head, and the first
failure. The parent stitches spans in order: span *k*'s first item must continue span *k-1*'s
head, exactly the check the sequential verifier makes at that item.

How a worker checks the items of its span, exactly as the reference verifier would but without
re-canonicalising: :mod:`.spancheck`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .core import (
    ChainHead,
    SignatureCheck,
    Verifier,
    VerifyResult,
    raw_public_key,
)
from .spancheck import SpanResult, reference_event, verify_items
from .store import COLUMNS, Row, StoreError

MIN_PARALLEL = 4000  # below this, starting workers costs more than it saves
# Span sizes: about eight spans per worker, so the last span to finish leaves the other cores idle
# only briefly (a 4,000-event span is ~0.2 s of one core), bounded both ways.
ROW_SPAN = (500, 4000)  # sequence numbers per worker task
FILE_SPAN = (256 << 10, 2 << 20)  # bytes per worker task (~500 B a line)
SPANS_PER_JOB = 8
# --- the sources (picklable: they travel to the workers) -------------------------------------


@dataclass(frozen=True, slots=True)
class SqliteSource:
    path: str


@dataclass(frozen=True, slots=True)
class PgSource:
    dsn: str
    schema: str


@dataclass(frozen=True, slots=True)
class FileSource:
    path: str


Source = SqliteSource | PgSource | FileSource
# Rows: (first seq, last seq), inclusive. Files: (first byte, end byte), end exclusive.
Span = tuple[int, int]


def _sqlite_rows(path: str, span: Span) -> Iterator[Row]:
    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        query = (
            f"SELECT {', '.join(COLUMNS)} FROM witness_events "
            "WHERE seq BETWEEN ? AND ? ORDER BY seq"
        )
        yield from conn.execute(query, span)
    finally:
        conn.close()


_PG: dict[str, tuple[asyncio.AbstractEventLoop, Any]] = {}  # per worker: dsn -> (loop, conn)
_PG_SELECT = 'SELECT {} FROM "{}".witness_events WHERE seq BETWEEN $1 AND $2 ORDER BY seq'


def _pg_rows(source: PgSource, span: Span, keep: bool) -> list[Row]:
    """The span's rows. ``keep``: a worker process keeps its connection for its next spans (a
    connect is ~8 ms here) and closes it when the pool stops it."""
    import asyncpg  # type: ignore[import-untyped]  # only when PostgreSQL is asked for

    query = _PG_SELECT.format(", ".join(COLUMNS), source.schema)
    entry = _PG.get(source.dsn) if keep else None
    if entry is None:
        loop = asyncio.new_event_loop()
        entry = (loop, loop.run_until_complete(asyncpg.connect(source.dsn)))
        if keep:
            _PG[source.dsn] = entry
            multiprocessing.util.Finalize(None, _pg_close, args=(source.dsn,), exitpriority=10)
    loop, conn = entry
    try:
        records = loop.run_until_complete(conn.fetch(query, *span))
    finally:
        if not keep:
            _close(loop, conn)
    return [tuple(record) for record in records]


def _pg_close(dsn: str) -> None:
    entry = _PG.pop(dsn, None)
    if entry is not None:
        _close(*entry)


def _close(loop: asyncio.AbstractEventLoop, conn: Any) -> None:
    try:
        loop.run_until_complete(conn.close())
    finally:
        loop.close()


def _file_lines(path: str, span: Span) -> tuple[list[bytes], int]:
    with open(path, "rb") as handle:
        handle.seek(span[0])
        data = handle.read(span[1] - span[0])
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines, data.count(b"\n")


def verify_span(
    source: Source, span: Span, raw_key: bytes, signatures: SignatureCheck, worker: bool = False
) -> SpanResult:
    """Read and verify one span of ``source`` (in a worker process, or inline)."""
    if isinstance(source, FileSource):
        lines, newlines = _file_lines(source.path, span)
        # An empty line is skipped but still numbered (as iter_export_lines does).
        numbered = [index for index, line in enumerate(lines) if line]
        result = verify_items([line for line in lines if line], raw_key, signatures)
        bad = result.bad_line
        return _with(result, lines=newlines, bad_line=None if bad is None else numbered[bad])
    if isinstance(source, PgSource):
        rows: Iterable[Row] = _pg_rows(source, span, worker)
    else:
        rows = _sqlite_rows(source.path, span)
    return verify_items(rows, raw_key, signatures)


def _with(result: SpanResult, **changes: Any) -> SpanResult:
    fields = {name: getattr(result, name) for name in SpanResult.__slots__}
    fields.update(changes)
    return SpanResult(**fields)


# --- planning and stitching, in the parent -----------------------------------------------------


def span_size(total: int, jobs: int, bounds: tuple[int, int]) -> int:
    """About :data:`SPANS_PER_JOB` spans per worker, within ``bounds``."""
    return max(bounds[0], min(bounds[1], total // (jobs * SPANS_PER_JOB) or 1))


def plan_row_spans(max_seq: int, count: int, size: int) -> list[Span]:
    """Spans of sequence numbers 1..max_seq. Rows with seq <= 0 are never read (the reference
    reads ``seq > 0`` in order). A sparse store (gaps: it is broken at the first one) is one span:
    reading it in order finds the gap without planning millions of empty spans."""
    if max_seq <= 0:
        return []
    if max_seq > 2 * count + size:
        return [(1, max_seq)]
    return [(lo, min(lo + size - 1, max_seq)) for lo in range(1, max_seq + 1, size)]


def plan_file_spans(path: str, size: int) -> list[Span]:
    """Byte spans of ``path``, each ending just after a newline (or at the end of the file)."""
    total = os.path.getsize(path)
    spans: list[Span] = []
    start = 0
    with open(path, "rb") as handle:
        while start < total:
            end = start + size
            if end >= total:
                end = total
            else:
                handle.seek(end)
                end += len(handle.readline())
            spans.append((start, end))
            start = end
    return spans


def sqlite_extent(path: str) -> tuple[int, int]:
    """(max seq, rows with seq > 0) of a SQLite witness store."""
    if not os.path.exists(path):
        raise StoreError(f"no witness database at {path}")
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT max(seq), count(*) FROM witness_events WHERE seq > 0").fetchone()
    finally:
        conn.close()
    return int(row[0] or 0), int(row[1])


async def pg_extent(source: PgSource) -> tuple[int, int]:
    import asyncpg

    conn = await asyncpg.connect(source.dsn)
    try:
        row = await conn.fetchrow(
            f'SELECT max(seq), count(*) FROM "{source.schema}".witness_events WHERE seq > 0'
        )
    finally:
        await conn.close()
    return int(row[0] or 0), int(row[1])


class _Stitch:
    """Joins span results in order into the sequential verifier's answer."""

    def __init__(self) -> None:
        self.count = 0
        self.head = ChainHead()
        self.lines = 0  # newlines in the spans before the current one (files)
        self.last: Row | bytes | None = None
        self.failure: VerifyResult | None = None

    def add(self, result: SpanResult) -> None:
        if self.failure is not None:
            return
        head, expected = self.head, self.head.seq + 1
        if result.first is not None:
            seq, prev_hash = result.first
            if seq != expected:
                reason = f"expected sequence {expected}, found {seq} (missing or reordered event)"
                return self._fail(expected, reason, 0, head)
            if prev_hash != head.hash:
                reason = "prev_hash does not match the hash of the previous event"
                return self._fail(expected, reason, 0, head)
        if result.reason is not None:
            reason = result.reason
            if result.bad_line is not None:
                reason = f"line {self.lines + result.bad_line + 1}: {reason}"
            bad = expected if result.bad_seq is None else result.bad_seq
            return self._fail(bad, reason, result.count, result.head or head)
        if result.count:
            self.count += result.count
            self.head = result.head or head
            self.last = result.last_item
        self.lines += result.lines

    def _fail(self, seq: int, reason: str, count: int, head: ChainHead) -> None:
        self.failure = VerifyResult(False, self.count + count, seq, reason, head)

    def finish(
        self,
        key: Ed25519PublicKey | bytes,
        signatures: SignatureCheck,
        expected_head: ChainHead | None,
    ) -> VerifyResult:
        if self.failure is not None:
            return self.failure
        verifier = Verifier(key, signatures=signatures)
        last = None
        if signatures == "last" and self.last is not None:
            last = reference_event(self.last)
        verifier.advance(self.head, self.count, last)
        return verifier.finish(expected_head=expected_head)


def _pool(jobs: int) -> ProcessPoolExecutor:
    # fork is cheap and safe while this process has one thread (the CLI); a server process with
    # threads (event loop helpers, the SQLite thread) forks a clean server instead.
    method = "fork" if threading.active_count() == 1 else "forkserver"
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context(method))


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def verify_spans(
    source: Source,
    spans: list[Span],
    key: Ed25519PublicKey | bytes,
    *,
    jobs: int | None = None,
    signatures: SignatureCheck = "all",
    expected_head: ChainHead | None = None,
    parallel: bool = True,
) -> VerifyResult:
    """Verify ``spans`` of ``source`` on ``jobs`` processes (None: every core), stitch in order."""
    raw = raw_public_key(key)
    mode: SignatureCheck = "all" if signatures == "all" else "none"
    stitch = _Stitch()
    jobs = jobs or default_jobs()
    if jobs <= 1 or len(spans) < 2 or not parallel:
        for span in spans:
            stitch.add(verify_span(source, span, raw, mode))
            if stitch.failure is not None:
                break
        return stitch.finish(key, signatures, expected_head)
    pool = _pool(jobs)
    flight: deque[Future[SpanResult]] = deque()
    try:
        for span in spans:
            flight.append(pool.submit(verify_span, source, span, raw, mode, True))
            # Bounded look-ahead: a broken chain stops reading soon after its first bad span.
            while len(flight) > 2 * jobs and stitch.failure is None:
                stitch.add(flight.popleft().result())
            if stitch.failure is not None:
                break
        while flight and stitch.failure is None:
            stitch.add(flight.popleft().result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return stitch.finish(key, signatures, expected_head)


def _verify_rows(
    source: SqliteSource | PgSource,
    extent: tuple[int, int],
    key: Ed25519PublicKey | bytes,
    jobs: int | None,
    signatures: SignatureCheck,
    span: int | None,
    min_parallel: int,
) -> VerifyResult:
    """A row store's spans (``extent``: its max seq and row count), planned and verified."""
    max_seq, count = extent
    jobs = jobs or default_jobs()
    spans = plan_row_spans(max_seq, count, span or span_size(count, jobs, ROW_SPAN))
    return verify_spans(
        source, spans, key, jobs=jobs, signatures=signatures, parallel=count >= min_parallel
    )


def verify_sqlite(
    path: str | os.PathLike[str],
    key: Ed25519PublicKey | bytes,
    *,
    jobs: int | None = None,
    signatures: SignatureCheck = "all",
    span: int | None = None,
    min_parallel: int = MIN_PARALLEL,
) -> VerifyResult:
    """Every event of a SQLite witness store (``witness verify --data-dir``). ``span``: sequence
    numbers per worker task (None: sized to the store and ``jobs``)."""
    source = SqliteSource(os.fspath(path))
    try:
        extent = sqlite_extent(source.path)
        return _verify_rows(source, extent, key, jobs, signatures, span, min_parallel)
    except sqlite3.Error as exc:
        raise StoreError(f"{source.path}: {exc}") from exc


def verify_pg(
    dsn: str,
    schema: str,
    key: Ed25519PublicKey | bytes,
    *,
    jobs: int | None = None,
    signatures: SignatureCheck = "all",
    span: int | None = None,
    min_parallel: int = MIN_PARALLEL,
) -> VerifyResult:
    """Every event of a PostgreSQL witness store (``witness verify --db``). Not from inside a
    running event loop (it runs its own, briefly, before starting the workers)."""
    import asyncpg

    source = PgSource(dsn, schema)
    try:
        extent = asyncio.run(pg_extent(source))
        return _verify_rows(source, extent, key, jobs, signatures, span, min_parallel)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(f"PostgreSQL witness store: {exc}") from exc


def verify_file(
    path: str | os.PathLike[str],
    key: Ed25519PublicKey | bytes,
    *,
    jobs: int | None = None,
    signatures: SignatureCheck = "all",
    expected_head: ChainHead | None = None,
    span: int | None = None,
    min_parallel: int = 4 * FILE_SPAN[0],  # bytes (~2,000 lines): less costs less than workers
) -> VerifyResult:
    """Every line of an export file (``witness verify --file``); ``span``: bytes per task."""
    source = FileSource(os.fspath(path))
    jobs = jobs or default_jobs()
    size = os.path.getsize(source.path)
    spans = plan_file_spans(source.path, span or span_size(size, jobs, FILE_SPAN))
    return verify_spans(
        source,
        spans,
        key,
        jobs=jobs,
        signatures=signatures,
        expected_head=expected_head,
        parallel=size >= min_parallel,
    )
