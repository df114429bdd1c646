"""Evidence items attached to escalations: bytes content-addressed by SHA-256 in the data dir.

Blobs live at ``DATA_DIR/evidence/blobs/<first two hex>/<sha256>`` (mode 0600, written to a
temporary name and renamed, so a reader never sees half a file); the same bytes attached to two
escalations are stored once. The table ``evidence_items`` (in the service's SQLite file) says which
escalation holds which blob, under what name and media type. An item's id is its SHA-256: adding
the same bytes to the same escalation again returns the existing item.

Reads re-hash the blob, so a file changed on disk is refused (:class:`EvidenceCorrupt`) rather than
served as evidence. The file system work is synchronous; the API runs it in a worker thread.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_MAX_BYTES",
    "EvidenceCorrupt",
    "EvidenceError",
    "EvidenceRecord",
    "EvidenceStore",
    "EvidenceTooLarge",
    "normalize_media_type",
]

DEFAULT_MAX_BYTES = 10 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evidence_items (
    escalation_id TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    name          TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    size          INTEGER NOT NULL,
    added_by      TEXT NOT NULL,
    created_at    REAL NOT NULL,
    PRIMARY KEY (escalation_id, sha256)
);
"""

# RFC 6838 §4.2 restricted-name for type and subtype; parameters as RFC 9110 §5.6.6 (token = token
# or quoted-string without escapes or controls), so the value is safe to send back as Content-Type.
_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_PARAM = rf"\s*;\s*{_TOKEN}=(?:{_TOKEN}|\"[^\"\\\x00-\x1f\x7f]*\")"
_MEDIA_TYPE = re.compile(rf"({_NAME})/({_NAME})((?:{_PARAM})*)\s*\Z")


class EvidenceError(ValueError):
    """Evidence that cannot be stored; ``field`` names what is wrong (API 422)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class EvidenceTooLarge(EvidenceError):
    """Over the configured size limit (API 413)."""


class EvidenceCorrupt(RuntimeError):
    """A stored blob no longer hashes to its name (changed or truncated on disk)."""


def normalize_media_type(text: str) -> str:
    """``type/subtype`` lower-cased with its parameters kept; EvidenceError if it is not one."""
    m = _MEDIA_TYPE.match(text.strip())
    if m is None:
        raise EvidenceError("media_type", "must be a media type like text/plain (RFC 6838)")
    params = re.sub(r"\s*;\s*", "; ", m.group(3)).rstrip()
    return f"{m.group(1).lower()}/{m.group(2).lower()}{params}"


@dataclass(frozen=True, slots=True)
class EvidenceRecord:
    """One evidence item of one escalation."""

    escalation_id: str
    sha256: str
    name: str
    media_type: str
    size: int
    added_by: str
    created_at: float

    @property
    def id(self) -> str:
        return self.sha256

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.sha256,
            "escalation_id": self.escalation_id,
            "sha256": self.sha256,
            "name": self.name,
            "media_type": self.media_type,
            "size": self.size,
            "added_by": self.added_by,
            "created_at": self.created_at,
        }


class EvidenceStore:
    """Blobs under ``root`` and their index in the SQLite file ``db_path``."""

    FILENAME = "ifescalate.db"

    def __init__(
        self, root: Path | str, db_path: Path | str, *, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._blobs = self.root / "blobs"
        self._blobs.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    @classmethod
    def in_data_dir(
        cls, data_dir: Path | str, *, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> EvidenceStore:
        data = Path(data_dir)
        return cls(data / "evidence", data / cls.FILENAME, max_bytes=max_bytes)

    def close(self) -> None:
        self._db.close()

    def _path(self, sha256: str) -> Path:
        return self._blobs / sha256[:2] / sha256

    def check(self, data: bytes, media_type: str, name: str) -> tuple[str, str]:
        """Validates an item before it is stored; returns (normalized media type, name)."""
        if len(data) > self.max_bytes:
            raise EvidenceTooLarge("content", f"{len(data)} bytes; the limit is {self.max_bytes}")
        if not name or len(name) > 200 or not name.isprintable():
            raise EvidenceError("name", "must be 1-200 printable characters")
        return normalize_media_type(media_type), name

    def write_blob(self, data: bytes) -> str:
        """Stores the bytes (once) and returns their SHA-256 (blocking: call in a thread)."""
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if path.exists():
            return digest
        path.parent.mkdir(exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # atomic: readers see the old name absent or the whole file
        return digest

    def attach(
        self,
        escalation_id: str,
        sha256: str,
        *,
        name: str,
        media_type: str,
        size: int,
        added_by: str,
        now: float,
    ) -> tuple[EvidenceRecord, bool]:
        """Records the blob as evidence of the escalation; (record, True) if new, the existing
        record and False when these bytes were attached before."""
        record = EvidenceRecord(escalation_id, sha256, name, media_type, size, added_by, now)
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO evidence_items VALUES (?, ?, ?, ?, ?, ?, ?)",
                (escalation_id, sha256, name, media_type, size, added_by, now),
            )
        if cur.rowcount == 1:
            return record, True
        existing = self.get(escalation_id, sha256)
        assert existing is not None
        return existing, False

    def add(
        self,
        escalation_id: str,
        data: bytes,
        *,
        name: str,
        media_type: str,
        added_by: str,
        now: float,
    ) -> tuple[EvidenceRecord, bool]:
        """check + write_blob + attach in one (blocking) call."""
        media_type, name = self.check(data, media_type, name)
        digest = self.write_blob(data)
        return self.attach(
            escalation_id,
            digest,
            name=name,
            media_type=media_type,
            size=len(data),
            added_by=added_by,
            now=now,
        )

    def get(self, escalation_id: str, sha256: str) -> EvidenceRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM evidence_items WHERE escalation_id = ? AND sha256 = ?",
                (escalation_id, sha256),
            ).fetchone()
        return EvidenceRecord(*row) if row else None

    def list(self, escalation_id: str) -> list[EvidenceRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM evidence_items WHERE escalation_id = ? ORDER BY rowid",
                (escalation_id,),
            ).fetchall()
        return [EvidenceRecord(*row) for row in rows]

    def read(self, record: EvidenceRecord) -> bytes:
        """The item's bytes, checked against its SHA-256 (blocking: call in a thread)."""
        try:
            data = self._path(record.sha256).read_bytes()
        except FileNotFoundError:
            raise EvidenceCorrupt(f"evidence blob {record.sha256} is missing") from None
        if hashlib.sha256(data).hexdigest() != record.sha256:
            raise EvidenceCorrupt(f"evidence blob {record.sha256} does not match its hash")
        return data
