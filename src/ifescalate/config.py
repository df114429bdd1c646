"""One Settings object for the whole service: embedded defaults, a YAML file, then environment.

Precedence (lowest first): the defaults below, the ``--config`` YAML file, ``IFESCALATE_*``
environment variables for the few settings operators set per deployment (data dir, database URL,
API and SIP addresses). Unknown keys are errors that name the key: a typo must not silently fall
back to a default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .escalation.model import DEFAULT_HAZARDS


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the setting."""


@dataclass(slots=True)
class SipSettings:
    listen: list[str] = field(
        default_factory=lambda: ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060", "tls:127.0.0.1:5061"]
    )
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    #: Verify experts' TLS certificates when calling out (off only for development peers).
    verify_peers: bool = True
    require_client_cert: bool = False
    #: CA bundle TLS client certificates must chain to (default: tls_ca); with one set, the TLS
    #: listener asks callers for a certificate and experts' cert_fingerprints pin it.
    tls_client_ca: str | None = None
    user: str = "ifescalate"
    #: Answer inbound calls automatically (the plain SIP endpoint; expert call-in uses digest).
    auth: str | None = None
    ring_ms: int = 0
    media_host: str | None = None
    #: Digest realm experts authenticate in when they call in (their registry credentials).
    realm: str = "ifescalate"
    #: Digest algorithms offered to callers, strongest first (RFC 8760 section 2.4). SIPp 3.6 takes
    #: the first challenge and computes MD5 only: ["MD5"] lets it call in (experts need ha1_md5).
    auth_algorithms: list[str] = field(default_factory=lambda: ["SHA-256", "MD5"])
    #: Stream (TCP/TLS) bounds, seconds and counts (docs/security.md, "Slow connections"): a
    #: message must be complete this long after its first byte; a TLS handshake done this long
    #: after the accept; nothing at all for idle_timeout closes the connection.
    message_timeout: float = 10.0
    tls_handshake_timeout: float = 10.0
    idle_timeout: float = 120.0
    #: Open stream connections (handshakes included) per source address, and in all.
    max_connections_per_peer: int = 16
    max_connections: int = 1000


@dataclass(slots=True)
class MediaSettings:
    #: RTP for expert calls (SDP with real ports, DTMF verdicts by RFC 4733); off: SIP only.
    enabled: bool = True
    port_start: int = 40000
    port_end: int = 49999
    #: Seconds without RTP before the call is ended (0: never).
    no_media_timeout: float = 30.0
    #: "auto": SRTP (SDES) on TLS calls; "off"; "mandatory".
    srtp: str = "auto"
    #: Audio codecs offered and accepted, best first (opus, G722, PCMU, PCMA).
    codecs: list[str] = field(default_factory=lambda: ["opus", "G722", "PCMU", "PCMA"])
    #: Offer and accept RTP and RTCP on one port (RFC 5761); peers without it keep port + 1.
    rtcp_mux: bool = True


@dataclass(slots=True)
class SecuritySettings:
    """The inbound security pipeline in front of SIP (ARCHITECTURE.md); rates are "N/SECONDS"."""

    enabled: bool = True
    flood: str = "30/10"
    flood_block: float = 120.0
    #: Networks never flood-counted (the edge proxy, monitoring).
    trusted: list[str] = field(default_factory=list)
    #: Pre-authentication allowlist; None: only each expert's own networks (checked after digest).
    allow: list[str] | None = None
    require_tls: bool = True
    lockout: str = "5/300"
    expert_calls: str = "10/60"
    #: "redis://127.0.0.1:6379/0" shares counters between instances; None keeps them in memory.
    counters_url: str | None = None
    counters_prefix: str = "ifescalate:sec:"
    #: Seconds a Redis operation may take in all; then 503 (docs/security.md, "Redis outage").
    counters_timeout: float = 0.5
    #: Seconds between probes of an unreachable Redis (503s meanwhile carry Retry-After).
    counters_probe: float = 1.0
    #: Proxies (the Kamailio edge) whose X-IF-Source header names the caller; empty: none.
    trusted_proxies: list[str] = field(default_factory=list)
    drop_failed_invites: bool = False
    audit_window: float = 60.0


@dataclass(slots=True)
class ApiSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    #: Requests per client address per window (0: no limit); /health is exempt.
    rate_limit: int = 300
    rate_window: float = 10.0
    #: Base URL experts reach the API at, for evidence links ("https://escalate.example.org");
    #: None: http://HOST:PORT as bound (only right when experts reach that address directly).
    public_url: str | None = None


@dataclass(slots=True)
class EvidenceSettings:
    """Evidence items and their signed links (docs/evidence.md)."""

    #: Largest evidence item accepted, in bytes (413 above).
    max_bytes: int = 10 * 1024 * 1024
    #: Lifetime of a link when none is asked for, and the longest one may ask for (seconds).
    link_ttl: float = 900.0
    max_link_ttl: float = 3600.0
    #: Links put in the INVITE's Call-Info and the MESSAGE after answering (0: no SIP delivery).
    sip_links: int = 4


@dataclass(slots=True)
class EscalationConfig:
    ring_timeout: float = 30.0
    deadline: float = 300.0
    max_duration: float = 3600.0
    #: Record each council room to DATA_DIR/recordings (policy: off unless enabled).
    record: bool = False


@dataclass(slots=True)
class Settings:
    data_dir: str = "data"
    #: PostgreSQL URL for the witness (None: SQLite in the data dir).
    database_url: str | None = None
    #: PostgreSQL schema for the witness tables, so several deployments can share one database.
    database_schema: str = "public"
    #: Registry YAML merged into the store at start (None: the packaged sample on first run).
    experts_file: str | None = None
    #: Extra Cedar policy files replacing the packaged defaults (None: defaults).
    policy_files: list[str] = field(default_factory=list)
    hazards: list[str] = field(default_factory=lambda: list(DEFAULT_HAZARDS))
    approved_orgs: list[str] | None = None
    log_level: str = "INFO"
    sip: SipSettings = field(default_factory=SipSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    escalation: EscalationConfig = field(default_factory=EscalationConfig)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


_SECTIONS = {
    "sip": SipSettings,
    "api": ApiSettings,
    "escalation": EscalationConfig,
    "media": MediaSettings,
    "security": SecuritySettings,
    "evidence": EvidenceSettings,
}

_ENV = {
    "IFESCALATE_DATA_DIR": ("data_dir", str),
    "IFESCALATE_DATABASE_URL": ("database_url", str),
    "IFESCALATE_DATABASE_SCHEMA": ("database_schema", str),
    "IFESCALATE_API_HOST": ("api.host", str),
    "IFESCALATE_API_PORT": ("api.port", int),
    "IFESCALATE_API_PUBLIC_URL": ("api.public_url", str),
    "IFESCALATE_LOG_LEVEL": ("log_level", str),
}


def _apply(target: Any, values: Mapping[str, Any], where: str) -> None:
    known = {f.name for f in fields(target)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown setting {key!r}; known: {sorted(known)}")
        section = _SECTIONS.get(key) if target.__class__ is Settings else None
        if section is not None:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: {key!r} must be a mapping")
            _apply(getattr(target, key), value, f"{where}.{key}")
            continue
        current = getattr(target, key)
        if current is not None and value is not None and not _same_kind(current, value):
            raise ConfigError(
                f"{where}.{key}: expected {type(current).__name__}, got {type(value).__name__}"
            )
        setattr(target, key, value)


def _same_kind(current: Any, value: Any) -> bool:
    if isinstance(current, bool) or isinstance(value, bool):
        return isinstance(current, bool) and isinstance(value, bool)
    if isinstance(current, float):
        return isinstance(value, int | float)
    return isinstance(value, type(current))


def load_settings(
    path: str | None = None, *, env: Mapping[str, str] | None = None, data_dir: str | None = None
) -> Settings:
    """Defaults, then the YAML file at ``path``, then the environment, then ``data_dir``."""
    settings = Settings()
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if raw is not None:
            if not isinstance(raw, Mapping):
                raise ConfigError(f"config {path} must be a mapping of settings")
            _apply(settings, raw, f"config {path}")
    for var, (dotted, kind) in _ENV.items():
        value = (env if env is not None else os.environ).get(var)
        if value is None:
            continue
        try:
            converted = kind(value)
        except ValueError as exc:
            raise ConfigError(f"{var}={value!r}: {exc}") from exc
        obj: Any = settings
        *parents, leaf = dotted.split(".")
        for p in parents:
            obj = getattr(obj, p)
        setattr(obj, leaf, converted)
    if data_dir is not None:
        settings.data_dir = data_dir
    if not isinstance(settings.sip.listen, list) or not all(
        isinstance(x, str) for x in settings.sip.listen
    ):
        raise ConfigError("sip.listen must be a list like ['udp:127.0.0.1:5060']")
    algorithms = settings.sip.auth_algorithms
    if not algorithms or not all(a in ("SHA-256", "MD5") for a in algorithms):
        raise ConfigError(f"sip.auth_algorithms must list SHA-256 and/or MD5, got {algorithms!r}")
    return settings
