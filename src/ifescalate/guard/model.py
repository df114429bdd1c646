"""The expert record: frozen, validated on construction, serialisable to plain dicts (YAML/JSON).

Digest credentials are only ever held as HA1 hashes (RFC 7616 §3.4.2 / RFC 3261 §22.4 allow a
server to store H(username:realm:password) instead of the password). Provisioning takes the
password once, hashes it and forgets it; MD5 HA1 is kept only when the operator allows MD5 for
old phones (RFC 8760 §2 makes SHA-256 the SIP default).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..security.facts import normalize_fingerprint
from ..sip.digest import ha1
from ..sip.errors import SipError
from ..sip.uri import parse_uri
from .availability import AvailabilityWindow, parse_window
from .errors import ExpertValidationError

__all__ = [
    "DEFAULT_HAZARDS",
    "WILDCARD",
    "DigestCredentials",
    "Expert",
    "IPNetwork",
    "provision_digest",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The hazard vocabulary the council escalates on; configurable in Settings.
DEFAULT_HAZARDS: tuple[str, ...] = ("safety", "alignment", "ethics", "bias", "security", "privacy")
#: A specialization that covers every hazard (a generalist); ranked after exact matches.
WILDCARD = "*"

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_ORG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HAZARD_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_HEX_RE = re.compile(r"^[0-9a-f]+$")
_DEFAULT_CALLS_PER_MINUTE = 10  # ARCHITECTURE.md: per-expert limit, default 10 calls a minute


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ExpertValidationError(message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def valid_hazard(name: str) -> bool:
    return bool(_HAZARD_RE.match(name))


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """One digest identity: HA1 per algorithm, never the password."""

    username: str
    realm: str
    ha1_sha256: str
    ha1_md5: str | None = None

    def __post_init__(self) -> None:
        _require(bool(self.username) and ":" not in self.username, "digest username invalid")
        _require(bool(self.realm) and '"' not in self.realm, "digest realm invalid")
        _require(
            len(self.ha1_sha256) == 64 and bool(_HEX_RE.match(self.ha1_sha256)),
            "ha1_sha256 must be 64 lowercase hex digits",
        )
        if self.ha1_md5 is not None:
            _require(
                len(self.ha1_md5) == 32 and bool(_HEX_RE.match(self.ha1_md5)),
                "ha1_md5 must be 32 lowercase hex digits",
            )

    def ha1_for(self, algorithm: str) -> str | None:
        """The stored HA1 for a digest algorithm (-sess variants share it), or None."""
        base = algorithm.upper().removesuffix("-SESS")
        if base == "SHA-256":
            return self.ha1_sha256
        if base == "MD5":
            return self.ha1_md5
        return None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "username": self.username,
            "realm": self.realm,
            "ha1_sha256": self.ha1_sha256,
        }
        if self.ha1_md5 is not None:
            out["ha1_md5"] = self.ha1_md5
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DigestCredentials:
        if "password" in data:
            raise ExpertValidationError(
                "digest: plaintext 'password' is not accepted in registry files; store "
                "ha1_sha256 (use `ifescalate experts add --password` to provision)"
            )
        _check_keys(data, {"username", "realm", "ha1_sha256", "ha1_md5"}, "digest")
        md5 = data.get("ha1_md5")
        return cls(
            username=str(data.get("username", "")),
            realm=str(data.get("realm", "")),
            ha1_sha256=str(data.get("ha1_sha256", "")).lower(),
            ha1_md5=None if md5 is None else str(md5).lower(),
        )


def provision_digest(
    username: str, realm: str, password: str, *, allow_md5: bool = False
) -> DigestCredentials:
    """Hashes a password into stored HA1 values; the password itself is not kept anywhere."""
    return DigestCredentials(
        username=username,
        realm=realm,
        ha1_sha256=ha1(username, realm, password, "SHA-256"),
        ha1_md5=ha1(username, realm, password, "MD5") if allow_md5 else None,
    )


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ExpertValidationError(f"{where}: unknown field(s) {', '.join(unknown)}")


def _parse_network(text: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ExpertValidationError(f"network {text!r}: {exc}") from None


def _decode_public_key(text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ExpertValidationError("public_key must be base64 of a raw Ed25519 key") from None
    return raw


@dataclass(frozen=True, slots=True)
class Expert:
    """A human expert the council may call.

    ``networks`` are the CIDRs their calls may come from (the security allowlist),
    ``specializations`` are hazard names (or ``*``), ``clearance`` bounds the evidence
    sensitivity they may see, ``calls_per_minute`` caps how often they may be rung or call in.
    ``cert_fingerprints`` pin the TLS client certificates they may call in with (SHA-256 of the
    DER bytes, lowercase hex; "AB:CD:..." as ``openssl x509 -fingerprint -sha256`` prints it is
    accepted and normalised): with any registered, a call-in without one of them is refused.
    """

    id: str
    name: str
    sip_uri: str
    org: str
    networks: tuple[IPNetwork, ...] = ()
    specializations: frozenset[str] = frozenset()
    clearance: int = 0
    availability: tuple[AvailabilityWindow, ...] = ()
    calls_per_minute: int = _DEFAULT_CALLS_PER_MINUTE
    digest: DigestCredentials | None = None
    public_key: bytes | None = field(default=None, repr=False)
    suspended: bool = False
    cert_fingerprints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _require(bool(_ID_RE.match(self.id)), f"expert id {self.id!r}: use [a-z0-9._-], max 64")
        _require(bool(self.name.strip()), f"expert {self.id}: name is empty")
        _require(bool(_ORG_RE.match(self.org)), f"expert {self.id}: org {self.org!r} is invalid")
        self._check_uri()
        _require(
            all(
                isinstance(n, ipaddress.IPv4Network | ipaddress.IPv6Network) for n in self.networks
            ),
            f"expert {self.id}: networks must be ip_network values",
        )
        _require(bool(self.specializations), f"expert {self.id}: no specializations")
        for s in self.specializations:
            _require(
                s == WILDCARD or valid_hazard(s), f"expert {self.id}: bad specialization {s!r}"
            )
        _require(
            _is_int(self.clearance) and 0 <= self.clearance <= 1_000_000,
            f"expert {self.id}: clearance must be an integer >= 0",
        )
        _require(
            _is_int(self.calls_per_minute) and 1 <= self.calls_per_minute <= 10_000,
            f"expert {self.id}: calls_per_minute must be an integer >= 1",
        )
        _require(isinstance(self.suspended, bool), f"expert {self.id}: suspended must be a bool")
        object.__setattr__(self, "cert_fingerprints", self._normalized_fingerprints())
        if self.public_key is not None:
            _require(len(self.public_key) == 32, f"expert {self.id}: Ed25519 key is 32 bytes")
            try:
                Ed25519PublicKey.from_public_bytes(self.public_key)
            except ValueError:
                raise ExpertValidationError(f"expert {self.id}: invalid Ed25519 key") from None

    def _normalized_fingerprints(self) -> tuple[str, ...]:
        out: list[str] = []
        for fp in self.cert_fingerprints:
            try:
                norm = normalize_fingerprint(str(fp))
            except ValueError as exc:
                raise ExpertValidationError(f"expert {self.id}: cert_fingerprints: {exc}") from None
            if norm not in out:
                out.append(norm)
        return tuple(out)

    def _check_uri(self) -> None:
        try:
            uri = parse_uri(self.sip_uri)
        except SipError as exc:
            raise ExpertValidationError(f"expert {self.id}: sip_uri: {exc}") from None
        _require(uri.scheme in ("sip", "sips"), f"expert {self.id}: sip_uri must be sip: or sips:")

    def covers(self, hazard: str) -> bool:
        return hazard in self.specializations or WILDCARD in self.specializations

    def with_suspended(self, suspended: bool = True) -> Expert:
        return replace(self, suspended=suspended)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML/JSON; the inverse of :meth:`from_dict`. Contains no password."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "sip_uri": self.sip_uri,
            "org": self.org,
            "networks": [str(n) for n in self.networks],
            "specializations": sorted(self.specializations),
            "clearance": self.clearance,
            "availability": [str(w) for w in self.availability],
            "calls_per_minute": self.calls_per_minute,
            "suspended": self.suspended,
        }
        if self.digest is not None:
            out["digest"] = self.digest.to_dict()
        if self.public_key is not None:
            out["public_key"] = base64.b64encode(self.public_key).decode("ascii")
        if self.cert_fingerprints:
            # Only when set: records stored before the field existed stay byte-identical.
            out["cert_fingerprints"] = list(self.cert_fingerprints)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Expert:
        """Builds and validates an expert from YAML/JSON data; unknown fields are errors."""
        _check_keys(data, _FIELDS, f"expert {data.get('id', '?')}")
        digest = data.get("digest")
        key = data.get("public_key")
        return cls(
            id=str(data.get("id", "")),
            name=str(data.get("name", "")),
            sip_uri=str(data.get("sip_uri", "")),
            org=str(data.get("org", "")),
            networks=tuple(_parse_network(str(n)) for n in _as_list(data, "networks")),
            specializations=frozenset(str(s) for s in _as_list(data, "specializations")),
            clearance=data.get("clearance", 0),
            availability=tuple(parse_window(str(w)) for w in _as_list(data, "availability")),
            calls_per_minute=data.get("calls_per_minute", _DEFAULT_CALLS_PER_MINUTE),
            digest=None if digest is None else DigestCredentials.from_dict(_as_map(digest)),
            public_key=None if key is None else _decode_public_key(str(key)),
            suspended=data.get("suspended", False),
            cert_fingerprints=tuple(str(f) for f in _as_list(data, "cert_fingerprints")),
        )


_FIELDS = {
    "id",
    "name",
    "sip_uri",
    "org",
    "networks",
    "specializations",
    "clearance",
    "availability",
    "calls_per_minute",
    "digest",
    "public_key",
    "suspended",
    "cert_fingerprints",
}


def _as_list(data: Mapping[str, Any], key: str) -> Iterable[Any]:
    value = data.get(key, [])
    if isinstance(value, str):  # a lone scalar in YAML: "networks: 10.0.0.0/8"
        return [value]
    if not isinstance(value, list | tuple):
        raise ExpertValidationError(f"{key} must be a list")
    return value


def _as_map(value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ExpertValidationError("digest must be a mapping")
    return value
