"""API bearer tokens: who is calling and what they may do.

A token is ``ife_<id>_<secret>``: ``id`` (public, 12 hex digits) finds the row, ``secret`` (32
random bytes, URL-safe base64) proves possession. Only SHA-256 of the whole token is stored, and it
is compared with :func:`hmac.compare_digest`, so neither a database leak nor response timing gives a
usable token. The plaintext exists once, as the return value of :meth:`TokenStore.create`.

Scopes (ARCHITECTURE.md, api/): ``council`` agents raise and follow escalations, ``operator`` runs
the service (experts, cancel), ``auditor`` reads (escalations, experts, witness, metrics).
"""

from __future__ import annotations

import base64
import builtins
import enum
import hashlib
import hmac
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Principal", "Scope", "TokenError", "TokenInfo", "TokenStore"]

_PREFIX = "ife"
_ID_HEX = 12

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    id         TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL,
    principal  TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0
);
"""


class Scope(enum.Enum):
    COUNCIL = "council"
    OPERATOR = "operator"
    AUDITOR = "auditor"


class TokenError(ValueError):
    """Bad arguments to :meth:`TokenStore.create` (empty principal, unknown scope)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: its name (the escalation requester) and scopes."""

    name: str
    scopes: frozenset[Scope]
    token_id: str

    def has_any(self, scopes: Iterable[Scope]) -> bool:
        return not self.scopes.isdisjoint(scopes)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token's record without its secret (for ``tokens list``)."""

    id: str
    principal: str
    scopes: frozenset[Scope]
    created_at: float
    revoked: bool


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _parse_scopes(scopes: Iterable[Scope | str]) -> frozenset[Scope]:
    out = set()
    for scope in scopes:
        try:
            out.add(scope if isinstance(scope, Scope) else Scope(scope))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise TokenError(f"unknown scope {scope!r}; known: {known}") from None
    if not out:
        raise TokenError("a token needs at least one scope")
    return frozenset(out)


def _encode_scopes(scopes: frozenset[Scope]) -> str:
    return " ".join(sorted(s.value for s in scopes))


def _decode_scopes(text: str) -> frozenset[Scope]:
    return frozenset(Scope(s) for s in text.split())


class TokenStore:
    """Tokens in an SQLite file (the service's shared file, table ``api_tokens``) or ``":memory:"``."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        token_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        target = str(path)
        if target != ":memory:":
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(target, isolation_level=None)
        if target != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._clock = clock
        self._random = token_bytes

    def close(self) -> None:
        self._db.close()

    def create(self, principal: str, scopes: Iterable[Scope | str]) -> str:
        """Issues a token and returns its plaintext; print it once, it cannot be recovered."""
        if not principal or len(principal) > 200 or not principal.isprintable():
            raise TokenError("principal must be 1-200 printable characters")
        parsed = _parse_scopes(scopes)
        token_id = self._random(_ID_HEX // 2).hex()
        # base64url may contain "_"; verify() splits at most twice, so the secret keeps it.
        secret = base64.urlsafe_b64encode(self._random(32)).rstrip(b"=").decode("ascii")
        token = f"{_PREFIX}_{token_id}_{secret}"
        self._db.execute(
            "INSERT INTO api_tokens(id, sha256, principal, scopes, created_at) VALUES (?,?,?,?,?)",
            (token_id, _digest(token), principal, _encode_scopes(parsed), self._clock()),
        )
        return token

    def import_token(self, token: str, principal: str, scopes: Iterable[Scope | str]) -> bool:
        """Stores the hash of a token made elsewhere (``create`` on another data dir), so that one
        secret is valid on every instance of a fleet (a Prometheus scrape, a readiness probe, a
        council agent behind a load balancer). True when added; False when this exact token is
        already present with the same principal and scopes. Raises TokenError for a malformed token,
        or when its id is taken by a different token, principal or scope set."""
        if not principal or len(principal) > 200 or not principal.isprintable():
            raise TokenError("principal must be 1-200 printable characters")
        parsed = _parse_scopes(scopes)
        parts = token.split("_", 2)
        # The same shape and strength create() gives: 12 hex id, 32 random bytes in base64url.
        if (
            len(parts) != 3
            or parts[0] != _PREFIX
            or len(parts[1]) != _ID_HEX
            or any(c not in "0123456789abcdef" for c in parts[1])
            or len(parts[2]) < 43
            or not all(c.isalnum() or c in "-_" for c in parts[2])
        ):
            raise TokenError("not an ifescalate token (ife_<12 hex>_<43+ base64url characters>)")
        row = self._db.execute(
            "SELECT sha256, principal, scopes, revoked FROM api_tokens WHERE id = ?", (parts[1],)
        ).fetchone()
        if row is not None:
            stored, have_principal, have_scopes, revoked = row
            same = hmac.compare_digest(stored, _digest(token)) and have_principal == principal
            if not same or _decode_scopes(have_scopes) != parsed:
                raise TokenError(
                    f"token id {parts[1]} exists with another secret, principal or scopes"
                )
            if revoked:
                raise TokenError(f"token {parts[1]} was revoked here; make a new one")
            return False
        self._db.execute(
            "INSERT INTO api_tokens(id, sha256, principal, scopes, created_at) VALUES (?,?,?,?,?)",
            (parts[1], _digest(token), principal, _encode_scopes(parsed), self._clock()),
        )
        return True

    def verify(self, token: str) -> Principal | None:
        """The principal for a presented token, or None (unknown, malformed, revoked)."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != _PREFIX or len(parts[1]) != _ID_HEX:
            return None
        row = self._db.execute(
            "SELECT sha256, principal, scopes, revoked FROM api_tokens WHERE id = ?", (parts[1],)
        ).fetchone()
        if row is None:
            return None
        stored, principal, scopes, revoked = row
        # Constant-time comparison of the digests: timing reveals nothing about the secret.
        if not hmac.compare_digest(stored, _digest(token)) or revoked:
            return None
        return Principal(principal, _decode_scopes(scopes), parts[1])

    def revoke(self, token_id: str) -> bool:
        """Revokes a token by its id; False when there is no such token."""
        cur = self._db.execute("UPDATE api_tokens SET revoked = 1 WHERE id = ?", (token_id,))
        return cur.rowcount > 0

    def list(self) -> builtins.list[TokenInfo]:
        rows = self._db.execute(
            "SELECT id, principal, scopes, created_at, revoked FROM api_tokens ORDER BY created_at"
        )
        return [TokenInfo(i, p, _decode_scopes(s), c, bool(r)) for i, p, s, c, r in rows]
