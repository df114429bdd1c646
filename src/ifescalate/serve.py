"""``ifescalate serve``: the service on its embedded defaults.

Until the escalation service lands (IF.guard, IF.witness, HTTP API), ``serve`` runs the SIP endpoint
alone: a user agent on UDP, TCP and TLS that answers calls and OPTIONS, with a development TLS
certificate generated into the data directory on first run. A YAML file can override every default.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .net.devcert import dev_tls_cert
from .net.runner import AgentOptions, run, run_answer
from .net.tls import TlsOptions
from .net.transport import ListenSpec
from .net.ua import UaConfig

DEFAULT_LISTEN = ("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060", "tls:127.0.0.1:5061")


class ConfigError(ValueError):
    """The configuration file is unreadable or names an unknown or malformed setting."""


@dataclass(slots=True)
class ServeSettings:
    """What ``serve`` reads from its config file; every field has an embedded default."""

    listen: list[str] = field(default_factory=lambda: list(DEFAULT_LISTEN))
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    require_client_cert: bool = False
    auth: str | None = None
    ring_ms: int = 0
    user: str = "ifescalate"


_KNOWN = set(ServeSettings.__dataclass_fields__)


def load_settings(path: str | None) -> ServeSettings:
    """Read ``path`` (YAML mapping); unknown keys are an error, not silently ignored."""
    settings = ServeSettings()
    if path is None:
        return settings
    try:
        raw: Any = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if raw is None:
        return settings
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping of settings")
    sip = raw.get("sip", raw)
    if not isinstance(sip, dict):
        raise ConfigError(f"config {path}: 'sip' must be a mapping")
    unknown = set(sip) - _KNOWN
    if unknown:
        raise ConfigError(
            f"config {path}: unknown settings {sorted(unknown)}; known: {sorted(_KNOWN)}"
        )
    for key, value in sip.items():
        setattr(settings, key, value)
    if not isinstance(settings.listen, list) or not all(
        isinstance(x, str) for x in settings.listen
    ):
        raise ConfigError(f"config {path}: 'listen' must be a list like {list(DEFAULT_LISTEN)}")
    return settings


def agent_options(
    settings: ServeSettings, data_dir: Path, extra_listen: list[ListenSpec]
) -> AgentOptions:
    listen = extra_listen or [ListenSpec.parse(x) for x in settings.listen]
    cert, key = settings.tls_cert, settings.tls_key
    if any(s.transport == "TLS" for s in listen) and (cert is None or key is None):
        tls_dir = data_dir / "tls"
        cert_path, key_path = tls_dir / "dev-cert.pem", tls_dir / "dev-key.pem"
        if not (cert_path.exists() and key_path.exists()):
            cert_path, key_path = dev_tls_cert(tls_dir)
            print(f"generated development TLS certificate {cert_path}", flush=True)
        cert, key = str(cert_path), str(key_path)
    auth_user = auth_password = None
    if settings.auth:
        auth_user, sep, auth_password = settings.auth.partition(":")
        if not sep:
            raise ConfigError("'auth' takes USER:PASSWORD")
    return AgentOptions(
        listen=listen,
        tls=TlsOptions(
            cert_file=Path(cert) if cert else None,
            key_file=Path(key) if key else None,
            ca_file=Path(settings.tls_ca) if settings.tls_ca else None,
            require_client_cert=settings.require_client_cert,
        ),
        config=UaConfig(
            user=settings.user,
            auth_user=auth_user,
            auth_password=auth_password,
            ring_ms=settings.ring_ms,
        ),
    )


def serve(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    opts = agent_options(settings, data_dir, list(args.listen))
    return run(run_answer(opts))
