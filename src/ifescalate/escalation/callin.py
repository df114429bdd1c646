"""An expert calling in: who they are, whether they may, and which escalation they join.

Every fact comes from the transport or from checked credentials (ARCHITECTURE.md, security
pipeline): the digest username the caller proved, the source address the socket saw. Headers a
caller sends that claim IF identity (``X-IF-*``) are never trusted; ``X-IF-Escalation-ID`` only
*selects* among the escalations the authenticated expert is already on the ladder of.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from ..guard import Decision, Expert, Registry
from ..security.layers import (
    CLIENT_CERT_MISMATCH,
    CLIENT_CERT_REQUIRED,
    cert_pinned,
    policy_label,
    reason_phrase_text,
)


@dataclass(frozen=True, slots=True)
class CallInRejection:
    """Why an inbound call was refused: SIP status, reason phrase, and the security layer."""

    status: int
    reason: str
    layer: str
    label: str  # stable metric label (security_rejections_total{layer,reason})
    detail: str


def policy_reason(decision: Decision) -> str:
    """The reason phrase text of a denial: IF.guard's reasons are its deciding policies' ids."""
    if decision.policy_ids:
        return ", ".join(decision.policy_ids)
    return "policy evaluation failed" if decision.errors else "no policy permits"


def policy_rejection(decision: Decision | None) -> CallInRejection | None:
    """Layer 6 on the call-in path without the gate: 403 with the policy's reason, or None."""
    if decision is None or decision.permit:
        return None
    reason = reason_phrase_text(policy_reason(decision))
    return CallInRejection(
        403,
        f"Forbidden - {reason}",
        "policy",
        policy_label(decision.policy_ids),
        ", ".join(decision.policy_ids),
    )


def digest_lookup(registry: Registry) -> DigestLookup:
    return DigestLookup(registry)


class DigestLookup:
    """``(username, realm, algorithm) -> HA1`` over the registry's stored hashes (never plaintext)."""

    def __init__(self, registry: Registry, *, include_suspended: bool = False) -> None:
        self.registry = registry
        #: With the security gate, a suspended expert's right password passes digest and layer
        #: 6 refuses them with the policy's reason (403), instead of a 401 that looks like a
        #: wrong password and feeds the lockout.
        self.include_suspended = include_suspended

    def expert_for(self, username: str) -> Expert | None:
        for expert in self.registry.list():
            if expert.digest is not None and expert.digest.username == username:
                return expert
        return None

    def __call__(self, username: str, realm: str, algorithm: str) -> str | None:
        expert = self.expert_for(username)
        if expert is None or expert.digest is None:
            return None
        if expert.suspended and not self.include_suspended:
            return None
        if expert.digest.realm != realm:
            return None
        return expert.digest.ha1_for(algorithm)


def source_allowed(expert: Expert, source_ip: str) -> bool:
    """The allowlist (layer 2): the socket's peer address must be inside one of the expert's CIDRs.

    An expert with no networks registered may not call in at all: fail closed.
    """
    try:
        addr = ipaddress.ip_address(source_ip.split("%", 1)[0])
    except ValueError:
        return False
    return any(addr in net for net in expert.networks)


def cert_rejection(expert: Expert, peer_cert_sha256: str | None) -> CallInRejection | None:
    """Layer 3 for a pinned expert: the TLS session's client certificate (its SHA-256, from
    ``getpeercert(binary_form=True)``; None without TLS or without a certificate) must be one of
    the expert's registered ones. None: nothing pinned, or it matches."""
    if not expert.cert_fingerprints:
        return None
    if peer_cert_sha256 is None:
        return CallInRejection(
            403, CLIENT_CERT_REQUIRED, "transport", "client_cert_required", "no client certificate"
        )
    if not cert_pinned(peer_cert_sha256, expert.cert_fingerprints):
        return CallInRejection(
            403, CLIENT_CERT_MISMATCH, "transport", "client_cert_mismatch", peer_cert_sha256
        )
    return None


def choose_escalation(
    expert_id: str, offered: Iterable[tuple[str, str]], wanted: str | None
) -> str | None:
    """Pick the escalation to join among ``offered`` (escalation id, ringing expert id) pairs.

    Only escalations whose current ladder step is this expert qualify. ``wanted`` (the caller's
    X-IF-Escalation-ID) selects one of those and nothing else; without it the newest qualifies.
    """
    mine = [esc_id for esc_id, ringing in offered if ringing == expert_id]
    if wanted is not None:
        return wanted if wanted in mine else None
    return mine[-1] if mine else None
