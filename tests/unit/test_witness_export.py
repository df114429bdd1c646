"""Offline verification from an export file: `witness export` then `witness verify --file`,
with every kind of tampering named by its first bad sequence; and the standalone module entry."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ifescalate.witness import EventType, SqliteStore, Witness, load_or_create_signer
from ifescalate.witness.cli import main
from ifescalate.witness.keys import public_key_hex, public_key_pem
from ifescalate.witness.store import DB_FILE

REPO = Path(__file__).resolve().parents[2]
N = 12


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    data = tmp_path / "data"

    async def fill() -> None:
        async with Witness(SqliteStore(data / DB_FILE), load_or_create_signer(data)) as w:
            for i in range(N):
                await w.append(
                    EventType.PARTICIPANT_JOINED,
                    trace_id="t",
                    escalation_id="e",
                    actor="room",
                    details={"i": i, "ratio": i / 4},
                )

    asyncio.run(fill())
    out = tmp_path / "events.jsonl"
    assert main(["export", "--data-dir", str(data), "--out", str(out)]) == 0
    return out


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def run_verify(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["verify", "--file", str(path), *extra])
    return code, capsys.readouterr().out.strip()


def test_export_is_canonical_lines_and_verifies(
    exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = lines(exported)
    assert len(rows) == N
    first = json.loads(rows[0])
    assert first["seq"] == 1 and list(first) == sorted(first)
    assert b'"ratio":0.25' in rows[1]
    assert run_verify(exported, capsys) == (0, f"OK: {N} events, chain and signatures valid")
    pub = exported.parent / "data" / "witness_ed25519.pub.pem"
    assert run_verify(exported, capsys, "--public-key", str(pub))[0] == 0
    assert run_verify(exported, capsys, "--signatures", "last")[0] == 0


def test_edited_line(exported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = lines(exported)
    rows[4] = rows[4].replace(b'"i":4', b'"i":5')
    exported.write_bytes(b"".join(rows))
    assert run_verify(exported, capsys) == (
        1,
        "BROKEN at sequence 5: hash does not match the event content (edited)",
    )


def test_deleted_line(exported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = lines(exported)
    del rows[7]
    exported.write_bytes(b"".join(rows))
    code, out = run_verify(exported, capsys)
    assert (code, out) == (
        1,
        "BROKEN at sequence 8: expected sequence 8, found 9 (missing or reordered event)",
    )


def test_reordered_lines(exported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = lines(exported)
    rows[1], rows[2] = rows[2], rows[1]
    exported.write_bytes(b"".join(rows))
    assert run_verify(exported, capsys)[1].startswith("BROKEN at sequence 2: expected sequence 2")


def test_cut_tail_caught_by_the_signed_manifest(
    exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exported.write_bytes(b"".join(lines(exported)[:9]))
    assert run_verify(exported, capsys) == (
        1,
        "BROKEN at sequence 10: chain ends at sequence 9 but the manifest says 12 (truncated)",
    )


def test_torn_last_line(exported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = exported.read_bytes()
    exported.write_bytes(data[: len(data) - 40])
    code, out = run_verify(exported, capsys)
    assert code == 1 and out.startswith("BROKEN at sequence 12: line 12: malformed event: not JSON")


def test_replaced_signature(exported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = lines(exported)
    sig_6 = json.loads(rows[5])["signature"]
    event = json.loads(rows[2])
    rows[2] = rows[2].replace(event["signature"].encode(), sig_6.encode())
    exported.write_bytes(b"".join(rows))
    assert run_verify(exported, capsys) == (
        1,
        "BROKEN at sequence 3: signature invalid (forged, replaced, or another key)",
    )


def test_wrong_pinned_key(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    pem = tmp_path / "other.pem"
    pem.write_bytes(public_key_pem(other))
    # Pinned key vs. the manifest's key: refused before looking at events.
    code = main(["verify", "--file", str(exported), "--public-key", str(pem)])
    assert code == 2 and "not the pinned key" in capsys.readouterr().err
    # Without the manifest, every event fails from the first one.
    exported.with_name("events.jsonl.manifest.json").unlink()
    assert run_verify(exported, capsys, "--public-key", public_key_hex(other)) == (
        1,
        "BROKEN at sequence 1: signature invalid (forged, replaced, or another key)",
    )


def test_forged_manifest_is_refused(exported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = exported.with_name("events.jsonl.manifest.json")
    data = json.loads(manifest.read_bytes())
    data["head_seq"] = 9  # hide a cut tail
    manifest.write_text(json.dumps(data))
    assert main(["verify", "--file", str(exported)]) == 2
    assert "manifest signature invalid" in capsys.readouterr().err


def test_module_entry_point(exported: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ifescalate.witness.cli",
            "verify",
            "--data-dir",
            str(exported.parent / "data"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, f"OK: {N} events, chain and signatures valid\n")
    missing = subprocess.run(
        [sys.executable, "-m", "ifescalate.witness.cli", "verify", "--data-dir", "/nonexistent"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2 and "no witness database" in missing.stderr
