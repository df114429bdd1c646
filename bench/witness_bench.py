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
import hashlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from functools import partial
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
from ifescalate.witness.core import (
    GENESIS_HASH,
    SignatureCheck,
    VerifyResult,
    signature_checker,
)
from ifescalate.witness.export import iter_export_lines, verify_export
from ifescalate.witness.jcs import canonicalize
from ifescalate.witness.parallel import default_jobs, verify_parallel, verify_store_parallel
from ifescalate.witness.store import DB_FILE, row_to_event

DETAILS = {"decision": "permit", "policies": ["p-1", "p-2"], "expert": "sip:alice@example.org"}


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} /s"


def crypto_reference(n: int = 5000) -> tuple[float, float, float]:
    """(sign/s, OpenSSL verify/s, libsodium verify/s) on one core."""
    key = Ed25519PrivateKey.generate()
    public, data = key.public_key(), os.urandom(32)
    start = time.perf_counter()
    for _ in range(n):
        signature = key.sign(data)
    sign_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(n):
        public.verify(signature, data)
    openssl = n / (time.perf_counter() - start)
    check = signature_checker(public)  # libsodium when PyNaCl is installed
    sig_hex, data_hex = signature.hex(), data.hex()
    start = time.perf_counter()
    for _ in range(n):
        check(sig_hex, data_hex)
    return n / sign_s, openssl, n / (time.perf_counter() - start)


def legacy_verify(events: Iterable[Event], public_key: Ed25519PublicKey) -> int:
    """The verify loop as it was before PyNaCl and the fast paths (the "before" figures):
    reference JCS of a rebuilt body dict, OpenSSL verify, per event."""
    seq, head = 0, GENESIS_HASH
    for event in events:
        assert event.seq == seq + 1 and event.prev_hash == head
        digest = hashlib.sha256(canonicalize(event.body())).digest()
        assert digest.hex() == event.hash
        public_key.verify(bytes.fromhex(event.signature), bytes.fromhex(event.hash))
        seq, head = event.seq, event.hash
    return seq


async def legacy_rows(make_store: Callable[[], WitnessStore]) -> list[Event]:
    store = make_store()
    await store.open()
    try:
        return [row_to_event(row) async for row in store.iter_rows()]
    finally:
        await store.close()


def timed(label: str, n: int, fn: Callable[[], object]) -> None:
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    if isinstance(result, VerifyResult):
        assert result.ok and result.count == n, result.message()
    print(f"  {label:<44} {n:>7} ev {rate(n, elapsed)}")


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


async def verify_from_store(
    make_store: Callable[[], WitnessStore], data_dir: Path, jobs: int | None = None
) -> VerifyResult:
    """``witness verify`` from a store; ``jobs=0`` is the sequential service.verify_store."""
    store = make_store()
    await store.open()
    key = load_or_create_signer(data_dir).public_key()
    try:
        if jobs == 0:
            return await verify_store(store, key)
        return await verify_store_parallel(store, key, jobs=jobs)
    finally:
        await store.close()


def bench_verify_store(make_store: Callable[[], WitnessStore], data: Path, count: int) -> None:
    key = load_or_create_signer(data).public_key()
    jobs = default_jobs()
    timed(
        "before: rows -> row_to_event -> legacy loop",
        count,
        lambda: legacy_verify(asyncio.run(legacy_rows(make_store)), key),
    )
    timed(
        "after: verify_store (sequential)",
        count,
        lambda: asyncio.run(verify_from_store(make_store, data, 0)),
    )
    timed(
        "after: verify_store_parallel (jobs=1)",
        count,
        lambda: asyncio.run(verify_from_store(make_store, data, 1)),
    )
    timed(
        f"after: verify_store_parallel (jobs={jobs}, cli)",
        count,
        lambda: asyncio.run(verify_from_store(make_store, data, None)),
    )


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
        print("sqlite   verify from store, every signature:")
        bench_verify_store(store, data, count)
        public_key = load_or_create_signer(data).public_key()
        bench_export(sorted(events, key=lambda e: e.seq), public_key, data)
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
            print("postgres verify from store, every signature:")
            bench_verify_store(store, data, count)
        finally:

            async def drop() -> None:
                pg = PostgresStore(dsn, schema=schema)
                await pg.open()
                await pg.drop()
                await pg.close()

            asyncio.run(drop())


def bench_export(events: list[Event], public_key: Ed25519PublicKey, data: Path) -> None:
    path = data / "events.jsonl"
    path.write_bytes(b"".join(event.to_json() + b"\n" for event in events))
    n, jobs = len(events), default_jobs()
    print("export file verify (witness verify --file), every signature:")
    timed(
        "before: Event.from_json per line -> legacy loop",
        n,
        lambda: legacy_verify(
            (Event.from_json(line) for _, line in iter_export_lines(path)), public_key
        ),
    )
    timed("after: verify_export (jobs=1)", n, lambda: verify_export(path, public_key=public_key))
    timed(
        f"after: verify_export (jobs={jobs}, cli default)",
        n,
        lambda: verify_export(path, public_key=public_key, jobs=None),
    )


def bench_verify(events: list[Event], public_key: Ed25519PublicKey) -> None:
    events = sorted(events, key=lambda e: e.seq)
    n, jobs = len(events), default_jobs()
    print("verify in memory:")
    timed(
        "before: legacy loop (JCS + OpenSSL), every sig",
        n,
        lambda: legacy_verify(events, public_key),
    )
    modes: tuple[SignatureCheck, ...] = ("all", "last")
    for mode in modes:
        label = "every signature" if mode == "all" else "every hash, last sig"
        timed(f"after: verify ({label})", n, partial(verify, events, public_key, signatures=mode))
    timed(
        f"after: verify_parallel (jobs={jobs}), every sig",
        n,
        lambda: verify_parallel(events, public_key, jobs=jobs),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000, help="events per run")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args(argv)
    sign_rate, openssl_rate, sodium_rate = crypto_reference()
    print(
        f"reference: Ed25519 sign {sign_rate:,.0f} /s, verify OpenSSL {openssl_rate:,.0f} /s, "
        f"libsodium {sodium_rate:,.0f} /s (one core; {default_jobs()} cores)"
    )
    events, public_key = bench_sqlite(args.n, args.concurrency)
    bench_verify(events, public_key)
    if not args.no_pg:
        bench_pg(args.pg, args.n, args.concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
