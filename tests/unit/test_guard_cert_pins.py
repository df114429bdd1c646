"""Client certificate pins on the expert record: model, SQLite registry (old data dirs too), YAML,
``experts add --cert-fingerprint/--cert-file``, ``/v1/experts`` and the call-in check."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.unit.test_api_experts import EXPERT
from tests.unit.test_api_support import running

from ifescalate.escalation.callin import cert_rejection
from ifescalate.guard import Expert, ExpertValidationError, SqliteRegistry, parse_yaml
from ifescalate.guard.cli import add_experts_parser
from ifescalate.net.devcert import dev_tls_cert

FP = "ab" * 32
FP2 = "cd" * 32
BASE: dict[str, Any] = {
    "id": "erin",
    "name": "Erin",
    "sip_uri": "sip:erin@example.org",
    "org": "lab",
    "networks": ["10.0.0.0/8"],
    "specializations": ["safety"],
}


def test_fingerprints_are_normalised_deduplicated_and_validated() -> None:
    colon = ":".join(["AB"] * 32)
    e = Expert.from_dict(BASE | {"cert_fingerprints": [colon, FP.upper(), FP2]})
    assert e.cert_fingerprints == (FP, FP2)
    assert Expert.from_dict(e.to_dict()) == e
    assert Expert.from_dict(BASE | {"cert_fingerprints": colon}).cert_fingerprints == (FP,)
    for bad in ("ab" * 31, "zz" * 32, "sha256:" + FP):
        with pytest.raises(ExpertValidationError, match="cert_fingerprints"):
            Expert.from_dict(BASE | {"cert_fingerprints": [bad]})
    # Absent stays absent in the stored document (older records stay byte-identical).
    assert "cert_fingerprints" not in Expert.from_dict(BASE).to_dict()


def test_registry_from_before_the_field_loads_and_takes_pins(tmp_path: Path) -> None:
    db = tmp_path / "ifescalate.db"
    # A data dir written before cert_fingerprints existed: the same table, a document without it.
    old_doc = json.dumps(Expert.from_dict(BASE).to_dict() | {"suspended": False})
    with sqlite3.connect(db) as raw:
        raw.executescript(
            "CREATE TABLE guard_experts (id TEXT PRIMARY KEY, doc TEXT NOT NULL,"
            " suspended INTEGER NOT NULL DEFAULT 0);"
            "CREATE TABLE guard_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
            "INSERT INTO guard_meta VALUES ('revision', 3);"
        )
        raw.execute("INSERT INTO guard_experts VALUES ('erin', ?, 0)", (old_doc,))
    raw.close()
    with SqliteRegistry(db) as reg:
        erin = reg.get("erin")
        assert erin.cert_fingerprints == ()
        reg.update(Expert.from_dict(erin.to_dict() | {"cert_fingerprints": [FP]}))
        assert reg.revision() == 4
    with SqliteRegistry(db) as reg:
        assert reg.get("erin").cert_fingerprints == (FP,)


def test_yaml_takes_pins() -> None:
    text = f"""experts:
  - id: erin
    name: Erin
    sip_uri: sip:erin@example.org
    org: lab
    specializations: [safety]
    cert_fingerprints: ["{":".join(["CD"] * 32)}"]
"""
    assert parse_yaml(text)[0].cert_fingerprints == (FP2,)
    with pytest.raises(ExpertValidationError, match="not a SHA-256"):
        parse_yaml(text.replace("CD", "C"))


def _cli(argv: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    add_experts_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    out = io.StringIO()
    code: int = args.func(args, out=out)
    return code, out.getvalue()


def _openssl_fingerprint(cert: Path) -> str:
    """The reference: OpenSSL's own SHA-256 fingerprint of the certificate ("AB:CD:...")."""
    done = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256"],
        capture_output=True, text=True, check=True, timeout=10,
    )  # fmt: skip
    return done.stdout.strip().split("=", 1)[1]


def test_cli_add_with_fingerprint_and_cert_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, _ = dev_tls_cert(tmp_path, common_name="erin", stem="erin")
    reference = _openssl_fingerprint(cert)
    db = ["experts", "--db", str(tmp_path / "r.db")]
    add = ["add", "erin", "--sip-uri", "sip:erin@example.org", "--org", "lab",
           "--specialization", "safety"]  # fmt: skip
    assert _cli([*db, *add, "--cert-fingerprint", FP, "--cert-file", str(cert)]) == (
        0,
        "added erin\n",
    )
    with SqliteRegistry(tmp_path / "r.db") as reg:
        pins = reg.get("erin").cert_fingerprints
    assert pins == (FP, reference.replace(":", "").lower())
    _, listing = _cli([*db, "list", "--json"])
    assert json.loads(listing)["cert_fingerprints"] == list(pins)
    # Bad input names the problem and exits 2.
    assert _cli([*db, *add, "--replace", "--cert-fingerprint", "abc"])[0] == 2
    assert "not a SHA-256 fingerprint" in capsys.readouterr().err
    assert _cli([*db, *add, "--replace", "--cert-file", str(tmp_path / "nope.pem")])[0] == 2
    assert "nope.pem" in capsys.readouterr().err
    not_pem = tmp_path / "key.txt"
    not_pem.write_text("hello\n")
    assert _cli([*db, *add, "--replace", "--cert-file", str(not_pem)])[0] == 2
    assert "no PEM certificate" in capsys.readouterr().err


def test_api_pins_create_read_keep_on_put_and_clear(tmp_path: Path) -> None:
    async def body() -> None:
        async with running(tmp_path) as env:
            ops = env.auth("operator")
            pinned = EXPERT | {"cert_fingerprints": [":".join(["AB"] * 32)]}
            resp = await env.client.post("/v1/experts", data=json.dumps(pinned), headers=ops)
            assert resp.status == 201, await resp.text()
            assert (await resp.json())["cert_fingerprints"] == [FP]
            read = await env.client.get("/v1/experts/alice", headers=env.auth("auditor"))
            assert (await read.json())["cert_fingerprints"] == [FP]
            edited = {k: v for k, v in EXPERT.items() if k != "digest"} | {"clearance": 7}
            resp = await env.client.put("/v1/experts/alice", data=json.dumps(edited), headers=ops)
            assert resp.status == 200 and (await resp.json())["cert_fingerprints"] == [FP]
            assert env.registry.get("alice").cert_fingerprints == (FP,)
            resp = await env.client.put(
                "/v1/experts/alice",
                data=json.dumps(edited | {"cert_fingerprints": []}),
                headers=ops,
            )
            assert "cert_fingerprints" not in await resp.json()
            assert env.registry.get("alice").cert_fingerprints == ()
            bad = await env.client.put(
                "/v1/experts/alice",
                data=json.dumps(edited | {"cert_fingerprints": ["abc"]}),
                headers=ops,
            )
            assert bad.status == 422
            assert "not a SHA-256 fingerprint" in (await bad.json())["errors"]["expert"]

    asyncio.run(body())


def test_call_in_cert_check() -> None:
    plain = Expert.from_dict(BASE)
    pinned = Expert.from_dict(BASE | {"cert_fingerprints": [FP, FP2]})
    assert cert_rejection(plain, None) is None
    assert cert_rejection(pinned, FP2) is None
    missing = cert_rejection(pinned, None)
    assert missing is not None
    assert (missing.status, missing.reason, missing.layer, missing.label) == (
        403,
        "Forbidden - Client Certificate Required",
        "transport",
        "client_cert_required",
    )
    wrong = cert_rejection(pinned, "ef" * 32)
    assert wrong is not None
    assert (wrong.status, wrong.reason, wrong.label) == (
        403,
        "Forbidden - Client Certificate Mismatch",
        "client_cert_mismatch",
    )
