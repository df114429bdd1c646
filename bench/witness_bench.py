"""IF.witness throughput: durable signed events/s (SQLite, PostgreSQL) and verify events/s.

    python bench/witness_bench.py [--n 20000] [--concurrency 200] [--pg URL | --no-pg]

Every figure is printed next to a reference measured in the same run on the same machine: raw
Ed25519 sign/verify rates (the floor of the per-event crypto) and the same SQLite workload without
group commit (one transaction, one fsync per event).
Targets: >= 5,000 durable signed events/s on SQLite; verify >= 30,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ifescalate.witness import (
    Event,
    EventType,
    SqliteStore,
    Witness,
    WitnessStore,
    load_or_create_signer,
    verify,
    verify_store,
)
from ifescalate.witness.core import SignatureCheck
from ifescalate.witness.parallel import verify_parallel
from ifescalate.witness.store import DB_FILE

DETAILS = {"decision": "permit", "policies": ["p-1", "p-2"], "expert": "sip:alice@example.org"}


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} /s"


def crypto_reference(n: int = 5000) -> tuple[float, float]:
    key = Ed25519PrivateKey.generate()
    public, data = key.public_key(), os.urandom(32)
    start = time.perf_counter()
    for _ in range(n):
        signature = key.sign(data)
    sign_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(n):
        public.verify(signature, data)
    return n / sign_s, n / (time.perf_counter() - start)


async def append_run(
    make_store: Callable[[], WitnessStore], data_dir: Path, n: int, concurrency: int, batch: int
) -> tuple[float, list[Event]]:
    signer = load_or_create_signer(data_dir)
    events: list[Event] = []
    async with Witness(make_store(), signer, max_batch=batch, verify_on_open="off") as witness:
        per_task = n // concurrency

        async def worker(w: int) -> None:
            for i in range(per_task):
                events.append(
                    await witness.append(
                        EventType.GUARD_DECISION,
                        trace_id=f"trace-{w}",
                        escalation_id=f"esc-{w}",
                        actor="guard",
                        details={**DETAILS, "i": i},
                    )
                )

        start = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - start
    return elapsed, events


async def verify_from_store(make_store: Callable[[], WitnessStore], data_dir: Path) -> float:
    store = make_store()
    await store.open()
    start = time.perf_counter()
    result = await verify_store(store, load_or_create_signer(data_dir).public_key())
    elapsed = time.perf_counter() - start
    await store.close()
    assert result.ok, result.message()
    return elapsed


def bench_sqlite(n: int, concurrency: int) -> tuple[list[Event], Ed25519PublicKey]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        store: Callable[[], WitnessStore] = lambda: SqliteStore(data / DB_FILE)  # noqa: E731
        elapsed, events = asyncio.run(append_run(store, data, n, concurrency, 1000))
        count = len(events)
        print(f"sqlite   append  {count:>7} ev  C={concurrency:<4} {rate(count, elapsed)}  durable")
        ref_n = min(n, 500)
        ref_dir = data / "ref"
        ref_store: Callable[[], WitnessStore] = lambda: SqliteStore(ref_dir / DB_FILE)  # noqa: E731
        ref_s, _ = asyncio.run(append_run(ref_store, ref_dir, ref_n, concurrency, 1))
        print(f"  reference: same, no group commit (batch=1)  {rate(ref_n, ref_s)}")
        verify_s = asyncio.run(verify_from_store(store, data))
        print(f"sqlite   verify from store {count:>7} ev  {rate(count, verify_s)}  all signatures")
        public_key = load_or_create_signer(data).public_key()
    return events, public_key


def bench_pg(dsn: str, n: int, concurrency: int) -> None:
    from ifescalate.witness.pg import PostgresStore

    schema = f"witness_bench_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        store: Callable[[], WitnessStore] = lambda: PostgresStore(dsn, schema=schema)  # noqa: E731
        try:
            elapsed, events = asyncio.run(append_run(store, data, n, concurrency, 1000))
            count = len(events)
            print(
                f"postgres append  {count:>7} ev  C={concurrency:<4} {rate(count, elapsed)}  durable"
            )
            verify_s = asyncio.run(verify_from_store(store, data))
            print(
                f"postgres verify from store {count:>7} ev  {rate(count, verify_s)}  all signatures"
            )
        finally:

            async def drop() -> None:
                pg = PostgresStore(dsn, schema=schema)
                await pg.open()
                await pg.drop()
                await pg.close()

            asyncio.run(drop())


def bench_verify(events: list[Event], public_key: Ed25519PublicKey) -> None:
    events = sorted(events, key=lambda e: e.seq)
    modes: tuple[SignatureCheck, ...] = ("all", "last")
    for mode in modes:
        start = time.perf_counter()
        result = verify(events, public_key, signatures=mode)
        elapsed = time.perf_counter() - start
        assert result.ok, result.message()
        label = "every signature" if mode == "all" else "every hash, last signature"
        print(
            f"verify in memory ({mode:>4}) {len(events):>7} ev  {rate(len(events), elapsed)}  {label}"
        )
    jobs = os.cpu_count() or 1
    start = time.perf_counter()
    result = verify_parallel(events, public_key, jobs=jobs)
    elapsed = time.perf_counter() - start
    assert result.ok, result.message()
    print(
        f"verify parallel (jobs={jobs}) {len(events):>6} ev  {rate(len(events), elapsed)}"
        "  every signature"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000, help="events per run")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args(argv)
    sign_rate, verify_rate = crypto_reference()
    print(f"reference: Ed25519 sign {sign_rate:,.0f} /s, verify {verify_rate:,.0f} /s (one core)")
    events, public_key = bench_sqlite(args.n, args.concurrency)
    bench_verify(events, public_key)
    if not args.no_pg:
        bench_pg(args.pg, args.n, args.concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
