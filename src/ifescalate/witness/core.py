"""IF.witness core: events, canonical encoding, the SHA-256 hash chain, Ed25519 signing, verifying.

Pure (ARCHITECTURE.md convention 1): no IO and no clock. Time enters as ``now`` (seconds since the
Unix epoch, UTC) and the signer is injected, so the same inputs always give the same bytes.

Construction of one event (the format a third party re-implements to verify offline):

1. body = {actor, details, escalation_id, prev_hash, seq, time, trace_id, type}
   (``prev_hash`` of sequence 1 is 64 zeros: :data:`GENESIS_HASH`);
2. hash = lowercase hex SHA-256 of the RFC 8785 canonical UTF-8 bytes of body;
3. signature = lowercase hex Ed25519 signature (RFC 8032) over the 32 raw bytes of that hash;
4. the stored/exported event is body + {hash, signature}, canonical JSON again.

Because every hash covers the previous hash, a valid signature on event N vouches for the content
of events 1..N; the per-event signature additionally makes each event attributable on its own.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .jcs import MAX_SAFE_INTEGER, CanonicalizationError, JsonValue, canonicalize, es_number

try:  # libsodium verifies Ed25519 ~1.7x faster than OpenSSL here; cryptography stays the fallback.
    from nacl.bindings import crypto_sign_open as _sodium_open
    from nacl.exceptions import BadSignatureError as _SodiumBadSignature
except ImportError:  # pragma: no cover - PyNaCl is a declared dependency
    _sodium_open = None  # type: ignore[assignment]  # checked before use

GENESIS_HASH = "0" * 64
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
# RFC 3339 §5.6 profile we write: UTC, "Z", exactly six fractional digits.
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
EVENT_KEYS = frozenset(
    {"seq", "time", "trace_id", "escalation_id", "type", "actor", "details", "prev_hash"}
)
SEALED_KEYS = EVENT_KEYS | {"hash", "signature"}


class WitnessError(Exception):
    """Base of every witness error."""


class EventError(WitnessError, ValueError):
    """An event field is malformed (constructor validation, or a bad line in an export)."""


class ChainBrokenError(WitnessError):
    """The stored chain does not verify; appending would extend a forged history."""

    def __init__(self, first_bad_seq: int, reason: str) -> None:
        super().__init__(
            f"witness chain broken at sequence {first_bad_seq}: {reason}; refusing appends"
        )
        self.first_bad_seq = first_bad_seq
        self.reason = reason


class EventType(enum.Enum):
    """Every step of an escalation that is witnessed (ARCHITECTURE.md, "An escalation")."""

    ESCALATION_REQUESTED = "ESCALATION_REQUESTED"
    GUARD_DECISION = "GUARD_DECISION"
    REJECTED = "REJECTED"
    INVITE = "INVITE"
    RINGING = "RINGING"
    NO_ANSWER = "NO_ANSWER"
    BUSY = "BUSY"
    DECLINED = "DECLINED"
    CONNECTED = "CONNECTED"
    BRIDGE_ESTABLISHED = "BRIDGE_ESTABLISHED"
    SECURITY_REJECTED = "SECURITY_REJECTED"
    VERDICT = "VERDICT"
    TERMINATED = "TERMINATED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    EVIDENCE_ACCESSED = "EVIDENCE_ACCESSED"
    PARTICIPANT_JOINED = "PARTICIPANT_JOINED"
    PARTICIPANT_LEFT = "PARTICIPANT_LEFT"
    # Council room events (media issue): who spoke when, rights changes, the announcement.
    SPEAKING_STARTED = "SPEAKING_STARTED"
    SPEAKING_STOPPED = "SPEAKING_STOPPED"
    RIGHTS_CHANGED = "RIGHTS_CHANGED"
    ANNOUNCEMENT_PLAYED = "ANNOUNCEMENT_PLAYED"
    RECORDING_STOPPED = "RECORDING_STOPPED"


def format_time(now: float) -> str:
    """RFC 3339 UTC with microseconds, e.g. ``2024-05-01T12:00:00.000001Z``."""
    stamp = datetime.fromtimestamp(now, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Event:
    """One sealed witness event. The constructor validates every field's form (not the chain)."""

    seq: int
    time: str
    trace_id: str | None
    escalation_id: str | None
    type: EventType
    actor: str
    details: Mapping[str, JsonValue] = field(hash=False)
    prev_hash: str
    hash: str
    signature: str

    def __post_init__(self) -> None:
        if not isinstance(self.type, EventType):
            raise EventError(f"type must be an EventType, got {self.type!r}")
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 1:
            raise EventError(f"seq must be a positive integer, got {self.seq!r}")
        if not isinstance(self.time, str) or not _TIME.fullmatch(self.time):
            raise EventError(f"time must be RFC 3339 UTC with microseconds, got {self.time!r}")
        for name in ("trace_id", "escalation_id"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise EventError(f"{name} must be a string or None, got {value!r}")
        if not isinstance(self.actor, str) or not self.actor:
            raise EventError(f"actor must be a non-empty string, got {self.actor!r}")
        if not isinstance(self.details, Mapping):
            raise EventError(f"details must be a JSON object, got {type(self.details).__name__}")
        _check_hex("prev_hash", self.prev_hash, _HEX64)
        _check_hex("hash", self.hash, _HEX64)
        _check_hex("signature", self.signature, _HEX128)

    def body(self) -> dict[str, object]:
        """The hashed part: every field but ``hash`` and ``signature``."""
        return _body(
            self.seq,
            self.time,
            self.trace_id,
            self.escalation_id,
            self.type,
            self.actor,
            self.details,
            self.prev_hash,
        )

    def to_dict(self) -> dict[str, object]:
        whole = self.body()
        whole["hash"] = self.hash
        whole["signature"] = self.signature
        return whole

    def to_json(self) -> bytes:
        """The canonical JSON of the whole event (one export line, without the newline)."""
        return canonicalize(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Event:
        """Rebuild an event from its JSON object; raises :class:`EventError` on any bad field."""
        keys = set(data)
        if keys != SEALED_KEYS:
            missing, extra = sorted(SEALED_KEYS - keys), sorted(keys - SEALED_KEYS)
            raise EventError(f"event fields wrong: missing {missing}, unexpected {extra}")
        try:
            kind = EventType(data["type"])
        except ValueError:
            raise EventError(f"unknown event type {data['type']!r}") from None
        return cls(
            seq=data["seq"],  # type: ignore[arg-type]  # validated in __post_init__
            time=data["time"],  # type: ignore[arg-type]
            trace_id=data["trace_id"],  # type: ignore[arg-type]
            escalation_id=data["escalation_id"],  # type: ignore[arg-type]
            type=kind,
            actor=data["actor"],  # type: ignore[arg-type]
            details=data["details"],  # type: ignore[arg-type]
            prev_hash=data["prev_hash"],  # type: ignore[arg-type]
            hash=data["hash"],  # type: ignore[arg-type]
            signature=data["signature"],  # type: ignore[arg-type]
        )

    @classmethod
    def from_json(cls, line: str | bytes) -> Event:
        """Parse one export line. Duplicate names and NaN/Infinity are rejected (I-JSON)."""
        try:
            data = json.loads(line, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EventError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise EventError("an event line must be a JSON object")
        return cls.from_dict(data)


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise EventError("duplicate member names (RFC 7493 §2.3)")
    return result


def _no_constant(name: str) -> object:
    raise EventError(f"{name} is not a JSON number")


def _check_hex(name: str, value: object, pattern: re.Pattern[str]) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise EventError(f"{name} must be lowercase hex of the right length, got {value!r}")


def _body(
    seq: int,
    time: str,
    trace_id: str | None,
    escalation_id: str | None,
    kind: EventType,
    actor: str,
    details: Mapping[str, JsonValue],
    prev_hash: str,
) -> dict[str, object]:
    return {
        "seq": seq,
        "time": time,
        "trace_id": trace_id,
        "escalation_id": escalation_id,
        "type": kind.value,
        "actor": actor,
        "details": details,
        "prev_hash": prev_hash,
    }


def hash_body(body: Mapping[str, object]) -> str:
    """Lowercase hex SHA-256 of the canonical body."""
    return hashlib.sha256(canonicalize(body)).hexdigest()


# Fast canonical encoding for the verify hot loop. The C JSON encoder with these settings writes
# exactly the RFC 8785 bytes for "plain" values: str/int/bool/None/list/dict with ASCII keys
# (code-point order = UTF-16 order, RFC 8785 §3.2.3) and floats whose repr already is the
# ECMAScript form (§3.2.2.3). Anything else (or a lone surrogate, which fails the UTF-8 encode)
# returns None and the caller takes the reference encoder, so results never differ.
_JSON_ENCODE = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode
_QUOTE = json.encoder.encode_basestring
_TYPES = {kind.value: kind for kind in EventType}


def _plain(value: object) -> bool:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER  # type: ignore[operator]
    if kind is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str or not key.isascii() or not _plain(item):
                return False
        return True
    if kind is list or kind is tuple:
        return all(_plain(item) for item in value)  # type: ignore[attr-defined]
    if kind is float:
        return math.isfinite(value) and repr(value) == es_number(value)  # type: ignore[arg-type]
    return False


def _opt(text: str | None) -> str | None:
    if text is None:
        return "null"
    return _QUOTE(text) if type(text) is str else None


def _fast_parts(event: Event) -> tuple[str, str, str, str, str] | None:
    """(actor, details, escalation_id, trace_id, seq) as canonical JSON, or None if not plain."""
    details, seq = event.details, event.seq
    if type(details) is not dict or not _plain(details):
        return None
    if type(seq) is not int or seq > MAX_SAFE_INTEGER or type(event.actor) is not str:
        return None
    escalation, trace = _opt(event.escalation_id), _opt(event.trace_id)
    if escalation is None or trace is None:
        return None
    return _QUOTE(event.actor), _JSON_ENCODE(details), escalation, trace, str(seq)


def _utf8(text: str) -> bytes | None:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogate: let the reference encoder name it
        return None


def canonical_body(event: Event) -> bytes:
    """RFC 8785 bytes of ``event.body()`` (what ``hash`` covers), on the fast path when possible.

    Raises :class:`CanonicalizationError` exactly as ``canonicalize(event.body())`` does.
    """
    parts = _fast_parts(event)
    if parts is not None:
        actor, details, escalation, trace, seq = parts
        data = _utf8(
            f'{{"actor":{actor},"details":{details},"escalation_id":{escalation},'
            f'"prev_hash":"{event.prev_hash}","seq":{seq},"time":"{event.time}",'
            f'"trace_id":{trace},"type":"{event.type.value}"}}'
        )
        if data is not None:
            return data
    return canonicalize(event.body())


def _fast_line_and_body(event: Event) -> tuple[bytes, bytes] | None:
    """(``event.to_json()``, ``canonical_body(event)``) from one encoding, or None when only the
    reference encoder can tell."""
    parts = _fast_parts(event)
    if parts is None:
        return None
    actor, details, escalation, trace, seq = parts
    head = f'{{"actor":{actor},"details":{details},"escalation_id":{escalation},'
    tail = f'"time":"{event.time}","trace_id":{trace},"type":"{event.type.value}"}}'
    line = _utf8(
        f'{head}"hash":"{event.hash}","prev_hash":"{event.prev_hash}","seq":{seq},'
        f'"signature":"{event.signature}",{tail}'
    )
    if line is None:
        return None
    return line, f'{head}"prev_hash":"{event.prev_hash}","seq":{seq},{tail}'.encode()


def event_from_line(line: bytes) -> Event:
    """:meth:`Event.from_json` for one export line, fast for canonical lines."""
    return event_and_body_from_line(line)[0]


def event_and_body_from_line(line: bytes) -> tuple[Event, bytes | None]:
    """:meth:`Event.from_json` for one export line, plus its canonical body when it came cheap.

    The fast path parses without hooks and accepts the result only if re-encoding the parsed
    fields gives the line back byte for byte: then there were no duplicate names, no NaN, nothing
    non-canonical, and the body encoded alongside is ``canonical_body(event)``. Every other line
    goes through :meth:`Event.from_json`, so errors are exactly its errors.
    """
    try:
        data = json.loads(line)
        if type(data) is dict and len(data) == len(SEALED_KEYS):
            event = Event(
                data["seq"],
                data["time"],
                data["trace_id"],
                data["escalation_id"],
                _TYPES[data["type"]],
                data["actor"],
                data["details"],
                data["prev_hash"],
                data["hash"],
                data["signature"],
            )
            encoded = _fast_line_and_body(event)
            if encoded is not None and encoded[0] == line:
                return event, encoded[1]
    except (ValueError, TypeError, KeyError):  # malformed: the reference path names it
        pass
    return Event.from_json(line), None


SignatureCheckFn = Callable[[str, str], bool]


def raw_public_key(public_key: Ed25519PublicKey | bytes) -> bytes:
    """The 32-byte RFC 8032 encoding; ``bytes`` are checked like ``from_public_bytes`` does."""
    if isinstance(public_key, bytes):
        Ed25519PublicKey.from_public_bytes(public_key)  # raises ValueError on a bad length
        return public_key
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def signature_checker(public_key: Ed25519PublicKey | bytes) -> SignatureCheckFn:
    """``check(signature_hex, hash_hex) -> bool`` for one key: libsodium if PyNaCl is installed,
    else cryptography (OpenSSL). Both are RFC 8032 verifiers; libsodium additionally refuses
    small-order keys and R values, which an honest signer never produces."""
    raw = raw_public_key(public_key)
    if _sodium_open is not None:
        sodium_open, bad = _sodium_open, _SodiumBadSignature

        def sodium_check(signature: str, digest: str) -> bool:
            try:
                sodium_open(bytes.fromhex(signature + digest), raw)  # signed message = sig || msg
            except bad:
                return False
            return True

        return sodium_check
    key = Ed25519PublicKey.from_public_bytes(raw)

    def openssl_check(signature: str, digest: str) -> bool:
        try:
            key.verify(bytes.fromhex(signature), bytes.fromhex(digest))
        except InvalidSignature:
            return False
        return True

    return openssl_check


class Signer(Protocol):
    """Signs a 32-byte event hash; injected so tests and HSM-backed keys can stand in."""

    def sign(self, data: bytes) -> bytes: ...

    def public_key(self) -> Ed25519PublicKey: ...


class Ed25519Signer:
    """A :class:`Signer` over an in-memory Ed25519 private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._public = private_key.public_key()

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def public_key(self) -> Ed25519PublicKey:
        return self._public


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where the chain stands: the last sequence and hash (0 and genesis when empty)."""

    seq: int = 0
    hash: str = GENESIS_HASH

    @classmethod
    def of(cls, event: Event | None) -> ChainHead:
        return cls() if event is None else cls(event.seq, event.hash)


def seal(
    head: ChainHead,
    signer: Signer,
    kind: EventType,
    *,
    trace_id: str | None,
    escalation_id: str | None,
    actor: str,
    details: Mapping[str, JsonValue],
    now: float,
) -> Event:
    """The next event after ``head``: numbered, linked, hashed and signed.

    Raises :class:`~ifescalate.witness.jcs.CanonicalizationError` if ``details`` holds a value
    JCS cannot encode; ``head`` is not changed (it is a value), so a failure never skips a number.
    """
    if not isinstance(kind, EventType):
        raise EventError(f"type must be an EventType, got {kind!r}")
    time = format_time(now)
    body = _body(head.seq + 1, time, trace_id, escalation_id, kind, actor, details, head.hash)
    digest = hashlib.sha256(canonicalize(body)).digest()
    return Event(
        seq=head.seq + 1,
        time=time,
        trace_id=trace_id,
        escalation_id=escalation_id,
        type=kind,
        actor=actor,
        details=details,
        prev_hash=head.hash,
        hash=digest.hex(),
        signature=signer.sign(digest).hex(),
    )


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of :func:`verify`. ``first_bad_seq`` is the sequence number that should have been
    valid at the first failure (None when ok); ``count`` counts the events that verified."""

    ok: bool
    count: int
    first_bad_seq: int | None = None
    reason: str = ""
    head: ChainHead = ChainHead()

    def message(self) -> str:
        if self.ok:
            return f"OK: {self.count} events, chain and signatures valid"
        return f"BROKEN at sequence {self.first_bad_seq}: {self.reason}"


# "none" is for a caller that checks the signatures itself (the parallel verifier).
SignatureCheck = Literal["all", "last", "none"]


class Verifier:
    """Incremental verifier: feed events in order; stops at the first failure.

    ``signatures="last"`` checks every hash and link but only the final signature, which (the hash
    chain being intact) still authenticates every event's content; ``"all"`` checks each one.
    """

    def __init__(
        self,
        public_key: Ed25519PublicKey | bytes,
        *,
        start: ChainHead | None = None,
        signatures: SignatureCheck = "all",
    ) -> None:
        self._signature_ok = signature_checker(public_key)  # raw key converted once
        head = start or ChainHead()
        # The head as two plain attributes: no ChainHead allocation per event in the hot loop.
        self._seq, self._hash = head.seq, head.hash
        self._count = 0
        self._all = signatures == "all"
        self._last_only = signatures == "last"
        self._last: Event | None = None
        self._failure: VerifyResult | None = None

    @property
    def head(self) -> ChainHead:
        return ChainHead(self._seq, self._hash)

    @property
    def failure(self) -> VerifyResult | None:
        return self._failure

    @property
    def next_seq(self) -> int:
        """The sequence number the next event must carry."""
        return self._seq + 1

    def fail(self, seq: int, reason: str) -> VerifyResult:
        """Record a failure found outside the verifier (a malformed line, a missing tail)."""
        if self._failure is None:
            self._failure = VerifyResult(False, self._count, seq, reason, self.head)
        return self._failure

    def advance(self, head: ChainHead, count: int, last: Event | None) -> None:
        """Take over ``count`` events ending at ``head`` that were verified elsewhere (by the
        parallel verifier's workers, with the signature mode this verifier would have used)."""
        if self._failure is None and count:
            self._seq, self._hash = head.seq, head.hash
            self._count += count
            self._last = last

    def feed(self, event: Event, body: bytes | None = None) -> bool:
        """Check one event; False (and :attr:`failure` set) at the first bad one.

        ``body``: ``canonical_body(event)`` when the caller already has it (a parser that
        encoded it from the same fields), saving the second encoding.
        """
        if self._failure is not None:
            return False
        reason = self._check(event, body)
        if reason is not None:
            self.fail(self._seq + 1, reason)
            return False
        self._seq, self._hash = event.seq, event.hash
        self._last = event
        self._count += 1
        return True

    def _check(self, event: Event, body: bytes | None) -> str | None:
        expected = self._seq + 1
        if event.seq != expected:
            return f"expected sequence {expected}, found {event.seq} (missing or reordered event)"
        if event.prev_hash != self._hash:
            return "prev_hash does not match the hash of the previous event"
        if body is None:
            try:
                body = canonical_body(event)
            except CanonicalizationError as exc:
                return f"cannot canonicalize: {exc}"
        if hashlib.sha256(body).hexdigest() != event.hash:
            return "hash does not match the event content (edited)"
        if self._all and not self._signature_ok(event.signature, event.hash):
            return "signature invalid (forged, replaced, or another key)"
        return None

    def finish(self, *, expected_head: ChainHead | None = None) -> VerifyResult:
        """The result; ``expected_head`` (from a signed export manifest) catches a cut tail."""
        if self._failure is not None:
            return self._failure
        last = self._last
        if (
            self._last_only
            and last is not None
            and not self._signature_ok(last.signature, last.hash)
        ):
            # Without per-event checks we cannot say which earlier event was re-signed; the last
            # one is the first we can prove bad.
            return self.fail(last.seq, "signature of the last event invalid")
        head = self.head
        if expected_head is not None and expected_head != head:
            if expected_head.seq > head.seq:
                return self.fail(
                    head.seq + 1,
                    f"chain ends at sequence {head.seq} but the manifest says "
                    f"{expected_head.seq} (truncated)",
                )
            return self.fail(
                expected_head.seq, "head does not match the manifest (extended or replaced)"
            )
        return VerifyResult(True, self._count, None, "", head)


def verify(
    events: Iterable[Event],
    public_key: Ed25519PublicKey | bytes,
    *,
    start: ChainHead | None = None,
    expected_head: ChainHead | None = None,
    signatures: SignatureCheck = "all",
) -> VerifyResult:
    """Check sequence continuity, prev-hash links, hashes and signatures of ``events`` in order."""
    verifier = Verifier(public_key, start=start, signatures=signatures)
    for event in events:
        if not verifier.feed(event):
            break
    return verifier.finish(expected_head=expected_head)
