"""Span-parallel verify against the real PostgreSQL (workers fetch their own row ranges): the
same answer as the reference verifier for tampered rows at and around span boundaries."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from ifescalate.witness import ranges
from ifescalate.witness.cli import main as cli_main
from ifescalate.witness.core import EventError, Verifier, VerifyResult
from ifescalate.witness.keys import public_key_hex
from ifescalate.witness.pg import PostgresStore
from ifescalate.witness.store import row_to_event
from tests.unit.test_witness_core import make_chain, signer
from tests.unit.test_witness_ranges import FOREIGN_SIGNATURE

DSN = "postgresql://postgres@127.0.0.1:5432/test"
KEY = signer().public_key()
N = 60
CHAIN = make_chain(N)


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"witness_ranges_{uuid.uuid4().hex[:12]}"

    async def fill() -> None:
        store = PostgresStore(DSN, schema=name)
        await store.open()  # a missing server fails here (it runs on every machine)
        await store.append(CHAIN)
        await store.close()
        conn = await asyncpg.connect(DSN)
        await conn.execute(
            f'ALTER TABLE "{name}".witness_events DISABLE TRIGGER witness_events_append_only'
        )
        await conn.close()

    asyncio.run(fill())
    yield name

    async def drop() -> None:
        conn = await asyncpg.connect(DSN)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await conn.close()

    asyncio.run(drop())


def reference(schema: str) -> VerifyResult:
    async def run() -> VerifyResult:
        store = PostgresStore(DSN, schema=schema)
        await store.open()
        verifier = Verifier(KEY)
        try:
            async for row in store.iter_rows():
                try:
                    event = row_to_event(row)
                except EventError as exc:
                    return verifier.fail(verifier.next_seq, f"malformed stored event: {exc}")
                if not verifier.feed(event):
                    break
            return verifier.finish()
        finally:
            await store.close()

    return asyncio.run(run())


def sql(schema: str, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(DSN)
        try:
            for statement in statements:
                await conn.execute(statement.replace("T.", f'"{schema}".witness_events'))
        finally:
            await conn.close()

    asyncio.run(run())


TAMPERS = {
    "edit": ["UPDATE T. SET details = '{{\"i\":1}}' WHERE seq = {seq}"],
    "delete": ["DELETE FROM T. WHERE seq = {seq}"],
    "signature": ["UPDATE T. SET signature = '" + FOREIGN_SIGNATURE + "' WHERE seq = {seq}"],
    "malformed": ["UPDATE T. SET type = 'HACKED' WHERE seq = {seq}"],
    "swap": [
        "UPDATE T. SET seq = -1 WHERE seq = {seq}",
        "UPDATE T. SET seq = {seq} WHERE seq = {seq} + 1",
        "UPDATE T. SET seq = {seq} + 1 WHERE seq = -1",
    ],
}


@pytest.mark.parametrize("seq", [1, 10, 11, 35])
@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_pg_spans_equal_the_reference(schema: str, name: str, seq: int) -> None:
    sql(schema, *(statement.format(seq=seq) for statement in TAMPERS[name]))
    expected = reference(schema)
    got = ranges.verify_pg(DSN, schema, KEY, jobs=2, span=10, min_parallel=0)
    assert got == expected
    assert (got.ok, got.first_bad_seq) == (False, seq)


def test_pg_cli_exit_status(schema: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["verify", "--db", DSN, "--schema", schema, "--public-key", public_key_hex(KEY)]
    assert cli_main(args) == 0
    assert capsys.readouterr().out == f"OK: {N} events, chain and signatures valid\n"
    sql(schema, TAMPERS["signature"][0].format(seq=44))
    assert cli_main([*args, "--jobs", "2"]) == 1
    assert capsys.readouterr().out.startswith("BROKEN at sequence 44: signature invalid")
    assert (
        cli_main(
            ["verify", "--db", DSN, "--schema", "nosuchschema", "--public-key", public_key_hex(KEY)]
        )
        == 2
    )
    assert "PostgreSQL witness store" in capsys.readouterr().err
