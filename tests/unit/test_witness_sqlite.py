"""IF.witness on its embedded SQLite store: group commit, recovery, torn batches, a killed writer,
tampering on disk, the signing key file, export and the CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from ifescalate.witness import (
    ChainBrokenError,
    Event,
    EventType,
    SqliteStore,
    StoreError,
    Witness,
    load_or_create_signer,
    verify_store,
)
from ifescalate.witness.cli import main as cli_main
from ifescalate.witness.jcs import CanonicalizationError
from ifescalate.witness.keys import KEY_FILE, PUBLIC_KEY_FILE, KeyFileError
from ifescalate.witness.store import DB_FILE

REPO = Path(__file__).resolve().parents[2]


class CountingStore(SqliteStore):
    """The real SQLite store, recording batch sizes (and able to fail one append on demand)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []
        self.fail_next = False

    async def append(self, events: Sequence[Event]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise StoreError("disk on fire")
        self.batches.append(len(events))
        await super().append(events)


def witness(data_dir: Path, **kw: object) -> Witness:
    store = CountingStore(data_dir / DB_FILE)
    return Witness(store, load_or_create_signer(data_dir), **kw)  # type: ignore[arg-type]


async def _append(w: Witness, i: int) -> Event:
    return await w.append(
        EventType.RINGING, trace_id=f"t{i}", escalation_id="e1", actor="ladder", details={"i": i}
    )


def test_concurrent_appends_are_group_committed_and_contiguous(tmp_path: Path) -> None:
    async def run() -> tuple[list[Event], list[int]]:
        async with witness(tmp_path) as w:
            events = await asyncio.gather(*(_append(w, i) for i in range(1000)))
            batches = list(w.store.batches)  # type: ignore[attr-defined]
        return events, batches

    events, batches = asyncio.run(run())
    assert sorted(e.seq for e in events) == list(range(1, 1001))
    # Each caller got its own event back.
    assert all(e.details == {"i": i} for i, e in enumerate(events))
    assert sum(batches) == 1000 and len(batches) < 100, batches  # grouped, not one per event
    assert cli_main(["verify", "--data-dir", str(tmp_path)]) == 0


def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    async def run() -> list[Event]:
        first: list[Event] = []
        async with witness(tmp_path) as w:
            first += [await _append(w, i) for i in range(3)]
        async with witness(tmp_path) as w:
            assert w.head.seq == 3 and w.open_result is not None and w.open_result.ok
            first.append(await _append(w, 3))
        async with witness(tmp_path, verify_on_open="off") as w:
            first.append(await _append(w, 4))
        async with witness(tmp_path, verify_on_open="chain") as w:
            assert w.open_result is not None and w.open_result.count == 5
        return first

    events = asyncio.run(run())
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[3].prev_hash == events[2].hash


def test_a_bad_detail_fails_only_its_caller(tmp_path: Path) -> None:
    async def run() -> list[object]:
        async with witness(tmp_path) as w:
            good = _append(w, 1)
            bad = w.append(
                EventType.FAILED, trace_id=None, escalation_id=None, actor="x", details={"f": b"x"}
            )
            return await asyncio.gather(good, bad, _append(w, 2), return_exceptions=True)

    good, bad, after = asyncio.run(run())
    assert isinstance(bad, CanonicalizationError)
    assert isinstance(good, Event) and isinstance(after, Event)
    assert (good.seq, after.seq) == (1, 2)


def test_failed_commit_fails_its_callers_and_the_chain_continues(tmp_path: Path) -> None:
    async def run() -> tuple[BaseException | Event, Event]:
        async with witness(tmp_path) as w:
            await _append(w, 0)
            w.store.fail_next = True  # type: ignore[attr-defined]
            failed = await asyncio.gather(_append(w, 1), return_exceptions=True)
            return failed[0], await _append(w, 2)

    failed, after = asyncio.run(run())
    assert isinstance(failed, StoreError)
    assert after.seq == 2  # no gap: the failed batch's numbers were never committed
    assert cli_main(["verify", "--data-dir", str(tmp_path)]) == 0


def test_a_torn_batch_is_all_or_nothing(tmp_path: Path) -> None:
    async def run() -> int:
        async with witness(tmp_path) as w:
            events = [await _append(w, i) for i in range(3)]
        store = SqliteStore(tmp_path / DB_FILE)
        await store.open()
        # A batch whose third event collides: the first two must not land either.
        from ifescalate.witness.core import ChainHead, seal

        head, batch = ChainHead(3, events[-1].hash), []
        for i in range(2):
            event = seal(
                head,
                load_or_create_signer(tmp_path),
                EventType.BUSY,
                trace_id=None,
                escalation_id=None,
                actor="x",
                details={"i": i},
                now=0.0,
            )
            batch.append(event)
            head = ChainHead(event.seq, event.hash)
        with pytest.raises(StoreError, match="UNIQUE constraint"):
            await store.append([*batch, events[0]])
        count = sum([1 async for _ in store.iter_rows()])
        await store.close()
        return count

    assert asyncio.run(run()) == 3


def test_tampered_database_is_reported_and_appends_refused(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    async def fill() -> None:
        async with witness(tmp_path) as w:
            for i in range(6):
                await _append(w, i)

    asyncio.run(fill())
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE witness_events SET actor = 'x' WHERE seq = 3")
        conn.execute("DROP TRIGGER witness_events_no_update")
        conn.execute("""UPDATE witness_events SET details = '{"i":42}' WHERE seq = 3""")

    async def reopen() -> None:
        async with witness(tmp_path) as w:
            assert w.broken is not None and w.broken.first_bad_seq == 3
            with pytest.raises(ChainBrokenError, match="broken at sequence 3: hash does not"):
                await _append(w, 9)

    asyncio.run(reopen())
    capsys.readouterr()
    assert cli_main(["verify", "--data-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().out == (
        "BROKEN at sequence 3: hash does not match the event content (edited)\n"
    )


def test_malformed_row_is_named(tmp_path: Path) -> None:
    async def fill() -> None:
        async with witness(tmp_path) as w:
            for i in range(3):
                await _append(w, i)

    asyncio.run(fill())
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        conn.execute("DROP TRIGGER witness_events_no_update")
        conn.execute("UPDATE witness_events SET type = 'HACKED' WHERE seq = 2")

    async def check() -> str:
        store = SqliteStore(tmp_path / DB_FILE)
        await store.open()
        result = await verify_store(store, load_or_create_signer(tmp_path).public_key())
        await store.close()
        return result.message()

    assert asyncio.run(check()) == (
        "BROKEN at sequence 2: malformed stored event: unknown event type 'HACKED'"
    )


def test_a_store_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    async def run() -> None:
        async with witness(tmp_path) as w:
            await _append(w, 0)
        (tmp_path / KEY_FILE).unlink()  # a new key would be generated: must not extend the chain
        async with witness(tmp_path) as w:
            with pytest.raises(ChainBrokenError, match="store was signed by key"):
                await _append(w, 1)

    asyncio.run(run())


def test_key_file_is_private_stable_and_exported(tmp_path: Path) -> None:
    first = load_or_create_signer(tmp_path)
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / PUBLIC_KEY_FILE).read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    from ifescalate.witness import public_key_hex

    again = load_or_create_signer(tmp_path)
    assert public_key_hex(first.public_key()) == public_key_hex(again.public_key())
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create_signer(tmp_path)


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from ifescalate.witness import EventType, SqliteStore, Witness, load_or_create_signer

    async def worker(w, n):
        i = 0
        while True:
            e = await w.append(EventType.INVITE, trace_id=None, escalation_id=str(n),
                               actor="child", details={"worker": n, "i": i})
            sys.stdout.write(f"{e.seq} {e.hash}\\n")
            sys.stdout.flush()
            i += 1

    async def main(d):
        w = Witness(SqliteStore(d / "witness.sqlite3"), load_or_create_signer(d))
        await w.start()
        await asyncio.gather(*(worker(w, n) for n in range(20)))

    asyncio.run(main(Path(sys.argv[1])))
    """
)


def test_sigkilled_writer_loses_no_acknowledged_event(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    assert child.stdout is not None
    acknowledged: dict[int, str] = {}
    try:
        while len(acknowledged) < 400:
            line = child.stdout.readline()
            assert line, "child exited early"
            seq, digest = line.decode().split()
            acknowledged[int(seq)] = digest
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    # Lines written before the kill but not yet read were acknowledged too.
    for line in child.stdout.read().decode().splitlines(keepends=True):
        if line.endswith("\n"):
            seq, digest = line.split()
            acknowledged[int(seq)] = digest

    async def reopen() -> dict[int, str]:
        store = SqliteStore(tmp_path / DB_FILE)
        await store.open()
        result = await verify_store(store, load_or_create_signer(tmp_path).public_key())
        assert result.ok, result.message()
        stored = {int(row[0]): str(row[8]) async for row in store.iter_rows()}
        await store.close()
        return stored

    stored = asyncio.run(reopen())
    assert sorted(stored) == list(range(1, len(stored) + 1))
    missing = {seq: h for seq, h in acknowledged.items() if stored.get(seq) != h}
    assert not missing
    assert len(stored) >= len(acknowledged)


def test_caller_mutating_its_details_later_cannot_break_the_chain(tmp_path: Path) -> None:
    async def run() -> Event:
        async with witness(tmp_path) as w:
            details: dict[str, object] = {"k": [1]}
            event = await w.append(
                EventType.VERDICT, trace_id=None, escalation_id="e", actor="x", details=details
            )
            details["k"] = "changed"
            return event

    event = asyncio.run(run())
    assert event.details == {"k": [1]}
    assert cli_main(["verify", "--data-dir", str(tmp_path)]) == 0


class ExplodingStore(CountingStore):
    async def append(self, events: Sequence[Event]) -> None:
        raise RuntimeError("bug in a store")


def test_a_dying_writer_fails_its_callers_instead_of_hanging(tmp_path: Path) -> None:
    async def run() -> None:
        w = Witness(ExplodingStore(tmp_path / DB_FILE), load_or_create_signer(tmp_path))
        await w.start()
        with pytest.raises(ChainBrokenError, match="writer failed: RuntimeError"):
            await asyncio.wait_for(_append(w, 0), timeout=5)
        with pytest.raises(ChainBrokenError):
            await _append(w, 1)
        with pytest.raises(RuntimeError, match="bug in a store"):
            await w.close()

    asyncio.run(run())
