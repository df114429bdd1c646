"""``/v1/escalations``: raise, read, list, cancel, and follow one as server-sent events.

The requester of a new escalation is the token's principal, never a body field. A token with only
the ``council`` scope sees and cancels only its own escalations (others answer 404, so ids do not
leak); ``operator`` and ``auditor`` see all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiohttp import web

from ..escalation.model import (
    EscalationEvent,
    EscalationRequest,
    EscalationView,
    EvidenceItem,
    InvalidRequest,
    UnknownEscalation,
    Urgency,
)
from .auth import Principal, Scope
from .common import (
    TRACE_ID,
    InputError,
    deps,
    dumps,
    json_response,
    principal,
    query_int,
    read_json_object,
    requires,
)

_FIELDS = {"hazard", "question", "urgency", "evidence", "trace_id"}
_EVIDENCE_FIELDS = {"name", "sensitivity", "content_type", "content"}
_MAX_EVIDENCE = 100
_IDEMPOTENCY_RE = re.compile(r"[\x21-\x7e]{1,200}\Z")  # visible ASCII, like an HTTP token
_ALL = (Scope.COUNCIL, Scope.OPERATOR, Scope.AUDITOR)


def _check_str(body: dict[str, Any], key: str, errors: dict[str, str], *, required: bool) -> None:
    if key not in body or (body[key] is None and not required):
        if required:
            errors[key] = "required"
        return
    if not isinstance(body[key], str):
        errors[key] = "must be a string"


def _evidence(raw: object, errors: dict[str, str]) -> tuple[EvidenceItem, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errors["evidence"] = "must be a list"
        return ()
    if len(raw) > _MAX_EVIDENCE:
        errors["evidence"] = f"at most {_MAX_EVIDENCE} items"
        return ()
    items: list[EvidenceItem] = []
    for i, entry in enumerate(raw):
        where = f"evidence[{i}]"
        if not isinstance(entry, dict):
            errors[where] = "must be an object"
            continue
        before = len(errors)
        for key in sorted(set(entry) - _EVIDENCE_FIELDS):
            errors[f"{where}.{key}"] = "unknown field"
        for key, required in (("name", True), ("content_type", False), ("content", False)):
            if key not in entry and not required:
                continue
            if not isinstance(entry.get(key), str):
                errors[f"{where}.{key}"] = "required" if key not in entry else "must be a string"
        sens = entry.get("sensitivity", 0)
        if isinstance(sens, bool) or not isinstance(sens, int):
            errors[f"{where}.sensitivity"] = "must be an integer"
        if len(errors) > before:
            continue
        try:
            items.append(EvidenceItem(**entry))
        except InvalidRequest as exc:  # keys like "evidence.name": name the item
            errors.update({k.replace("evidence", where, 1): v for k, v in exc.errors.items()})
    return tuple(items)


def parse_request(
    body: dict[str, Any], requester: str, hazards: Sequence[str]
) -> EscalationRequest:
    """Validates the body's shape and types, then builds the request (which checks values).

    Raises :class:`InputError` / :class:`InvalidRequest` with field -> reason.
    """
    errors: dict[str, str] = {}
    for key in sorted(set(body) - _FIELDS):
        errors[key] = (
            "set from the API token; do not send it" if key == "requester" else "unknown field"
        )
    _check_str(body, "hazard", errors, required=True)
    _check_str(body, "question", errors, required=True)
    _check_str(body, "trace_id", errors, required=False)
    urgency = Urgency.NORMAL
    if body.get("urgency") is not None:
        try:
            urgency = Urgency(body["urgency"])
        except ValueError:
            errors["urgency"] = f"must be one of {', '.join(u.value for u in Urgency)}"
    evidence = _evidence(body.get("evidence"), errors)
    if errors:
        raise InputError(errors)
    return EscalationRequest(
        hazard=body["hazard"],
        question=body["question"],
        requester=requester,
        urgency=urgency,
        evidence=evidence,
        trace_id=body.get("trace_id"),
        hazards=tuple(hazards),
    )


def _sees_all(who: Principal) -> bool:
    return who.has_any((Scope.OPERATOR, Scope.AUDITOR))


def _visible(request: web.Request, escalation_id: str) -> EscalationView:
    """The escalation if this caller may see it; UnknownEscalation (404) otherwise."""
    view = deps(request).service.get(escalation_id)
    who = principal(request)
    if not _sees_all(who) and view.requester != who.name:
        raise UnknownEscalation(escalation_id)
    request[TRACE_ID] = view.trace_id
    return view


@requires(Scope.COUNCIL)
async def create_escalation(request: web.Request) -> web.Response:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _IDEMPOTENCY_RE.match(key):
        raise InputError({"Idempotency-Key": "must be 1-200 visible ASCII characters"})
    body = await read_json_object(request)
    d = deps(request)
    esc = parse_request(body, principal(request).name, d.config.hazards)
    view = await d.service.create(esc, idempotency_key=key)
    request[TRACE_ID] = view.trace_id
    location = f"/v1/escalations/{view.id}"
    return json_response(view.to_dict(), status=201, headers={"Location": location})


@requires(*_ALL)
async def get_escalation(request: web.Request) -> web.Response:
    return json_response(_visible(request, request.match_info["id"]).to_dict())


@requires(*_ALL)
async def list_escalations(request: web.Request) -> web.Response:
    d = deps(request)
    limit = query_int(request, "limit", 100, 1, d.config.max_list_limit)
    who = principal(request)
    views = d.service.list(limit=limit)
    if not _sees_all(who):
        views = [v for v in views if v.requester == who.name]
    return json_response({"escalations": [v.to_dict() for v in views]})


@requires(Scope.COUNCIL, Scope.OPERATOR)
async def cancel_escalation(request: web.Request) -> web.Response:
    escalation_id = request.match_info["id"]
    who = principal(request)
    view = deps(request).service.get(escalation_id)
    if Scope.OPERATOR not in who.scopes and view.requester != who.name:
        raise UnknownEscalation(escalation_id)
    request[TRACE_ID] = view.trace_id
    view = await deps(request).service.cancel(escalation_id, by=who.name)
    return json_response(view.to_dict())


# Server-sent events (WHATWG HTML §9.2) --------------------------------------------------------


def sse_frame(event: EscalationEvent) -> bytes:
    """``id`` is the per-escalation seq, so a reconnect's ``Last-Event-ID`` resumes after it;
    ``data`` is one line of JSON (JSON escapes newlines, so it never splits the field)."""
    return f"id: {event.seq}\nevent: {event.type}\ndata: {dumps(event.to_dict())}\n\n".encode()


HEARTBEAT = b": heartbeat\n\n"


def _resume_after(request: web.Request) -> int:
    text = request.headers.get("Last-Event-ID")
    name = "Last-Event-ID"
    if text is None:
        text, name = request.query.get("after"), "after"
    if text is None or text == "":
        return 0
    if not text.isdigit() or len(text) > 18:
        raise InputError({name: "must be a non-negative integer (an event seq)"})
    return int(text)


async def _pump(
    response: web.StreamResponse, events: AsyncIterator[EscalationEvent], heartbeat: float
) -> None:
    """Writes events as they come; a comment line every ``heartbeat`` seconds keeps proxies from
    closing an idle stream. ``asyncio.wait`` (not ``wait_for``) so a heartbeat never cancels the
    pending read of the event iterator."""
    pending: asyncio.Future[EscalationEvent] = asyncio.ensure_future(anext(events))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=heartbeat)
            if not done:
                await response.write(HEARTBEAT)
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            await response.write(sse_frame(event))
            pending = asyncio.ensure_future(anext(events))
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()


@requires(*_ALL)
async def stream_events(request: web.Request) -> web.StreamResponse:
    escalation_id = request.match_info["id"]
    _visible(request, escalation_id)
    after = _resume_after(request)
    d = deps(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    await response.prepare(request)
    try:
        await _pump(
            response,
            aiter(d.service.events(escalation_id, after=after)),
            d.config.heartbeat_seconds,
        )
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away; nothing more to send
    return response
