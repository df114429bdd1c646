"""The HTTP API: REST over aiohttp with an OpenAPI 3.1 document, server-sent events for an
escalation's steps, and /health /ready /metrics.

    tokens = TokenStore(data_dir / "ifescalate.db")
    app = build_app(service=service, registry=registry, witness_reader=StoreWitnessReader.of(witness),
                    tokens=tokens, metrics=metrics, readiness=checks)
    runner = web.AppRunner(app, access_log=None)   # on the SIP endpoint's loop
"""

from .app import build_app, openapi_document
from .auth import Principal, Scope, TokenError, TokenInfo, TokenStore
from .common import ApiConfig, Readiness
from .witness_reader import StoreWitnessReader, WitnessReader

__all__ = [
    "ApiConfig",
    "Principal",
    "Readiness",
    "Scope",
    "StoreWitnessReader",
    "TokenError",
    "TokenInfo",
    "TokenStore",
    "WitnessReader",
    "build_app",
    "openapi_document",
]
