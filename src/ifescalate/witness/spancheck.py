"""Verifying the items of one span (store rows or export lines), in a worker process.

A fast check per item (:func:`_fast_row` / :func:`_fast_line`) is *sound for success only*: it
accepts an item only when the reference verifier would accept it after the same head. Anything it
does not accept goes through the reference path (``Event`` parse + :class:`~.core.Verifier`), so
every failure is named with exactly the reference reason and sequence number. The fast check never
re-canonicalises a stored event: a row's ``details`` column and an export line already are RFC 8785
text; the check proves that (a decode + re-encode round trip) and hashes those bytes.

Cost per event here: ~40 µs libsodium signature check, ~5-8 µs for everything else.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
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
    _plain,
)
from .jcs import MAX_SAFE_INTEGER
from .store import Row, row_to_event

_TYPES = {kind.value: kind for kind in EventType}
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_HEX128 = re.compile(r"[0-9a-f]{128}")
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
        or type(signature) is not str
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
    return _signature_ok(signature, digest, check, raw)


def _fast_line(line: bytes, seq: int, prev: str, check: Any, raw: bytes) -> str | None:
    """:func:`_fast_row` for one export line: accepted only if the line is, byte for byte, the
    canonical JSON of a well-formed event, rebuilt here from its parsed fields."""
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
    ):
        return None
    trace_q, escalation_q = _opt(trace), _opt(escalation)
    if trace_q is None or escalation_q is None:
        return None
    # RFC 8785 §3.2.3 member order. Values written raw (hashes, time, type) must equal the line's
    # text, so they needed no escaping; the line is canonical iff the rebuilt bytes equal it.
    head = f'{{"actor":{_QUOTE(actor)},"details":{_ENCODE(details)},"escalation_id":{escalation_q},'
    tail = f'"time":"{time}","trace_id":{trace_q},"type":"{kind}"}}'
    try:
        sealed = f'"hash":"{digest}","prev_hash":"{prev}","seq":{n},"signature":"{signature}",'
        if f"{head}{sealed}{tail}".encode() != line:
            return None
        body = f'{head}"prev_hash":"{prev}","seq":{n},{tail}'.encode()
    except UnicodeEncodeError:  # a lone surrogate: the reference names it
        return None
    if not (line.isascii() or _plain(details)):  # non-ASCII keys may sort differently in UTF-16
        return None
    if hashlib.sha256(body).hexdigest() != digest:
        return None
    return _signature_ok(signature, digest, check, raw)


def _signature_ok(signature: str, digest: str, check: Any, raw: bytes) -> str | None:
    """``digest`` if the signature checks out (or, with ``check`` None, is at least well-formed,
    as the reference's parse demands of every event), else None."""
    if check is None:
        return digest if _HEX128.fullmatch(signature) else None
    return digest if check(signature, digest, raw) else None


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


def reference_event(item: Row | bytes) -> Event:
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
        event = reference_event(item)
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
