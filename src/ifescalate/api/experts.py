"""``/v1/experts``: the IF.guard registry over HTTP (operator writes; auditor and operator read).

Passwords never reach the registry: a ``digest`` object with ``password`` is turned into HA1 values
by :func:`~ifescalate.guard.provision_digest` here, and HA1 values are never served back (they are
password-equivalent for digest authentication, RFC 7616 §5.12); reads show username, realm and
the algorithms provisioned.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..guard import WILDCARD, Expert, ExpertValidationError, provision_digest
from .auth import Scope
from .common import InputError, deps, json_response, read_json_object, requires

_READ = (Scope.AUDITOR, Scope.OPERATOR)


def expert_view(expert: Expert) -> dict[str, Any]:
    """The expert as served: everything but the HA1 hashes."""
    out = expert.to_dict()
    if expert.digest is not None:
        algorithms = ["SHA-256"] + (["MD5"] if expert.digest.ha1_md5 else [])
        out["digest"] = {
            "username": expert.digest.username,
            "realm": expert.digest.realm,
            "algorithms": algorithms,
        }
    return out


def _digest(raw: object) -> object:
    """A ``{username, realm, password, allow_md5?}`` object becomes stored HA1 credentials."""
    if not isinstance(raw, dict) or "password" not in raw:
        return raw  # absent, null, or already HA1: the model validates it
    unknown = sorted(set(raw) - {"username", "realm", "password", "allow_md5"})
    if unknown:
        raise InputError({f"digest.{k}": "unknown field" for k in unknown})
    errors = {
        f"digest.{k}": "must be a non-empty string"
        for k in ("username", "realm", "password")
        if not isinstance(raw.get(k), str) or not raw[k]
    }
    allow_md5 = raw.get("allow_md5", False)
    if not isinstance(allow_md5, bool):
        errors["digest.allow_md5"] = "must be a boolean"
    if errors:
        raise InputError(errors)
    creds = provision_digest(raw["username"], raw["realm"], raw["password"], allow_md5=allow_md5)
    return creds.to_dict()


def _build(request: web.Request, body: dict[str, Any], current: Expert | None) -> Expert:
    data = dict(body)
    if current is not None:
        # GET never returns HA1, so a read-modify-PUT cannot carry the credentials back:
        # an absent ``digest`` keeps them (``null`` removes them). Suspension has its own route.
        if "digest" not in data and current.digest is not None:
            data["digest"] = current.digest.to_dict()
        data.setdefault("suspended", current.suspended)
        # Certificate pins are a security binding: a PUT that leaves them out keeps them (an
        # older client must not unpin an expert by accident); ``[]`` removes them.
        data.setdefault("cert_fingerprints", list(current.cert_fingerprints))
    if "digest" in data:
        data["digest"] = _digest(data["digest"])
        if data["digest"] is None:
            del data["digest"]
    try:
        expert = Expert.from_dict(data)
    except ExpertValidationError as exc:
        raise InputError({"expert": str(exc)}) from None
    allowed = set(deps(request).config.hazards) | {WILDCARD}
    unknown = sorted(expert.specializations - allowed)
    if unknown:
        raise InputError({"specializations": f"unknown hazard(s) {', '.join(unknown)}"})
    return expert


@requires(*_READ)
async def list_experts(request: web.Request) -> web.Response:
    experts = deps(request).registry.list()
    return json_response({"experts": [expert_view(e) for e in experts]})


@requires(*_READ)
async def get_expert(request: web.Request) -> web.Response:
    return json_response(expert_view(deps(request).registry.get(request.match_info["id"])))


@requires(Scope.OPERATOR)
async def create_expert(request: web.Request) -> web.Response:
    expert = _build(request, await read_json_object(request), None)
    deps(request).registry.add(expert)  # RegistryError (duplicate id) -> 409
    return json_response(
        expert_view(expert), status=201, headers={"Location": f"/v1/experts/{expert.id}"}
    )


@requires(Scope.OPERATOR)
async def replace_expert(request: web.Request) -> web.Response:
    expert_id = request.match_info["id"]
    body = await read_json_object(request)
    if body.setdefault("id", expert_id) != expert_id:
        raise InputError({"id": "must match the id in the path"})
    registry = deps(request).registry
    expert = _build(request, body, registry.get(expert_id))  # ExpertNotFound -> 404
    registry.update(expert)
    return json_response(expert_view(expert))


@requires(Scope.OPERATOR)
async def delete_expert(request: web.Request) -> web.Response:
    deps(request).registry.remove(request.match_info["id"])
    return web.Response(status=204)


@requires(Scope.OPERATOR)
async def suspend_expert(request: web.Request) -> web.Response:
    """Body optional: ``{"suspended": false}`` reinstates."""
    suspended = True
    if request.can_read_body:
        body = await read_json_object(request)
        unknown = sorted(set(body) - {"suspended"})
        if unknown:
            raise InputError({k: "unknown field" for k in unknown})
        suspended = body.get("suspended", True)
        if not isinstance(suspended, bool):
            raise InputError({"suspended": "must be a boolean"})
    expert = deps(request).registry.suspend(request.match_info["id"], suspended)
    return json_response(expert_view(expert))
