"""Shared pieces of the API tests (no tests here): an in-memory EscalationService (a collaborator of
the API, not the unit under test) and a harness running the real app on a loopback socket with the
real guard SqliteRegistry, a real Witness on SqliteStore and a real TokenStore."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import test_utils

from ifescalate.api import ApiConfig, Scope, StoreWitnessReader, TokenStore, build_app
from ifescalate.escalation.model import (
    EscalationEvent,
    EscalationRequest,
    EscalationState,
    EscalationView,
    Outcome,
    ServiceUnavailable,
    UnknownEscalation,
)
from ifescalate.guard import SqliteRegistry
from ifescalate.observability import Metrics
from ifescalate.witness import SqliteStore, Witness, load_or_create_signer


class FakeService:
    """EscalationService in memory; tests drive its events with :meth:`emit`."""

    def __init__(self) -> None:
        self.views: dict[str, EscalationView] = {}
        self.requests: dict[str, EscalationRequest] = {}
        self.keys: dict[tuple[str, str], str] = {}
        self.idempotency_keys: list[str | None] = []
        self.cancelled_by: list[tuple[str, str]] = []
        self.log: dict[str, list[EscalationEvent]] = {}
        self.ended: set[str] = set()
        self.open_streams = 0
        self._changed = asyncio.Condition()
        self._ids = itertools.count(1)
        self.unavailable: str | None = None

    async def create(
        self, request: EscalationRequest, *, idempotency_key: str | None = None
    ) -> EscalationView:
        if self.unavailable is not None:
            raise ServiceUnavailable(self.unavailable)
        self.idempotency_keys.append(idempotency_key)
        if idempotency_key is not None and (request.requester, idempotency_key) in self.keys:
            return self.views[self.keys[(request.requester, idempotency_key)]]
        esc_id = f"esc-{next(self._ids)}"
        view = EscalationView(
            id=esc_id,
            trace_id=request.trace_id or f"trace-{esc_id}",
            state=EscalationState.REQUESTED,
            outcome=None,
            hazard=request.hazard,
            question=request.question,
            requester=request.requester,
            urgency=request.urgency,
            created_at=1000.0,
            updated_at=1000.0,
        )
        self.views[esc_id] = view
        self.requests[esc_id] = request
        self.log[esc_id] = []
        if idempotency_key is not None:
            self.keys[(request.requester, idempotency_key)] = esc_id
        return view

    def get(self, escalation_id: str) -> EscalationView:
        try:
            return self.views[escalation_id]
        except KeyError:
            raise UnknownEscalation(escalation_id) from None

    def list(self, *, limit: int = 100) -> list[EscalationView]:
        return sorted(self.views.values(), key=lambda v: v.id, reverse=True)[:limit]

    async def cancel(self, escalation_id: str, *, by: str) -> EscalationView:
        view = self.get(escalation_id)
        self.cancelled_by.append((escalation_id, by))
        view = replace(view, state=EscalationState.ENDED, outcome=Outcome.CANCELLED)
        self.views[escalation_id] = view
        return view

    async def emit(
        self,
        escalation_id: str,
        type_: str,
        details: Mapping[str, Any] | None = None,
        *,
        end: bool = False,
    ) -> EscalationEvent:
        events = self.log[escalation_id]
        event = EscalationEvent(
            escalation_id, len(events) + 1, type_, 2000.0 + len(events), dict(details or {})
        )
        async with self._changed:
            events.append(event)
            if end:
                self.ended.add(escalation_id)
            self._changed.notify_all()
        return event

    async def events(self, escalation_id: str, *, after: int = 0) -> AsyncIterator[EscalationEvent]:
        self.get(escalation_id)
        sent = after
        self.open_streams += 1
        try:
            async for event in self._follow(escalation_id, sent):
                yield event
        finally:
            self.open_streams -= 1

    async def _follow(self, escalation_id: str, sent: int) -> AsyncIterator[EscalationEvent]:
        while True:
            async with self._changed:
                await self._changed.wait_for(
                    lambda n=sent: len(self.log[escalation_id]) > n or escalation_id in self.ended
                )
                pending = self.log[escalation_id][sent:]
                done = escalation_id in self.ended
            for event in pending:
                yield event
                sent = event.seq
            if done:
                return


@dataclass
class Readiness:
    checks: dict[str, str | None] = field(default_factory=lambda: {"witness": None, "sip": None})
    delay: float = 0.0

    async def __call__(self) -> dict[str, str | None]:
        if self.delay:
            await asyncio.sleep(self.delay)
        return dict(self.checks)


@dataclass
class Env:
    client: test_utils.TestClient[Any, Any]
    service: FakeService
    registry: SqliteRegistry
    witness: Witness
    tokens: TokenStore
    metrics: Metrics
    readiness: Readiness
    token: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token[who]}"}


async def started_witness(tmp_path: Path) -> Witness:
    """A started Witness on SQLite under ``tmp_path`` (close it when done)."""
    witness = Witness(
        SqliteStore(tmp_path / "witness.sqlite3"), load_or_create_signer(tmp_path / "keys")
    )
    await witness.start()
    return witness


def role_tokens(tokens: TokenStore) -> dict[str, str]:
    """One token per role the API tests act as: two council agents, an operator, an auditor."""
    return {
        "council": tokens.create("agent-a", [Scope.COUNCIL]),
        "council2": tokens.create("agent-b", [Scope.COUNCIL]),
        "operator": tokens.create("ops", [Scope.OPERATOR]),
        "auditor": tokens.create("audit", [Scope.AUDITOR]),
    }


@asynccontextmanager
async def running(tmp_path: Path, config: ApiConfig | None = None) -> AsyncIterator[Env]:
    registry = SqliteRegistry(tmp_path / "registry.db")
    tokens = TokenStore(tmp_path / "tokens.db")
    witness = await started_witness(tmp_path)
    token = role_tokens(tokens)
    service, metrics, readiness = FakeService(), Metrics(), Readiness()
    app = build_app(
        service=service,
        registry=registry,
        witness_reader=StoreWitnessReader.of(witness),
        tokens=tokens,
        metrics=metrics,
        readiness=readiness,
        config=config,
    )
    try:
        async with test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1")) as client:
            yield Env(client, service, registry, witness, tokens, metrics, readiness, token)
    finally:
        await witness.close()
        registry.close()
        tokens.close()
