"""The layers of the inbound security pipeline, each a small class with a pure decision.

Order and replies (ARCHITECTURE.md, "Security pipeline for every inbound request"):

1. flood         503 Service Unavailable + Retry-After; the source is blocked for a while
2. allowlist     403 Forbidden - IP Not Allowlisted
3. transport     403 Forbidden - TLS Required (no TLS off loopback, old TLS, weak cipher);
                 403 Forbidden - Client Certificate Required / Mismatch (pinned experts)
4. digest        401 challenge (one response for unknown user and wrong password); 403 when
                 locked out after repeated failures
5. expert limit  429 Too Many Requests + Retry-After
6. policy        403 Forbidden - <IF.guard's reason>

Layers with counters do their I/O in ``async check(...)`` and hand the counter results to a pure
``decide(...)``; the others are pure throughout.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..sip.digest import AuthReason, AuthResult
from .counters import Acquired, Counters, Hit
from .facts import (
    Allow,
    AuthFacts,
    AuthOutcome,
    Challenge,
    Decision,
    ExpertFacts,
    IPNetwork,
    Layer,
    PolicyDecision,
    Reject,
    RequestFacts,
    in_networks,
    is_loopback,
    parse_networks,
)

ALLOW = Allow()


def retry_after(until: float, now: float) -> tuple[tuple[str, str], ...]:
    """A Retry-After header (RFC 3261 §20.33: whole seconds) covering ``until``; at least 1."""
    return (("Retry-After", str(max(1, math.ceil(until - now)))),)


# -- 1. flood ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FloodConfig:
    """``limit`` requests per ``window`` seconds per source; the next one blocks the source for
    ``block`` seconds. ``trusted`` networks (the edge proxy, monitoring) are never counted."""

    limit: int = 30
    window: float = 10.0
    block: float = 120.0
    trusted: tuple[IPNetwork, ...] = ()

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window <= 0 or self.block <= 0:
            raise ValueError("flood limit, window and block must be positive")


class FloodLayer:
    """Per-source request rate (IPv6 folded to its /64).

    Requests that matched an established dialog are exempt: a flood from elsewhere, or a busy
    source, must not starve the BYE of a call in progress (Kamailio's pike does exactly that; see
    PEERS.md).
    """

    layer = Layer.FLOOD

    def __init__(self, counters: Counters, config: FloodConfig = FloodConfig()) -> None:
        self.counters = counters
        self.config = config

    def exempt(self, facts: RequestFacts) -> bool:
        return facts.in_dialog or in_networks(facts.address, self.config.trusted)

    @staticmethod
    def key(facts: RequestFacts) -> str:
        return f"flood:{facts.source}"

    def decide(self, hit: Hit, now: float) -> Decision:
        if hit.blocked_until is None:
            return ALLOW
        # count > 0: this request tripped the limit; count == 0: the source was already blocked.
        label = "rate_exceeded" if hit.count else "blocked"
        return Reject(
            503,
            "Service Unavailable",
            Layer.FLOOD,
            label,
            retry_after(hit.blocked_until, now),
        )

    async def check(self, facts: RequestFacts, now: float) -> Decision:
        if self.exempt(facts):
            return ALLOW
        c = self.config
        hit = await self.counters.hit_and_block(
            self.key(facts), now, c.window, c.limit + 1, c.block
        )
        return self.decide(hit, now)


# -- 2. allowlist --------------------------------------------------------------------------------

NOT_ALLOWLISTED = "Forbidden - IP Not Allowlisted"


class AllowlistLayer:
    """Source CIDRs per expert organisation.

    Before authentication only the source is known, so it must lie in some organisation's
    networks (``networks_by_org=None`` switches that check off). Once the expert is known,
    :meth:`decide_expert` binds the source to *their* organisation's networks and their own: an
    allowlisted network of one organisation does not let anyone speak for another. An expert with
    no network at all may not call in (fail closed, as ``escalation.callin.source_allowed``).
    """

    layer = Layer.ALLOWLIST

    def __init__(self, networks_by_org: Mapping[str, Iterable[str | IPNetwork]] | None) -> None:
        self.by_org: dict[str, tuple[IPNetwork, ...]] | None = (
            None
            if networks_by_org is None
            else {org: parse_networks(nets) for org, nets in networks_by_org.items()}
        )

    def decide(self, facts: RequestFacts) -> Decision:
        if self.by_org is None:
            return ALLOW
        if any(in_networks(facts.address, nets) for nets in self.by_org.values()):
            return ALLOW
        return Reject(403, NOT_ALLOWLISTED, Layer.ALLOWLIST, "not_allowlisted")

    def decide_expert(self, facts: RequestFacts, expert: ExpertFacts) -> Decision:
        org_nets = () if self.by_org is None else self.by_org.get(expert.org, ())
        if in_networks(facts.address, (*expert.networks, *org_nets)):
            return ALLOW
        return Reject(403, NOT_ALLOWLISTED, Layer.ALLOWLIST, "not_expert_network")


# -- 3. transport --------------------------------------------------------------------------------

TLS_REQUIRED = "Forbidden - TLS Required"
CLIENT_CERT_REQUIRED = "Forbidden - Client Certificate Required"
CLIENT_CERT_MISMATCH = "Forbidden - Client Certificate Mismatch"

_TLS_VERSIONS = {"SSLv2": 0, "SSLv3": 1, "TLSv1": 2, "TLSv1.1": 3, "TLSv1.2": 4, "TLSv1.3": 5}
_ANON = re.compile(r"(^|[-_])(ADH|AECDH|ANON|NULL|EXPORT|EXP|RC4|DES|3DES|MD5|PSK|SRP)([-_]|$)")


def tls_version_rank(version: str) -> int:
    """Order of a ``SSLObject.version()`` string; unknown names rank lowest (fail closed)."""
    return _TLS_VERSIONS.get(version, -1)


def is_strong_cipher(cipher: str) -> bool:
    """AEAD with forward secrecy only (RFC 9325 §4.2): every TLS 1.3 suite; for TLS 1.2, ECDHE or
    DHE with AES-GCM or ChaCha20-Poly1305. CBC, RC4, 3DES, static RSA, anonymous, NULL, export,
    PSK and CCM_8 suites are refused. Accepts OpenSSL ("ECDHE-RSA-AES128-GCM-SHA256") and IANA
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256") names."""
    name = cipher.upper()
    if _ANON.search(name) or "CCM_8" in name or "CCM8" in name:
        return False
    aead = "GCM" in name or "CHACHA20" in name or "CCM" in name
    tls13 = name.startswith(("TLS_AES_", "TLS_CHACHA20_"))
    forward_secret = tls13 or "ECDHE" in name or "DHE" in name
    return aead and forward_secret


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """``require_tls`` off loopback; TLS at least ``min_version``; ``strong_cipher`` decides
    suites; ``require_client_cert`` asks every TLS client for a certificate."""

    require_tls: bool = True
    min_version: str = "TLSv1.2"
    require_client_cert: bool = False
    strong_cipher: Callable[[str], bool] = is_strong_cipher

    def __post_init__(self) -> None:
        if tls_version_rank(self.min_version) < 0:
            raise ValueError(f"unknown TLS version {self.min_version!r}")


class TransportLayer:
    """What the connection is, checked before anyone's credentials are looked at."""

    layer = Layer.TRANSPORT

    def __init__(self, config: TransportConfig = TransportConfig()) -> None:
        self.config = config

    def decide(self, facts: RequestFacts) -> Decision:
        c = self.config
        tls = facts.tls
        if tls is None:
            # The hop's own address: a caller behind a loopback proxy did not reach us in clear.
            if c.require_tls and not is_loopback(facts.hop_address):
                return Reject(403, TLS_REQUIRED, Layer.TRANSPORT, "tls_required")
            return ALLOW
        if tls_version_rank(tls.version) < tls_version_rank(c.min_version):
            return Reject(403, TLS_REQUIRED, Layer.TRANSPORT, "tls_version")
        if not c.strong_cipher(tls.cipher):
            return Reject(403, TLS_REQUIRED, Layer.TRANSPORT, "weak_cipher")
        if c.require_client_cert and tls.peer_cert_sha256 is None:
            return Reject(403, CLIENT_CERT_REQUIRED, Layer.TRANSPORT, "client_cert_required")
        return ALLOW

    def decide_expert(self, facts: RequestFacts, expert: ExpertFacts) -> Decision:
        """An expert with registered certificates must have presented one of exactly those, in
        this TLS session (``getpeercert(binary_form=True)``; never a header)."""
        if not expert.cert_fingerprints:
            return ALLOW
        seen = facts.tls.peer_cert_sha256 if facts.tls is not None else None
        if seen is None:
            return Reject(403, CLIENT_CERT_REQUIRED, Layer.TRANSPORT, "client_cert_required")
        if not cert_pinned(seen, expert.cert_fingerprints):
            return Reject(403, CLIENT_CERT_MISMATCH, Layer.TRANSPORT, "client_cert_mismatch")
        return ALLOW


def cert_pinned(seen: str, pinned: Iterable[str]) -> bool:
    """Whether fingerprint ``seen`` is one of ``pinned`` (all normalised lowercase hex); every
    entry is compared, in constant time each, so the answer's timing says nothing about which."""
    found = False
    for fp in pinned:
        found |= hmac.compare_digest(seen, fp)
    return found


# -- 4. digest and lockout -----------------------------------------------------------------------


def auth_outcome(reason: AuthReason) -> AuthOutcome:
    """``sip.digest`` reasons reduced to what the pipeline acts on."""
    if reason is AuthReason.OK:
        return AuthOutcome.OK
    if reason is AuthReason.MISSING:
        return AuthOutcome.MISSING
    if reason is AuthReason.STALE:
        return AuthOutcome.STALE
    if reason is AuthReason.UNKNOWN_USER_OR_BAD_PASSWORD:
        return AuthOutcome.FAILED
    return AuthOutcome.INVALID


def auth_facts(
    result: AuthResult, *, algorithm: str | None = None, expert: ExpertFacts | None = None
) -> AuthFacts:
    """:class:`AuthFacts` from a ``DigestServer.verify`` result; ``expert`` only counts on success."""
    outcome = auth_outcome(result.reason)
    return AuthFacts(
        outcome,
        result.username,
        algorithm,
        expert if outcome is AuthOutcome.OK else None,
    )


@dataclass(frozen=True, slots=True)
class LockoutConfig:
    """``failures`` within ``window`` seconds for one (username, source) lock that pair out for
    ``duration`` seconds."""

    failures: int = 5
    window: float = 300.0
    duration: float = 300.0

    def __post_init__(self) -> None:
        if self.failures < 1 or self.window <= 0 or self.duration <= 0:
            raise ValueError("lockout failures, window and duration must be positive")


_CHALLENGE = Reject(
    401, "Unauthorized", Layer.DIGEST, "challenge", challenge=Challenge.FRESH, audit=False
)
_STALE = Reject(
    401, "Unauthorized", Layer.DIGEST, "stale_nonce", challenge=Challenge.STALE, audit=False
)
_LOCKED = Reject(403, "Forbidden", Layer.DIGEST, "locked_out")


class DigestLayer:
    """Acts on the digest verdict and keeps the lockout (svcrack must not keep guessing).

    Unknown users and wrong passwords take one path: the same counter operation and the same
    401 with a fresh challenge (``sip.digest.DigestServer`` already hashes a dummy HA1 for
    unknown users so verification costs the same). Failures are counted for any claimed username,
    existing or not, so the lockout itself tells nothing either. A locked pair gets 403 whatever
    it sends, right credentials included; a success clears the pair's failures.
    """

    layer = Layer.DIGEST

    def __init__(self, counters: Counters, config: LockoutConfig = LockoutConfig()) -> None:
        self.counters = counters
        self.config = config

    @staticmethod
    def key(username: str, facts: RequestFacts) -> str:
        # Usernames are attacker-chosen: hash them to a fixed-size, charset-safe key.
        digest = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"lockout:{digest}:{facts.source}"

    @staticmethod
    def failure(auth: AuthFacts) -> str | None:
        """The failure label for this verdict, None when it is no failure."""
        if auth.outcome is AuthOutcome.OK:
            md5 = (auth.algorithm or "").upper().startswith("MD5")
            if md5 and auth.expert is not None and not auth.expert.allow_md5:
                return "md5_not_allowed"
            return None
        if auth.outcome is AuthOutcome.FAILED:
            return "bad_credentials"
        if auth.outcome is AuthOutcome.INVALID:
            return "invalid_credentials"
        return None

    def decide(self, auth: AuthFacts, locked_until: float | None, hit: Hit | None) -> Decision:
        """Pure: ``locked_until`` is the pair's lock before this request, ``hit`` the failure
        counter after it (None when this request was no failure or named no user)."""
        if locked_until is not None or (hit is not None and hit.blocked):
            return _LOCKED
        if auth.outcome is AuthOutcome.MISSING:
            return _CHALLENGE
        if auth.outcome is AuthOutcome.STALE:
            return _STALE
        label = self.failure(auth)
        if label is not None:
            return Reject(401, "Unauthorized", Layer.DIGEST, label, challenge=Challenge.FRESH)
        return Allow(auth.expert)

    async def check(self, facts: RequestFacts, auth: AuthFacts, now: float) -> Decision:
        if auth.username is None:
            return self.decide(auth, None, None)
        key = self.key(auth.username, facts)
        locked = await self.counters.blocked_until(key, now)
        if locked is not None:
            return self.decide(auth, locked, None)
        hit: Hit | None = None
        if self.failure(auth) is not None:
            c = self.config
            hit = await self.counters.hit_and_block(key, now, c.window, c.failures, c.duration)
        elif auth.outcome is AuthOutcome.OK:
            await self.counters.clear(key)
        return self.decide(auth, None, hit)


# -- 5. per-expert limit -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExpertLimitConfig:
    """``calls`` per ``window`` seconds per expert unless their record sets its own."""

    calls: int = 10
    window: float = 60.0

    def __post_init__(self) -> None:
        if self.calls < 1 or self.window <= 0:
            raise ValueError("expert limit calls and window must be positive")


class ExpertLimitLayer:
    """A true sliding window of admitted calls per expert; refused calls do not count."""

    layer = Layer.EXPERT_LIMIT

    def __init__(self, counters: Counters, config: ExpertLimitConfig = ExpertLimitConfig()) -> None:
        self.counters = counters
        self.config = config

    def limit_for(self, expert: ExpertFacts) -> int:
        return expert.calls_per_minute or self.config.calls

    def decide(self, acquired: Acquired, now: float) -> Decision:
        if acquired.allowed:
            return ALLOW
        # Retry when the oldest admitted call leaves the window (at exactly oldest + window).
        oldest = acquired.oldest if acquired.oldest is not None else now
        headers = retry_after(oldest + self.config.window, now)
        return Reject(429, "Too Many Requests", Layer.EXPERT_LIMIT, "expert_rate", headers)

    async def check(self, expert: ExpertFacts, now: float) -> Decision:
        key = f"expert:{expert.expert_id}"
        acquired = await self.counters.acquire(key, now, self.config.window, self.limit_for(expert))
        return self.decide(acquired, now)


# -- 6. policy -----------------------------------------------------------------------------------

_PHRASE_JUNK = re.compile(r"[^\x20-\x7e]+")


def reason_phrase_text(text: str, limit: int = 96) -> str:
    """A policy's reason made safe for a SIP reason phrase (§25.1: no CR/LF; we keep printable
    ASCII so the phrase cannot break the status line)."""
    return " ".join(_PHRASE_JUNK.sub(" ", text).split())[:limit].rstrip()


def policy_label(policy_ids: tuple[str, ...]) -> str:
    """The metric label of a denial: its first deciding policy's ``@id`` in label characters
    ("expert-not-suspended" -> "expert_not_suspended"), bounded by the size of the policy set;
    ``policy_denied`` when no policy named itself (default deny, evaluation errors)."""
    for pid in policy_ids:
        label = re.sub(r"[^a-z0-9]+", "_", pid.lower()).strip("_")[:63]
        if label and label[0].isalpha():
            return label
    return "policy_denied"


class PolicyLayer:
    """IF.guard's decision: 403 with the policy's reason, labelled by the deciding policy."""

    layer = Layer.POLICY

    def decide(self, decision: PolicyDecision) -> Decision:
        if decision.permit:
            return ALLOW
        reason = reason_phrase_text(decision.reason)
        phrase = f"Forbidden - {reason}" if reason else "Forbidden"
        return Reject(
            403,
            phrase,
            Layer.POLICY,
            policy_label(decision.policy_ids),
            policy_ids=decision.policy_ids,
        )
