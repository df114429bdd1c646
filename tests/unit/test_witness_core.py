"""IF.witness core: byte-exact event encoding, the chain, and tamper detection (pure, no IO)."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ifescalate.witness.core import (
    GENESIS_HASH,
    ChainHead,
    Ed25519Signer,
    Event,
    EventError,
    EventType,
    format_time,
    seal,
    verify,
)
from ifescalate.witness.jcs import CanonicalizationError

# RFC 8032 §7.1 TEST 1 secret key: a fixed key makes every byte below reproducible.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def signer(secret: bytes = RFC8032_SECRET) -> Ed25519Signer:
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(secret))


def make_chain(n: int, key: Ed25519Signer | None = None) -> list[Event]:
    key = key or signer()
    head, events = ChainHead(), []
    for i in range(n):
        event = seal(
            head,
            key,
            list(EventType)[i % len(EventType)],
            trace_id=f"trace-{i}",
            escalation_id="esc-1",
            actor="escalation",
            details={"i": i, "note": "é€", "nested": {"b": [1, 2], "a": None}},
            now=T0 + i * 0.25,
        )
        events.append(event)
        head = ChainHead(event.seq, event.hash)
    return events


def test_first_event_is_byte_exact() -> None:
    event = seal(
        ChainHead(),
        signer(),
        EventType.ESCALATION_REQUESTED,
        trace_id="t-1",
        escalation_id=None,
        actor="agent:alpha",
        details={"hazard": "H2S", "urgency": 3},
        now=T0 + 0.000001,
    )
    # The canonical body, written out by hand: a verifier in any language hashes these bytes.
    body = (
        '{"actor":"agent:alpha","details":{"hazard":"H2S","urgency":3},"escalation_id":null,'
        f'"prev_hash":"{GENESIS_HASH}","seq":1,"time":"2023-11-14T22:13:20.000001Z",'
        '"trace_id":"t-1","type":"ESCALATION_REQUESTED"}'
    )
    assert event.hash == hashlib.sha256(body.encode()).hexdigest()
    signer().public_key().verify(bytes.fromhex(event.signature), bytes.fromhex(event.hash))
    line = json.loads(event.to_json())
    assert list(line) == sorted(line)  # canonical: members sorted
    assert line["hash"] == event.hash and line["signature"] == event.signature
    # Ed25519 is deterministic (RFC 8032 §5.1.6): same key, same hash, same signature.
    assert event == seal(
        ChainHead(),
        signer(),
        EventType.ESCALATION_REQUESTED,
        trace_id="t-1",
        escalation_id=None,
        actor="agent:alpha",
        details={"urgency": 3, "hazard": "H2S"},
        now=T0 + 0.000001,
    )


def test_public_key_of_the_rfc8032_vector() -> None:
    from ifescalate.witness.keys import public_key_hex

    assert public_key_hex(signer().public_key()) == RFC8032_PUBLIC


@pytest.mark.parametrize(
    ("now", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000000Z"),
        (T0 + 0.5, "2023-11-14T22:13:20.500000Z"),
        (951782400.123456, "2000-02-29T00:00:00.123456Z"),
    ],
)
def test_time_is_rfc3339_utc_with_microseconds(now: float, text: str) -> None:
    assert format_time(now) == text


def test_chain_links_and_verifies() -> None:
    events = make_chain(20)
    assert [e.seq for e in events] == list(range(1, 21))
    assert events[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    result = verify(events, signer().public_key())
    assert result.ok and result.count == 20 and result.first_bad_seq is None
    assert result.head == ChainHead(20, events[-1].hash)
    assert result.message() == "OK: 20 events, chain and signatures valid"


def test_export_lines_round_trip() -> None:
    events = make_chain(5)
    again = [Event.from_json(e.to_json()) for e in events]
    assert again == events
    assert verify(again, bytes.fromhex(RFC8032_PUBLIC)).ok


def _bad(events: list[Event], **kw: object) -> tuple[int | None, str]:
    result = verify(events, signer().public_key(), **kw)  # type: ignore[arg-type]
    assert not result.ok
    return result.first_bad_seq, result.reason


def test_edited_details_named() -> None:
    events = make_chain(10)
    events[4] = dataclasses.replace(events[4], details={"i": 999})
    assert _bad(events) == (5, "hash does not match the event content (edited)")


def test_edited_and_rehashed_event_fails_on_its_signature() -> None:
    events = make_chain(10)
    forged = dataclasses.replace(events[4], actor="mallory")
    forged = dataclasses.replace(forged, hash=hashlib.sha256(_canon(forged)).hexdigest())
    events[4] = forged
    seq, reason = _bad(events)
    assert seq == 5 and "signature invalid" in reason


def test_edited_event_fully_resealed_breaks_the_next_link() -> None:
    # Even with the real key, rewriting event 5 changes its hash, which event 6 committed to.
    events = make_chain(10)
    events[4] = seal(
        ChainHead(4, events[3].hash),
        signer(),
        events[4].type,
        trace_id=events[4].trace_id,
        escalation_id=events[4].escalation_id,
        actor="mallory",
        details={},
        now=T0,
    )
    seq, reason = _bad(events)
    assert seq == 6 and "prev_hash" in reason


def _canon(event: Event) -> bytes:
    from ifescalate.witness.jcs import canonicalize

    return canonicalize(event.body())


def test_reordered_events_named() -> None:
    events = make_chain(10)
    events[3], events[4] = events[4], events[3]
    assert _bad(events) == (4, "expected sequence 4, found 5 (missing or reordered event)")


def test_deleted_middle_event_named() -> None:
    events = make_chain(10)
    del events[6]
    assert _bad(events) == (7, "expected sequence 7, found 8 (missing or reordered event)")


def test_renumbered_after_deletion_fails_on_the_link() -> None:
    events = make_chain(10)
    del events[6]
    events[6:] = [dataclasses.replace(e, seq=e.seq - 1) for e in events[6:]]
    seq, reason = _bad(events)
    assert seq == 7 and "prev_hash" in reason


def test_truncated_tail_named_against_the_expected_head() -> None:
    events = make_chain(10)
    head = ChainHead(10, events[-1].hash)
    seq, reason = _bad(events[:7], expected_head=head)
    assert seq == 8 and "truncated" in reason
    # Without an anchor a cut tail is indistinguishable from a shorter log.
    assert verify(events[:7], signer().public_key()).ok


def test_replaced_signature_named() -> None:
    events = make_chain(10)
    events[2] = dataclasses.replace(events[2], signature=events[3].signature)
    seq, reason = _bad(events)
    assert seq == 3 and "signature invalid" in reason


def test_wrong_key_fails_at_the_first_event() -> None:
    result = verify(make_chain(5), signer(bytes(32)).public_key())
    assert (result.ok, result.first_bad_seq, result.count) == (False, 1, 0)
    assert result.message() == (
        "BROKEN at sequence 1: signature invalid (forged, replaced, or another key)"
    )


def test_chain_must_start_at_one_unless_a_start_is_given() -> None:
    events = make_chain(6)
    assert _bad(events[3:])[0] == 1
    result = verify(events[3:], signer().public_key(), start=ChainHead(3, events[2].hash))
    assert result.ok and result.count == 3


def test_last_signature_mode_checks_every_hash_but_one_signature() -> None:
    events = make_chain(10)
    key = signer().public_key()
    replaced = list(events)
    replaced[2] = dataclasses.replace(events[2], signature=events[3].signature)
    # Content is intact, so the fast mode accepts a swapped middle signature (documented) ...
    assert verify(replaced, key, signatures="last").ok
    # ... but not an edit, and not a bad final signature.
    edited = list(events)
    edited[2] = dataclasses.replace(events[2], details={})
    assert verify(edited, key, signatures="last").first_bad_seq == 3
    tail = list(events)
    tail[9] = dataclasses.replace(events[9], signature=events[8].signature)
    assert verify(tail, key, signatures="last").first_bad_seq == 10


def test_seal_rejects_unencodable_details_without_advancing() -> None:
    with pytest.raises(CanonicalizationError, match=r"\$\.details\.x: inf is not a JSON number"):
        seal(
            ChainHead(),
            signer(),
            EventType.VERDICT,
            trace_id=None,
            escalation_id=None,
            actor="a",
            details={"x": float("inf")},
            now=T0,
        )


def test_seal_requires_an_event_type() -> None:
    with pytest.raises(EventError, match="EventType"):
        seal(
            ChainHead(),
            signer(),
            "VERDICT",  # type: ignore[arg-type]
            trace_id=None,
            escalation_id=None,
            actor="a",
            details={},
            now=T0,
        )


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"seq": 0}, "seq must be a positive integer"),
        ({"seq": True}, "seq must be a positive integer"),
        ({"time": "2023-11-14T22:13:20Z"}, "time must be RFC 3339"),
        ({"actor": ""}, "actor must be a non-empty string"),
        ({"trace_id": 5}, "trace_id must be a string or None"),
        ({"details": [1]}, "details must be a JSON object"),
        ({"hash": "AB" * 32}, "hash must be lowercase hex"),
        ({"prev_hash": "00"}, "prev_hash must be lowercase hex"),
        ({"signature": "0" * 127}, "signature must be lowercase hex"),
    ],
)
def test_event_constructor_validates(change: dict[str, object], match: str) -> None:
    with pytest.raises(EventError, match=match):
        dataclasses.replace(make_chain(1)[0], **change)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (b"[1]", "must be a JSON object"),
        (b"{", "not JSON"),
        (b'{"seq":1,"seq":2}', "duplicate member names"),
        (b'{"x":NaN}', "NaN is not a JSON number"),
    ],
)
def test_from_json_rejects(line: bytes, match: str) -> None:
    with pytest.raises(EventError, match=match):
        Event.from_json(line)


def test_from_json_rejects_unknown_type_and_fields() -> None:
    data = json.loads(make_chain(1)[0].to_json())
    with pytest.raises(EventError, match="unknown event type 'HACKED'"):
        Event.from_dict({**data, "type": "HACKED"})
    with pytest.raises(EventError, match=r"unexpected \['extra'\]"):
        Event.from_dict({**data, "extra": 1})


def test_event_types_cover_the_escalation_steps() -> None:
    names = {t.value for t in EventType}
    issue = {
        "ESCALATION_REQUESTED", "GUARD_DECISION", "REJECTED", "INVITE", "RINGING", "NO_ANSWER",
        "BUSY", "DECLINED", "CONNECTED", "BRIDGE_ESTABLISHED", "SECURITY_REJECTED", "VERDICT",
        "TERMINATED",
    }  # fmt: skip
    room = {
        "PARTICIPANT_JOINED", "PARTICIPANT_LEFT", "SPEAKING_STARTED", "SPEAKING_STOPPED",
        "RIGHTS_CHANGED", "ANNOUNCEMENT_PLAYED", "RECORDING_STOPPED",
    }  # fmt: skip
    assert issue | room | {"CANCELLED", "FAILED", "EVIDENCE_ACCESSED"} == names


def test_core_is_sans_io() -> None:
    # ARCHITECTURE.md convention 1, applied to the witness encoding core.
    from tests.unit.test_import_rules import violations

    for name in ("core.py", "jcs.py"):
        path = Path(__file__).resolve().parents[2] / "src/ifescalate/witness" / name
        assert violations(path.read_text(), name) == []
