"""Two instances appending to one PostgreSQL witness chain at the same time (two processes,
each with its own connections): appends serialise on the chain's advisory lock and continue
from the real tail, so the chain afterwards is one unbroken, fully signed sequence that holds
every event either writer acknowledged."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from ifescalate.witness import EventType, Witness, load_or_create_signer
from ifescalate.witness.core import ChainBrokenError
from ifescalate.witness.pg import PostgresStore
from ifescalate.witness.ranges import verify_pg

DSN = "postgresql://postgres@127.0.0.1:5432/test"
REPO = Path(__file__).resolve().parents[2]
PER_WRITER = 400

WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from ifescalate.witness import EventType, Witness, load_or_create_signer
    from ifescalate.witness.pg import PostgresStore

    async def main(dsn, schema, data_dir, name, n):
        store = PostgresStore(dsn, schema=schema)
        async with Witness(store, load_or_create_signer(Path(data_dir))) as w:
            go = Path(data_dir) / "go"
            deadline = time.monotonic() + 30
            while not go.exists() and time.monotonic() < deadline:  # both start together
                await asyncio.sleep(0.005)
            async def lane(lane_no):  # 4 lanes of one-at-a-time appends: many small batches
                for i in range(lane_no, n, 4):
                    e = await w.append(EventType.INVITE, trace_id=name, escalation_id=name,
                                       actor=name, details={"i": i})
                    print(e.seq, e.hash, flush=True)
            await asyncio.gather(*(lane(k) for k in range(4)))

    asyncio.run(main(*sys.argv[1:5], int(sys.argv[5])))
    """
)


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"witness_writers_{uuid.uuid4().hex[:12]}"
    yield name

    async def drop() -> None:
        conn = await asyncpg.connect(DSN)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await conn.close()

    asyncio.run(drop())


def test_two_writers_on_one_chain_serialise(schema: str, tmp_path: Path) -> None:
    signer = load_or_create_signer(tmp_path)  # both instances share the key (one deployment)

    async def create() -> None:  # the schema exists before both start (first run creates it)
        store = PostgresStore(DSN, schema=schema)
        await store.open()
        await store.close()

    asyncio.run(create())
    args = [DSN, schema, str(tmp_path)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, *args, name, str(PER_WRITER)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        for name in ("writer-a", "writer-b")
    ]
    time.sleep(1.0)  # both have opened the store and verified the (empty) chain
    (tmp_path / "go").touch()
    acknowledged: dict[int, str] = {}
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()[-2000:]
        for line in out.decode().splitlines():
            seq, digest = line.split()
            assert int(seq) not in acknowledged, f"sequence {seq} acknowledged twice"
            acknowledged[int(seq)] = digest
    assert sorted(acknowledged) == list(range(1, 2 * PER_WRITER + 1))

    result = verify_pg(DSN, schema, signer.public_key(), jobs=2, min_parallel=0, span=100)
    assert result.ok, result.message()
    assert result.count == 2 * PER_WRITER

    async def stored() -> dict[int, str]:
        conn = await asyncpg.connect(DSN)
        try:
            rows = await conn.fetch(f'SELECT seq, hash FROM "{schema}".witness_events')
        finally:
            await conn.close()
        return {int(r["seq"]): str(r["hash"]) for r in rows}

    assert asyncio.run(stored()) == acknowledged
    # The writers really interleaved (else this test would prove nothing about serialising).
    switches = asyncio.run(_switches_impl(schema))
    assert switches >= 2


async def _switches_impl(schema: str) -> int:
    conn = await asyncpg.connect(DSN)
    try:
        rows = await conn.fetch(f'SELECT actor FROM "{schema}".witness_events ORDER BY seq')
    finally:
        await conn.close()
    actors = [r["actor"] for r in rows]
    return sum(1 for a, b in itertools.pairwise(actors) if a != b)


def test_a_forged_tail_is_not_continued(schema: str, tmp_path: Path) -> None:
    signer = load_or_create_signer(tmp_path)

    async def run() -> None:
        async with Witness(PostgresStore(DSN, schema=schema), signer) as first:
            await first.append(
                EventType.INVITE, trace_id=None, escalation_id="e", actor="a", details={}
            )
            # Another writer's tail, edited behind this instance's back, after it started:
            conn = await asyncpg.connect(DSN)
            try:
                await conn.execute(
                    f'ALTER TABLE "{schema}".witness_events '
                    "DISABLE TRIGGER witness_events_append_only"
                )
                await conn.execute(f'UPDATE "{schema}".witness_events SET actor = $1', "m")
            finally:
                await conn.close()
            with pytest.raises(ChainBrokenError, match="broken at sequence 1: stored tail: hash"):
                await first.append(
                    EventType.INVITE, trace_id=None, escalation_id="e", actor="a", details={}
                )
            assert first.broken is not None

    asyncio.run(run())
