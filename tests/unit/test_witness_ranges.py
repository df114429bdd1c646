"""Span-parallel verify (workers read their own rows/lines) gives exactly the reference answer:
tampered rows and lines on either side of every span boundary, in-process and in workers."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.unit.test_witness_core import make_chain, signer

from ifescalate.witness import ranges
from ifescalate.witness.cli import main as cli_main
from ifescalate.witness.core import (
    ChainHead,
    Event,
    EventError,
    SignatureCheck,
    Verifier,
    VerifyResult,
)
from ifescalate.witness.keys import public_key_hex
from ifescalate.witness.store import DB_FILE, SqliteStore, event_to_row, row_to_event

KEY = signer().public_key()
N = 60
SPAN = 10
CHAIN = make_chain(N)
FOREIGN_SIGNATURE = make_chain(1, signer(b"\x01" * 32))[0].signature  # valid form, wrong signer


def reference_rows(path: Path, signatures: SignatureCheck = "all") -> VerifyResult:
    """The sequential verifier over rows, as ``verify_store`` always did it."""
    verifier = Verifier(KEY, signatures=signatures)
    with sqlite3.connect(path) as conn:
        for row in conn.execute("SELECT * FROM witness_events WHERE seq > 0 ORDER BY seq"):
            try:
                event = row_to_event(row)
            except EventError as exc:
                return verifier.fail(verifier.next_seq, f"malformed stored event: {exc}")
            if not verifier.feed(event):
                break
    return verifier.finish()


def reference_lines(
    path: Path, expected_head: ChainHead | None = None, signatures: SignatureCheck = "all"
) -> VerifyResult:
    verifier = Verifier(KEY, signatures=signatures)
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not line:
            continue
        try:
            event = Event.from_json(line)
        except EventError as exc:
            return verifier.fail(verifier.next_seq, f"line {number}: malformed event: {exc}")
        if not verifier.feed(event):
            break
    return verifier.finish(expected_head=expected_head)


def make_store(path: Path, events: list[Event]) -> Path:
    async def create() -> None:
        store = SqliteStore(path / DB_FILE)
        await store.open()
        await store.close()

    asyncio.run(create())
    with sqlite3.connect(path / DB_FILE) as conn:
        conn.executemany(
            "INSERT INTO witness_events VALUES (?,?,?,?,?,?,?,?,?,?)",
            [event_to_row(e) for e in events],
        )
        conn.execute("DROP TRIGGER witness_events_no_update")
        conn.execute("DROP TRIGGER witness_events_no_delete")
    return path / DB_FILE


def _sql(statement: str) -> Callable[[sqlite3.Connection, int], None]:
    def tamper(conn: sqlite3.Connection, seq: int) -> None:
        conn.execute(statement.format(seq=seq, other=FOREIGN_SIGNATURE))

    tamper.__name__ = statement.split(" SET ")[-1].split(" WHERE")[0]
    return tamper


def _swap(conn: sqlite3.Connection, seq: int) -> None:
    # Reordered rows: the contents of seq and seq+1 change places (their seq columns too).
    conn.execute("UPDATE witness_events SET seq = -1 WHERE seq = ?", (seq,))
    conn.execute("UPDATE witness_events SET seq = ? WHERE seq = ?", (seq, seq + 1))
    conn.execute("UPDATE witness_events SET seq = ? WHERE seq = -1", (seq + 1,))


ROW_TAMPERS: list[Callable[[sqlite3.Connection, int], None]] = [
    _sql("UPDATE witness_events SET details = '{{\"edited\":true}}' WHERE seq = {seq}"),
    _sql("UPDATE witness_events SET actor = 'mallory' WHERE seq = {seq}"),
    _sql("UPDATE witness_events SET time = '2020-01-01T00:00:00.000000Z' WHERE seq = {seq}"),
    _sql("UPDATE witness_events SET signature = '{other}' WHERE seq = {seq}"),
    _sql("UPDATE witness_events SET signature = upper(signature) WHERE seq = {seq}"),
    _sql("UPDATE witness_events SET type = 'HACKED' WHERE seq = {seq}"),
    _sql("UPDATE witness_events SET details = 'not json' WHERE seq = {seq}"),
    _sql("DELETE FROM witness_events WHERE seq = {seq}"),
    _sql("UPDATE witness_events SET prev_hash = 'zz' WHERE seq = {seq}"),
    # Same JSON, not canonical text: the reference accepts it (it re-canonicalises), so must we.
    _sql("UPDATE witness_events SET details = ' ' || details WHERE seq = {seq}"),
    _swap,
]


@pytest.mark.parametrize("seq", [1, 10, 11, 20, 21, 59, 60])
@pytest.mark.parametrize("tamper", ROW_TAMPERS, ids=lambda t: t.__name__[:24])
def test_sqlite_spans_equal_the_reference(
    tmp_path: Path, tamper: Callable[[sqlite3.Connection, int], None], seq: int
) -> None:
    db = make_store(tmp_path, CHAIN)
    with sqlite3.connect(db) as conn:
        if tamper is not _swap or seq < N:
            tamper(conn, seq)
    expected = reference_rows(db)
    got = ranges.verify_sqlite(db, KEY, jobs=1, span=SPAN)
    assert got == expected
    # Still valid: the same JSON re-spaced; "swapping" past the end (no-op); a cut tail (a store
    # has no signed head to compare with: export manifests catch that).
    cut_tail = tamper.__name__.startswith("DELETE") and seq == N
    assert got.ok == (
        "' ' || details" in tamper.__name__ or (tamper is _swap and seq == N) or cut_tail
    )


def test_sqlite_spans_in_worker_processes(tmp_path: Path) -> None:
    db = make_store(tmp_path, CHAIN)
    assert ranges.verify_sqlite(db, KEY, jobs=2, span=SPAN, min_parallel=0) == reference_rows(db)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM witness_events WHERE seq = 41")
    got = ranges.verify_sqlite(db, KEY, jobs=2, span=SPAN, min_parallel=0)
    assert got == reference_rows(db)
    assert (got.first_bad_seq, got.count) == (41, 40)
    assert got.reason.startswith("expected sequence 41, found 42")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE witness_events SET signature = ? WHERE seq = 52", (FOREIGN_SIGNATURE,))
    got = ranges.verify_sqlite(db, KEY, jobs=2, span=SPAN, min_parallel=0)
    assert got == reference_rows(db)


def test_wrong_key_and_zero_seq_row(tmp_path: Path) -> None:
    db = make_store(tmp_path, CHAIN)
    other = signer(b"\x01" * 32).public_key()
    got = ranges.verify_sqlite(db, other, jobs=2, span=SPAN, min_parallel=0)
    assert (got.ok, got.first_bad_seq, got.count) == (False, 1, 0)
    assert got.reason == "signature invalid (forged, replaced, or another key)"
    with sqlite3.connect(db) as conn:  # the reference never reads seq <= 0; neither do we
        conn.execute(
            "INSERT INTO witness_events SELECT 0, time, trace_id, escalation_id, type, "
            "actor, details, prev_hash, hash, signature FROM witness_events WHERE seq = 5"
        )
    assert ranges.verify_sqlite(db, KEY, jobs=1, span=SPAN) == reference_rows(db)


def test_last_signature_mode(tmp_path: Path) -> None:
    db = make_store(tmp_path, CHAIN)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE witness_events SET signature = ? WHERE seq = 30", (FOREIGN_SIGNATURE,))
    assert ranges.verify_sqlite(db, KEY, jobs=1, span=SPAN, signatures="last").ok
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE witness_events SET signature = ? WHERE seq = ?", (FOREIGN_SIGNATURE, N)
        )
    got = ranges.verify_sqlite(db, KEY, jobs=1, span=SPAN, signatures="last")
    assert (got.ok, got.first_bad_seq, got.reason) == (
        False,
        N,
        "signature of the last event invalid",
    )


@pytest.mark.parametrize("seq", [5, 11, N])
@pytest.mark.parametrize("bad", ["upper(signature)", "'x'", "42"])
def test_last_signature_mode_still_checks_every_signature_form(
    tmp_path: Path, seq: int, bad: str
) -> None:
    # Only the last signature is verified, but the reference parses every event: a malformed
    # signature anywhere is named there, so here too (rows and export lines alike).
    db = make_store(tmp_path, CHAIN)
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE witness_events SET signature = {bad} WHERE seq = ?", (seq,))
    expected = reference_rows(db, "last")
    assert not expected.ok
    assert ranges.verify_sqlite(db, KEY, jobs=1, span=SPAN, signatures="last") == expected
    lines = _lines()
    lines[seq - 1] = lines[seq - 1].replace(
        CHAIN[seq - 1].signature.encode(), CHAIN[seq - 1].signature.upper().encode()
    )
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    expected = reference_lines(path, signatures="last")
    assert not expected.ok and expected.first_bad_seq == seq
    assert ranges.verify_file(path, KEY, jobs=1, span=2000, signatures="last") == expected


def _lines() -> list[bytes]:
    return [e.to_json() for e in CHAIN]


def _replace(index: int, line: bytes) -> Callable[[list[bytes]], None]:
    def tamper(lines: list[bytes]) -> None:
        lines[index] = line

    return tamper


LINE_TAMPERS: dict[str, Callable[[list[bytes], int], None]] = {
    "torn": lambda lines, i: lines.__setitem__(i, lines[i][:-20]),
    "edited": lambda lines, i: lines.__setitem__(i, lines[i].replace(b'"i":', b'"i":1')),
    "deleted": lambda lines, i: lines.__delitem__(i),
    "swapped": lambda lines, i: lines.insert(i + 1, lines.pop(i)),
    "bad_sig": lambda lines, i: lines.__setitem__(
        i, lines[i].replace(CHAIN[i].signature.encode(), FOREIGN_SIGNATURE.encode())
    ),
    "blank": lambda lines, i: lines.insert(i, b""),
    "crlf": lambda lines, i: lines.__setitem__(i, lines[i] + b"\r"),  # reference accepts this
    "spaces": lambda lines, i: lines.__setitem__(i, lines[i].replace(b",", b", ", 1)),
    "dup_key": lambda lines, i: lines.__setitem__(i, lines[i][:-1] + b',"actor":"x"}'),
    "upper_hex": lambda lines, i: lines.__setitem__(
        i, lines[i].replace(CHAIN[i].signature.encode(), CHAIN[i].signature.upper().encode())
    ),
}


@pytest.mark.parametrize("index", [0, 9, 10, 30, 58, 59])
@pytest.mark.parametrize("name", sorted(LINE_TAMPERS))
def test_file_spans_equal_the_reference(tmp_path: Path, name: str, index: int) -> None:
    lines = _lines()
    if name == "swapped" and index == N - 1:
        index -= 1
    LINE_TAMPERS[name](lines, index)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    head = ChainHead(N, CHAIN[-1].hash)
    expected = reference_lines(path, head)
    # ~4 lines a span: every boundary case above lands near one.
    got = ranges.verify_file(path, KEY, jobs=1, span=4 * len(lines[1]), expected_head=head)
    assert got == expected
    assert got.ok == (name in ("blank", "crlf", "spaces"))
    if name == "deleted" and index == N - 1:
        assert "truncated" in got.reason


def test_file_spans_in_worker_processes(tmp_path: Path) -> None:
    lines = _lines()
    LINE_TAMPERS["torn"](lines, 47)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    got = ranges.verify_file(path, KEY, jobs=2, span=3000, min_parallel=0)
    assert got == reference_lines(path)
    assert (got.first_bad_seq, got.count) == (48, 47)
    assert got.reason.startswith("line 48: malformed event: not JSON")


def test_cli_verify_from_the_sqlite_store_names_the_first_bad_seq(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = make_chain(ranges.MIN_PARALLEL + 100)
    db = make_store(tmp_path, events)
    pub = public_key_hex(KEY)
    assert cli_main(["verify", "--data-dir", str(tmp_path), "--public-key", pub]) == 0
    assert capsys.readouterr().out == f"OK: {len(events)} events, chain and signatures valid\n"
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER IF EXISTS witness_events_no_update")
        conn.execute("UPDATE witness_events SET details = '{\"i\":0}' WHERE seq = 3333")
    assert cli_main(["verify", "--data-dir", str(tmp_path), "--public-key", pub]) == 1
    assert capsys.readouterr().out == (
        "BROKEN at sequence 3333: hash does not match the event content (edited)\n"
    )


def test_witness_open_verifies_a_big_store_in_worker_processes(tmp_path: Path) -> None:
    # From inside a running event loop (threads alive): the workers come from a fork server.
    from ifescalate.witness import Witness

    db = make_store(tmp_path, make_chain(ranges.MIN_PARALLEL + 10))

    async def open_witness() -> tuple[VerifyResult | None, object]:
        witness = Witness(SqliteStore(db), signer(), verify_on_open="full")
        await witness.start()
        try:
            return witness.open_result, witness.broken
        finally:
            await witness.close()

    result, broken = asyncio.run(open_witness())
    assert result is not None and result.ok and result.count == ranges.MIN_PARALLEL + 10
    assert broken is None
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER IF EXISTS witness_events_no_update")
        conn.execute(
            "UPDATE witness_events SET signature = ? WHERE seq = 4001", (FOREIGN_SIGNATURE,)
        )
    result, broken = asyncio.run(open_witness())
    assert result is not None and (result.first_bad_seq, result.count) == (4001, 4000)
    assert broken is not None and "broken at sequence 4001: signature invalid" in str(broken)


def test_random_byte_edits_of_an_export_are_judged_like_the_reference(tmp_path: Path) -> None:
    # The fast line check must never accept what the reference refuses (nor name another
    # reason): flip, insert or delete single bytes anywhere in a 20-line export, 200 times.
    import random

    rng = random.Random(20261129)
    clean = b"".join(line + b"\n" for line in _lines()[:20])
    head = ChainHead(20, CHAIN[19].hash)
    path = tmp_path / "events.jsonl"
    outcomes = set()
    for _ in range(200):
        data = bytearray(clean)
        at = rng.randrange(len(data))
        op = rng.choice(("flip", "insert", "delete"))
        if op == "flip":
            data[at] = rng.choice(b'0aA"\\{}[],:. \n\t\x00\xc3\xa9e1-')
        elif op == "insert":
            data.insert(at, rng.choice(b'0a" ,\\}'))
        else:
            del data[at]
        path.write_bytes(bytes(data))
        expected = reference_lines(path, head)
        assert ranges.verify_file(path, KEY, jobs=1, span=900, expected_head=head) == expected
        outcomes.add(expected.ok)
    assert outcomes == {True, False}  # some edits are harmless: the reference re-canonicalises
