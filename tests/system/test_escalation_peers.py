"""Escalations against baresip (a real softphone) and with the witness on PostgreSQL.

baresip auto-answers like an expert's desk phone; cancelling the escalation must hang it up. The PostgreSQL
test gives the service a database of its own (created and dropped here), since `database_url` has no schema
setting, and verifies that chain with `ifescalate witness verify --db`.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.peers import Baresip, free_port

from .conftest import HOST, Deployment, ExpertSpec, witness_verify
from .test_escalation_sipp import sipp_expert, wait_sipp

pytestmark = pytest.mark.interop

SESSION_CLOSED = re.compile(r"(\S+): session closed: Connection reset by peer")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def test_baresip_expert_answers_then_cancel_hangs_up(deploy: Callable[..., Deployment]) -> None:
    with Baresip("erin", answer=True, duration=40, sip_trace=True) as phone:
        dep = deploy([ExpertSpec("erin", phone.uri)])
        with dep.service() as svc:
            esc_id = svc.escalate(hazard="safety", trace_id="baresip-1")["id"]
            view = svc.wait_state(esc_id, "connected", timeout=10)
            assert view["connected_expert"] == "erin"
            phone.wait_established(timeout=5)
            # baresip saw the escalation headers on the INVITE (its -s trace logs every message).
            assert "X-IF-Escalation-ID: " + esc_id in phone.log()
            assert "Subject: IF.ESCALATE: safety - Case baresip-1" in phone.log()
            svc.wait_witness(esc_id, "CONNECTED")
            svc.cancel(esc_id)
            ended = svc.wait_state(esc_id, "ended")
            assert ended["outcome"] == "cancelled"
            # baresip 1.0 logs a BYE from the far end as the session closed with ECONNRESET.
            closed = phone.wait_for(SESSION_CLOSED, timeout=10)
            assert closed.group(1) == "sip:ifescalate@127.0.0.1", closed.group(0)
            assert "BYE sip:erin" in phone.log()
            types = svc.wait_witness(esc_id, "TERMINATED")
            assert types[0] == "ESCALATION_REQUESTED"


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one service run; dropped afterwards (skip if no server)."""
    asyncpg = pytest.importorskip("asyncpg")
    name = f"ifesc_sys_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN} not usable (it runs on every machine here): {exc}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_postgres_witness_escalation_connected_and_verified(
    deploy: Callable[..., Deployment], pg_database: str
) -> None:
    port = free_port("udp")
    dep = deploy([ExpertSpec("carol", f"sip:carol@{HOST}:{port}")], database_url=pg_database)
    with sipp_expert("esc_uas_answer.xml", port) as sipp, dep.service() as svc:
        esc_id = svc.escalate()["id"]
        svc.wait_state(esc_id, "connected")
        types = svc.wait_witness(esc_id, "CONNECTED")
        assert types[:3] == ["ESCALATION_REQUESTED", "GUARD_DECISION", "INVITE"]
        svc.cancel(esc_id)
        assert svc.wait_state(esc_id, "ended")["outcome"] == "cancelled"
        svc.wait_witness(esc_id, "TERMINATED")
        assert wait_sipp(sipp, "SuccessfulCall(C)", 1) == 1
        witnessed = len(svc.witness(esc_id))
    # Verified while the service is down, against the database alone (key recorded in the store) ...
    plain = witness_verify("--db", pg_database)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert plain.stdout.startswith("OK: "), plain.stdout
    count = int(plain.stdout.split()[1])
    assert count >= witnessed
    # ... and with the key pinned from the data dir (the stronger check: the store cannot vouch for itself).
    pinned = witness_verify("--db", pg_database, "--data-dir", str(dep.data_dir))
    assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    assert pinned.stdout.strip() == plain.stdout.strip()
