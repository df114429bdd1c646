"""Signed, short-lived evidence links (issue 5: "signed, expiring and scoped to one escalation").

A link token is ``base64url(payload || tag)`` (RFC 4648 §5, no padding) where ``payload`` is

    version (1 byte, 1) | scope (1 byte) | expires (8 bytes, big-endian wall-clock seconds) |
    escalation id (1 length byte + UTF-8) | evidence SHA-256 (32 bytes) |
    expert id (1 length byte + UTF-8; length 0: any holder)

and ``tag`` is HMAC-SHA256 (RFC 2104) under the server's link key over a context string and the
payload. Why HMAC and not the witness's Ed25519 key: the only verifier of a link is the service
that minted it, so a public-key signature buys nothing; the symmetric tag is ~15x cheaper to check
(5.5 vs 81 us of CPU, a forged link refused in 3.5 us: bench/evidence_links.py), 32 bytes instead
of 64 (the link fits a SIP header), and a separate key keeps the witness key's only job
non-repudiation: rotating the link key (deleting its file) revokes every outstanding link without
touching the witness chain.

The token is compared in constant time (:func:`hmac.compare_digest`) and must be the canonical
base64url encoding of its bytes (otherwise the unused low bits of the last character would give
several spellings of one token). Pure: no clock, ``now`` is wall-clock seconds from the caller.

Failures are distinct classes carrying their HTTP status and a short ``code`` (ARCHITECTURE.md
convention 5), so the API answers them without a lookup table.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "DEFAULT_TTL",
    "LinkBadSignature",
    "LinkClaims",
    "LinkError",
    "LinkEscalationEnded",
    "LinkExpired",
    "LinkMalformed",
    "LinkNotInEscalation",
    "LinkOutOfScope",
    "LinkScope",
    "LinkSigner",
]

#: Default lifetime of a link: long enough to open it during a call, short enough that a leaked
#: URL (a log, a forwarded chat) soon stops working.
DEFAULT_TTL = 900.0
_CONTEXT = b"ifescalate/evidence-link/v1\x00"
_VERSION = 1
_TAG_BYTES = 32
_SHA256_HEX = re.compile(r"[0-9a-f]{64}\Z")
_HEAD = struct.Struct(">BBQ")
_MAX_TOKEN_CHARS = 1024  # a real token is ~200 characters; refuse anything huge before decoding
_MIN_KEY_BYTES = 32


class LinkScope(enum.Enum):
    """What a link lets its holder do. Only reading exists today; the byte is in the signed payload
    so a future scope (e.g. listing) can never be passed off as another."""

    READ = 1


class LinkError(Exception):
    """A link that does not open; ``status`` and ``code`` are its HTTP answer."""

    status: ClassVar[int] = 403
    code: ClassVar[str] = "refused"

    def __init__(self, message: str, claims: LinkClaims | None = None) -> None:
        super().__init__(message)
        #: Set once the signature verified: then (and only then) the claims are facts.
        self.claims = claims


class LinkMalformed(LinkError):
    status = 400
    code = "malformed"


class LinkBadSignature(LinkError):
    status = 403
    code = "bad_signature"


class LinkExpired(LinkError):
    status = 410
    code = "expired"


class LinkOutOfScope(LinkError):
    """Signed by us, but not for this use (another scope, another expert)."""

    status = 403
    code = "out_of_scope"


class LinkNotInEscalation(LinkOutOfScope):
    """Signed by us, but the evidence is not (any longer) part of the escalation it names."""

    status = 404
    code = "not_in_escalation"


class LinkEscalationEnded(LinkError):
    """Links die with their escalation (ARCHITECTURE.md step 5: "links die at hangup")."""

    status = 410
    code = "escalation_ended"


@dataclass(frozen=True, slots=True)
class LinkClaims:
    """What a link grants: ``scope`` on one evidence item of one escalation until ``expires``."""

    escalation_id: str
    evidence_id: str  # the evidence's SHA-256, lowercase hex
    expires: int  # wall-clock seconds; the link is dead from this second on
    scope: LinkScope = LinkScope.READ
    expert_id: str | None = None  # None: any holder of the link

    def __post_init__(self) -> None:
        if not _short_text(self.escalation_id):
            raise ValueError("escalation_id must be 1-255 bytes of printable text")
        if not _SHA256_HEX.match(self.evidence_id):
            raise ValueError("evidence_id must be a lowercase hex SHA-256")
        if not 0 <= self.expires < 2**63:
            raise ValueError("expires out of range")
        if self.expert_id is not None and not _short_text(self.expert_id):
            raise ValueError("expert_id must be 1-255 bytes of printable text")


def _short_text(text: str) -> bool:
    return 0 < len(text.encode("utf-8")) <= 255 and text.isprintable()


def _encode(claims: LinkClaims) -> bytes:
    esc = claims.escalation_id.encode("utf-8")
    expert = (claims.expert_id or "").encode("utf-8")
    return b"".join(
        (
            _HEAD.pack(_VERSION, claims.scope.value, claims.expires),
            bytes((len(esc),)),
            esc,
            bytes.fromhex(claims.evidence_id),
            bytes((len(expert),)),
            expert,
        )
    )


def _decode(payload: bytes) -> LinkClaims:
    """The claims of a payload whose tag already verified; LinkMalformed if its shape is wrong
    (only a bug or a changed format can get here with a good tag)."""
    try:
        version, scope, expires = _HEAD.unpack_from(payload)
        at = _HEAD.size
        esc_len = payload[at]
        esc = payload[at + 1 : at + 1 + esc_len]
        at += 1 + esc_len
        digest = payload[at : at + 32]
        at += 32
        expert_len = payload[at]
        expert = payload[at + 1 : at + 1 + expert_len]
        at += 1 + expert_len
    except (struct.error, IndexError):
        raise LinkMalformed("link payload is truncated") from None
    if version != _VERSION:
        raise LinkMalformed(f"unknown link version {version}")
    if at != len(payload) or len(esc) != esc_len or len(digest) != 32:
        raise LinkMalformed("link payload has the wrong length")
    try:
        return LinkClaims(
            escalation_id=esc.decode("utf-8"),
            evidence_id=digest.hex(),
            expires=expires,
            scope=LinkScope(scope),
            expert_id=expert.decode("utf-8") if expert else None,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise LinkMalformed(f"link payload is invalid: {exc}") from None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(token: str) -> bytes:
    if not token or len(token) > _MAX_TOKEN_CHARS or not token.isascii():
        raise LinkMalformed("not a link token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise LinkMalformed("not base64url") from None
    if _b64(raw) != token:  # rejects padding, stray characters and non-canonical last characters
        raise LinkMalformed("not canonical base64url")
    return raw


class LinkSigner:
    """Mints and checks link tokens under one secret key (at least 32 bytes)."""

    def __init__(self, key: bytes, *, default_ttl: float = DEFAULT_TTL, max_ttl: float = 3600.0):
        if len(key) < _MIN_KEY_BYTES:
            raise ValueError(f"the link key must be at least {_MIN_KEY_BYTES} bytes")
        if not 0 < default_ttl <= max_ttl:
            raise ValueError("need 0 < default_ttl <= max_ttl")
        self._key = key
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._key, _CONTEXT + payload, hashlib.sha256).digest()

    def mint(
        self,
        *,
        escalation_id: str,
        evidence_id: str,
        now: float,
        ttl: float | None = None,
        scope: LinkScope = LinkScope.READ,
        expert_id: str | None = None,
    ) -> tuple[str, LinkClaims]:
        """A token for ``scope`` on one evidence item, alive for ``ttl`` seconds (default
        ``default_ttl``, at most ``max_ttl``); returns the token and what it grants."""
        life = self.default_ttl if ttl is None else ttl
        if not 0 < life <= self.max_ttl:
            raise ValueError(f"ttl must be more than 0 and at most {self.max_ttl:g} seconds")
        # Whole seconds, rounded down: a link never outlives the lifetime asked for.
        claims = LinkClaims(escalation_id, evidence_id, int(now + life), scope, expert_id)
        payload = _encode(claims)
        return _b64(payload + self._tag(payload)), claims

    def verify(
        self,
        token: str,
        *,
        now: float,
        scope: LinkScope = LinkScope.READ,
        escalation_id: str | None = None,
        evidence_id: str | None = None,
    ) -> LinkClaims:
        """The claims of a token that is well formed, ours, alive and grants ``scope`` (on the
        given escalation and evidence when the caller knows which it expects).

        Raises LinkMalformed, LinkBadSignature, LinkExpired or LinkOutOfScope, checked in that
        order: nothing in an unauthenticated payload is believed, not even its expiry.
        """
        raw = _unb64(token)
        if len(raw) <= _TAG_BYTES + _HEAD.size:
            raise LinkMalformed("link token is too short")
        payload, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(payload)):
            raise LinkBadSignature("link signature does not verify")
        claims = _decode(payload)
        if now >= claims.expires:
            raise LinkExpired(f"link expired {now - claims.expires:.0f} s ago", claims)
        if claims.scope is not scope:
            raise LinkOutOfScope(
                f"link grants {claims.scope.name.lower()}, not {scope.name.lower()}",
                claims,
            )
        if escalation_id is not None and claims.escalation_id != escalation_id:
            raise LinkOutOfScope("link is for another escalation", claims)
        if evidence_id is not None and claims.evidence_id != evidence_id:
            raise LinkOutOfScope("link is for other evidence", claims)
        return claims
