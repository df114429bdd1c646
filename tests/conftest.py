"""Suite-wide pytest hooks and fixtures.

tests/__init__.py makes this `tests.conftest`, so pytest puts the repository root on sys.path and
`tests.peers` is importable from every test (and from bench/ when run from the root).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers.tls import dev_tls_cert

INTEROP_DIR = Path(__file__).parent / "interop"

# (binary, arguments printing its version, how to pick the version line out of the output)
_PEER_VERSIONS = (
    ("sipp", ["-v"], "SIPp"),
    ("kamailio", ["-v"], "version:"),
    ("baresip", ["-h"], "baresip v"),
    ("stunnel", ["-version"], "stunnel "),
    ("openssl", ["version"], "OpenSSL"),
)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Name the peers and versions the interop tests will run against, so a CI log says it."""
    parts = []
    for binary, args, marker in _PEER_VERSIONS:
        path = shutil.which(binary)
        if path is None:
            parts.append(f"{binary}=MISSING")
            continue
        try:
            done = subprocess.run(
                [path, *args], capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            parts.append(f"{binary}=?")
            continue
        lines = (done.stdout + done.stderr).splitlines()
        line = next((item.strip() for item in lines if marker in item), "?")
        parts.append(f"{binary}: {line}")
    return [f"python {sys.version.split()[0]}", "peers: " + "; ".join(parts)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/interop/ is `interop`, even a module that forgot its pytestmark."""
    marker = pytest.mark.interop
    for item in items:
        if INTEROP_DIR in Path(item.path).parents:
            item.add_marker(marker)


@pytest.fixture(scope="session")
def dev_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 and localhost, made once per run: (cert, key)."""
    return dev_tls_cert(tmp_path_factory.mktemp("dev-cert"))
