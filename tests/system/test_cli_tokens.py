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


def test_tokens_import_makes_one_secret_valid_on_two_data_dirs(tmp_path: Path) -> None:
    # One token made once (as for a Kubernetes Secret), imported into two instances' data dirs.
    made = _run(
        "tokens", "--data-dir", str(tmp_path / "scratch"), "create", "x", "--scope", "auditor"
    )
    token = made.stdout.strip()
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    for name in ("a", "b"):
        data = str(tmp_path / name)
        args = ["tokens", "--data-dir", data, "import", "prometheus", "--scope", "auditor"]
        first = _run(*args, "--token-file", str(token_file))
        assert first.returncode == 0 and first.stdout.startswith("imported "), first.stdout
        again = _run(*args, "--token-file", str(token_file))
        assert again.returncode == 0 and again.stdout.startswith("already present"), again.stdout
        store = TokenStore(tmp_path / name / "ifescalate.db")
        principal = store.verify(token)
        store.close()
        assert principal is not None and principal.name == "prometheus"
        assert token.encode() not in (tmp_path / name / "ifescalate.db").read_bytes()
    # Same id with other scopes, a malformed token, a missing file: refused, naming why.
    data = str(tmp_path / "a")
    wider = _run("tokens", "--data-dir", data, "import", "prometheus", "--scope", "operator",
                 "--token-file", str(token_file))  # fmt: skip
    assert (
        wider.returncode == 2 and "exists with another secret, principal or scopes" in wider.stdout
    )
    (tmp_path / "short").write_text("ife_0123456789ab_short")
    short = _run("tokens", "--data-dir", data, "import", "p", "--scope", "auditor",
                 "--token-file", str(tmp_path / "short"))  # fmt: skip
    assert short.returncode == 2 and "not an ifescalate token" in short.stdout
    missing = _run("tokens", "--data-dir", data, "import", "p", "--scope", "auditor",
                   "--token-file", str(tmp_path / "nope"))  # fmt: skip
    assert missing.returncode == 2 and "cannot read token file" in missing.stdout
