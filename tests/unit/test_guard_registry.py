"""Expert model validation, SQLite registry CRUD, YAML loading/merging, HA1-only storage, CLI."""

from __future__ import annotations

import argparse
import base64
import io
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from ifescalate.guard import (
    DigestCredentials,
    Expert,
    ExpertNotFound,
    ExpertValidationError,
    RegistryError,
    SqliteRegistry,
    load_yaml,
    parse_yaml,
    provision_digest,
)
from ifescalate.guard.cli import add_experts_parser, run_experts
from ifescalate.sip.digest import ha1

SAMPLE = Path(__file__).parents[2] / "src/ifescalate/guard/sample/experts.yaml"
PASSWORD = "correct horse battery staple 7f3a"


def make(expert_id: str = "alice", **kw: object) -> Expert:
    data: dict[str, object] = {
        "id": expert_id,
        "name": expert_id.title(),
        "sip_uri": f"sip:{expert_id}@example.org",
        "org": "lab",
        "networks": ["10.0.0.0/8"],
        "specializations": ["safety"],
        "clearance": 2,
        "availability": ["weekdays 08:00-18:00 Europe/Berlin"],
    }
    data.update(kw)
    return Expert.from_dict(data)


# --- model -------------------------------------------------------------------------------------


def test_round_trip_through_dict() -> None:
    short = base64.b64encode(bytes(31)).decode()
    with pytest.raises(ExpertValidationError, match="32 bytes"):
        make(public_key=short)
    e = make(digest=provision_digest("alice", "ifescalate", PASSWORD).to_dict())
    assert Expert.from_dict(e.to_dict()) == e


def test_valid_public_key_round_trips() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = (
        Ed25519PrivateKey.from_private_bytes(bytes(32))
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    e = make(public_key=base64.b64encode(raw).decode())
    assert e.public_key == raw
    assert Expert.from_dict(e.to_dict()) == e


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", "Alice!", "expert id"),
        ("name", " ", "name"),
        ("sip_uri", "http://example.org", "sip_uri"),
        ("sip_uri", "tel:+4912345", "sip: or sips:"),
        ("org", "", "org"),
        ("networks", ["10.0.0.1/8"], "host bits"),
        ("specializations", [], "no specializations"),
        ("specializations", ["Safety"], "bad specialization"),
        ("clearance", -1, "clearance"),
        ("clearance", "3", "clearance"),
        ("clearance", True, "clearance"),
        ("calls_per_minute", 0, "calls_per_minute"),
        ("availability", ["weekdays 8-18 UTC"], "HH:MM"),
        ("public_key", "not base64!", "base64"),
        ("suspended", "yes", "suspended"),
        ("colour", "blue", "unknown field"),
    ],
)
def test_model_rejects(field: str, value: object, message: str) -> None:
    with pytest.raises(ExpertValidationError, match=message):
        make("alice", **{field: value})


def test_expert_is_frozen() -> None:
    e = make()
    with pytest.raises(AttributeError):
        e.clearance = 5  # type: ignore[misc]


def test_provisioning_stores_ha1_only() -> None:
    creds = provision_digest("alice", "ifescalate", PASSWORD)
    assert creds.ha1_sha256 == ha1("alice", "ifescalate", PASSWORD, "SHA-256")
    assert creds.ha1_md5 is None
    assert creds.ha1_for("SHA-256-sess") == creds.ha1_sha256
    assert creds.ha1_for("MD5") is None
    with_md5 = provision_digest("alice", "ifescalate", PASSWORD, allow_md5=True)
    assert with_md5.ha1_md5 == ha1("alice", "ifescalate", PASSWORD, "MD5")
    assert with_md5.ha1_for("md5") == with_md5.ha1_md5
    assert PASSWORD not in repr(with_md5) and PASSWORD not in str(with_md5.to_dict())


def test_digest_validation() -> None:
    with pytest.raises(ExpertValidationError, match="64"):
        DigestCredentials("alice", "r", "abc")
    with pytest.raises(ExpertValidationError, match="32"):
        DigestCredentials("alice", "r", "a" * 64, "b" * 31)
    with pytest.raises(ExpertValidationError, match="plaintext"):
        DigestCredentials.from_dict({"username": "a", "realm": "r", "password": "x"})


# --- SQLite registry ---------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> SqliteRegistry:
    return SqliteRegistry(tmp_path / "data" / "ifescalate.db")


def test_crud(registry: SqliteRegistry) -> None:
    assert registry.list() == []
    a, b = make("alice"), make("bob", clearance=4)
    registry.add(b)
    registry.add(a)
    assert registry.list() == [a, b]  # ordered by id
    assert registry.get("bob") == b
    with pytest.raises(RegistryError, match="already exists"):
        registry.add(a)

    registry.update(replace(a, clearance=5))
    assert registry.get("alice").clearance == 5
    with pytest.raises(ExpertNotFound):
        registry.update(make("carol"))

    suspended = registry.suspend("bob")
    assert suspended.suspended and registry.get("bob").suspended
    assert [e.id for e in registry.list(include_suspended=False)] == ["alice"]
    assert not registry.suspend("bob", False).suspended

    registry.remove("alice")
    with pytest.raises(ExpertNotFound, match="alice"):
        registry.get("alice")
    with pytest.raises(ExpertNotFound):
        registry.remove("alice")
    with pytest.raises(ExpertNotFound):
        registry.suspend("alice")


def test_revision_bumps_on_every_write_only(registry: SqliteRegistry) -> None:
    r0 = registry.revision()
    registry.add(make("alice"))
    r1 = registry.revision()
    registry.list()
    registry.get("alice")
    assert registry.revision() == r1 > r0
    registry.suspend("alice")
    assert registry.revision() == r1 + 1
    with pytest.raises(ExpertNotFound):
        registry.remove("nobody")
    assert registry.revision() == r1 + 1


def test_persists_across_connections_and_shares_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ifescalate.db"
    other = sqlite3.connect(path)  # another component's table in the same file
    other.execute("CREATE TABLE witness_events (seq INTEGER PRIMARY KEY)")
    other.commit()
    other.close()
    with SqliteRegistry(path) as first:
        first.add(make("alice"))
    with SqliteRegistry(path) as second:
        assert second.get("alice") == make("alice")
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert {"witness_events", "guard_experts", "guard_meta"} <= tables
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_no_plaintext_password_in_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "ifescalate.db"
    with SqliteRegistry(path) as reg:
        creds = provision_digest("alice", "ifescalate", PASSWORD, allow_md5=True)
        reg.add(make("alice", digest=creds.to_dict()))
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(path.name))
    assert PASSWORD.encode() not in blob
    assert PASSWORD.encode("utf-16-le") not in blob
    # ...but the HA1 values are there, so the check looked at the right bytes.
    assert creds.ha1_sha256.encode() in blob
    assert creds.ha1_md5 is not None and creds.ha1_md5.encode() in blob


# --- YAML --------------------------------------------------------------------------------------


def test_sample_yaml_loads() -> None:
    experts = load_yaml(SAMPLE)
    assert [e.id for e in experts] == ["alice", "bob", "carol"]
    alice = experts[0]
    assert alice.digest is not None and alice.digest.ha1_md5 is None
    assert alice.digest.ha1_sha256 == ha1("alice", "ifescalate", "alice-demo", "SHA-256")
    assert alice.public_key is not None and len(alice.public_key) == 32
    assert str(alice.networks[1]) == "2001:db8:1::/48"
    assert len(experts[1].availability) == 2


def test_yaml_rejects_unknown_hazard_and_duplicates() -> None:
    one = "  - {id: a, name: A, sip_uri: 'sip:a@x', org: o, specializations: [%s]}\n"
    with pytest.raises(ExpertValidationError, match="unknown hazard"):
        parse_yaml("experts:\n" + one % "weather")
    assert parse_yaml("experts:\n" + one % "weather", hazards=["weather"])[0].id == "a"
    with pytest.raises(ExpertValidationError, match="duplicate"):
        parse_yaml("experts:\n" + one % "safety" + one % "bias")
    with pytest.raises(ExpertValidationError, match="'experts' list"):
        parse_yaml("- a\n")
    with pytest.raises(ExpertValidationError, match="YAML"):
        parse_yaml("experts: [\n")


def test_yaml_refuses_plaintext_password() -> None:
    text = (
        "experts:\n  - {id: a, name: A, sip_uri: 'sip:a@x', org: o, specializations: [safety],\n"
        "     digest: {username: a, realm: r, password: hunter2}}\n"
    )
    with pytest.raises(ExpertValidationError, match="plaintext"):
        parse_yaml(text)


def test_missing_file_is_a_registry_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read"):
        load_yaml(tmp_path / "nope.yaml")


def test_merge_upserts_and_keeps_runtime_suspension(registry: SqliteRegistry) -> None:
    first = registry.merge(load_yaml(SAMPLE))
    assert first.added == ("alice", "bob", "carol")
    registry.add(make("zed"))
    registry.suspend("bob")
    changed = [replace(e, clearance=9) if e.id == "carol" else e for e in load_yaml(SAMPLE)]
    second = registry.merge(changed)
    assert second.updated == ("carol",)
    assert second.unchanged == ("alice", "bob")
    assert registry.get("carol").clearance == 9
    assert registry.get("bob").suspended  # the file says active; the operator's suspension wins
    assert registry.get("zed") == make("zed")  # not in the file: kept


# --- CLI functions -----------------------------------------------------------------------------


def _cli(argv: list[str], stdin: str = "") -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    add_experts_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    out = io.StringIO()
    code = args.func(args, out=out, **({"stdin": io.StringIO(stdin)} if stdin else {}))
    return code, out.getvalue()


def test_cli_add_list_suspend(tmp_path: Path) -> None:
    db = ["experts", "--db", str(tmp_path / "r.db")]
    code, out = _cli(
        [*db, "add", "dora", "--sip-uri", "sip:dora@example.org", "--org", "lab",
         "--specialization", "privacy", "--clearance", "2", "--network", "192.0.2.0/24",
         "--availability", "daily 00:00-24:00 UTC", "--digest-user", "dora",
         "--password-stdin"],
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert (code, out) == (0, "added dora\n")
    assert _cli([*db, "add", "--from-yaml", str(SAMPLE)]) == (
        0,
        "added 3, updated 0, unchanged 0\n",
    )
    code, listing = _cli([*db, "list"])
    assert code == 0 and [line.split("\t")[0] for line in listing.splitlines()] == [
        "alice", "bob", "carol", "dora",
    ]  # fmt: skip
    assert _cli([*db, "suspend", "dora"]) == (0, "suspended dora\n")
    _, as_json = _cli([*db, "list", "--json"])
    assert '"suspended": true' in as_json.splitlines()[3]
    assert "ha1" not in as_json
    with SqliteRegistry(tmp_path / "r.db") as reg:
        dora = reg.get("dora")
    assert dora.digest is not None
    assert dora.digest.ha1_sha256 == ha1("dora", "ifescalate", PASSWORD, "SHA-256")
    assert PASSWORD.encode() not in (tmp_path / "r.db").read_bytes()


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["experts", "--db", str(tmp_path / "r.db")]
    assert _cli([*db, "suspend", "nobody"])[0] == 1
    code, _ = _cli(
        [*db, "add", "x", "--sip-uri", "sip:x@y", "--org", "o", "--specialization", "weather"]
    )
    assert code == 2
    code, _ = _cli([*db, "add", "x", "--sip-uri", "sip:x@y", "--org", "o", "--digest-user", "x"])
    assert code == 2
    assert "go together" in capsys.readouterr().err
    args = ["add", "x", "--sip-uri", "sip:x@y", "--org", "o", "--specialization", "bias"]
    assert _cli([*db, *args])[0] == 0
    assert _cli([*db, *args])[0] == 1  # exists
    assert _cli([*db, *args, "--clearance", "4", "--replace"])[0] == 0


def test_run_experts_dispatch(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_experts_parser(parser.add_subparsers(dest="command"))
    assert run_experts(parser.parse_args(["experts", "--data-dir", str(tmp_path), "list"])) == 0
    assert (tmp_path / "ifescalate.db").exists()
    assert run_experts(argparse.Namespace()) == 2
