"""The expert registry: a small store interface, its SQLite implementation and the YAML loader.

The SQLite file is the service's shared embedded store (ARCHITECTURE.md "Stores"), so every table
here is prefixed ``guard_`` and the file is opened in WAL mode. Each expert is one JSON document
(:meth:`Expert.to_dict`) plus an indexed ``suspended`` column; a ``revision`` counter bumps on
every write so a long-running guard can cheaply notice edits made by ``ifescalate experts ...``
from another process.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from .errors import ExpertNotFound, ExpertValidationError, RegistryError
from .model import DEFAULT_HAZARDS, WILDCARD, Expert

__all__ = [
    "MergeResult",
    "Registry",
    "SqliteRegistry",
    "load_yaml",
    "parse_yaml",
]


class Registry(Protocol):
    """What the guard and the CLI need from an expert store."""

    def list(self, *, include_suspended: bool = True) -> builtins.list[Expert]: ...
    def get(self, expert_id: str) -> Expert: ...
    def add(self, expert: Expert) -> None: ...
    def update(self, expert: Expert) -> None: ...
    def suspend(self, expert_id: str, suspended: bool = True) -> Expert: ...
    def remove(self, expert_id: str) -> None: ...
    def merge(self, experts: Iterable[Expert]) -> MergeResult: ...
    def revision(self) -> int: ...


@dataclass(frozen=True, slots=True)
class MergeResult:
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS guard_experts (
    id        TEXT PRIMARY KEY,
    doc       TEXT NOT NULL,
    suspended INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS guard_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO guard_meta(key, value) VALUES ('revision', 0);
"""


def _encode(expert: Expert) -> str:
    return json.dumps(expert.to_dict(), sort_keys=True, separators=(",", ":"))


def _decode(doc: str, suspended: int) -> Expert:
    data: dict[str, Any] = json.loads(doc)
    data["suspended"] = bool(suspended)
    return Expert.from_dict(data)


class SqliteRegistry:
    """Registry in an SQLite file (or ``":memory:"``). One connection; not shared across threads."""

    def __init__(self, path: str | Path) -> None:
        target = str(path)
        if target != ":memory:":
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(target, isolation_level=None)
            if target != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot open registry {target}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, params: Sequence[object]) -> int:
        """Runs one write and bumps the revision in the same transaction."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            count = self._db.execute(sql, params).rowcount
            if count:
                self._db.execute("UPDATE guard_meta SET value = value + 1 WHERE key='revision'")
        return count

    def revision(self) -> int:
        row = self._db.execute("SELECT value FROM guard_meta WHERE key='revision'").fetchone()
        return int(row[0])

    def list(self, *, include_suspended: bool = True) -> builtins.list[Expert]:
        sql = "SELECT doc, suspended FROM guard_experts"
        if not include_suspended:
            sql += " WHERE suspended = 0"
        return [_decode(doc, s) for doc, s in self._db.execute(sql + " ORDER BY id")]

    def get(self, expert_id: str) -> Expert:
        row = self._db.execute(
            "SELECT doc, suspended FROM guard_experts WHERE id = ?", (expert_id,)
        ).fetchone()
        if row is None:
            raise ExpertNotFound(f"no expert {expert_id!r}")
        return _decode(row[0], row[1])

    def add(self, expert: Expert) -> None:
        try:
            self._write(
                "INSERT INTO guard_experts(id, doc, suspended) VALUES (?, ?, ?)",
                (expert.id, _encode(expert), int(expert.suspended)),
            )
        except sqlite3.IntegrityError:
            raise RegistryError(f"expert {expert.id!r} already exists") from None

    def update(self, expert: Expert) -> None:
        count = self._write(
            "UPDATE guard_experts SET doc = ?, suspended = ? WHERE id = ?",
            (_encode(expert), int(expert.suspended), expert.id),
        )
        if not count:
            raise ExpertNotFound(f"no expert {expert.id!r}")

    def suspend(self, expert_id: str, suspended: bool = True) -> Expert:
        """Sets the suspended flag (``suspended=False`` reinstates); returns the new record."""
        expert = self.get(expert_id).with_suspended(suspended)
        self.update(expert)
        return expert

    def remove(self, expert_id: str) -> None:
        if not self._write("DELETE FROM guard_experts WHERE id = ?", (expert_id,)):
            raise ExpertNotFound(f"no expert {expert_id!r}")

    def merge(self, experts: Iterable[Expert]) -> MergeResult:
        """Upserts *experts* by id; experts absent from the input are kept.

        A suspension already in the store survives a merge: re-reading the YAML file at start-up
        must not silently reinstate someone an operator suspended with the CLI.
        """
        added: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        for expert in experts:
            try:
                current = self.get(expert.id)
            except ExpertNotFound:
                self.add(expert)
                added.append(expert.id)
                continue
            merged = expert.with_suspended(expert.suspended or current.suspended)
            if merged == current:
                unchanged.append(expert.id)
            else:
                self.update(merged)
                updated.append(expert.id)
        return MergeResult(tuple(added), tuple(updated), tuple(unchanged))


def parse_yaml(text: str, *, hazards: Sequence[str] = DEFAULT_HAZARDS) -> list[Expert]:
    """Parses a registry document: ``experts: [ {id: ..., ...}, ... ]``.

    Specializations must come from *hazards* (or be ``*``); ids must be unique.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ExpertValidationError(f"registry YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("experts"), list):
        raise ExpertValidationError("registry YAML must be a mapping with an 'experts' list")
    experts: list[Expert] = []
    seen: set[str] = set()
    allowed = set(hazards) | {WILDCARD}
    for index, item in enumerate(data["experts"]):
        if not isinstance(item, dict):
            raise ExpertValidationError(f"experts[{index}] must be a mapping")
        expert = Expert.from_dict(item)
        unknown = sorted(expert.specializations - allowed)
        if unknown:
            raise ExpertValidationError(
                f"expert {expert.id}: unknown hazard(s) {', '.join(unknown)}; "
                f"known: {', '.join(hazards)}"
            )
        if expert.id in seen:
            raise ExpertValidationError(f"expert {expert.id}: duplicate id")
        seen.add(expert.id)
        experts.append(expert)
    return experts


def load_yaml(path: str | Path, *, hazards: Sequence[str] = DEFAULT_HAZARDS) -> list[Expert]:
    """Reads and validates a registry YAML file (see ``guard/sample/experts.yaml``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read registry file {path}: {exc}") from exc
    return parse_yaml(text, hazards=hazards)
