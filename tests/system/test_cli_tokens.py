"""`ifescalate tokens`: a created token is printed once, stored hashed, listed and revocable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ifescalate.api import TokenStore

CLI = [sys.executable, "-m", "ifescalate.cli"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30)


def test_tokens_create_list_revoke(tmp_path: Path) -> None:
    data = str(tmp_path)
    created = _run("tokens", "--data-dir", data, "create", "agent-7", "--scope", "council")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("ife_")
    db = (tmp_path / "ifescalate.db").read_bytes()
    assert token.encode() not in db and token.split("_")[-1].encode() not in db
    store = TokenStore(tmp_path / "ifescalate.db")
    principal = store.verify(token)
    assert principal is not None and principal.name == "agent-7"
    store.close()
    listed = _run("tokens", "--data-dir", data, "list")
    token_id = token.split("_")[1]
    assert f"{token_id}\tagent-7\tcouncil\tactive" in listed.stdout
    assert _run("tokens", "--data-dir", data, "revoke", token_id).returncode == 0
    store = TokenStore(tmp_path / "ifescalate.db")
    assert store.verify(token) is None
    store.close()
    assert _run("tokens", "--data-dir", data, "revoke", "nope").returncode == 1
    bad = _run("tokens", "--data-dir", data, "create", "x", "--scope", "root")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
