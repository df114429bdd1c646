"""The parallel verifier gives exactly the sequential verifier's answer, tampered or not."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from tests.unit.test_witness_core import make_chain, signer

from ifescalate.witness.cli import main
from ifescalate.witness.core import ChainHead, Event, verify
from ifescalate.witness.parallel import MIN_PARALLEL, verify_parallel

N = MIN_PARALLEL + 500


@pytest.fixture(scope="module")
def chain() -> list[Event]:
    return make_chain(N)


def _replace_sig(events: list[Event], index: int) -> None:
    events[index] = dataclasses.replace(events[index], signature=events[index + 1].signature)


def _edit(events: list[Event], index: int) -> None:
    events[index] = dataclasses.replace(events[index], details={"edited": True})


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        ([], None),
        ([(_replace_sig, 3000)], 3001),
        ([(_edit, 2000), (_replace_sig, 3000)], 2001),
        ([(_replace_sig, 1000), (_edit, 2000)], 1001),
        ([(_replace_sig, 0)], 1),
        ([(_edit, N - 1)], N),
    ],
)
def test_same_answer_as_sequential(chain: list[Event], tamper: list, first_bad: int | None) -> None:  # type: ignore[type-arg]
    events = list(chain)
    for fn, index in tamper:
        fn(events, index)
    key = signer().public_key()
    sequential = verify(events, key)
    parallel = verify_parallel(events, key, jobs=2)
    assert parallel == sequential
    assert parallel.first_bad_seq == first_bad


def test_truncation_against_the_expected_head(chain: list[Event]) -> None:
    key = signer().public_key()
    head = ChainHead(N, chain[-1].hash)
    result = verify_parallel(chain[:-3], key, jobs=2, expected_head=head)
    assert result == verify(chain[:-3], key, expected_head=head)
    assert result.first_bad_seq == N - 2


def test_cli_jobs(chain: list[Event], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "events.jsonl"
    events = list(chain)
    _replace_sig(events, 4321)
    path.write_bytes(b"".join(e.to_json() + b"\n" for e in events))
    from ifescalate.witness.keys import public_key_hex

    pub = public_key_hex(signer().public_key())
    assert main(["verify", "--file", str(path), "--public-key", pub, "--jobs", "0"]) == 1
    assert capsys.readouterr().out.startswith("BROKEN at sequence 4322: signature invalid")
    # A torn last line after a valid prefix is named too.
    path.write_bytes(b"".join(e.to_json() + b"\n" for e in chain)[:-30])
    assert main(["verify", "--file", str(path), "--public-key", pub, "--jobs", "2"]) == 1
    assert capsys.readouterr().out.startswith(f"BROKEN at sequence {N}: line {N}: malformed")
