"""The API view of an escalation never runs ahead of the durable witness log.

A real call: the service's user agent rings "bob" (another user agent on loopback) who answers.
The witness store holds the CONNECTED batch back (a slow disk: the one fault injected here);
while it is held, GET must not say ``connected``; once it commits, it must.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import yaml

from ifescalate.escalation.model import EscalationRequest, EscalationState
from ifescalate.escalation.service import EscalationServiceImpl, EscalationSettings
from ifescalate.escalation.store import EscalationStore
from ifescalate.guard import Guard, GuardConfig, PolicyEngine, SqliteRegistry, load_yaml
from ifescalate.witness.core import Event, EventType
from ifescalate.witness.keys import load_or_create_signer
from ifescalate.witness.service import Witness
from ifescalate.witness.store import DB_FILE, SqliteStore
from tests.unit.test_net_ua import agents, answer_and_keep, run


class SlowDiskStore(SqliteStore):
    """Holds any batch with a CONNECTED event until ``release`` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    async def append(self, events: Sequence[Event]) -> None:
        if any(e.type is EventType.CONNECTED for e in events):
            self.holding.set()
            await self.release.wait()
        await super().append(events)


def committed_types(db: Path, escalation_id: str) -> list[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT type FROM witness_events WHERE escalation_id = ? ORDER BY seq", (escalation_id,)
        )
        return [r[0] for r in rows]


def _guard(tmp: Path, uri: str) -> Guard:
    path = tmp / "experts.yaml"
    expert = {
        "id": "bob",
        "name": "Expert bob",
        "sip_uri": uri,
        "org": "system-test-lab",
        "networks": ["127.0.0.0/8"],
        "specializations": ["safety"],
        "clearance": 3,
        "availability": ["daily 00:00-24:00 UTC"],
        "calls_per_minute": 1000,
    }
    path.write_text(yaml.safe_dump({"experts": [expert]}))
    registry = SqliteRegistry(tmp / "registry.db")
    registry.merge(load_yaml(path))
    return Guard(registry, PolicyEngine.default(), GuardConfig())


def test_connected_is_shown_only_after_it_is_witnessed(tmp_path: Path) -> None:
    async def main() -> None:
        async with agents() as pair:
            answered = answer_and_keep(pair.callee)
            store = SlowDiskStore(tmp_path / DB_FILE)
            signer = load_or_create_signer(tmp_path)
            witness = Witness(store, signer)
            await witness.start()
            service = EscalationServiceImpl(
                guard=_guard(tmp_path, pair.uri),
                witness=witness,
                ua=pair.caller,
                store=EscalationStore(tmp_path / "esc.db"),
                signer=signer,
                settings=EscalationSettings(ring_timeout=10, deadline=30),
            )
            request = EscalationRequest("safety", "Is this safe?", requester="council")
            esc_id = (await service.create(request)).id
            await asyncio.wait_for(store.holding.wait(), 10)
            assert answered, "bob answered: the machine is CONNECTED, the witness not yet"
            # Held for a while: every look at the view in that time says "not connected".
            for _ in range(50):
                assert service.get(esc_id).state is not EscalationState.CONNECTED
                assert "CONNECTED" not in committed_types(store.path, esc_id)
                await asyncio.sleep(0.005)
            store.release.set()
            for _ in range(500):
                if service.get(esc_id).state is EscalationState.CONNECTED:
                    break
                await asyncio.sleep(0.01)
            assert service.get(esc_id).state is EscalationState.CONNECTED
            assert "CONNECTED" in committed_types(store.path, esc_id)
            # DELETE answers once CANCELLED/TERMINATED is witnessed: the view it returns is final.
            view = await service.cancel(esc_id, by="ops")
            assert view.state is EscalationState.ENDED, view
            types = committed_types(store.path, esc_id)
            assert types[-1] in ("CANCELLED", "TERMINATED"), types
            await witness.close()

    run(main(), timeout=30)
