"""X-IF-Signature: the escalation INVITE's Ed25519 signature (ARCHITECTURE.md, step 3).

The INVITE to an expert carries ``X-IF-Trace-ID``, ``X-IF-Hazard``, ``X-IF-Escalation-ID``,
``X-IF-Timestamp`` and ``X-IF-Signature``. The signature covers the RFC 8785 canonical JSON of

    {"ctx": "ifescalate/invite/v1", "escalation_id", "expert_id", "expert_uri", "hazard",
     "time", "trace_id"}

``expert_id`` and ``expert_uri`` are signed but not sent: the expert's phone (or a proxy in front of
it) knows who it is, so a signed INVITE cannot be replayed to another expert. ``time`` is integer
wall-clock seconds, checked against ``max_age`` so a captured INVITE cannot be replayed later.
``ctx`` separates this use of the key from witness event signatures, which the same key makes
(``ifescalate.witness.core.Signer``), so neither signature can be passed off as the other.

Header values are restricted to a token-like alphabet (no CR/LF, no spaces, no commas or quotes),
so they are safe in a SIP header (RFC 3261 §25.1 ``token``; ``:`` is additionally allowed as in
trace ids). The signature is ``ed25519=<base64url without padding>`` (RFC 4648 §5).

Pure: no clock; ``now`` is wall-clock seconds since the epoch (not monotonic), since the signer and
the verifier are different machines.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ifescalate.witness.core import Signer
from ifescalate.witness.jcs import canonicalize

__all__ = [
    "HEADER_ESCALATION_ID",
    "HEADER_HAZARD",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "HEADER_TRACE_ID",
    "SIGNATURE_CONTEXT",
    "invite_signing_payload",
    "sign_invite_headers",
    "subject_for",
    "verify_invite_headers",
]

HEADER_TRACE_ID = "X-IF-Trace-ID"
HEADER_HAZARD = "X-IF-Hazard"
HEADER_ESCALATION_ID = "X-IF-Escalation-ID"
HEADER_TIMESTAMP = "X-IF-Timestamp"
HEADER_SIGNATURE = "X-IF-Signature"
SIGNATURE_CONTEXT = "ifescalate/invite/v1"

_SCHEME = "ed25519="
# A subset of RFC 3261 §25.1 token plus ':' (as trace ids allow): nothing a SIP parser could read
# as a separator, fold or line end.
_SAFE = re.compile(r"[A-Za-z0-9._:\-]{1,128}\Z")
_TIMESTAMP = re.compile(r"[0-9]{1,12}\Z")
_B64URL = re.compile(r"[A-Za-z0-9_\-]{86}\Z")  # 64 bytes, unpadded
_SIGNATURE_BYTES = 64


def invite_signing_payload(
    *,
    escalation_id: str,
    hazard: str,
    expert_id: str,
    expert_uri: str,
    trace_id: str,
    timestamp: int,
) -> bytes:
    """The exact bytes signed: RFC 8785 JSON of the fields above."""
    return canonicalize(
        {
            "ctx": SIGNATURE_CONTEXT,
            "escalation_id": escalation_id,
            "expert_id": expert_id,
            "expert_uri": expert_uri,
            "hazard": hazard,
            "time": timestamp,
            "trace_id": trace_id,
        }
    )


def subject_for(hazard: str, trace_id: str) -> str:
    """The INVITE's Subject (RFC 3261 §20.36), what the expert's phone shows."""
    return f"IF.ESCALATE: {hazard} - Case {trace_id}"


def sign_invite_headers(
    signer: Signer,
    *,
    escalation_id: str,
    hazard: str,
    expert_id: str,
    expert_uri: str,
    trace_id: str,
    now: float,
) -> list[tuple[str, str]]:
    """The headers to add to an escalation INVITE, in order. Raises ValueError on unsafe values."""
    for name, value in (
        ("escalation_id", escalation_id),
        ("hazard", hazard),
        ("trace_id", trace_id),
    ):
        if not _SAFE.match(value):
            raise ValueError(f"{name} {value!r} is not safe in a SIP header")
    if not expert_id or not expert_uri:
        raise ValueError("expert_id and expert_uri must not be empty")
    timestamp = int(now)
    payload = invite_signing_payload(
        escalation_id=escalation_id,
        hazard=hazard,
        expert_id=expert_id,
        expert_uri=expert_uri,
        trace_id=trace_id,
        timestamp=timestamp,
    )
    signature = _b64(signer.sign(payload))
    return [
        ("Subject", subject_for(hazard, trace_id)),
        (HEADER_TRACE_ID, trace_id),
        (HEADER_HAZARD, hazard),
        (HEADER_ESCALATION_ID, escalation_id),
        (HEADER_TIMESTAMP, str(timestamp)),
        (HEADER_SIGNATURE, _SCHEME + signature),
    ]


def verify_invite_headers(
    public_key: Ed25519PublicKey,
    headers: Mapping[str, str],
    *,
    expert_id: str,
    expert_uri: str,
    now: float,
    max_age: float = 300,
) -> bool:
    """The expert side: True only if every X-IF header is present, well-formed, fresh (within
    ``max_age`` seconds of ``now`` either way, for clock skew), the Subject matches them and the
    signature verifies for this expert. Header names are matched case-insensitively (§7.3.1)."""
    fields = _lower_keys(headers)
    if fields is None:
        return False
    values = [fields.get(h.lower()) for h in (HEADER_TRACE_ID, HEADER_HAZARD, HEADER_ESCALATION_ID)]
    trace_id, hazard, escalation_id = values
    if trace_id is None or hazard is None or escalation_id is None:
        return False
    if not all(_SAFE.match(v) for v in (trace_id, hazard, escalation_id)):
        return False
    if fields.get("subject") != subject_for(hazard, trace_id):
        return False
    timestamp = _timestamp(fields.get(HEADER_TIMESTAMP.lower()))
    if timestamp is None or abs(now - timestamp) > max_age:
        return False
    signature = _signature(fields.get(HEADER_SIGNATURE.lower()))
    if signature is None:
        return False
    payload = invite_signing_payload(
        escalation_id=escalation_id,
        hazard=hazard,
        expert_id=expert_id,
        expert_uri=expert_uri,
        trace_id=trace_id,
        timestamp=timestamp,
    )
    try:
        public_key.verify(signature, payload)
    except InvalidSignature:
        return False
    return True


def _lower_keys(headers: Mapping[str, str]) -> dict[str, str] | None:
    """Names folded to lower case; None if two spellings of one name disagree."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in out and out[key] != value:
            return None
        out[key] = value
    return out


def _timestamp(value: str | None) -> int | None:
    if value is None or not _TIMESTAMP.match(value):
        return None
    return int(value)


def _signature(value: str | None) -> bytes | None:
    if value is None or not value.startswith(_SCHEME):
        return None
    encoded = value[len(_SCHEME) :]
    if not _B64URL.match(encoded):
        return None
    try:
        raw = base64.urlsafe_b64decode(encoded + "==")
    except binascii.Error:
        return None
    # Only the canonical spelling (RFC 4648 §3.5: unused trailing bits zero), so one signature has
    # exactly one header value.
    if len(raw) != _SIGNATURE_BYTES or _b64(raw) != encoded:
        return None
    return raw


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
