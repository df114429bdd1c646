"""Whether a link signed by us may still open, given its escalation's state now.

The signature and expiry say the link was issued and is young enough; this says the escalation it
belongs to still wants it read: links die when the escalation ends (ARCHITECTURE.md step 5), and a
link issued to one expert (in the INVITE's Call-Info, or the MESSAGE after answering) stops working
once the ladder has moved on to someone else, so an expert who declined cannot keep reading.
"""

from __future__ import annotations

from ..escalation.model import EscalationState, EscalationView
from .links import LinkClaims, LinkEscalationEnded, LinkOutOfScope

__all__ = ["check_escalation", "current_expert"]


def current_expert(view: EscalationView) -> str | None:
    """The expert the escalation is with now: the connected one, or the one being rung."""
    if view.state is EscalationState.CONNECTED:
        return view.connected_expert
    if view.state is EscalationState.RINGING:
        # The ladder is tried in order; results are filled in as each step ends, so the first
        # step without a result is the one ringing.
        return next((s.expert_id for s in view.ladder if s.result is None), None)
    return None


def check_escalation(claims: LinkClaims, view: EscalationView) -> None:
    """Raises LinkEscalationEnded or LinkOutOfScope when ``view`` no longer admits the link."""
    if claims.escalation_id != view.id:
        raise LinkOutOfScope("link is for another escalation", claims)
    if view.state is EscalationState.ENDED:
        raise LinkEscalationEnded("the escalation has ended; its links are dead", claims)
    if claims.expert_id is not None and current_expert(view) != claims.expert_id:
        raise LinkOutOfScope(
            "link was issued to an expert this escalation is no longer with", claims
        )
