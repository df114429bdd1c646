"""Bounded fuzz run over every inbound parser, seeded with the 49 RFC 4475 torture messages.

Invariant per input: it parses, or raises the project's error (SipError; MediaError for media);
never another exception, never over a second, memory bounded. The whole budget is
``IFESCALATE_FUZZ_SECONDS`` (default 100 s under CI=true, 20 s otherwise), split evenly over the
targets; ``IFESCALATE_FUZZ_SEED`` replays a run. Executions per target go to the terminal summary
and to ``fuzz-report.txt`` in pytest's temporary directory; a violating input is saved under
``fuzz/crashes/`` and printed in hex. Longer runs: ``python -m fuzz.run --seconds 600``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fuzz.engine import Stats, check, cpu_timer, fuzz
from fuzz.targets import BY_NAME, TARGETS, Target

from fuzz import corpus
from ifescalate.sip.errors import SipError, SipParseError
from ifescalate.sip.message import parse_cseq
from ifescalate.sip.sdp import parse_sdp
from tests.fuzz.conftest import SUMMARY

REGRESSIONS = Path(corpus.REPO_ROOT / "fuzz" / "regressions")
MIN_MUTATED_EXECUTIONS = 200


def _budget() -> float:
    default = 100.0 if os.environ.get("CI", "").lower() == "true" else 20.0
    return float(os.environ.get("IFESCALATE_FUZZ_SECONDS", default))


SEED = int(os.environ.get("IFESCALATE_FUZZ_SEED", int.from_bytes(os.urandom(4), "big")))
_RESULTS: list[Stats] = []


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "fuzz-report.txt"


def _record(stats: Stats, report: Path) -> None:
    _RESULTS.append(stats)
    total = sum(s.executions for s in _RESULTS)
    lines = [
        f"seed {SEED} (IFESCALATE_FUZZ_SEED), budget {_budget():.0f} s",
        *(s.line() for s in _RESULTS),
        f"total executions {total}; report {report}",
    ]
    report.write_text("\n".join(lines) + "\n")
    SUMMARY[:] = lines
    print(stats.line())


def test_rfc4475_corpus_is_complete() -> None:
    messages = corpus.rfc4475_messages()
    assert len(messages) == 49
    assert {"wsinv", "badinv01", "dblreq", "inv2543"} <= set(messages)


# Bounded by its own budget; per-input hangs are caught by the engine. The timeout is a backstop for
# a hang the CPU timer cannot interrupt (one long call into C, such as a regex).
@pytest.mark.timeout(_budget() / len(TARGETS) + 120)
@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_fuzz_target(target: Target, report: Path) -> None:
    seeds = target.seeds()
    assert seeds, f"{target.name}: no seeds"
    stats = fuzz(target, _budget() / len(TARGETS), seed=SEED)
    _record(stats, report)
    if stats.violations:
        pytest.fail(
            "\n\n".join(v.describe() for v in stats.violations)
            + f"\n(replay: python -m fuzz.run --target {target.name} --replay FILE)",
            pytrace=False,
        )
    # A run that did (almost) nothing must not pass as a fuzz run.
    assert stats.executions >= len(seeds) + MIN_MUTATED_EXECUTIONS, stats.line()


# -- the fuzzer itself can fail ------------------------------------------------------------------


def _raises_on_x(data: bytes) -> None:
    if b"X" in data:
        raise KeyError("X")
    if b";" in data:
        raise SipParseError("semicolon")


def _spins_on_nul(data: bytes) -> None:
    while b"\x00" in data:
        pass


def test_engine_reports_a_foreign_exception(tmp_path: Path) -> None:
    target = Target("selftest", _raises_on_x, (SipError,), lambda: [b"a;b", b"abx"])
    stats = fuzz(target, 5.0, seed=1, crash_dir=tmp_path)
    assert [v.error for v in stats.violations] == ["KeyError: 'X'"]
    saved = stats.violations[0].saved
    assert saved is not None and b"X" in saved.read_bytes()


def test_engine_reports_a_hang(tmp_path: Path) -> None:
    target = Target("selftest", _spins_on_nul, (SipError,), lambda: [b"ok", b"a\x00b"])
    stats = fuzz(target, 5.0, seed=1, per_input=0.2, crash_dir=tmp_path)
    assert len(stats.violations) == 1
    assert stats.violations[0].error.startswith("hang")
    assert stats.violations[0].data == b"a\x00b"


# -- regressions: inputs the fuzzer found, fixed since -------------------------------------------


def _regression_files() -> list[Path]:
    return sorted(REGRESSIONS.glob("*.bin"))


@pytest.mark.parametrize("path", _regression_files(), ids=lambda p: p.stem)
def test_regression_input(path: Path) -> None:
    target = BY_NAME[path.stem.split("-", 1)[0]]
    with cpu_timer():
        _sig, violation, _wall = check(target, path.read_bytes(), 1.0)
    assert violation is None, violation.describe()


def test_cseq_with_thousands_of_digits_is_a_parse_error() -> None:
    # int() raises ValueError past 4300 digits (CPython's int_max_str_digits): found by the fuzzer
    # through validate_response on a Retry-After-laden response with a 60,000-digit CSeq.
    with pytest.raises(SipParseError, match="out of range"):
        parse_cseq("9" * 5000 + " INVITE")
    with pytest.raises(SipParseError, match="out of range"):
        parse_cseq("12345678901 INVITE")
    assert parse_cseq("2147483647 INVITE") == (2147483647, "INVITE")


_SDP = "v=0\r\no={o}\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nb=AS:{b}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n{a}"


@pytest.mark.parametrize(
    "fields",
    [
        {"o": "- " + "1" * 10_000 + " 1 IN IP4 192.0.2.1"},
        {"b": "9" * 5000},
        {"a": "a=rtpmap:0 PCMU/" + "8" * 5000 + "\r\n"},
        {"a": "a=rtpmap:0 PCMU/8000/" + "1" * 5000 + "\r\n"},
    ],
    ids=["origin", "bandwidth", "rtpmap-rate", "rtpmap-channels"],
)
def test_sdp_numbers_with_thousands_of_digits_are_parse_errors(fields: dict[str, str]) -> None:
    # Found by the fuzzer: int() of a 10,000-digit sess-id raised ValueError, not SipParseError.
    values = {"o": "- 1 1 IN IP4 192.0.2.1", "b": "64", "a": ""} | fields
    with pytest.raises(SipParseError):
        sdp = parse_sdp(_SDP.format(**values))
        _ = [m.codecs for m in sdp.media]  # rtpmap lines are read when the codecs are asked for


def test_sdp_numbers_up_to_64_bits_still_parse() -> None:
    values = {"o": f"- {2**64 - 1} {2**63} IN IP4 192.0.2.1", "b": "64", "a": ""}
    assert parse_sdp(_SDP.format(**values)).origin.session_id == 2**64 - 1
