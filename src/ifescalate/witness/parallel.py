"""Verify a chain on every core, with exactly the sequential verifier's answer.

Ed25519 verification (~55 µs an event with libsodium here) dominates a full verify and is
independent per event; the hash of an event depends only on its own fields; and the link and
sequence checks only need the previous event's stored ``seq`` and ``hash``. So a chain splits into
chunks that verify independently: a worker starts its chunk from the *stored* head of the item
just before it. If that item is bad, an earlier chunk fails on it first, and the first failing
chunk (in order) gives the answer the sequential verifier would have given, down to the reason.

Two entry points:

* :func:`verify_parallel` for events already in memory: the chain in this process, signatures in
  workers (shipping hex pairs is far cheaper than shipping events);
* :class:`ChunkedVerifier` for export lines and store rows: workers parse, hash and verify whole
  chunks, this process only reads and dispatches, with a bounded number of chunks in flight.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .core import (
    ChainHead,
    Event,
    EventError,
    EventType,
    SignatureCheck,
    SignatureCheckFn,
    Verifier,
    VerifyResult,
    WitnessError,
    event_and_body_from_line,
    raw_public_key,
    signature_checker,
    verify,
)
from .store import Row, WitnessStore, row_to_event

_SIGNATURE_REASON = "signature invalid (forged, replaced, or another key)"
MIN_PARALLEL = 4000  # below this, starting workers costs more than it saves
CHUNK = 2500  # items per worker task: ~0.1 s of work, small enough to balance two cores
ItemKind = Literal["line", "row"]
Line = tuple[int, bytes]  # (line number in the file, line without the newline)
_TYPES = {kind.value: kind for kind in EventType}
_CHECKERS: dict[bytes, SignatureCheckFn] = {}  # per worker process: one key object per key


def default_jobs() -> int:
    """Processes to use when asked for "auto": the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _checker(raw_key: bytes) -> SignatureCheckFn:
    check = _CHECKERS.get(raw_key)
    if check is None:
        check = _CHECKERS[raw_key] = signature_checker(raw_key)
    return check


def _first_bad_signature(raw_key: bytes, offset: int, pairs: list[tuple[str, str]]) -> int | None:
    check = _checker(raw_key)
    for index, (signature, digest) in enumerate(pairs):
        if not check(signature, digest):
            return offset + index
    return None


def verify_parallel(
    events: Sequence[Event],
    public_key: Ed25519PublicKey | bytes,
    *,
    jobs: int | None = None,
    start: ChainHead | None = None,
    expected_head: ChainHead | None = None,
) -> VerifyResult:
    """:func:`verify` with every signature checked, spread over ``jobs`` processes."""
    jobs = jobs or default_jobs()
    if jobs <= 1 or len(events) < MIN_PARALLEL:
        return verify(events, public_key, start=start, expected_head=expected_head)
    raw = raw_public_key(public_key)
    size = max(CHUNK, -(-len(events) // (jobs * 4)))
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [
            pool.submit(
                _first_bad_signature,
                raw,
                offset,
                [(e.signature, e.hash) for e in events[offset : offset + size]],
            )
            for offset in range(0, len(events), size)
        ]
        chain = verify(events, raw, start=start, expected_head=expected_head, signatures="none")
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


def row_event(row: Row) -> Event:
    """:func:`~ifescalate.witness.store.row_to_event` without the intermediate dict; any row it
    cannot take directly goes through ``row_to_event``, so errors are exactly its errors."""
    if len(row) == 10 and type(row[6]) is str:
        try:
            return Event(
                row[0],
                row[1],
                row[2],
                row[3],
                _TYPES[row[4]],
                row[5],
                json.loads(row[6]),
                row[7],
                row[8],
                row[9],
            )
        except (ValueError, TypeError, KeyError):  # malformed: the reference path names it
            pass
    return row_to_event(row)


def _to_event(kind: ItemKind, item: Line | Row) -> tuple[Event, bytes | None]:
    """The item's event, and its canonical body when the parser had it for free."""
    if kind == "line":
        return event_and_body_from_line(item[1])
    return row_event(item), None


def _malformed(kind: ItemKind, item: Line | Row, exc: EventError) -> str:
    if kind == "line":
        return f"line {item[0]}: malformed event: {exc}"
    return f"malformed stored event: {exc}"


def verify_chunk(
    raw_key: bytes,
    kind: ItemKind,
    before: Line | Row | None,
    items: Sequence[Line | Row],
    start: ChainHead | None,
    signatures: SignatureCheck,
) -> VerifyResult | None:
    """Verify ``items`` as the sequential verifier would, starting after ``before`` (the previous
    item, whose stored head is taken on trust: its own chunk checks it) or at ``start``.

    None when ``before`` itself is malformed: the chunk holding it reports that first.
    """
    if before is not None:
        try:
            previous = _to_event(kind, before)[0]
        except EventError:
            return None
        start = ChainHead(previous.seq, previous.hash)
    verifier = Verifier(raw_key, start=start, signatures=signatures)
    for item in items:
        try:
            event, body = _to_event(kind, item)
        except EventError as exc:
            return verifier.fail(verifier.next_seq, _malformed(kind, item, exc))
        if not verifier.feed(event, body):
            return verifier.failure
    return verifier.finish()


class ChunkedVerifier:
    """Streaming verify of export lines or store rows: :meth:`add` items in order, then
    :meth:`result`. With ``jobs`` > 1 chunks run in worker processes once there are at least two
    chunks' worth of items; at most ``2 * jobs + 2`` chunks are in flight (bounded memory).
    Stop adding when :attr:`done` turns True: the answer is already known."""

    def __init__(
        self,
        public_key: Ed25519PublicKey | bytes,
        kind: ItemKind,
        *,
        jobs: int | None = None,
        signatures: SignatureCheck = "all",
        start: ChainHead | None = None,
        chunk: int = CHUNK,
    ) -> None:
        self._key = public_key
        self._raw = raw_public_key(public_key)
        self._kind: ItemKind = kind
        self._jobs = jobs or default_jobs()
        self._signatures: SignatureCheck = signatures
        # "last": chunks check hashes only; the final signature is checked once, at the end.
        self._chunk_mode: SignatureCheck = "all" if signatures == "all" else "none"
        self._start = start
        self._chunk = chunk
        self._buffer: list[Line | Row] = []
        self._before: Line | Row | None = None  # last item of the previous chunk
        self._held: list[tuple[Line | Row | None, list[Line | Row]]] = []
        self._pool: ProcessPoolExecutor | None = None
        self._flight: deque[tuple[int, Future[VerifyResult | None]]] = deque()
        self._offset = 0  # items dispatched so far
        self._settled = 0  # items in chunks known good
        self._last_head: ChainHead | None = None
        self._last_item: Line | Row | None = None
        self._failure: VerifyResult | None = None

    @property
    def done(self) -> bool:
        return self._failure is not None

    def add(self, item: Line | Row) -> None:
        if self._failure is not None:
            return
        self._buffer.append(item)
        if len(self._buffer) >= self._chunk:
            self._dispatch()

    def _dispatch(self) -> None:
        items, self._buffer = self._buffer, []
        self._last_item = items[-1]
        self._held.append((self._before, items))
        self._before = items[-1]
        if self._jobs <= 1 or (self._pool is None and len(self._held) < 2):
            if self._jobs <= 1:
                self._run_held_inline()
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self._jobs)
        for before, held in self._held:
            future = self._pool.submit(
                verify_chunk,
                self._raw,
                self._kind,
                before,
                held,
                self._chunk_start(before),
                self._chunk_mode,
            )
            self._flight.append((len(held), future))
        self._held.clear()
        while len(self._flight) > 2 * self._jobs + 2 and self._failure is None:
            self._settle_oldest()

    def _chunk_start(self, before: Line | Row | None) -> ChainHead | None:
        return self._start if before is None else None

    def _run_held_inline(self) -> None:
        for before, items in self._held:
            if self._failure is None:
                result = verify_chunk(
                    self._raw,
                    self._kind,
                    before,
                    items,
                    self._chunk_start(before),
                    self._chunk_mode,
                )
                self._absorb(len(items), result)
        self._held.clear()

    def _settle_oldest(self) -> None:
        size, future = self._flight.popleft()
        self._absorb(size, future.result())

    def _absorb(self, size: int, result: VerifyResult | None) -> None:
        if result is None:  # cannot happen: the previous chunk parsed that same item
            raise WitnessError("parallel verify: chunk start unreadable after a good chunk")
        if not result.ok:
            self._failure = VerifyResult(
                False,
                self._settled + result.count,
                result.first_bad_seq,
                result.reason,
                result.head,
            )
            self.close()
            return
        self._settled += size
        self._last_head = result.head

    def result(self, *, expected_head: ChainHead | None = None) -> VerifyResult:
        """The answer (waits for every chunk); ``expected_head`` as in :meth:`Verifier.finish`."""
        if self._buffer and self._failure is None:
            self._dispatch()
        if self._failure is None:
            self._run_held_inline()
        while self._flight and self._failure is None:
            self._settle_oldest()
        self.close()
        if self._failure is not None:
            return self._failure
        verifier = Verifier(self._key, start=self._start, signatures=self._signatures)
        if self._last_head is not None and self._last_item is not None:
            last = None
            if self._signatures == "last":
                last = _to_event(self._kind, self._last_item)[0]
            verifier.advance(self._last_head, self._settled, last)
        return verifier.finish(expected_head=expected_head)

    def close(self) -> None:
        """Stop the workers (pending chunks are cancelled)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.shutdown(wait=True, cancel_futures=True)
        self._flight.clear()


async def verify_store_parallel(
    store: WitnessStore,
    public_key: Ed25519PublicKey | bytes,
    *,
    signatures: SignatureCheck = "all",
    jobs: int | None = None,
    page: int = 10000,
) -> VerifyResult:
    """:func:`~ifescalate.witness.service.verify_store` on ``jobs`` processes (None: every core):
    rows go to the workers as fetched, so the store read overlaps the crypto."""
    verifier = ChunkedVerifier(public_key, "row", jobs=jobs, signatures=signatures)
    try:
        async for row in store.iter_rows(page=page):
            verifier.add(row)
            if verifier.done:
                break
        return verifier.result()
    finally:
        verifier.close()
