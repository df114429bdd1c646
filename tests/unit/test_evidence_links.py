"""The evidence-link token core (evidence/links.py) and the escalation check (evidence/access.py).

Virtual time throughout: ``now`` is passed in, so the expiry boundary is exact.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import multiprocessing
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from ifescalate.escalation.model import (
    EscalationState,
    EscalationView,
    LadderStep,
    Outcome,
    Urgency,
)
from ifescalate.evidence.access import check_escalation, current_expert
from ifescalate.evidence.keyfile import KeyFileError, load_or_create_link_key
from ifescalate.evidence.links import (
    LinkBadSignature,
    LinkClaims,
    LinkEscalationEnded,
    LinkExpired,
    LinkMalformed,
    LinkOutOfScope,
    LinkScope,
    LinkSigner,
)

KEY = bytes(range(32))
ESC = "0123456789abcdef0123456789abcdef"
SHA = hashlib.sha256(b"evidence").hexdigest()
NOW = 1_800_000_000.25


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def mint(signer: LinkSigner | None = None, **kw: object) -> tuple[str, LinkClaims]:
    args: dict[str, object] = {"escalation_id": ESC, "evidence_id": SHA, "now": NOW}
    args.update(kw)
    return (signer or LinkSigner(KEY)).mint(**args)  # type: ignore[arg-type]


def test_round_trip_carries_every_claim() -> None:
    signer = LinkSigner(KEY, default_ttl=60, max_ttl=120)
    token, claims = mint(signer, expert_id="carol")
    assert claims == LinkClaims(ESC, SHA, int(NOW + 60), LinkScope.READ, "carol")
    assert signer.verify(token, now=NOW) == claims
    assert signer.verify(token, now=NOW, escalation_id=ESC, evidence_id=SHA) == claims
    assert all(c.isalnum() or c in "-_" for c in token), token
    # Short enough for a SIP header (Call-Info) next to the rest of the INVITE.
    assert len(token) < 200


def test_default_lifetime_is_fifteen_minutes_and_ttl_is_bounded() -> None:
    signer = LinkSigner(KEY)
    assert mint(signer)[1].expires == int(NOW + 900)
    assert mint(signer, ttl=5)[1].expires == int(NOW + 5)
    for bad in (0, -1, 3601):
        with pytest.raises(ValueError, match="ttl"):
            mint(signer, ttl=bad)
    with pytest.raises(ValueError, match="32 bytes"):
        LinkSigner(b"short")


def test_expiry_boundary_with_virtual_time() -> None:
    signer = LinkSigner(KEY, default_ttl=10)
    token, claims = mint(signer)
    assert claims.expires == int(NOW) + 10
    signer.verify(token, now=claims.expires - 0.000001)
    with pytest.raises(LinkExpired) as exc:
        signer.verify(token, now=claims.expires)
    assert exc.value.status == 410 and exc.value.code == "expired"
    with pytest.raises(LinkExpired):
        signer.verify(token, now=claims.expires + 86400)


# Byte offsets of each field in the payload (links.py docstring): version, scope, expires (8),
# escalation id length + 32 bytes, evidence digest (32), expert length + "carol", then the tag.
FIELDS = {
    "version": 0,
    "scope": 1,
    "expires": 2 + 7,
    "escalation_id_length": 10,
    "escalation_id": 11 + 5,
    "evidence_id": 43 + 31,
    "expert_id_length": 75,
    "expert_id": 76 + 2,
    "tag": -1,
}


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_tampering_any_field_breaks_the_signature(field: str) -> None:
    signer = LinkSigner(KEY)
    token, _ = mint(signer, expert_id="carol")
    raw = bytearray(unb64(token))
    assert len(raw) == 76 + 5 + 32
    raw[FIELDS[field]] ^= 0x01
    with pytest.raises(LinkBadSignature) as exc:
        signer.verify(b64(bytes(raw)), now=NOW)
    assert exc.value.status == 403 and exc.value.code == "bad_signature"


def test_another_key_and_truncation_are_refused() -> None:
    token, _ = mint()
    with pytest.raises(LinkBadSignature):
        LinkSigner(bytes(32)).verify(token, now=NOW)
    raw = unb64(token)
    with pytest.raises(LinkBadSignature):
        LinkSigner(KEY).verify(b64(raw[:-1]), now=NOW)  # payload shifted into the tag
    with pytest.raises(LinkMalformed):
        LinkSigner(KEY).verify(b64(raw[:20]), now=NOW)


@pytest.mark.parametrize(
    "token",
    ["", "!!!", "a" * 2000, "ab=", "é" * 10, " " + "A" * 150],
)
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(LinkMalformed) as exc:
        LinkSigner(KEY).verify(token, now=NOW)
    assert exc.value.status == 400 and exc.value.code == "malformed"


def test_non_canonical_base64_spelling_is_refused() -> None:
    """The last character's unused low bits must be zero: one token has exactly one spelling."""
    token, _ = mint(expert_id="carol")
    assert len(token) % 4 != 0  # 113 bytes: the last character carries 2 unused bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    sibling = token[:-1] + alphabet[last ^ 1]
    assert unb64(sibling) == unb64(token)  # a lax decoder would accept it as the same token
    with pytest.raises(LinkMalformed, match="canonical"):
        LinkSigner(KEY).verify(sibling, now=NOW)


def test_wrong_escalation_evidence_or_scope() -> None:
    signer = LinkSigner(KEY)
    token, _ = mint(signer)
    with pytest.raises(LinkOutOfScope, match="another escalation"):
        signer.verify(token, now=NOW, escalation_id="f" * 32)
    with pytest.raises(LinkOutOfScope, match="other evidence"):
        signer.verify(token, now=NOW, evidence_id=hashlib.sha256(b"x").hexdigest())
    # A payload naming a scope this version does not know, signed with the right key (a future
    # format, or a bug): refused as malformed, never read as READ.
    raw = bytearray(unb64(token)[:-32])
    raw[1] = 2
    tag = hmac.new(KEY, b"ifescalate/evidence-link/v1\x00" + bytes(raw), hashlib.sha256).digest()
    with pytest.raises(LinkMalformed, match="invalid"):
        signer.verify(b64(bytes(raw) + tag), now=NOW)


def test_the_context_string_separates_link_tags_from_other_hmac_uses() -> None:
    token, _ = mint()
    payload = unb64(token)[:-32]
    bare = hmac.new(KEY, payload, hashlib.sha256).digest()  # same key, no context
    with pytest.raises(LinkBadSignature):
        LinkSigner(KEY).verify(b64(payload + bare), now=NOW)


def view(
    state: EscalationState, *ladder: LadderStep, connected: str | None = None
) -> EscalationView:
    return EscalationView(
        id=ESC,
        trace_id="t",
        state=state,
        outcome=Outcome.COMPLETED if state is EscalationState.ENDED else None,
        hazard="safety",
        question="q",
        requester="agent",
        urgency=Urgency.NORMAL,
        created_at=0.0,
        updated_at=0.0,
        ladder=ladder,
        connected_expert=connected,
    )


def test_escalation_state_decides_whether_a_good_link_opens() -> None:
    carol = LinkClaims(ESC, SHA, 10, LinkScope.READ, "carol")
    anyone = replace(carol, expert_id=None)
    ringing_carol = view(
        EscalationState.RINGING,
        LadderStep("bob", "sip:bob@x", 1, "declined"),
        LadderStep("carol", "sip:carol@x", 2),
        LadderStep("dave", "sip:dave@x", 3),
    )
    assert current_expert(ringing_carol) == "carol"
    check_escalation(carol, ringing_carol)
    check_escalation(anyone, ringing_carol)
    connected_dave = view(EscalationState.CONNECTED, connected="dave")
    with pytest.raises(LinkOutOfScope, match="no longer with"):
        check_escalation(carol, connected_dave)
    check_escalation(anyone, connected_dave)
    with pytest.raises(LinkOutOfScope, match="no longer with"):
        check_escalation(carol, view(EscalationState.APPROVED))
    ended = view(EscalationState.ENDED, connected="carol")
    for claims in (carol, anyone):
        with pytest.raises(LinkEscalationEnded) as exc:
            check_escalation(claims, ended)
        assert exc.value.status == 410 and exc.value.code == "escalation_ended"
    with pytest.raises(LinkOutOfScope, match="another escalation"):
        check_escalation(replace(anyone, escalation_id="other"), connected_dave)


def test_key_file_is_made_once_with_mode_0600_and_refused_when_readable(tmp_path: Path) -> None:
    key = load_or_create_link_key(tmp_path)
    path = tmp_path / "evidence_link.key"
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_link_key(tmp_path) == key
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create_link_key(tmp_path)


def _load_key_when_released(data_dir: str, barrier: object, out: object) -> None:
    barrier.wait(10)  # type: ignore[attr-defined]
    try:
        out.put(load_or_create_link_key(data_dir).hex())  # type: ignore[attr-defined]
    except Exception as exc:  # the parent asserts on it
        out.put(f"error: {exc}")  # type: ignore[attr-defined]


def test_instances_starting_at_once_on_one_data_dir_share_one_key(tmp_path: Path) -> None:
    """Instances behind a load balancer share the data dir (keyfile.py) and may start together:
    each must come up with the one key, never read a file another is still writing (it was
    created empty, then filled and fsynced: a racing reader found 0 bytes and refused to start).
    Real processes released by a barrier, 12 rounds of 3."""
    ctx = multiprocessing.get_context("fork")
    for round_ in range(12):
        data_dir = tmp_path / f"round{round_}"
        barrier, out = ctx.Barrier(3), ctx.Queue()
        procs = [
            ctx.Process(target=_load_key_when_released, args=(str(data_dir), barrier, out))
            for _ in range(3)
        ]
        for proc in procs:
            proc.start()
        keys = [out.get(timeout=20) for _ in procs]
        for proc in procs:
            proc.join(10)
        assert not [k for k in keys if k.startswith("error")], (round_, keys)
        assert len(set(keys)) == 1, (round_, keys)
        assert load_or_create_link_key(data_dir).hex() == keys[0]
        assert os.listdir(data_dir) == ["evidence_link.key"]  # no temporary file left behind
