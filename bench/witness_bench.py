"""IF.witness throughput: durable signed events/s (SQLite, PostgreSQL) and verify events/s.

    python bench/witness_bench.py [--n 20000] [--concurrency 200] [--pg URL | --no-pg]

Every figure is printed next to a reference measured in the same run on the same machine: raw
Ed25519 sign/verify rates (the floor of the per-event crypto) and the same SQLite workload without
group commit (one transaction, one fsync per event). Verify figures (``witness verify`` from the
SQLite store, from PostgreSQL and from an export file, every signature checked) are the median of
``--repeat`` runs, with the CPU time per event (parent + workers) and the ratio to the reference:
bare libsodium ``crypto_sign_open`` of the same number of signatures on the same cores, started
the same way (a fork pool of every core). A ratio of 1.0 would mean verifying costs nothing but
the signature checks.
Targets: >= 5,000 durable signed events/s on SQLite; verify >= 30,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ifescalate.witness import (
    Event,
    EventType,
    SqliteStore,
    Witness,
    WitnessStore,
    load_or_create_signer,
)
from ifescalate.witness.core import VerifyResult, signature_checker
from ifescalate.witness.export import export_store, iter_export_lines
from ifescalate.witness.parallel import ChunkedVerifier, default_jobs, verify_store_parallel
from ifescalate.witness.ranges import verify_file, verify_pg, verify_sqlite
from ifescalate.witness.store import DB_FILE

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


def sodium_reference(n: int, jobs: int) -> VerifyResult:
    """Bare libsodium checking ``n`` signatures on ``jobs`` fork workers: the floor for any
    verifier of this format on these cores (a VerifyResult so :func:`timed_run` can time it)."""
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        share = [n // jobs + (1 if i < n % jobs else 0) for i in range(jobs)]
        assert all(pool.map(_sodium_loop, share))
    return VerifyResult(True, n)


def _sodium_loop(n: int) -> bool:
    from nacl._sodium import ffi, lib  # type: ignore[import-not-found]

    key = Ed25519PrivateKey.generate()
    data = os.urandom(32)
    signed = key.sign(data) + data
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    out, out_len = ffi.new("unsigned char[]", 96), ffi.new("unsigned long long *")
    ok = True
    for _ in range(n):
        ok &= lib.crypto_sign_open(out, out_len, signed, 96, raw) == 0
    return ok


def timed_run(n: int, fn: Callable[[], VerifyResult]) -> tuple[float, float]:
    """(wall s, CPU µs per event incl. reaped worker processes) of one run."""
    before = os.times()
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    after = os.times()
    assert result.ok and result.count == n, result.message()
    return wall, (sum(after[:4]) - sum(before[:4])) / n * 1e6  # user+sys, self and children


def report(label: str, n: int, fn: Callable[[], VerifyResult], repeat: int) -> None:
    """Median of ``repeat`` runs, each right after a reference run (the machine is shared: the
    ratio of adjacent runs is steadier than either rate)."""
    jobs = default_jobs()
    rates, ratios, cpus, ref_cpus = [], [], [], []
    for _ in range(repeat):
        ref_wall, ref_cpu = timed_run(n, lambda: sodium_reference(n, jobs))
        wall, cpu = timed_run(n, fn)
        rates.append(n / wall)
        ratios.append(ref_wall / wall)
        cpus.append(cpu)
        ref_cpus.append(ref_cpu)
    cpu = statistics.median(cpus)
    print(
        f"  {label:<38} {statistics.median(rates):>9,.0f} /s (max {max(rates):,.0f})"
        f"  x{statistics.median(ratios):.2f} of ref"
        f"  {cpu:5.1f} us CPU/ev (ref {statistics.median(ref_cpus):4.1f})"
        f"  = {jobs / cpu * 1e6:,.0f} /s on {jobs} idle cores"
    )


def verify_section(
    title: str,
    n: int,
    current: Callable[[int | None], VerifyResult],
    previous: Callable[[], VerifyResult] | None,
    repeat: int,
) -> None:
    jobs = default_jobs()
    print(f"{title}: {n} events, every signature; ref = bare libsodium, same sigs, {jobs} cores")
    if previous is not None:
        report("previous: rows/lines piped to workers", n, previous, repeat)
    report("witness verify, 1 process", n, lambda: current(1), repeat)
    report(f"witness verify, {jobs} processes (default)", n, lambda: current(None), repeat)


async def _chunked_store(
    make_store: Callable[[], WitnessStore], key: Ed25519PublicKey
) -> VerifyResult:
    store = make_store()
    await store.open()
    try:
        return await verify_store_parallel(store, key)
    finally:
        await store.close()


def bench_sqlite(n: int, concurrency: int, repeat: int) -> None:
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
        key = load_or_create_signer(data).public_key()
        verify_section(
            "sqlite   witness verify --data-dir",
            count,
            lambda jobs: verify_sqlite(data / DB_FILE, key, jobs=jobs),
            lambda: asyncio.run(_chunked_store(store, key)),
            repeat,
        )
        path = data / "events.jsonl"
        with open(path, "wb") as handle:
            asyncio.run(_export(store, handle))
        verify_section(
            "export   witness verify --file",
            count,
            lambda jobs: verify_file(path, key, jobs=jobs),
            lambda: _chunked_file(path, key),
            repeat,
        )


async def _export(make_store: Callable[[], WitnessStore], handle: BinaryIO) -> None:
    store = make_store()
    await store.open()
    try:
        await export_store(store, handle)
    finally:
        await store.close()


def _chunked_file(path: Path, key: Ed25519PublicKey) -> VerifyResult:
    verifier = ChunkedVerifier(key, "line", jobs=None)
    try:
        for item in iter_export_lines(path):
            verifier.add(item)
        return verifier.result()
    finally:
        verifier.close()


def bench_pg(dsn: str, n: int, concurrency: int, repeat: int) -> None:
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
            key = load_or_create_signer(data).public_key()
            verify_section(
                "postgres witness verify --db",
                count,
                lambda jobs: verify_pg(dsn, schema, key, jobs=jobs),
                lambda: asyncio.run(_chunked_store(store, key)),
                repeat,
            )
        finally:

            async def drop() -> None:
                pg = PostgresStore(dsn, schema=schema)
                await pg.open()
                await pg.drop()
                await pg.close()

            asyncio.run(drop())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000, help="events per run")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="verify runs per figure (median)")
    args = parser.parse_args(argv)
    sign_rate, openssl_rate, sodium_rate = crypto_reference()
    print(
        f"reference: Ed25519 sign {sign_rate:,.0f} /s, verify OpenSSL {openssl_rate:,.0f} /s, "
        f"libsodium {sodium_rate:,.0f} /s (one core; {default_jobs()} cores)"
    )
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    bench_sqlite(args.n, args.concurrency, args.repeat)
    if not args.no_pg:
        bench_pg(args.pg, args.n, args.concurrency, args.repeat)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
