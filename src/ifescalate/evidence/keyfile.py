"""The evidence-link HMAC key on disk: 32 random bytes made on first start, mode 0600.

Like the witness key (witness/keys.py) the data dir is the trust boundary. Deleting the file and
restarting revokes every outstanding link. Instances that serve the same evidence behind a load
balancer must share the file (they already share the data dir's evidence blobs).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["KEY_FILE", "KeyFileError", "load_or_create_link_key"]

KEY_FILE = "evidence_link.key"
_KEY_BYTES = 32


class KeyFileError(RuntimeError):
    """The key file is too widely readable or has the wrong size."""


def load_or_create_link_key(data_dir: str | os.PathLike[str]) -> bytes:
    directory = Path(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / KEY_FILE
    try:
        # O_EXCL + mode at creation: never readable by others, not even briefly; a racing second
        # process falls through to reading the first one's key instead of overwriting it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(_KEY_BYTES))
        handle.flush()
        os.fsync(handle.fileno())
    return _read(path)


def _read(path: Path) -> bytes:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(f"{path}: mode {mode:o} lets others read the link key; chmod 600 it")
    key = path.read_bytes()
    if len(key) != _KEY_BYTES:
        raise KeyFileError(f"{path}: expected {_KEY_BYTES} bytes, found {len(key)}")
    return key
