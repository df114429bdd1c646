"""SIP digest authentication, server and client, sans-IO (RFC 3261 §22, RFC 8760, RFC 7616, RFC 2617).

Three layers, each usable alone:

* header grammar: :func:`parse_auth_header` / :func:`parse_challenges` turn a WWW-Authenticate,
  Proxy-Authenticate, Authorization or Proxy-Authorization value into ``(scheme, params)``;
  :func:`format_challenge` / :func:`format_credentials` go the other way.
* arithmetic: :func:`ha1` (for provisioning stored hashes) and :func:`compute_response`.
* roles: :class:`DigestServer` issues stateless, HMAC-bound nonces and verifies credentials against
  stored HA1 values; :class:`DigestClient` answers challenges.

Nothing here reads a clock: every entry point that needs time takes ``now`` (seconds), and
randomness is injected (ARCHITECTURE.md convention 7).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import math
import os
import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from string import ascii_letters, digits

from .errors import SipError, SipParseError
from .nonce_count import MemoryNonceCounter, NonceCounter

__all__ = [
    "AuthReason",
    "AuthResult",
    "DigestClient",
    "DigestServer",
    "HA1Lookup",
    "MemoryNonceCounter",
    "NonceCountCheck",
    "NonceCounter",
    "UnsupportedChallenge",
    "compute_response",
    "format_challenge",
    "format_credentials",
    "ha1",
    "parse_auth_header",
    "parse_challenges",
]

# ---------------------------------------------------------------------------------------------
# Header grammar (RFC 3261 §25.1 challenge/credentials, RFC 7235 §2.1 auth-param)
# ---------------------------------------------------------------------------------------------

# RFC 7230 tchar: a superset of the RFC 3261 §25.1 token alphabet, so we accept what either allows.
_TCHAR = frozenset("!#$%&'*+-.^_`|~" + digits + ascii_letters)
_WS = " \t"


def _is_token(text: str) -> bool:
    return bool(text) and all(c in _TCHAR for c in text)


class _Scanner:
    """A cursor over one header value. Folding was already undone by the message parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> bool:
        start = self.pos
        while self.peek() and self.peek() in _WS:
            self.pos += 1
        return self.pos > start

    def token(self, what: str) -> str:
        start = self.pos
        while self.peek() and self.peek() in _TCHAR:
            self.pos += 1
        if self.pos == start:
            raise SipParseError(f"expected {what} at offset {start} in {self.text!r}")
        return self.text[start : self.pos]

    def quoted(self) -> str:
        """§25.1 quoted-string with quoted-pair escapes; returns the unescaped content."""
        start = self.pos
        self.pos += 1  # opening DQUOTE
        out: list[str] = []
        while True:
            c = self.peek()
            if not c:
                raise SipParseError(f"unterminated quoted string at offset {start}")
            self.pos += 1
            if c == '"':
                return "".join(out)
            if c == "\\":
                c = self.peek()
                if not c:
                    raise SipParseError(f"dangling escape in quoted string at offset {start}")
                self.pos += 1
            # §25.1: quoted-pair excludes CR and LF; qdtext excludes other controls except HTAB.
            if (ord(c) < 0x20 and c != "\t") or c == "\x7f":
                raise SipParseError(f"control character in quoted string at offset {self.pos - 1}")
            out.append(c)

    def value(self) -> str:
        return self.quoted() if self.peek() == '"' else self.token("parameter value")


def _parse_params(s: _Scanner, params: dict[str, str]) -> bool:
    """Reads ``param *(, param)`` into *params*; returns True if another challenge follows.

    After a comma, a token NOT followed by ``=`` is the scheme of the next challenge (RFC 7235
    §4.1 lets one header line carry several challenges), so we rewind to it and stop.
    """
    first = True
    while not s.at_end():
        mark = s.pos
        name = s.token("parameter name")
        s.skip_ws()
        if s.peek() != "=":
            if first:
                raise SipParseError(f"token68 or bare word not supported: {s.text!r}")
            s.pos = mark
            return True
        s.pos += 1
        s.skip_ws()
        key = name.lower()
        if key in params:
            # RFC 7235 §2.1: each parameter name MUST only occur once per challenge.
            raise SipParseError(f"duplicate auth-param {key!r}")
        params[key] = s.value()
        first = False
        s.skip_ws()
        if s.at_end():
            return False
        if s.peek() != ",":
            raise SipParseError(f"expected ',' at offset {s.pos} in {s.text!r}")
        while s.peek() == "," or (s.peek() and s.peek() in _WS):  # empty list elements (#rule)
            s.pos += 1
    return False


def parse_challenges(value: str) -> list[tuple[str, dict[str, str]]]:
    """Parses every challenge (or credential) in one header value.

    Scheme names come back as written except ``Digest``, which is canonicalised; parameter names
    are lowercased; quoted values are unescaped. Raises :class:`SipParseError` on bad grammar.
    """
    s = _Scanner(value)
    s.skip_ws()
    if s.at_end():
        raise SipParseError("empty authentication header")
    out: list[tuple[str, dict[str, str]]] = []
    more = True
    while more:
        scheme = s.token("auth scheme")
        if scheme.lower() == "digest":
            scheme = "Digest"
        params: dict[str, str] = {}
        had_ws = s.skip_ws()
        if s.peek() == ",":  # a bare scheme, then the next challenge
            s.pos += 1
            s.skip_ws()
            more = not s.at_end()
        elif s.at_end():
            more = False
        elif not had_ws:
            raise SipParseError(f"expected whitespace after scheme {scheme!r}")
        else:
            more = _parse_params(s, params)
        out.append((scheme, params))
    return out


# The common shape of one credential, for a regex fast path: scheme, then name=value pairs where
# each value is a token or a quoted string without escapes or control characters, separated by
# single commas. Anything else (escapes, empty list elements, several challenges) takes the
# scanner, which also reports errors; on this shape both give the same result.
_FAST_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_FAST_PARAM = rf'({_FAST_TOKEN})[ \t]*=[ \t]*(?:"([^"\\\x00-\x08\x0a-\x1f\x7f]*)"|({_FAST_TOKEN}))'
_FAST_PARAM_RE = re.compile(rf"[ \t]*,?[ \t]*{_FAST_PARAM}")
_FAST_AUTH_RE = re.compile(
    rf"[ \t]*({_FAST_TOKEN})[ \t]+{_FAST_PARAM}(?:[ \t]*,[ \t]*{_FAST_PARAM})*[ \t]*\Z"
)


def _parse_auth_fast(value: str) -> tuple[str, dict[str, str]] | None:
    m = _FAST_AUTH_RE.match(value)
    if m is None:
        return None
    scheme = m.group(1)
    params: dict[str, str] = {}
    for pm in _FAST_PARAM_RE.finditer(value, m.end(1)):
        key = pm.group(1).lower()
        if key in params:
            return None  # duplicate: let the scanner raise its error
        quoted = pm.group(2)
        params[key] = quoted if quoted is not None else pm.group(3)
    return ("Digest" if scheme.lower() == "digest" else scheme), params


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """Parses one challenge or credentials value: ``(scheme, {lowercased-name: value})``.

    RFC 3261 §20.7/§20.44 carry exactly one challenge or credential per header field value.
    """
    fast = _parse_auth_fast(value)
    if fast is not None:
        return fast
    items = parse_challenges(value)
    if len(items) != 1:
        raise SipParseError(f"expected one challenge or credential, got {len(items)}")
    return items[0]


def _quote(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"CR/LF cannot be sent in a quoted string: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _format(params: Mapping[str, str], bare: frozenset[str]) -> str:
    parts: list[str] = []
    for name, value in params.items():
        if not _is_token(name):
            raise ValueError(f"auth-param name is not a token: {name!r}")
        if name.lower() in bare:
            if not _is_token(value):
                raise ValueError(f"{name} must be a token: {value!r}")
            parts.append(f"{name}={value}")
        else:
            parts.append(f"{name}={_quote(value)}")
    return "Digest " + ", ".join(parts)


# RFC 7616 §3.3 / RFC 3261 §25.1: which directives are tokens rather than quoted strings.
_CHALLENGE_BARE = frozenset({"algorithm", "stale", "userhash"})
_CREDENTIAL_BARE = frozenset({"algorithm", "qop", "nc", "userhash"})


def format_challenge(params: Mapping[str, str]) -> str:
    """``Digest realm="..", nonce="..", algorithm=SHA-256, ..`` in the order given.

    algorithm and stale are sent as tokens, everything else (including qop-options) quoted.
    """
    return _format(params, _CHALLENGE_BARE)


def format_credentials(params: Mapping[str, str]) -> str:
    """``Digest username="..", ..`` in the order given; algorithm, qop and nc go unquoted."""
    return _format(params, _CREDENTIAL_BARE)


# ---------------------------------------------------------------------------------------------
# Arithmetic (RFC 7616 §3.4.1-3.4.3, RFC 2617 §3.2.2)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Algorithm:
    name: str
    hash_name: str
    sess: bool
    rank: int  # higher is stronger; RFC 8760 §2.4 prefers SHA-256 over MD5

    @property
    def base(self) -> str:
        """The non-session name, which is what a stored HA1 depends on."""
        return self.name.removesuffix("-sess")

    def h(self, data: bytes) -> str:
        return hashlib.new(self.hash_name, data).hexdigest()

    @property
    def hex_len(self) -> int:
        return hashlib.new(self.hash_name).digest_size * 2


_ALGORITHMS: dict[str, _Algorithm] = {
    a.name.upper(): a
    for a in (
        _Algorithm("SHA-256", "sha256", False, 4),
        _Algorithm("SHA-256-sess", "sha256", True, 3),
        _Algorithm("MD5", "md5", False, 2),
        _Algorithm("MD5-sess", "md5", True, 1),
    )
}


def _algorithm(name: str) -> _Algorithm:
    try:
        return _ALGORITHMS[name.upper()]
    except KeyError:
        raise ValueError(f"unsupported digest algorithm {name!r}") from None


def ha1(username: str, realm: str, password: str, algorithm: str = "SHA-256") -> str:
    """HA1 = H(username ":" realm ":" password) as lowercase hex, for provisioning.

    -sess variants store the same value (the session part is mixed in per request, §3.4.2).
    """
    alg = _algorithm(algorithm)
    return alg.h(f"{username}:{realm}:{password}".encode())


def compute_response(
    algorithm: str,
    stored_ha1: str,
    *,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The request-digest (RFC 7616 §3.4.1; RFC 2069 form when *qop* is None).

    For SIP, *method* is the request method and *uri* the digest-uri (RFC 3261 §22.4).
    """
    alg = _algorithm(algorithm)
    key = stored_ha1.lower()
    if alg.sess:  # §3.4.2: HA1 = H(H(user:realm:pass) ":" nonce ":" cnonce)
        key = alg.h(f"{key}:{nonce}:{cnonce or ''}".encode())
    if qop == "auth-int":  # §3.4.3: A2 = method ":" uri ":" H(entity-body)
        ha2 = alg.h(f"{method}:{uri}:{alg.h(body)}".encode())
    else:
        ha2 = alg.h(f"{method}:{uri}".encode())
    if qop is None:
        return alg.h(f"{key}:{nonce}:{ha2}".encode())
    return alg.h(f"{key}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())


# ---------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------


class AuthReason(enum.Enum):
    """Why :meth:`DigestServer.verify` accepted or refused. One reason covers both unknown user
    and wrong password so that the caller cannot leak which it was."""

    OK = "ok"
    MISSING = "missing"
    MALFORMED = "malformed"
    UNKNOWN_USER_OR_BAD_PASSWORD = "unknown_user_or_bad_password"
    STALE = "stale"
    FORGED_NONCE = "forged_nonce"
    REPLAY = "replay"
    REALM_MISMATCH = "realm_mismatch"
    ALGORITHM_NOT_ALLOWED = "algorithm_not_allowed"
    URI_MISMATCH = "uri_mismatch"


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Outcome of one verification. *username* is the claimed name whenever one was parsed (for
    lockout accounting), even when *ok* is False. *stale* says the next challenge should carry
    ``stale=true`` (RFC 7616 §3.3)."""

    ok: bool
    username: str | None
    reason: AuthReason
    stale: bool = False

    def __post_init__(self) -> None:
        if self.ok != (self.reason is AuthReason.OK):
            raise ValueError(f"ok={self.ok} contradicts reason {self.reason}")
        if self.stale != (self.reason is AuthReason.STALE):
            raise ValueError(f"stale={self.stale} contradicts reason {self.reason}")


#: ``lookup(username, realm, algorithm) -> stored HA1 hex or None``. *algorithm* is the base name
#: ("SHA-256" or "MD5"): -sess variants use the same stored value.
HA1Lookup = Callable[[str, str, str], str | None]

#: Longest Authorization value we parse (RFC 7616 gives no limit; real ones are far below).
MAX_CREDENTIALS_LENGTH = 4096

_NONCE_TS = struct.Struct(">q")  # issue time in integer milliseconds
_NONCE_RANDOM = 16
_NONCE_MAC = 24  # truncated HMAC-SHA256; 8 + 16 + 24 = 48 bytes = 64 base64 chars, no padding
_NONCE_LEN = _NONCE_TS.size + _NONCE_RANDOM + _NONCE_MAC
_HEX = re.compile(r"[0-9a-fA-F]+")
_NC = re.compile(r"[0-9a-fA-F]{8}")


@dataclass(frozen=True, slots=True)
class NonceCountCheck:
    """A digest that checked out and whose nonce-count (RFC 7616 §3.4) must still be recorded.

    The store's atomic ``check_and_set(nonce, nc, expires_at, now)`` decides; :meth:`result` turns
    its answer into the final :class:`AuthResult` (a count not above the highest seen is a replay).
    """

    username: str
    nonce: str
    nc: int
    expires_at: float

    def result(self, accepted: bool) -> AuthResult:
        if accepted:
            return AuthResult(True, self.username, AuthReason.OK)
        return AuthResult(False, self.username, AuthReason.REPLAY)


class _Fresh(enum.Enum):
    VALID = "valid"
    STALE = "stale"
    FORGED = "forged"


@dataclass(frozen=True, slots=True)
class _Credentials:
    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str
    qop: str | None
    nc: str | None
    cnonce: str | None
    opaque: str | None

    @classmethod
    def parse(cls, value: str) -> _Credentials:
        scheme, p = parse_auth_header(value)
        if scheme != "Digest":
            raise SipParseError(f"not Digest credentials: {scheme!r}")
        missing = [k for k in ("username", "realm", "nonce", "uri", "response") if k not in p]
        if missing:
            raise SipParseError(f"credentials lack {', '.join(missing)}")
        qop = p.get("qop")
        if qop is not None:
            # RFC 7616 §3.4: with qop, cnonce and nc MUST be sent; nc is exactly 8LHEX.
            if "cnonce" not in p or "nc" not in p:
                raise SipParseError("qop given without cnonce and nc")
            if not _NC.fullmatch(p["nc"]) or int(p["nc"], 16) == 0:
                raise SipParseError(f"bad nonce-count {p['nc']!r}")
        return cls(
            username=p["username"],
            realm=p["realm"],
            nonce=p["nonce"],
            uri=p["uri"],
            response=p["response"],
            algorithm=p.get("algorithm", "MD5"),  # RFC 2617 §3.2.1: absent means MD5
            qop=qop,
            nc=p.get("nc"),
            cnonce=p.get("cnonce"),
            opaque=p.get("opaque"),
        )


class DigestServer:
    """Issues challenges and verifies credentials for one realm (RFC 3261 §22.2, §22.3).

    Nonces are ``base64(ts || random || HMAC-SHA256(key, ts || random || realm)[:24])``, so
    validating one needs no state and tells an expired nonce (``stale``) from a forged one. Only
    nonce-counts are remembered, in the injected :class:`NonceCounter`.

    ``now`` must come from one clock for every server sharing *key* and a nonce-count store; a
    single process may use a monotonic clock, several instances need wall-clock time.
    """

    def __init__(
        self,
        realm: str,
        key: bytes,
        *,
        algorithms: Iterable[str] = ("SHA-256", "MD5"),
        nonce_lifetime: float = 300.0,
        rand: Callable[[int], bytes] = os.urandom,
        nonce_counter: NonceCounter | None = None,
        qops: Iterable[str] = ("auth",),
        allow_rfc2069: bool = False,
    ) -> None:
        if len(key) < 16:
            raise ValueError("the nonce key must be at least 16 bytes")
        if nonce_lifetime <= 0:
            raise ValueError("nonce_lifetime must be positive")
        self.realm = realm
        self._key = key
        self._allowed = sorted({_algorithm(a) for a in algorithms}, key=lambda a: -a.rank)
        if not self._allowed:
            raise ValueError("at least one algorithm is needed")
        self._qops = tuple(dict.fromkeys(qops))
        if not set(self._qops) <= {"auth", "auth-int"} or not (self._qops or allow_rfc2069):
            raise ValueError(f"qops must be drawn from auth, auth-int: {self._qops}")
        self.nonce_lifetime = nonce_lifetime
        self._rand = rand
        self._counter: NonceCounter = nonce_counter or MemoryNonceCounter()
        self._allow_rfc2069 = allow_rfc2069
        mac = hmac.new(key, b"opaque\x00" + realm.encode(), hashlib.sha256).digest()
        self.opaque = base64.b64encode(mac[:12]).decode("ascii")
        # Unknown users are checked against a random HA1 of the right size, so that both the
        # unknown-user and the wrong-password path do the same hashing (no user enumeration).
        self._dummy = {a.base: a.h(rand(32)) for a in self._allowed}

    def with_key(self, key: bytes) -> DigestServer:
        """This server (realm, algorithms, qops, lifetime, count store) signing nonces with
        ``key`` instead: instances that share a key accept each other's nonces."""
        return DigestServer(
            self.realm,
            key,
            algorithms=[a.name for a in self._allowed],
            nonce_lifetime=self.nonce_lifetime,
            rand=self._rand,
            nonce_counter=self._counter,
            qops=self._qops,
            allow_rfc2069=self._allow_rfc2069,
        )

    # -- challenges -------------------------------------------------------------------------

    def challenge(
        self, now: float, *, stale: bool = False, algorithms: Iterable[str] | None = None
    ) -> list[str]:
        """WWW-Authenticate (401) or Proxy-Authenticate (407) values, one per algorithm, strongest
        first (RFC 8760 §2.4: the UAC uses the first it supports), each with its own nonce."""
        chosen = self._allowed
        if algorithms is not None:
            wanted = {_algorithm(a) for a in algorithms}
            if not wanted <= set(self._allowed):
                raise ValueError(f"algorithms not allowed here: {sorted(a.name for a in wanted)}")
            chosen = [a for a in self._allowed if a in wanted]
        return [self._one_challenge(a, now, stale) for a in chosen]

    def _one_challenge(self, alg: _Algorithm, now: float, stale: bool) -> str:
        params = {"realm": self.realm, "nonce": self.make_nonce(now), "algorithm": alg.name}
        if self._qops:
            params["qop"] = ",".join(self._qops)
        params["opaque"] = self.opaque
        if stale:
            params["stale"] = "true"
        return format_challenge(params)

    def make_nonce(self, now: float) -> str:
        """A fresh nonce bound to *now* and this realm by HMAC."""
        head = _NONCE_TS.pack(math.floor(now * 1000)) + self._rand(_NONCE_RANDOM)
        return base64.b64encode(head + self._mac(head)).decode("ascii")

    def _mac(self, head: bytes) -> bytes:
        msg = head + self.realm.encode()
        return hmac.new(self._key, msg, hashlib.sha256).digest()[:_NONCE_MAC]

    def _nonce_state(self, nonce: str, now: float) -> tuple[_Fresh, float]:
        try:
            raw = base64.b64decode(nonce.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            return _Fresh.FORGED, 0.0
        head, mac = raw[:-_NONCE_MAC], raw[-_NONCE_MAC:]
        if len(raw) != _NONCE_LEN or not hmac.compare_digest(mac, self._mac(head)):
            return _Fresh.FORGED, 0.0
        issued = _NONCE_TS.unpack(head[: _NONCE_TS.size])[0] / 1000
        expires_at = issued + self.nonce_lifetime
        # A nonce from "the future" means the clocks of the instances sharing the key disagree;
        # asking for a new one (stale) heals that without blaming the client.
        if now >= expires_at or issued > now + self.nonce_lifetime:
            return _Fresh.STALE, expires_at
        return _Fresh.VALID, expires_at

    # -- verification -----------------------------------------------------------------------

    def verify(
        self,
        method: str,
        credentials: str | None,
        lookup: HA1Lookup,
        now: float,
        *,
        body: bytes = b"",
        request_uri: str | None = None,
    ) -> AuthResult:
        """Checks an Authorization / Proxy-Authorization value for a request (RFC 3261 §22.4).

        *request_uri*, when given, must equal the digest-uri exactly; leave it None behind a proxy
        that rewrites the Request-URI. Never raises on bad input: it becomes ``MALFORMED``. The
        nonce-count goes to this server's own :class:`NonceCounter`; a caller whose count store
        is I/O (Redis) uses :meth:`verify_digest` and settles the count itself.
        """
        result = self.verify_digest(
            method, credentials, lookup, now, body=body, request_uri=request_uri
        )
        if isinstance(result, NonceCountCheck):
            return result.result(
                self._counter.check_and_set(result.nonce, result.nc, result.expires_at, now)
            )
        return result

    def verify_digest(
        self,
        method: str,
        credentials: str | None,
        lookup: HA1Lookup,
        now: float,
        *,
        body: bytes = b"",
        request_uri: str | None = None,
    ) -> AuthResult | NonceCountCheck:
        """:meth:`verify` up to the nonce-count: a right digest with a count (qop) comes back as
        a :class:`NonceCountCheck` for the caller's store to settle (sans-IO: the net layer
        awaits a shared store, then calls ``check.result(accepted)``)."""
        if not credentials or not credentials.strip():
            return AuthResult(False, None, AuthReason.MISSING)
        if len(credentials) > MAX_CREDENTIALS_LENGTH:
            # Real credentials are a few hundred bytes; parsing 60 KB of them costs ~0.1 s of CPU
            # per request (fuzz finding), which a flood would turn into a denial of service.
            return AuthResult(False, None, AuthReason.MALFORMED)
        try:
            creds = _Credentials.parse(credentials)
        except SipParseError:
            return AuthResult(False, None, AuthReason.MALFORMED)
        user = creds.username
        refused = self._precheck(creds, request_uri)
        if refused is not None:
            return AuthResult(False, user, refused)
        fresh, expires_at = self._nonce_state(creds.nonce, now)
        if fresh is _Fresh.FORGED:
            return AuthResult(False, user, AuthReason.FORGED_NONCE)
        if not self._digest_matches(creds, method, body, lookup):
            return AuthResult(False, user, AuthReason.UNKNOWN_USER_OR_BAD_PASSWORD)
        # RFC 2617 §3.2.1: stale only when the digest itself was right, so a client that knows
        # the password retries silently while a guesser learns nothing new.
        if fresh is _Fresh.STALE:
            return AuthResult(False, user, AuthReason.STALE, stale=True)
        # The count is recorded only after the digest checks out: a forger must not be able to
        # burn a legitimate client's nonce-counts.
        if creds.nc is None:
            return AuthResult(True, user, AuthReason.OK)
        return NonceCountCheck(user, creds.nonce, int(creds.nc, 16), expires_at)

    def _precheck(self, creds: _Credentials, request_uri: str | None) -> AuthReason | None:
        """Checks that need no secret; the order never depends on whether the user exists."""
        alg = _ALGORITHMS.get(creds.algorithm.upper())
        if alg is None or alg not in self._allowed:
            return AuthReason.ALGORITHM_NOT_ALLOWED
        if creds.realm != self.realm:
            return AuthReason.REALM_MISMATCH
        if creds.qop is None and not self._allow_rfc2069:
            return AuthReason.MALFORMED
        if creds.qop is not None and creds.qop not in self._qops:
            return AuthReason.MALFORMED
        if len(creds.response) != alg.hex_len or not _HEX.fullmatch(creds.response):
            return AuthReason.MALFORMED
        if creds.opaque is not None and not hmac.compare_digest(
            creds.opaque.encode(), self.opaque.encode()
        ):
            return AuthReason.MALFORMED
        if request_uri is not None and creds.uri != request_uri:
            return AuthReason.URI_MISMATCH
        return None

    def _digest_matches(
        self, creds: _Credentials, method: str, body: bytes, lookup: HA1Lookup
    ) -> bool:
        alg = _algorithm(creds.algorithm)
        stored = lookup(creds.username, creds.realm, alg.base)
        found = stored is not None
        expected = compute_response(
            alg.name,
            stored if stored is not None else self._dummy[alg.base],
            nonce=creds.nonce,
            method=method,
            uri=creds.uri,
            qop=creds.qop,
            nc=creds.nc,
            cnonce=creds.cnonce,
            body=body,
        )
        match = hmac.compare_digest(expected.encode(), creds.response.lower().encode())
        return match and found


# ---------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------


class UnsupportedChallenge(SipError):
    """No Digest challenge offered an algorithm and qop this client can answer."""


@dataclass(frozen=True, slots=True)
class _Offer:
    alg: _Algorithm
    params: dict[str, str]
    qop: str | None


def _offer(params: dict[str, str]) -> _Offer | None:
    alg = _ALGORITHMS.get(params.get("algorithm", "MD5").upper())
    if alg is None or "realm" not in params or "nonce" not in params:
        return None
    if "qop" not in params:
        return _Offer(alg, params, None)  # RFC 2069 compatibility, RFC 2617 §3.2.2.1
    options = [o.strip() for o in params["qop"].split(",")]
    for qop in ("auth", "auth-int"):  # auth first: it does not need the body
        if qop in options:
            return _Offer(alg, params, qop)
    return None


class DigestClient:
    """Answers 401/407 challenges for one set of credentials (RFC 3261 §22.2, §22.3)."""

    def __init__(
        self,
        username: str,
        password: str,
        rand: Callable[[int], bytes] = os.urandom,
        *,
        max_nonces: int = 32,
    ) -> None:
        self.username = username
        self._password = password
        self._rand = rand
        self._max_nonces = max_nonces
        self._counts: OrderedDict[str, int] = OrderedDict()

    def answer(
        self, challenge_header_values: list[str], method: str, uri: str, *, body: bytes = b""
    ) -> str:
        """The Authorization / Proxy-Authorization value for the strongest usable challenge.

        RFC 8760 §2.4: prefer SHA-256 over MD5 whatever order they came in; ties go to the first
        offered. Raises :class:`SipParseError` on a malformed challenge and
        :class:`UnsupportedChallenge` if none can be answered.
        """
        best: _Offer | None = None
        for value in challenge_header_values:
            for scheme, params in parse_challenges(value):
                offer = _offer(params) if scheme == "Digest" else None
                if offer is not None and (best is None or offer.alg.rank > best.alg.rank):
                    best = offer
        if best is None:
            raise UnsupportedChallenge(f"no usable Digest challenge in {challenge_header_values!r}")
        return self._credentials(best, method, uri, body)

    def _next_nc(self, nonce: str) -> str:
        count = self._counts.pop(nonce, 0) + 1
        self._counts[nonce] = count
        while len(self._counts) > self._max_nonces:
            self._counts.popitem(last=False)
        return f"{count:08x}"

    def _credentials(self, offer: _Offer, method: str, uri: str, body: bytes) -> str:
        p = offer.params
        realm, nonce = p["realm"], p["nonce"]
        secret = ha1(self.username, realm, self._password, offer.alg.base)
        nc = cnonce = None
        if offer.qop is not None or offer.alg.sess:
            cnonce = self._rand(16).hex()
        if offer.qop is not None:
            nc = self._next_nc(nonce)
        response = compute_response(
            offer.alg.name,
            secret,
            nonce=nonce,
            method=method,
            uri=uri,
            qop=offer.qop,
            nc=nc,
            cnonce=cnonce,
            body=body,
        )
        out = {"username": self.username, "realm": realm, "nonce": nonce, "uri": uri}
        out["response"] = response
        if "algorithm" in p:
            out["algorithm"] = offer.alg.name
        if cnonce is not None:
            out["cnonce"] = cnonce
        if "opaque" in p:
            out["opaque"] = p["opaque"]  # RFC 7616 §3.4: returned unchanged
        if offer.qop is not None and nc is not None:
            out["qop"] = offer.qop
            out["nc"] = nc
        return format_credentials(out)
