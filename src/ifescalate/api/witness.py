"""``/v1/witness``: witnessed events as JSON for auditors, and the key that verifies them."""

from __future__ import annotations

from aiohttp import web

from ..witness import public_key_hex, public_key_pem
from .auth import Scope
from .common import deps, json_response, query_int, requires

_MAX_SEQ = 2**63 - 1


@requires(Scope.AUDITOR, Scope.OPERATOR)
async def list_witness(request: web.Request) -> web.Response:
    """Filters by ``trace_id`` and/or ``escalation_id``; pages with ``after`` (a seq) and
    ``limit``. ``next_after`` is the seq to pass as ``after`` for the next page (null at the end)."""
    d = deps(request)
    limit = query_int(request, "limit", 100, 1, d.config.max_list_limit)
    after = query_int(request, "after", 0, 0, _MAX_SEQ)
    events = await d.witness.events(
        trace_id=request.query.get("trace_id") or None,
        escalation_id=request.query.get("escalation_id") or None,
        after=after,
        limit=limit,
    )
    next_after = events[-1].seq if len(events) == limit else None
    return json_response({"events": [e.to_dict() for e in events], "next_after": next_after})


@requires(Scope.COUNCIL, Scope.OPERATOR, Scope.AUDITOR)
async def witness_public_key(request: web.Request) -> web.Response:
    """Any token may read it (security issue: every endpoint but /health needs a token); offline
    verifiers get it with the export manifest or from witness_ed25519.pub.pem."""
    key = deps(request).witness.public_key()
    return json_response(
        {
            "algorithm": "Ed25519",
            "public_key_hex": public_key_hex(key),
            "public_key_pem": public_key_pem(key).decode("ascii"),
        }
    )
