"""The evidence-link HMAC key on disk: 32 random bytes made on first start, mode 0600.

Like the witness key (witness/keys.py) the data dir is the trust boundary. Deleting the file and
restarting revokes every outstanding link. Instances that serve the same evidence behind a load
balancer must share the file (they already share the data dir's evidence blobs).
"""

from __future__ import annotations

import contextlib
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
    if path.exists():
        return _read(path)
    # The key is written whole under a private name (O_EXCL + mode at creation: never readable by
    # others, not even briefly), then linked to its real name, which fails if another process got
    # there first: the name only ever holds a complete key, so instances starting at once on one
    # data dir all read the same one (creating the name and then writing it let a racing reader
    # find it empty).
    tmp = directory / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(_KEY_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink()
    return _read(path)


def _read(path: Path) -> bytes:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(f"{path}: mode {mode:o} lets others read the link key; chmod 600 it")
    key = path.read_bytes()
    if len(key) != _KEY_BYTES:
        raise KeyFileError(f"{path}: expected {_KEY_BYTES} bytes, found {len(key)}")
    return key
