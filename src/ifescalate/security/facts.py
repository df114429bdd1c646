"""Facts the security pipeline decides on, and the decisions it returns.

Every fact comes from the transport or from checked credentials, never from the message text
(ARCHITECTURE.md, "Security pipeline"): the socket's peer address, the transport the bytes came
over, what the TLS handshake negotiated, whether the request matched an existing dialog. The
decisions are value objects with stable labels so that metrics and witness entries can group by
them (``security_rejections_total{layer, reason}``).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: IPv6 hosts usually get a whole /64 (RFC 6177 §2); counting per address would let one host
#: rotate through 2**64 addresses, so flood and audit keys fold IPv6 sources to their /64.
IPV6_FOLD_PREFIX = 64

_LABEL = re.compile(r"[a-z][a-z0-9_]{0,62}")
_TRANSPORTS = frozenset({"udp", "tcp", "tls", "ws", "wss"})
_SECURE_TRANSPORTS = frozenset({"tls", "wss"})


class Layer(enum.Enum):
    """The layers in pipeline order (ARCHITECTURE.md). Values are the stable metric labels."""

    FLOOD = "flood"
    ALLOWLIST = "allowlist"
    TRANSPORT = "transport"
    DIGEST = "digest"
    EXPERT_LIMIT = "expert_limit"
    POLICY = "policy"
    #: Not a SIP pipeline stage: a refused evidence link on the HTTP API (``evidence.service``).
    #: Listed here so its refusals are a :class:`Reject` and share the audit's bounded
    #: aggregation (``security.audit``) instead of writing one witness entry each.
    EVIDENCE_LINK = "evidence_link"


class Challenge(enum.Enum):
    """What digest challenge a 401 rejection must carry (RFC 3261 §22.2, RFC 7616 §3.3)."""

    FRESH = "fresh"
    STALE = "stale"


def parse_ip(text: str) -> IPAddress:
    """The address the socket saw, without a zone id; IPv4-mapped IPv6 becomes plain IPv4 so
    that one host is one key whichever socket family accepted it. Raises ValueError."""
    addr = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def source_key(addr: IPAddress) -> str:
    """The per-source counting key: the IPv4 address, or the IPv6 /64 network."""
    if isinstance(addr, ipaddress.IPv4Address):
        return str(addr)
    return str(ipaddress.IPv6Network((addr, IPV6_FOLD_PREFIX), strict=False))


def is_loopback(addr: IPAddress) -> bool:
    """127.0.0.0/8 and ::1 (RFC 6890): the only sources allowed without TLS."""
    return addr.is_loopback


def parse_networks(items: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    """CIDR texts (host bits allowed, as operators type them) or networks, as a tuple."""
    out: list[IPNetwork] = []
    for item in items:
        if isinstance(item, str):
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        else:
            out.append(item)
    return tuple(out)


def in_networks(addr: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(addr.version == net.version and addr in net for net in networks)


@dataclass(frozen=True, slots=True)
class TlsFacts:
    """What the TLS handshake negotiated, as ``ssl.SSLObject`` reports it.

    ``version`` is ``SSLObject.version()`` ("TLSv1.2", "TLSv1.3"), ``cipher`` the OpenSSL or IANA
    suite name (``SSLObject.cipher()[0]``), ``peer_cert_sha256`` the lowercase hex SHA-256 of the
    client certificate's DER bytes, None when the client sent none.
    """

    version: str
    cipher: str
    peer_cert_sha256: str | None = None

    def __post_init__(self) -> None:
        if self.peer_cert_sha256 is not None:
            object.__setattr__(
                self, "peer_cert_sha256", normalize_fingerprint(self.peer_cert_sha256)
            )


def normalize_fingerprint(text: str) -> str:
    """Lowercase hex without separators ("AB:CD:..." as openssl prints it becomes "abcd...")."""
    hexed = text.replace(":", "").strip().lower()
    if len(hexed) != 64 or any(c not in "0123456789abcdef" for c in hexed):
        raise ValueError(f"not a SHA-256 fingerprint: {text!r}")
    return hexed


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """One inbound request as the transport saw it.

    ``in_dialog`` is True only when the request matched an existing dialog (§12.2.2): the caller
    decides that from its dialog table, never from the presence of a To tag alone.

    ``proxy`` is the transport peer when it is a trusted proxy that named the caller
    (``security.proxy``): then ``source_ip`` is the caller the proxy saw, which the flood and
    allowlist layers and the audit act on, while ``transport``, ``tls`` and the loopback exemption
    describe the hop from the proxy, the only connection this process can see.
    """

    source_ip: str
    transport: str
    method: str
    in_dialog: bool = False
    tls: TlsFacts | None = None
    proxy: str | None = None
    address: IPAddress = field(init=False, repr=False, compare=False)
    hop_address: IPAddress = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", parse_ip(self.source_ip))
        hop = self.address if self.proxy is None else parse_ip(self.proxy)
        object.__setattr__(self, "hop_address", hop)
        transport = self.transport.lower()
        if transport not in _TRANSPORTS:
            raise ValueError(f"unknown transport {self.transport!r}")
        object.__setattr__(self, "transport", transport)
        if (transport in _SECURE_TRANSPORTS) != (self.tls is not None):
            raise ValueError(f"transport {transport} contradicts tls={self.tls}")

    @property
    def source(self) -> str:
        """The counting key for this source (IPv6 folded to its /64)."""
        return source_key(self.address)

    @property
    def secure(self) -> bool:
        return self.tls is not None


@dataclass(frozen=True, slots=True)
class ExpertFacts:
    """The fields of the authenticated expert's registry record the pipeline needs.

    ``networks`` are the expert's own CIDRs; ``allow_md5`` whether their record keeps an MD5 HA1;
    ``cert_fingerprints`` the registered client certificate fingerprints (any one of them will
    do; empty: no pinning); ``calls_per_minute`` their own limit (None: the layer default).
    """

    expert_id: str
    org: str
    networks: tuple[IPNetwork, ...] = ()
    allow_md5: bool = False
    cert_fingerprints: tuple[str, ...] = ()
    calls_per_minute: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "cert_fingerprints",
            tuple(normalize_fingerprint(f) for f in self.cert_fingerprints),
        )
        if self.calls_per_minute is not None and self.calls_per_minute < 1:
            raise ValueError("calls_per_minute must be >= 1")


class AuthOutcome(enum.Enum):
    """The digest verdict, reduced to what the pipeline acts on. ``sip.digest.AuthReason`` maps
    onto it with :func:`ifescalate.security.layers.auth_outcome`."""

    OK = "ok"
    MISSING = "missing"  # no credentials: an ordinary first challenge, not a failure
    STALE = "stale"  # well-formed but expired nonce: re-challenge with stale=true
    FAILED = "failed"  # unknown user or wrong password: one response for both
    INVALID = "invalid"  # malformed, forged nonce, replay, wrong realm/uri/algorithm


@dataclass(frozen=True, slots=True)
class AuthFacts:
    """The digest result for this request: the outcome, the claimed username (whenever one was
    parsed, for lockout accounting), the algorithm the credentials used, and the expert record
    when the username belongs to one."""

    outcome: AuthOutcome
    username: str | None = None
    algorithm: str | None = None
    expert: ExpertFacts | None = None

    def __post_init__(self) -> None:
        if self.outcome is AuthOutcome.OK and (self.username is None or self.expert is None):
            raise ValueError("a successful authentication names its user and expert")


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """IF.guard's answer for this expert: permit or deny, and the policy's reason."""

    permit: bool
    reason: str = ""
    policy_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Allow:
    """The request passes. ``expert`` is the authenticated expert when the identity stages ran."""

    expert: ExpertFacts | None = None

    @property
    def allowed(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse with ``status reason_phrase``; ``layer`` and ``reason_label`` are stable metric
    labels. ``headers`` go into the response (Retry-After). ``challenge`` asks the caller to add
    fresh digest challenges (a 401); ``audit`` is False for the ordinary first challenge, which is
    neither an attack nor worth a witness entry. ``policy_ids`` are IF.guard's deciding policies
    of a policy-layer refusal (witnessed with it)."""

    status: int
    reason_phrase: str
    layer: Layer
    reason_label: str
    headers: tuple[tuple[str, str], ...] = ()
    challenge: Challenge | None = None
    audit: bool = True
    policy_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 699:
            raise ValueError(f"a rejection needs a final error status, not {self.status}")
        if not _LABEL.fullmatch(self.reason_label):
            raise ValueError(f"reason label must be [a-z0-9_]: {self.reason_label!r}")

    @property
    def allowed(self) -> bool:
        return False


Decision = Allow | Reject
