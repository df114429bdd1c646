"""Span-parallel verify: every worker reads its own slice of the chain straight from the source.

The chunked verifier (:mod:`.parallel`) reads every row or line in this process and pickles it to
a worker. Here the parent only plans spans (a range of sequence numbers in a store, a range of
bytes in an export file), each worker reads, parses, hashes and verifies its span itself, and
returns a few words: the first item's ``(seq, prev_hash)``, the last good head, and the first
failure. The parent stitches spans in order: span *k*'s first item must continue span *k-1*'s
head, exactly the check the sequential verifier makes at that item.

Per item, a fast check (:func:`_fast_row` / :func:`_fast_line`) is *sound for success only*: it
accepts an item only when the reference verifier would accept it with the same head. Anything it
does not accept goes through the reference path (``Event`` parse + :class:`~.core.Verifier`), so
every failure is named with exactly the reference reason and sequence number. The fast check
never re-canonicalises a stored event: a row's ``details`` column and an export line already are
RFC 8785 text; the check proves that (a decode + re-encode round trip) and hashes the bytes.

Cost per event here (2 cores, libsodium): ~40 µs signature check, ~5-10 µs for everything else.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import os
import re
import sqlite3
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .core import (
    GENESIS_HASH,
    ChainHead,
    Event,
    EventError,
    EventType,
    SignatureCheck,
    Verifier,
    VerifyResult,
    _plain,
    raw_public_key,
)
from .jcs import MAX_SAFE_INTEGER
from .store import COLUMNS, Row, StoreError, row_to_event

MIN_PARALLEL = 4000  # below this, starting workers costs more than it saves
ROW_SPAN = 4000  # sequence numbers per worker task: ~0.2 s of work on one core
FILE_SPAN = 2 << 20  # bytes per worker task (~4,000 lines of a typical export)
_TYPES = {kind.value: kind for kind in EventType}
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_QUOTE = json.encoder.encode_basestring  # RFC 8785 §3.2.2.2 escapes for str (C)
_ENCODE = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode


class _NotPlain(Exception):
    """A number the C codec would not round-trip as RFC 8785 (float, or outside I-JSON)."""


def _no_float(text: str) -> float:
    raise _NotPlain(text)


def _safe_int(text: str) -> int:
    value = int(text)
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return value
    raise _NotPlain(text)


# Floats go to the reference path (ES number formatting, RFC 8785 §3.2.2.3); so do integers outside
# the I-JSON range the reference refuses. Everything else decodes in C.
_DECODE = json.JSONDecoder(parse_float=_no_float, parse_int=_safe_int).decode


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


@dataclass(frozen=True, slots=True)
class SpanResult:
    """What a worker sends back for one span (never the events themselves)."""

    count: int  # items verified before the failure (all of them if none)
    first: tuple[int, str] | None  # (seq, prev_hash) of the first item; None: empty or unreadable
    head: ChainHead | None  # stored head of the last good item
    last_item: Row | bytes | None  # the last good item ("last" mode checks its signature)
    bad_seq: int | None = None  # first bad sequence; None with a reason: the first item unreadable
    reason: str | None = None
    bad_line: int | None = None  # files: index of the unreadable line within the span
    lines: int = 0  # files: newlines in the span (to number lines across spans)


# --- per-item checks -------------------------------------------------------------------------


def _canonical_details(text: str) -> bool:
    """``text`` is exactly the RFC 8785 form of a JSON object the reference encoder accepts."""
    try:
        value = _DECODE(text)
    except (ValueError, _NotPlain, RecursionError):
        return False
    if type(value) is not dict or _ENCODE(value) != text:
        return False
    # Non-ASCII keys may sort differently in UTF-16 (RFC 8785 §3.2.3); walk them the slow way.
    return text.isascii() or _plain(value)


def _opt(text: object) -> str | None:
    if text is None:
        return "null"
    return _QUOTE(text) if type(text) is str else None


def _fast_row(row: Row, seq: int, prev: str, check: Any, raw: bytes) -> str | None:
    """The row's hash if the reference verifier would accept it after head ``(seq - 1, prev)``
    (sequence, link, form, hash and, if ``check``, signature), else None (go the slow way)."""
    if len(row) != 10:
        return None
    n, time, trace, escalation, kind, actor, details, prev_hash, digest, signature = row
    if (
        n != seq
        or type(n) is not int
        or prev_hash != prev
        or type(time) is not str
        or not _TIME.fullmatch(time)
        or kind not in _TYPES
        or type(actor) is not str
        or not actor
        or type(details) is not str
        or type(digest) is not str
    ):
        return None
    trace_q, escalation_q = _opt(trace), _opt(escalation)
    if trace_q is None or escalation_q is None or not _canonical_details(details):
        return None
    try:
        body = (
            f'{{"actor":{_QUOTE(actor)},"details":{details},"escalation_id":{escalation_q},'
            f'"prev_hash":"{prev}","seq":{n},"time":"{time}","trace_id":{trace_q},'
            f'"type":"{kind}"}}'
        ).encode()
    except UnicodeEncodeError:  # a lone surrogate: the reference names it
        return None
    if hashlib.sha256(body).hexdigest() != digest:
        return None
    if check is not None and not check(signature, digest, raw):
        return None
    return digest


def _fast_line(line: bytes, seq: int, prev: str, check: Any, raw: bytes) -> str | None:
    """:func:`_fast_row` for one export line: accepted only if the line is the canonical JSON of
    a well-formed event (then its body is the line less ``hash`` and ``signature``)."""
    try:
        data = _DECODE(line.decode())
        if type(data) is not dict or len(data) != 10:
            return None
        n, digest, signature = data["seq"], data["hash"], data["signature"]
        time, kind, actor = data["time"], data["type"], data["actor"]
        trace, escalation = data["trace_id"], data["escalation_id"]
        details, prev_hash = data["details"], data["prev_hash"]
    except (ValueError, KeyError, _NotPlain, RecursionError):
        return None
    if (
        n != seq
        or type(n) is not int
        or prev_hash != prev
        or type(time) is not str
        or not _TIME.fullmatch(time)
        or kind not in _TYPES
        or type(actor) is not str
        or not actor
        or type(details) is not dict
        or type(digest) is not str
        or type(signature) is not str
        or (trace is not None and type(trace) is not str)
        or (escalation is not None and type(escalation) is not str)
    ):
        return None
    try:
        if _ENCODE(data).encode() != line or not (line.isascii() or _plain(data)):
            return None
    except UnicodeEncodeError:
        return None
    # Canonical, so the members after "escalation_id" are exactly these, and no earlier text can
    # hold them: inside a string a quote is always escaped (RFC 8785 §3.2.2.2).
    sealed = f'"hash":"{digest}","prev_hash":"{prev}","seq":{n},"signature":"{signature}",'.encode()
    at = line.rfind(sealed)
    if at < 0:
        return None
    body = b'%s"prev_hash":"%s","seq":%d,%s' % (
        line[:at],
        prev.encode(),
        n,
        line[at + len(sealed) :],
    )
    if hashlib.sha256(body).hexdigest() != digest:
        return None
    if check is not None and not check(signature, digest, raw):
        return None
    return digest


def _sodium_check() -> Any:
    """``check(signature_hex, hash_hex, raw_key) -> bool`` straight on libsodium's
    ``crypto_sign_open`` (the function PyNaCl wraps, minus its per-call buffer set-up), or
    OpenSSL when PyNaCl is missing. Accepts only lowercase hex, as the event format says."""
    try:
        from nacl._sodium import ffi, lib  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - PyNaCl is a declared dependency
        from cryptography.exceptions import InvalidSignature

        def openssl(signature: str, digest: str, raw: bytes) -> bool:
            try:
                sm = bytes.fromhex(signature + digest)
                Ed25519PublicKey.from_public_bytes(raw).verify(sm[:64], sm[64:])
            except (ValueError, InvalidSignature):
                return False
            return sm[:64].hex() == signature

        return openssl
    out = ffi.new("unsigned char[]", 96)
    out_len = ffi.new("unsigned long long *")
    sign_open = lib.crypto_sign_open

    def sodium(signature: str, digest: str, raw: bytes) -> bool:
        try:
            sm = bytes.fromhex(signature + digest)  # signed message = signature || message
        except ValueError:
            return False
        if len(sm) != 96 or sm[:64].hex() != signature:
            return False
        return sign_open(out, out_len, sm, 96, raw) == 0  # type: ignore[no-any-return]

    return sodium


# --- one span, in a worker ---------------------------------------------------------------------


def _reference_event(item: Row | bytes) -> Event:
    if isinstance(item, bytes):
        return Event.from_json(item)
    return row_to_event(item)


def _malformed(item: Row | bytes, exc: EventError) -> str:
    # Files: the parent prefixes "line N: " (only it knows N across spans).
    if isinstance(item, bytes):
        return f"malformed event: {exc}"
    return f"malformed stored event: {exc}"


def verify_items(
    items: Iterable[Row | bytes], raw_key: bytes, signatures: SignatureCheck
) -> SpanResult:
    """Verify consecutive items (rows, or export lines without the newline) of one span.

    The first item's link (``seq``, ``prev_hash``) is taken as given and reported back: the
    parent checks it against the previous span. Every later item is checked in full.
    """
    check = _sodium_check() if signatures == "all" else None
    count, seq, prev = 0, 0, GENESIS_HASH
    first: tuple[int, str] | None = None
    last: Row | bytes | None = None
    for index, item in enumerate(items):
        digest = None
        if count:  # the first item of a span always takes the reference path
            if type(item) is bytes:
                digest = _fast_line(item, seq + 1, prev, check, raw_key)
            else:
                digest = _fast_row(item, seq + 1, prev, check, raw_key)  # type: ignore[arg-type]
        if digest is None:
            event, failure = _reference_check(item, count == 0, seq, prev, raw_key, signatures)
            if count == 0 and event is not None:
                first = (event.seq, event.prev_hash)
            if failure is not None:
                bad_seq, reason, malformed = failure
                head = ChainHead(seq, prev) if count else None
                bad_line = index if malformed and type(item) is bytes else None
                return SpanResult(count, first, head, last, bad_seq, reason, bad_line)
            assert event is not None
            seq, digest = event.seq, event.hash
        else:
            seq += 1
        prev, last = digest, item
        count += 1
    return SpanResult(count, first, ChainHead(seq, prev) if count else None, last)


def _reference_check(
    item: Row | bytes,
    leading: bool,
    seq: int,
    prev: str,
    raw_key: bytes,
    signatures: SignatureCheck,
) -> tuple[Event | None, tuple[int | None, str, bool] | None]:
    """The reference verdict on one item: (event if it parsed, failure if any), a failure being
    (first bad seq (None: a leading item that does not parse), reason, malformed?)."""
    try:
        event = _reference_event(item)
    except EventError as exc:
        return None, ((None if leading else seq + 1), _malformed(item, exc), True)
    # A leading item is checked as if its own link were right: the parent checks the link.
    start = ChainHead(event.seq - 1, event.prev_hash) if leading else ChainHead(seq, prev)
    verifier = Verifier(raw_key, start=start, signatures="all" if signatures == "all" else "none")
    if verifier.feed(event):
        return event, None
    failure = verifier.failure
    assert failure is not None and failure.first_bad_seq is not None
    return event, (failure.first_bad_seq, failure.reason, False)


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


async def _pg_fetch(source: PgSource, span: Span) -> list[Row]:
    import asyncpg  # type: ignore[import-untyped]  # only when PostgreSQL is asked for

    conn = await asyncpg.connect(source.dsn)
    try:
        records = await conn.fetch(
            f'SELECT {", ".join(COLUMNS)} FROM "{source.schema}".witness_events '
            "WHERE seq BETWEEN $1 AND $2 ORDER BY seq",
            *span,
        )
    finally:
        await conn.close()
    return [tuple(record) for record in records]


def _file_lines(path: str, span: Span) -> tuple[list[bytes], int]:
    with open(path, "rb") as handle:
        handle.seek(span[0])
        data = handle.read(span[1] - span[0])
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines, data.count(b"\n")


def verify_span(
    source: Source, span: Span, raw_key: bytes, signatures: SignatureCheck
) -> SpanResult:
    """Read and verify one span of ``source`` (runs in a worker, or inline)."""
    if isinstance(source, FileSource):
        lines, newlines = _file_lines(source.path, span)
        # An empty line is skipped but still numbered (as iter_export_lines does).
        numbered = [index for index, line in enumerate(lines) if line]
        result = verify_items([line for line in lines if line], raw_key, signatures)
        bad = result.bad_line
        return _with(result, lines=newlines, bad_line=None if bad is None else numbered[bad])
    if isinstance(source, PgSource):
        rows: Iterable[Row] = asyncio.run(_pg_fetch(source, span))
    else:
        rows = _sqlite_rows(source.path, span)
    return verify_items(rows, raw_key, signatures)


def _with(result: SpanResult, **changes: Any) -> SpanResult:
    fields = {name: getattr(result, name) for name in SpanResult.__slots__}
    fields.update(changes)
    return SpanResult(**fields)


# --- planning and stitching, in the parent -----------------------------------------------------


def plan_row_spans(max_seq: int, count: int, size: int = ROW_SPAN) -> list[Span]:
    """Spans of sequence numbers 1..max_seq. Rows with seq <= 0 are never read (the reference
    reads ``seq > 0`` in order). A sparse store (gaps: it is broken at the first one) is one span:
    reading it in order finds the gap without planning millions of empty spans."""
    if max_seq <= 0:
        return []
    if max_seq > 2 * count + size:
        return [(1, max_seq)]
    return [(lo, min(lo + size - 1, max_seq)) for lo in range(1, max_seq + 1, size)]


def plan_file_spans(path: str, size: int = FILE_SPAN) -> list[Span]:
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
            last = _reference_event(self.last)
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
            flight.append(pool.submit(verify_span, source, span, raw, mode))
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


def verify_sqlite(
    path: str | os.PathLike[str],
    key: Ed25519PublicKey | bytes,
    *,
    jobs: int | None = None,
    signatures: SignatureCheck = "all",
    span: int = ROW_SPAN,
    min_parallel: int = MIN_PARALLEL,
) -> VerifyResult:
    """Every event of a SQLite witness store (``witness verify --data-dir``)."""
    source = SqliteSource(os.fspath(path))
    try:
        max_seq, count = sqlite_extent(source.path)
        spans = plan_row_spans(max_seq, count, span)
        return verify_spans(
            source, spans, key, jobs=jobs, signatures=signatures, parallel=count >= min_parallel
        )
    except sqlite3.Error as exc:
        raise StoreError(f"{source.path}: {exc}") from exc


def verify_pg(
    dsn: str,
    schema: str,
    key: Ed25519PublicKey | bytes,
    *,
    jobs: int | None = None,
    signatures: SignatureCheck = "all",
    span: int = ROW_SPAN,
    min_parallel: int = MIN_PARALLEL,
) -> VerifyResult:
    """Every event of a PostgreSQL witness store (``witness verify --db``). Not from inside a
    running event loop (it runs its own, briefly, before starting the workers)."""
    import asyncpg

    source = PgSource(dsn, schema)
    try:
        max_seq, count = asyncio.run(pg_extent(source))
        spans = plan_row_spans(max_seq, count, span)
        return verify_spans(
            source, spans, key, jobs=jobs, signatures=signatures, parallel=count >= min_parallel
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(f"PostgreSQL witness store: {exc}") from exc


def verify_file(
    path: str | os.PathLike[str],
    key: Ed25519PublicKey | bytes,
    *,
    jobs: int | None = None,
    signatures: SignatureCheck = "all",
    expected_head: ChainHead | None = None,
    span: int = FILE_SPAN,
) -> VerifyResult:
    """Every line of an export file (``witness verify --file``)."""
    source = FileSource(os.fspath(path))
    spans = plan_file_spans(source.path, span)
    return verify_spans(
        source, spans, key, jobs=jobs, signatures=signatures, expected_head=expected_head
    )
