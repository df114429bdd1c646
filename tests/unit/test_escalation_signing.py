"""X-IF-Signature (escalation/signing.py): sign, verify, and every way a verification must fail."""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ifescalate.escalation.signing import (
    invite_signing_payload,
    sign_invite_headers,
    verify_invite_headers,
)
from ifescalate.witness.core import Ed25519Signer

SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))
NOW = 1_700_000_000.75
EXPERT = {"expert_id": "dr-ada", "expert_uri": "sips:ada@experts.example.org"}
FIELDS = {
    "escalation_id": "esc-01HZX3",
    "hazard": "safety",
    "trace_id": "trace:42.a-b_c",
    **EXPERT,
}


def signer(seed: bytes = SEED) -> Ed25519Signer:
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(seed))


def signed(now: float = NOW) -> list[tuple[str, str]]:
    return sign_invite_headers(signer(), now=now, **FIELDS)


def verify(headers: dict[str, str], *, now: float = NOW, **kw: str) -> bool:
    expert = {**EXPERT, **kw}
    return verify_invite_headers(signer().public_key(), headers, now=now, **expert)


def test_headers_in_order_with_expected_values() -> None:
    headers = signed()
    assert [name for name, _ in headers] == [
        "Subject",
        "X-IF-Trace-ID",
        "X-IF-Hazard",
        "X-IF-Escalation-ID",
        "X-IF-Timestamp",
        "X-IF-Signature",
    ]
    values = dict(headers)
    assert values["Subject"] == "IF.ESCALATE: safety - Case trace:42.a-b_c"
    assert values["X-IF-Trace-ID"] == "trace:42.a-b_c"
    assert values["X-IF-Hazard"] == "safety"
    assert values["X-IF-Escalation-ID"] == "esc-01HZX3"
    assert values["X-IF-Timestamp"] == "1700000000"  # integer seconds, truncated


def test_signature_is_ed25519_over_the_canonical_payload() -> None:
    # Byte-exact: RFC 8785 sorts keys; Ed25519 is deterministic (RFC 8032 §5.1.6), so the header is fixed.
    payload = invite_signing_payload(timestamp=1_700_000_000, **FIELDS)
    assert payload == (
        b'{"ctx":"ifescalate/invite/v1","escalation_id":"esc-01HZX3","expert_id":"dr-ada",'
        b'"expert_uri":"sips:ada@experts.example.org","hazard":"safety","time":1700000000,'
        b'"trace_id":"trace:42.a-b_c"}'
    )
    value = dict(signed())["X-IF-Signature"]
    assert value.startswith("ed25519=")
    raw = base64.urlsafe_b64decode(value.removeprefix("ed25519=") + "==")
    signer().public_key().verify(raw, payload)  # raises InvalidSignature if not


def test_verify_ok() -> None:
    assert verify(dict(signed()))


def test_verify_ok_with_any_header_name_case() -> None:
    assert verify({name.lower(): value for name, value in signed()})


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-IF-Trace-ID", "trace:43.a-b_c"),
        ("X-IF-Hazard", "privacy"),
        ("X-IF-Escalation-ID", "esc-01HZX4"),
        ("X-IF-Timestamp", "1700000001"),
        ("Subject", "IF.ESCALATE: privacy - Case trace:42.a-b_c"),
    ],
)
def test_tampered_field_fails(header: str, value: str) -> None:
    headers = dict(signed())
    headers[header] = value
    assert not verify(headers)


def test_tampered_subject_alone_fails() -> None:
    headers = dict(signed())
    headers["Subject"] = "IF.ESCALATE: safety - Case other"
    assert not verify(headers)


@pytest.mark.parametrize("position", [8, 30, 60, -1])
def test_tampered_signature_fails(position: int) -> None:
    headers = dict(signed())
    sig = headers["X-IF-Signature"]
    chars = list(sig)
    chars[position] = "B" if chars[position] != "B" else "C"
    headers["X-IF-Signature"] = "".join(chars)
    assert not verify(headers)


def test_non_canonical_base64_spelling_fails() -> None:
    # The last of 86 characters carries 2 data bits and 4 zero bits; flipping a zero bit must not
    # be accepted as the same signature (one signature, one spelling).
    headers = dict(signed())
    sig = headers["X-IF-Signature"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1])
    headers["X-IF-Signature"] = sig[:-1] + alphabet[last | 1]
    assert not verify(headers)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "ed25519=",
        "rsa=AAAA",
        "ed25519=" + "A" * 85,
        "ed25519=" + "A" * 87,
        "ed25519=" + "+" * 86,
    ],
)
def test_malformed_signature_fails(value: str) -> None:
    headers = dict(signed())
    headers["X-IF-Signature"] = value
    assert not verify(headers)


@pytest.mark.parametrize(
    "header",
    [
        "Subject",
        "X-IF-Trace-ID",
        "X-IF-Hazard",
        "X-IF-Escalation-ID",
        "X-IF-Timestamp",
        "X-IF-Signature",
    ],
)
def test_missing_header_fails(header: str) -> None:
    headers = dict(signed())
    del headers[header]
    assert not verify(headers)


def test_conflicting_spellings_of_one_header_fail() -> None:
    headers = dict(signed())
    headers["x-if-hazard"] = "privacy"
    assert not verify(headers)


@pytest.mark.parametrize(
    ("field", "value"), [("expert_id", "dr-bob"), ("expert_uri", "sips:bob@experts.example.org")]
)
def test_other_expert_fails(field: str, value: str) -> None:
    # A signed INVITE replayed to another expert does not verify there.
    assert not verify(dict(signed()), **{field: value})


def test_wrong_key_fails() -> None:
    headers = dict(sign_invite_headers(signer(OTHER_SEED), now=NOW, **FIELDS))
    assert not verify(headers)


@pytest.mark.parametrize(
    ("skew", "ok"), [(300, True), (301, False), (-300, True), (-301, False), (10_000, False)]
)
def test_age_window(skew: float, ok: bool) -> None:
    headers = dict(signed(now=1_700_000_000))
    assert verify(headers, now=1_700_000_000 + skew) is ok


def test_custom_max_age() -> None:
    headers = dict(signed(now=1_700_000_000))
    key = signer().public_key()
    assert verify_invite_headers(key, headers, now=1_700_000_030, max_age=30, **EXPERT)
    assert not verify_invite_headers(key, headers, now=1_700_000_031, max_age=30, **EXPERT)


@pytest.mark.parametrize("timestamp", ["-1", "1.5", " 1700000000", "1e9", "0x10", ""])
def test_malformed_timestamp_fails(timestamp: str) -> None:
    headers = dict(signed())
    headers["X-IF-Timestamp"] = timestamp
    assert not verify(headers)


_SIP_SAFE = re.compile(
    r"[\x21-\x7e]+(?: [\x21-\x7e]+)*\Z"
)  # visible ASCII, single spaces, no CR/LF
_TOKENISH = re.compile(r"[A-Za-z0-9._:=\-]+\Z")


def test_header_values_are_safe_for_sip() -> None:
    for name, value in signed():
        assert _SIP_SAFE.match(value), (name, value)
        if name != "Subject":
            assert _TOKENISH.match(value), (name, value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hazard", "safety\r\nVia: evil"),
        ("trace_id", "a b"),
        ("trace_id", "a,b"),
        ("escalation_id", 'x"y'),
        ("escalation_id", ""),
        ("hazard", "x" * 129),
        ("expert_id", ""),
        ("expert_uri", ""),
    ],
)
def test_unsafe_values_refused_when_signing(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        sign_invite_headers(signer(), now=NOW, **{**FIELDS, field: value})


def test_header_with_crlf_fails_verification() -> None:
    headers = dict(signed())
    headers["X-IF-Hazard"] = "safety\r\nX: y"
    assert not verify(headers)
