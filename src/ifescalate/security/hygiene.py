"""Header hygiene for inbound requests: nothing from outside may claim IF identity.

``X-IF-*`` headers (trace id, hazard, escalation id, signature) are ours: we put them on the
INVITEs we send (ARCHITECTURE.md step 3). A request arriving from outside that carries them is
at best echoing and at worst forging, so they are removed before anything reads the request.
``keep`` names the few a caller may send as a mere *selector* (``X-IF-Escalation-ID`` only picks
among the escalations the authenticated expert is already on, see ``escalation.callin``).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..sip.message import Headers

IF_HEADER_PREFIX = "x-if-"


def strip_if_headers(headers: Headers, keep: Iterable[str] = ()) -> list[str]:
    """Remove every ``X-IF-*`` field from ``headers`` in place, except those named in ``keep``
    (case-insensitive). Returns the removed names, each once, in first-seen order, for logging."""
    kept = {name.lower() for name in keep}
    removed: dict[str, str] = {}
    for name, _ in headers.items():
        low = name.lower()
        if low.startswith(IF_HEADER_PREFIX) and low not in kept and low not in removed:
            removed[low] = name
    for name in removed.values():
        headers.remove(name)
    return list(removed.values())
