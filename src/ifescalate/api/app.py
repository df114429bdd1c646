"""The HTTP application: routes, middlewares, and the operational endpoints.

Middlewares, outermost first:

1. ``observe``: counts every request in ``http_requests_total{method,route,status}`` (``route`` is
   the template, so ids do not explode the series), writes one JSON log line with the trace id
   when known (``X-IF-Trace-ID`` header or the escalation's), and turns aiohttp's HTTP errors
   (404, 405, 413 ...) into JSON ``{"error": ...}``.
2. ``authenticate``: ``Authorization: Bearer <token>`` (RFC 6750). Missing or invalid: 401 with
   ``WWW-Authenticate: Bearer``; valid without the route's scope: 403.
3. ``domain_errors``: the domain's exceptions become statuses (unknown -> 404, invalid -> 422,
   duplicate -> 409).

``/metrics`` needs an auditor or operator token unless ``ApiConfig.metrics_open_on_loopback`` is
set, in which case a client whose TCP peer address is loopback may scrape without one (behind a
reverse proxy on the same host every client looks local: leave it off there).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
import re
import time
from collections.abc import Mapping
from importlib import resources
from typing import Any

import yaml
from aiohttp import web

from ..council import Council
from ..escalation.model import (
    EscalationService,
    InvalidRequest,
    ServiceUnavailable,
    UnknownEscalation,
)
from ..evidence.service import EvidenceService
from ..guard import ExpertNotFound, ExpertValidationError, Registry, RegistryError
from ..observability import CONTENT_TYPE, Metrics, log_context
from . import agent_media, escalations, evidence, experts, witness
from .auth import Scope, TokenStore
from .common import (
    DEPS,
    PRINCIPAL,
    TRACE_ID,
    ApiConfig,
    Deps,
    Handler,
    InputError,
    Readiness,
    access_of,
    deps,
    error_response,
    json_response,
    public,
    requires,
)
from .ratelimit import RateLimiter, rate_limit_middleware
from .witness_reader import WitnessReader

__all__ = ["build_app", "openapi_document"]

log = logging.getLogger("ifescalate.api")
_TRACE_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}\Z")
# Headers of an aiohttp HTTPException worth keeping on the JSON reply (405 Allow, 401 challenge).
_KEEP_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After", "Location")
_LINK_PREFIX = "/v1/evidence/"


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    headers = {k: exc.headers[k] for k in _KEEP_HEADERS if k in exc.headers}
    if exc.status < 400:
        return web.Response(status=exc.status, headers=headers)
    return error_response(exc.status, exc.reason, headers=headers)


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    header = request.headers.get("X-IF-Trace-ID")
    if header is not None and _TRACE_RE.match(header):
        request[TRACE_ID] = header
    status = 500  # stays so only if the handler raised something unexpected
    with log_context(trace_id=request.get(TRACE_ID)):
        try:
            response = await handler(request)
            status = response.status
            return response
        except asyncio.CancelledError:
            status = 499  # the client went away mid-response (nginx's "client closed request")
            raise
        except web.HTTPException as exc:
            reply = _from_http_exception(exc)
            status = reply.status
            return reply
        finally:
            route = _route_label(request)
            deps(request).metrics.http_request(request.method, route, status)
            who = request.get(PRINCIPAL)
            # An evidence link's path is its credential: log the route template instead, and
            # only the prefix of a path under it that matched no route (a trailing slash).
            if "token" in request.match_info:
                path = route
            elif request.path.startswith(_LINK_PREFIX):
                path = _LINK_PREFIX + "..."
            else:
                path = request.path
            log.info(
                "%s %s %d",
                request.method,
                path,
                status,
                extra={
                    "method": request.method,
                    "route": route,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "principal": who.name if who else None,
                    "remote": request.remote,
                    "trace_id": request.get(TRACE_ID),
                },
            )


def _unauthorized(message: str, error: str | None = None) -> web.Response:
    challenge = 'Bearer realm="ifescalate"'
    if error:  # RFC 6750 §3: no error code when the request carried no credentials
        challenge += f', error="{error}"'
    return error_response(401, message, headers={"WWW-Authenticate": challenge})


def _is_loopback(remote: str | None) -> bool:
    if remote is None:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False  # a unix socket path or an unparsable peer is not loopback


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    info = request.match_info
    if info.http_exception is not None:
        return await handler(request)  # 404/405 from the router; nothing to protect
    rule = access_of(info.handler)
    if rule is None:
        return error_response(403, "route has no access rule")
    d = deps(request)
    if rule.public or (
        rule.loopback_open and d.config.metrics_open_on_loopback and _is_loopback(request.remote)
    ):
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _unauthorized("missing bearer token")
    who = d.tokens.verify(token.strip())
    if who is None:
        return _unauthorized("invalid or revoked token", "invalid_token")
    if not who.has_any(rule.scopes):
        needed = " ".join(sorted(s.value for s in rule.scopes))
        challenge = f'Bearer realm="ifescalate", error="insufficient_scope", scope="{needed}"'
        return error_response(
            403,
            f"needs scope: {' or '.join(sorted(s.value for s in rule.scopes))}",
            headers={"WWW-Authenticate": challenge},
        )
    request[PRINCIPAL] = who
    return await handler(request)


@web.middleware
async def domain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (InputError, InvalidRequest) as exc:
        return json_response({"errors": exc.errors}, status=422)
    except UnknownEscalation as exc:
        return error_response(404, f"no escalation {exc.args[0] if exc.args else ''}".strip())
    except ServiceUnavailable as exc:
        return error_response(503, str(exc))
    except ExpertNotFound as exc:
        return error_response(404, str(exc))
    except ExpertValidationError as exc:
        return json_response({"errors": {"expert": str(exc)}}, status=422)
    except RegistryError as exc:
        return error_response(409, str(exc))


# Operational endpoints ------------------------------------------------------------------------


@public
async def health(request: web.Request) -> web.Response:
    """Liveness: the loop answers. Nothing else is checked (that is /ready)."""
    return json_response({"status": "ok"})


@requires(Scope.COUNCIL, Scope.OPERATOR, Scope.AUDITOR)
async def ready(request: web.Request) -> web.Response:
    """Readiness: each check maps to None (passing) or why it fails; any failure answers 503."""
    d = deps(request)
    checks: Mapping[str, str | None]
    try:
        checks = await asyncio.wait_for(d.readiness(), d.config.readiness_timeout)
    except TimeoutError:
        checks = {"readiness": f"checks did not finish in {d.config.readiness_timeout:g} s"}
    failed = sorted(name for name, problem in checks.items() if problem is not None)
    body = {
        "status": "not_ready" if failed else "ready",
        "checks": {name: problem or "ok" for name, problem in checks.items()},
        "failed": failed,
    }
    return json_response(body, status=503 if failed else 200)


@requires(Scope.AUDITOR, Scope.OPERATOR, loopback_open=True)
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=deps(request).metrics.render(), headers={"Content-Type": CONTENT_TYPE})


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The hand-written OpenAPI 3.1 document shipped as package data (api/openapi.yaml)."""
    text = resources.files(__package__).joinpath("openapi.yaml").read_text(encoding="utf-8")
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


@requires(Scope.COUNCIL, Scope.OPERATOR, Scope.AUDITOR)
async def openapi(request: web.Request) -> web.Response:
    return web.Response(
        text=json.dumps(openapi_document(), separators=(",", ":")), content_type="application/json"
    )


def _add_routes(router: web.UrlDispatcher) -> None:
    def get(path: str, handler: Handler) -> None:
        router.add_get(path, handler, allow_head=False)

    get("/health", health)
    get("/ready", ready)
    get("/metrics", metrics)
    get("/openapi.json", openapi)
    router.add_post("/v1/escalations", escalations.create_escalation)
    get("/v1/escalations", escalations.list_escalations)
    get("/v1/escalations/{id}", escalations.get_escalation)
    router.add_delete("/v1/escalations/{id}", escalations.cancel_escalation)
    get("/v1/escalations/{id}/events", escalations.stream_events)
    get("/v1/escalations/{id}/media", agent_media.agent_media)
    router.add_post("/v1/escalations/{id}/evidence", evidence.add_evidence)
    get("/v1/escalations/{id}/evidence", evidence.list_evidence)
    # {eid:[^/]+}: any segment reaches the handler (and its auth check), which answers 404
    # for a string that is not one of the escalation's evidence ids.
    router.add_post("/v1/escalations/{id}/evidence/{eid:[^/]+}/links", evidence.create_link)
    get("/v1/evidence/{token}", evidence.open_link)
    get("/v1/experts", experts.list_experts)
    router.add_post("/v1/experts", experts.create_expert)
    get("/v1/experts/{id}", experts.get_expert)
    router.add_put("/v1/experts/{id}", experts.replace_expert)
    router.add_delete("/v1/experts/{id}", experts.delete_expert)
    router.add_post("/v1/experts/{id}/suspend", experts.suspend_expert)
    get("/v1/witness", witness.list_witness)
    get("/v1/witness/public-key", witness.witness_public_key)


def build_app(
    *,
    service: EscalationService,
    registry: Registry,
    witness_reader: WitnessReader,
    tokens: TokenStore,
    metrics: Metrics,
    readiness: Readiness,
    config: ApiConfig | None = None,
    council: Council | None = None,
    evidence_service: EvidenceService | None = None,
) -> web.Application:
    """The API as an aiohttp application; run it on the SIP endpoint's loop with an ``AppRunner``
    (pass ``access_log=None``: the ``observe`` middleware already logs each request as JSON).

    ``readiness()`` returns ``{check name: None if passing else why it fails}``. ``council``: the
    rooms agents join over ``/v1/escalations/{id}/media`` (None: that route answers 503).
    ``evidence_service``: evidence and its links (None: those routes answer 503).
    """
    cfg = config or ApiConfig()
    limits = (
        [rate_limit_middleware(RateLimiter(cfg.rate_limit, cfg.rate_window))]
        if cfg.rate_limit > 0
        else []
    )
    app = web.Application(
        middlewares=[observe, *limits, authenticate, domain_errors],
        client_max_size=cfg.max_body_bytes,
    )
    app[DEPS] = Deps(service, registry, witness_reader, tokens, metrics, readiness, cfg)
    if council is not None:
        app[agent_media.COUNCIL] = council
    if evidence_service is not None:
        app[evidence.EVIDENCE] = evidence_service
    _add_routes(app.router)
    return app
