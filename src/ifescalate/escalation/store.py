"""Persistence of escalations: their current view, idempotency keys, and recovery after a crash.

The witness log is the proof of what happened; this table is the service's working memory so that
``GET /v1/escalations/{id}`` survives a restart and an escalation that was in flight when the process
died is marked failed on the next start (it cannot be resumed: its SIP dialogs died with the process).
SQLite in the data directory (WAL) is the embedded default.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .model import (
    EscalationState,
    EscalationView,
    LadderStep,
    Outcome,
    Urgency,
    Verdict,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS escalations (
    id TEXT PRIMARY KEY,
    trace_id TEXT NOT NULL,
    requester TEXT NOT NULL,
    idempotency_key TEXT,
    state TEXT NOT NULL,
    view TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS escalations_idem
    ON escalations(requester, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS escalations_created ON escalations(created_at);
"""


def view_from_dict(d: dict[str, Any]) -> EscalationView:
    """The inverse of ``EscalationView.to_dict``."""
    return EscalationView(
        id=d["id"],
        trace_id=d["trace_id"],
        state=EscalationState(d["state"]),
        outcome=Outcome(d["outcome"]) if d.get("outcome") else None,
        hazard=d["hazard"],
        question=d["question"],
        requester=d["requester"],
        urgency=Urgency(d["urgency"]),
        created_at=d["created_at"],
        updated_at=d["updated_at"],
        ladder=tuple(
            LadderStep(s["expert_id"], s["sip_uri"], s["rank"], s.get("result"))
            for s in d.get("ladder", [])
        ),
        connected_expert=d.get("connected_expert"),
        verdict=Verdict(d["verdict"]) if d.get("verdict") else None,
        guard_policy_ids=tuple(d.get("guard_policy_ids", [])),
        end_reason=d.get("end_reason"),
    )


class EscalationStore:
    """SQLite table of escalation views. Small writes, one connection guarded by a lock."""

    FILENAME = "ifescalate.db"

    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    @classmethod
    def in_data_dir(cls, data_dir: Path | str) -> EscalationStore:
        return cls(Path(data_dir) / cls.FILENAME)

    def close(self) -> None:
        self._db.close()

    def insert(self, view: EscalationView, idempotency_key: str | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO escalations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    view.id,
                    view.trace_id,
                    view.requester,
                    idempotency_key,
                    view.state.value,
                    json.dumps(view.to_dict()),
                    view.created_at,
                    view.updated_at,
                ),
            )

    def update(self, view: EscalationView) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE escalations SET state = ?, view = ?, updated_at = ? WHERE id = ?",
                (view.state.value, json.dumps(view.to_dict()), view.updated_at, view.id),
            )

    def get(self, escalation_id: str) -> EscalationView | None:
        with self._lock:
            row = self._db.execute(
                "SELECT view FROM escalations WHERE id = ?", (escalation_id,)
            ).fetchone()
        return view_from_dict(json.loads(row[0])) if row else None

    def by_idempotency_key(self, requester: str, key: str) -> EscalationView | None:
        with self._lock:
            row = self._db.execute(
                "SELECT view FROM escalations WHERE requester = ? AND idempotency_key = ?",
                (requester, key),
            ).fetchone()
        return view_from_dict(json.loads(row[0])) if row else None

    def recent(self, limit: int) -> list[EscalationView]:
        with self._lock:
            rows = self._db.execute(
                "SELECT view FROM escalations ORDER BY created_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [view_from_dict(json.loads(r[0])) for r in rows]

    def unfinished(self) -> list[EscalationView]:
        """Escalations not ENDED: after a restart these died with the old process."""
        with self._lock:
            rows = self._db.execute(
                "SELECT view FROM escalations WHERE state != ?", (EscalationState.ENDED.value,)
            ).fetchall()
        return [view_from_dict(json.loads(r[0])) for r in rows]

    def save_all(self, views: Iterable[EscalationView]) -> None:
        for view in views:
            self.update(view)
