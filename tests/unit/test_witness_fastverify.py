"""The fast verify paths give exactly the reference answers: the C-encoder body against RFC 8785,
the line/row fast parsers against Event.from_json/row_to_event, and the chunked (multi-process)
verifier against the sequential one, for failures on either side of every chunk boundary."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import pytest
from tests.unit.test_witness_core import make_chain, signer

from ifescalate.witness.core import (
    Event,
    EventError,
    canonical_body,
    event_and_body_from_line,
    event_from_line,
    signature_checker,
    verify,
)
from ifescalate.witness.jcs import CanonicalizationError, canonicalize
from ifescalate.witness.parallel import ChunkedVerifier, row_event, verify_chunk
from ifescalate.witness.store import event_to_row, row_to_event

KEY = signer().public_key()
N = 40
CHAIN = make_chain(N)

ODD_DETAILS: list[object] = [
    {"f": 1.0, "g": 1e21, "h": 1e-7, "i": -0.0, "j": 0.1},  # floats ES prints differently
    {"\ue000": 1, "\U0001f600": 2},  # UTF-16 order differs from code point order
    {"big": 2**53},  # outside I-JSON: the reference raises
    {"s": "\ud800"},  # lone surrogate
    {"ctl": '\x00\x1f\x7f"\\\u2028é'},
    {"t": (1, [True, None, {"z": "a", "a": "z"}])},
    {"nan": float("nan")},
    {1: "non-string key"},
]


@pytest.mark.parametrize("details", ODD_DETAILS)
def test_body_encoder_matches_rfc8785_or_raises_the_same(details: object) -> None:
    event = dataclasses.replace(CHAIN[0], details=details)  # type: ignore[arg-type]
    try:
        expected: bytes | str = canonicalize(event.body())
    except CanonicalizationError as exc:
        expected = str(exc)
    try:
        got: bytes | str = canonical_body(event)
    except CanonicalizationError as exc:
        got = str(exc)
    assert got == expected


def test_line_parser_takes_canonical_lines_and_refers_the_rest() -> None:
    line = CHAIN[3].to_json()
    assert event_from_line(line) == Event.from_json(line)
    for event in CHAIN:
        parsed, body = event_and_body_from_line(event.to_json())
        assert parsed == event and body == canonicalize(event.body())
    # Non-canonical but valid (whitespace, key order): same event via the reference path.
    loose = json.dumps(json.loads(line), indent=1).encode()
    assert event_from_line(loose) == Event.from_json(loose)
    for bad in (
        line.replace(b'{"actor"', b'{"seq":1,"actor"', 1),  # duplicate name
        line.replace(b'"type":"', b'"type":"NOPE', 1),
        b"[1]",
        line[:-5],
    ):
        with pytest.raises(EventError) as fast:
            event_from_line(bad)
        with pytest.raises(EventError) as reference:
            Event.from_json(bad)
        assert str(fast.value) == str(reference.value)


def test_row_parser_matches_row_to_event() -> None:
    row = event_to_row(CHAIN[5])
    assert row_event(row) == row_to_event(row) == CHAIN[5]
    for bad in ((*row[:6], "{not json", *row[7:]), (*row[:4], "NOPE", *row[5:])):
        with pytest.raises(EventError) as fast:
            row_event(bad)
        with pytest.raises(EventError) as reference:
            row_to_event(bad)
        assert str(fast.value) == str(reference.value)


def test_signature_checker() -> None:
    check = signature_checker(KEY)
    assert check(CHAIN[0].signature, CHAIN[0].hash)
    assert not check(CHAIN[1].signature, CHAIN[0].hash)


def _sig(events: list[Event], i: int) -> None:
    events[i] = dataclasses.replace(events[i], signature=events[i + 1].signature)


def _edit(events: list[Event], i: int) -> None:
    events[i] = dataclasses.replace(events[i], details={"edited": True})


def _swap(events: list[Event], i: int) -> None:
    events[i], events[i + 1] = events[i + 1], events[i]


TAMPERS: list[Callable[[list[Event], int], None]] = [_sig, _edit, _swap]


@pytest.mark.parametrize("index", [0, 9, 10, 11, 19, 20, 38])
@pytest.mark.parametrize("tamper", TAMPERS)
@pytest.mark.parametrize("mode", ["all", "last"])
@pytest.mark.parametrize("kind", ["line", "row"])
def test_chunked_equals_sequential(
    index: int, tamper: Callable[[list[Event], int], None], mode: str, kind: str
) -> None:
    events = list(CHAIN)
    tamper(events, index)
    expected = verify(events, KEY, signatures=mode)  # type: ignore[arg-type]
    verifier = ChunkedVerifier(KEY, kind, jobs=1, signatures=mode, chunk=10)  # type: ignore[arg-type]
    for number, event in enumerate(events, start=1):
        verifier.add((number, event.to_json()) if kind == "line" else event_to_row(event))
    assert verifier.result() == expected


@pytest.mark.parametrize("bad_line", [1, 10, 11, 25, 40])
def test_chunked_malformed_line_named_like_sequential(bad_line: int) -> None:
    items = [(n, e.to_json()) for n, e in enumerate(CHAIN, start=1)]
    items[bad_line - 1] = (bad_line, b"{torn")
    verifier = ChunkedVerifier(KEY, "line", jobs=1, chunk=10)
    for item in items:
        verifier.add(item)
    result = verifier.result()
    assert (result.first_bad_seq, result.count) == (bad_line, bad_line - 1)
    assert result.reason.startswith(f"line {bad_line}: malformed event: not JSON")
    # A chunk whose predecessor item is unreadable defers to the chunk that holds it.
    if bad_line > 1:
        assert verify_chunk(b"\0" * 32, "line", items[bad_line - 1], [], None, "all") is None


def test_chunked_in_worker_processes_equals_sequential() -> None:
    events = make_chain(3000)
    _sig(events, 2500)
    expected = verify(events, KEY)
    verifier = ChunkedVerifier(KEY, "row", jobs=2, chunk=500)
    for event in events:
        verifier.add(event_to_row(event))
    assert verifier.result() == expected
    assert expected.first_bad_seq == 2501
