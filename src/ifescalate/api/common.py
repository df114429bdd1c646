"""What every API module shares: settings, the dependencies handlers reach, access rules, JSON I/O.

Access is declared on each handler with :func:`requires` or :func:`public`; the auth middleware
reads the rule from the matched handler, and a handler without a rule is refused (403), so a new
route can never be open by omission.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from ..escalation.model import DEFAULT_HAZARDS, EscalationService
from ..guard import Registry
from ..observability import Metrics
from .auth import Principal, Scope, TokenStore
from .witness_reader import WitnessReader

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Readiness = Callable[[], Awaitable[Mapping[str, str | None]]]
H = TypeVar("H", bound=Handler)

_ACCESS_ATTR = "_ifescalate_access"


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """API settings. ``metrics_open_on_loopback`` lets a Prometheus on the same host scrape
    ``/metrics`` without a token (only when the TCP peer itself is a loopback address)."""

    max_body_bytes: int = 1 << 20
    heartbeat_seconds: float = 15.0
    readiness_timeout: float = 5.0
    metrics_open_on_loopback: bool = False
    hazards: Sequence[str] = DEFAULT_HAZARDS
    max_list_limit: int = 1000
    #: Requests per client address per window (0 disables); /health is exempt.
    rate_limit: int = 300
    rate_window: float = 10.0


@dataclass(frozen=True, slots=True)
class Deps:
    """Everything handlers use, stored once on the application under :data:`DEPS`."""

    service: EscalationService
    registry: Registry
    witness: WitnessReader
    tokens: TokenStore
    metrics: Metrics
    readiness: Readiness
    config: ApiConfig = field(default_factory=ApiConfig)


DEPS = web.AppKey("ifescalate_deps", Deps)
PRINCIPAL = web.RequestKey("ifescalate_principal", Principal)
TRACE_ID = web.RequestKey("ifescalate_trace_id", str)


@dataclass(frozen=True, slots=True)
class Access:
    """Who may call a handler: ``scopes`` (any one suffices); empty means no token needed."""

    scopes: frozenset[Scope]
    loopback_open: bool = False

    @property
    def public(self) -> bool:
        return not self.scopes


def requires(*scopes: Scope, loopback_open: bool = False) -> Callable[[H], H]:
    """Declares the scopes a handler needs (any one of them)."""
    if not scopes:
        raise ValueError("requires() needs at least one scope; use @public for open routes")

    def mark(handler: H) -> H:
        setattr(handler, _ACCESS_ATTR, Access(frozenset(scopes), loopback_open))
        return handler

    return mark


def public(handler: H) -> H:
    """Declares a handler that needs no token (health, readiness, the OpenAPI document)."""
    setattr(handler, _ACCESS_ATTR, Access(frozenset()))
    return handler


def access_of(handler: object) -> Access | None:
    rule = getattr(handler, _ACCESS_ATTR, None)
    return rule if isinstance(rule, Access) else None


def deps(request: web.Request) -> Deps:
    return request.app[DEPS]


def principal(request: web.Request) -> Principal:
    """The authenticated caller (the auth middleware guarantees it on non-public routes)."""
    return request[PRINCIPAL]


# JSON I/O ------------------------------------------------------------------------------------


def dumps(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def json_response(
    data: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


def error_response(
    status: int, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    return json_response({"error": message}, status=status, headers=headers)


class InputError(Exception):
    """Bad request input, answered 422 ``{"errors": {field: reason}}``."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; :class:`InputError` naming ``body`` otherwise.

    A body over the size limit raises aiohttp's 413 while reading (``client_max_size``).
    """
    raw = await request.read()
    if not raw:
        raise InputError({"body": "a JSON object is required"})
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError({"body": f"not valid JSON: {exc}"}) from None
    if not isinstance(data, dict):
        raise InputError({"body": "must be a JSON object"})
    return data


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise InputError({name: "must be an integer"}) from None
    if not lo <= value <= hi:
        raise InputError({name: f"must be {lo}-{hi}"})
    return value
