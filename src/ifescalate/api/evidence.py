"""Evidence endpoints: add and list an escalation's evidence, issue links, open a link.

- ``POST /v1/escalations/{id}/evidence`` (council for its own escalations, operator): the body is
  the evidence itself (its ``Content-Type`` is recorded, ``?name=`` names it), or, with
  ``Content-Type: application/json``, an object ``{"name", "media_type", "content", "encoding"}``
  (``encoding`` ``utf-8`` or ``base64``). 201 new, 200 when these bytes were already attached.
  Over ``evidence.max_bytes``: 413, checked on ``Content-Length`` first and while reading.
- ``GET /v1/escalations/{id}/evidence``: the items (any role that may see the escalation).
- ``POST /v1/escalations/{id}/evidence/{eid}/links``: a signed URL, body ``{"ttl", "expert_id"}``
  both optional.
- ``GET /v1/evidence/{token}``: no bearer token, the link is the credential. The bytes with their
  media type and ``Cache-Control: no-store``; refusals answer JSON ``{"error", "reason"}`` with the
  status of the refusal (evidence/links.py): 400 malformed, 403 bad signature or out of scope, 404
  not in the escalation, 410 expired or escalation ended.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from aiohttp import web

from ..escalation.model import UnknownEscalation
from ..evidence.links import LinkError
from ..evidence.service import EscalationClosed, EvidenceService, UnknownEvidence
from ..evidence.store import EvidenceCorrupt, EvidenceError, EvidenceTooLarge
from ..witness.core import WitnessError
from .auth import Principal, Scope
from .common import (
    TRACE_ID,
    InputError,
    deps,
    error_response,
    json_response,
    principal,
    public,
    requires,
)

__all__ = ["EVIDENCE", "add_evidence", "create_link", "list_evidence", "open_link"]

EVIDENCE = web.AppKey("ifescalate_evidence", EvidenceService)
log = logging.getLogger("ifescalate.api")

_ENVELOPE_FIELDS = {"name", "media_type", "content", "encoding"}
# A link's response must never be stored by a cache nor leak the URL (the credential) onward;
# evidence a council agent uploaded must not run as script in the API's origin.
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_SERVE_HEADERS = {
    **_NO_STORE,
    "X-Content-Type-Options": "nosniff",
    # frame-ancestors: no other page may frame the evidence (clickjacking, CSP Level 2 §7.7).
    "Content-Security-Policy": "default-src 'none'; sandbox; frame-ancestors 'none'",
}
# Types a browser shows without running anything; everything else (HTML, SVG, XML, scripts,
# unknown types) is offered as a download, so uploaded markup never renders in the API's origin
# even in a browser that ignores the sandbox directive (RFC 6266 §4.2: "attachment").
_INLINE_TYPES = frozenset(
    {
        "text/plain",
        "application/json",
        "application/pdf",
        "image/png",
        "image/jpeg",
        "image/gif",
        "audio/wav",
        "audio/x-wav",
        "audio/mpeg",
    }
)


def _serve_headers(media_type: str) -> dict[str, str]:
    base = media_type.split(";", 1)[0].strip().lower()
    if base in _INLINE_TYPES:
        return {**_SERVE_HEADERS, "Content-Type": media_type}
    return {**_SERVE_HEADERS, "Content-Type": media_type, "Content-Disposition": "attachment"}


def _service(request: web.Request) -> EvidenceService:
    svc = request.app.get(EVIDENCE)
    if svc is None:
        raise web.HTTPServiceUnavailable(reason="evidence is not configured on this instance")
    return svc


def _sees_all(who: Principal) -> bool:
    return who.has_any((Scope.OPERATOR, Scope.AUDITOR))


def _visible(request: web.Request) -> str:
    """The escalation id if this caller may see it (council: only its own; 404 otherwise)."""
    escalation_id = request.match_info["id"]
    view = deps(request).service.get(escalation_id)
    who = principal(request)
    if not _sees_all(who) and view.requester != who.name:
        raise UnknownEscalation(escalation_id)
    request[TRACE_ID] = view.trace_id
    return escalation_id


async def _read_limited(request: web.Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as it is known to exceed ``limit`` bytes. Read from the
    stream, not ``request.read()``, whose cap is the API's 1 MiB JSON limit."""
    length = request.content_length
    if length is not None and length > limit:
        raise EvidenceTooLarge("content", f"{length} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise EvidenceTooLarge("content", f"more than {limit} bytes; the limit is {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


def _envelope(raw: bytes) -> tuple[bytes, str, str]:
    """(content, media type, name) from the JSON form; InputError naming the field otherwise."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError({"body": f"not valid JSON: {exc}"}) from None
    if not isinstance(body, dict):
        raise InputError({"body": "must be a JSON object"})
    errors = {k: "unknown field" for k in sorted(set(body) - _ENVELOPE_FIELDS)}
    for key, required in (("name", True), ("content", True), ("media_type", False)):
        if key in body and not isinstance(body[key], str):
            errors[key] = "must be a string"
        elif key not in body and required:
            errors[key] = "required"
    encoding = body.get("encoding", "utf-8")
    if encoding not in ("utf-8", "base64"):
        errors["encoding"] = "must be utf-8 or base64"
    if errors:
        raise InputError(errors)
    text: str = body["content"]
    if encoding == "base64":
        try:
            content = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise InputError({"content": "not valid base64 (RFC 4648 section 4)"}) from None
    else:
        content = text.encode("utf-8")
    default = "text/plain; charset=utf-8" if encoding == "utf-8" else "application/octet-stream"
    return content, body.get("media_type", default), body["name"]


@requires(Scope.COUNCIL, Scope.OPERATOR)
async def add_evidence(request: web.Request) -> web.Response:
    svc = _service(request)
    escalation_id = _visible(request)
    limit = svc.store.max_bytes
    is_json = request.content_type == "application/json"
    try:
        # The JSON form carries the content base64'd (4/3) or escaped: allow for that.
        raw = await _read_limited(request, limit * 2 + 4096 if is_json else limit)
        if is_json:
            content, media_type, name = _envelope(raw)
        else:
            content = raw
            media_type = request.headers.get("Content-Type", "application/octet-stream")
            name = request.query.get("name", "evidence")
        record, created = await svc.add(
            escalation_id,
            content,
            name=name,
            media_type=media_type,
            added_by=principal(request).name,
        )
    except EvidenceTooLarge as exc:
        return error_response(413, f"evidence too large: {exc.reason}")
    except EvidenceError as exc:
        return json_response({"errors": {exc.field: exc.reason}}, status=422)
    except EscalationClosed as exc:
        return error_response(409, str(exc))
    location = f"/v1/escalations/{escalation_id}/evidence/{record.sha256}"
    return json_response(
        record.to_dict(), status=201 if created else 200, headers={"Location": location}
    )


@requires(Scope.COUNCIL, Scope.OPERATOR, Scope.AUDITOR)
async def list_evidence(request: web.Request) -> web.Response:
    svc = _service(request)
    escalation_id = _visible(request)
    return json_response({"evidence": [r.to_dict() for r in svc.list(escalation_id)]})


def _link_options(raw: bytes) -> tuple[float | None, str | None]:
    if not raw.strip():
        return None, None
    try:
        body: Any = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError({"body": f"not valid JSON: {exc}"}) from None
    if not isinstance(body, dict):
        raise InputError({"body": "must be a JSON object"})
    errors = {k: "unknown field" for k in sorted(set(body) - {"ttl", "expert_id"})}
    ttl = body.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)):
        errors["ttl"] = "must be a number of seconds"
    expert = body.get("expert_id")
    if expert is not None and (not isinstance(expert, str) or not 0 < len(expert) <= 200):
        errors["expert_id"] = "must be an expert id (1-200 characters)"
    if errors:
        raise InputError(errors)
    return (float(ttl) if ttl is not None else None), expert


@requires(Scope.COUNCIL, Scope.OPERATOR)
async def create_link(request: web.Request) -> web.Response:
    svc = _service(request)
    escalation_id = _visible(request)
    ttl, expert_id = _link_options(await request.read())
    try:
        link = await svc.issue(
            escalation_id,
            request.match_info["eid"],
            ttl=ttl,
            expert_id=expert_id,
            by=principal(request).name,
        )
    except UnknownEvidence as exc:
        return error_response(404, str(exc.args[0]))
    except EscalationClosed as exc:
        return error_response(409, str(exc))
    except ValueError as exc:  # ttl out of range, an expert id the token cannot carry
        raise InputError({"ttl" if "ttl" in str(exc) else "expert_id": str(exc)}) from None
    return json_response(link.to_dict(), status=201)


@public
async def open_link(request: web.Request) -> web.Response:
    svc = _service(request)
    try:
        # request.remote is the TCP peer (aiohttp reads it from the transport, not a header).
        record, data = await svc.open(request.match_info["token"], peer=request.remote)
    except LinkError as exc:
        return json_response(
            {"error": str(exc), "reason": exc.code}, status=exc.status, headers=_NO_STORE
        )
    except EvidenceCorrupt as exc:
        return error_response(500, str(exc), headers=_NO_STORE)
    except WitnessError as exc:  # nothing is served unwitnessed
        # The store's error names its file or database host: for the log, not for an
        # unauthenticated link holder.
        log.error("evidence link not served, the witness failed: %s", exc)
        return error_response(503, "witness unavailable", headers=_NO_STORE)
    return web.Response(body=data, headers=_serve_headers(record.media_type))
