"""IF.witness on PostgreSQL: the real server at 127.0.0.1:5432 (trust auth, database `test`).

Each test gets its own schema, dropped afterwards, so runs never see each other's events.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

asyncpg = pytest.importorskip("asyncpg")

from ifescalate.witness import (  # noqa: E402
    ChainBrokenError,
    Event,
    EventType,
    Witness,
    load_or_create_signer,
    verify_store,
)
from ifescalate.witness.cli import main  # noqa: E402
from ifescalate.witness.pg import PostgresStore  # noqa: E402

DSN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"witness_test_{uuid.uuid4().hex[:12]}"

    async def reachable() -> None:
        conn = await asyncpg.connect(DSN, timeout=5)
        await conn.close()

    try:
        asyncio.run(reachable())
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {DSN} not reachable (it runs on every machine here): {exc}")
    yield name

    async def drop() -> None:
        conn = await asyncpg.connect(DSN)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await conn.close()

    asyncio.run(drop())


async def _append(w: Witness, i: int) -> Event:
    return await w.append(
        EventType.GUARD_DECISION,
        trace_id=f"t{i}",
        escalation_id="e-pg",
        actor="guard",
        details={"decision": "permit", "policies": ["p1", "p2"], "i": i},
    )


def test_round_trip_group_commit_and_verify(schema: str, tmp_path: Path) -> None:
    signer = load_or_create_signer(tmp_path)

    async def run() -> tuple[list[Event], list[Event], str]:
        async with Witness(PostgresStore(DSN, schema=schema), signer) as w:
            first = await asyncio.gather(*(_append(w, i) for i in range(500)))
        # Reopen: recovery verifies the stored chain and continues it.
        async with Witness(PostgresStore(DSN, schema=schema), signer) as w:
            assert w.open_result is not None and w.open_result.count == 500
            more = [await _append(w, 500 + i) for i in range(3)]
        store = PostgresStore(DSN, schema=schema)
        await store.open()
        result = await verify_store(store, signer.public_key())
        await store.close()
        return first, more, result.message()

    first, more, message = asyncio.run(run())
    assert sorted(e.seq for e in first) == list(range(1, 501))
    assert [e.seq for e in more] == [501, 502, 503]
    assert message == "OK: 503 events, chain and signatures valid"


def test_cli_verify_and_export_against_postgres(
    schema: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signer = load_or_create_signer(tmp_path)

    async def fill() -> None:
        async with Witness(PostgresStore(DSN, schema=schema), signer) as w:
            await asyncio.gather(*(_append(w, i) for i in range(50)))

    asyncio.run(fill())
    args = ["--db", DSN, "--schema", schema, "--data-dir", str(tmp_path)]
    assert main(["verify", *args]) == 0
    assert capsys.readouterr().out == "OK: 50 events, chain and signatures valid\n"
    out = tmp_path / "pg.jsonl"
    assert main(["export", *args, "--out", str(out)]) == 0
    assert len(out.read_bytes().splitlines()) == 50
    capsys.readouterr()
    assert main(["verify", "--file", str(out)]) == 0
    assert capsys.readouterr().out == "OK: 50 events, chain and signatures valid\n"


def test_tampered_rows_refuse_appends(schema: str, tmp_path: Path) -> None:
    signer = load_or_create_signer(tmp_path)

    async def run() -> None:
        async with Witness(PostgresStore(DSN, schema=schema), signer) as w:
            for i in range(5):
                await _append(w, i)
        conn = await asyncpg.connect(DSN)
        try:
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await conn.execute(f'DELETE FROM "{schema}".witness_events WHERE seq = 2')
            await conn.execute(
                f'ALTER TABLE "{schema}".witness_events DISABLE TRIGGER witness_events_append_only'
            )
            await conn.execute(f'DELETE FROM "{schema}".witness_events WHERE seq = 2')
        finally:
            await conn.close()
        async with Witness(PostgresStore(DSN, schema=schema), signer) as w:
            with pytest.raises(ChainBrokenError, match="broken at sequence 2: expected sequence 2"):
                await _append(w, 9)

    asyncio.run(run())
