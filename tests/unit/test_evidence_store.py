"""The evidence store (evidence/store.py): content addressing, limits, media types, integrity."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from ifescalate.evidence.store import (
    EvidenceCorrupt,
    EvidenceError,
    EvidenceStore,
    EvidenceTooLarge,
    normalize_media_type,
)


def store(tmp_path: Path, max_bytes: int = 100) -> EvidenceStore:
    return EvidenceStore.in_data_dir(tmp_path, max_bytes=max_bytes)


def test_same_bytes_stored_once_and_attached_per_escalation(tmp_path: Path) -> None:
    s = store(tmp_path)
    data = b"the plan"
    digest = hashlib.sha256(data).hexdigest()
    a, new_a = s.add("esc-a", data, name="plan", media_type="text/plain", added_by="x", now=1.0)
    again, new_again = s.add(
        "esc-a", data, name="other", media_type="text/plain", added_by="y", now=2.0
    )
    b, new_b = s.add("esc-b", data, name="plan-b", media_type="text/plain", added_by="z", now=3.0)
    assert (new_a, new_again, new_b) == (True, False, True)
    assert a.id == again.id == b.id == digest
    assert again.name == "plan" and again.created_at == 1.0  # the first record stands
    blobs = [p for p in (tmp_path / "evidence" / "blobs").rglob("*") if p.is_file()]
    assert blobs == [tmp_path / "evidence" / "blobs" / digest[:2] / digest]
    assert stat.S_IMODE(blobs[0].stat().st_mode) == 0o600
    assert s.read(a) == data
    assert [r.escalation_id for r in (s.list("esc-a") + s.list("esc-b"))] == ["esc-a", "esc-b"]
    assert s.get("esc-c", digest) is None
    s.close()
    reopened = store(tmp_path)
    assert reopened.get("esc-b", digest) == b


def test_limit_name_and_media_type(tmp_path: Path) -> None:
    s = store(tmp_path, max_bytes=10)
    s.add("e", b"x" * 10, name="ok", media_type="text/plain", added_by="a", now=0)
    with pytest.raises(EvidenceTooLarge, match="11 bytes; the limit is 10"):
        s.add("e", b"x" * 11, name="big", media_type="text/plain", added_by="a", now=0)
    with pytest.raises(EvidenceError) as exc:
        s.add("e", b"x", name="a\nb", media_type="text/plain", added_by="a", now=0)
    assert exc.value.field == "name"


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("Text/Plain", "text/plain"),
        ("text/plain;charset=UTF-8", "text/plain; charset=UTF-8"),
        ('application/vnd.a+json ; q="x y"', 'application/vnd.a+json; q="x y"'),
        ("image/svg+xml", "image/svg+xml"),
    ],
)
def test_media_types_normalized(given: str, normal: str) -> None:
    assert normalize_media_type(given) == normal


@pytest.mark.parametrize(
    "bad", ["text", "text/", "/plain", "text/plain\r\nX-Evil: 1", "text/plain; a", "a b/c", ""]
)
def test_media_types_refused(bad: str) -> None:
    with pytest.raises(EvidenceError, match="media type"):
        normalize_media_type(bad)


def test_a_changed_or_missing_blob_is_refused_not_served(tmp_path: Path) -> None:
    s = store(tmp_path)
    record, _ = s.add("e", b"original", name="n", media_type="text/plain", added_by="a", now=0)
    path = tmp_path / "evidence" / "blobs" / record.id[:2] / record.id
    path.write_bytes(b"altered!")
    with pytest.raises(EvidenceCorrupt, match="does not match"):
        s.read(record)
    path.unlink()
    with pytest.raises(EvidenceCorrupt, match="missing"):
        s.read(record)
