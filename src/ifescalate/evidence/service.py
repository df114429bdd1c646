"""Evidence for the API and the ladder: add, list, issue links, open links, every step witnessed.

Witness entries (IF.witness): ``EVIDENCE_ACCESSED`` with ``action`` ``added`` (the bytes' SHA-256
enters the chain when they are attached: custody from the start), ``link_issued`` and ``read`` (a
link opened; ``peer`` is the TCP peer address from the transport, never a header). A refused link
is a ``SECURITY_REJECTED`` entry with ``layer: "evidence_link"`` and the refusal's code; its
escalation is named only when our signature vouches for the link (an unverified token's contents
are the sender's claim, not a fact).

Refusals are aggregated like the SIP gate's (``security.audit.RejectionAggregator``): the link
route is unauthenticated, so one entry per refusal would let anyone grow the witness at the API's
rate limit. The first refusal of a (source, reason) group in an ``audit_window`` is witnessed at
once, with its link fingerprint, detail and escalation; the rest of that window become one summary
entry with their ``count`` when the window ends (a timer here, and :meth:`aclose` at shutdown).

A link's token appears in the witness only as a fingerprint (first 16 hex digits of its SHA-256):
enough to tie an access to its issuance, useless as a credential.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import http
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..escalation.model import (
    EscalationRequest,
    EscalationState,
    EscalationView,
    UnknownEscalation,
)
from ..security.audit import AuditEntry, RejectionAggregator
from ..security.facts import Layer, Reject
from ..witness.core import EventType, format_time
from ..witness.service import Witness
from .access import check_escalation
from .links import LinkClaims, LinkError, LinkNotInEscalation, LinkSigner
from .store import EvidenceCorrupt, EvidenceError, EvidenceRecord, EvidenceStore

__all__ = ["EscalationClosed", "EvidenceService", "IssuedLink", "UnknownEvidence"]

log = logging.getLogger(__name__)

_ACTOR = "evidence"
LINK_PATH = "/v1/evidence/"


class EscalationLookup(Protocol):
    def get(self, escalation_id: str) -> EscalationView: ...


class UnknownEvidence(KeyError):
    """No such evidence item on this escalation (API 404)."""


class EscalationClosed(RuntimeError):
    """The escalation has ended: no new evidence, no new links (API 409)."""


@dataclass(frozen=True, slots=True)
class IssuedLink:
    url: str
    token: str
    claims: LinkClaims
    record: EvidenceRecord

    @property
    def name(self) -> str:
        return self.record.name

    def to_dict(self) -> dict[str, Any]:
        c = self.claims
        return {
            "url": self.url,
            "token": self.token,
            "name": self.name,
            "escalation_id": c.escalation_id,
            "evidence_id": c.evidence_id,
            "scope": c.scope.name.lower(),
            "expert_id": c.expert_id,
            "expires_at": c.expires,
            "expires": format_time(c.expires),
        }


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()[:16]


class EvidenceService:
    """Glue between the store, the link signer, the escalations and the witness."""

    def __init__(
        self,
        *,
        store: EvidenceStore,
        signer: LinkSigner,
        escalations: EscalationLookup,
        witness: Witness,
        public_url: str,
        sip_links: int = 4,
        wall: Callable[[], float] = time.time,
        audit_window: float = 60.0,
    ) -> None:
        self.store = store
        self.signer = signer
        self.escalations = escalations
        self.witness = witness
        self.public_url = public_url.rstrip("/")
        self.sip_links = sip_links
        self.wall = wall
        #: Refused links, grouped per (source, reason) and window (module docstring).
        self.refusals = RejectionAggregator(audit_window)
        self._flusher: asyncio.Task[None] | None = None

    # -- adding and listing -----------------------------------------------------------------------

    def _open_escalation(self, escalation_id: str) -> EscalationView:
        view = self.escalations.get(escalation_id)  # raises UnknownEscalation
        if view.state is EscalationState.ENDED:
            raise EscalationClosed(f"escalation {escalation_id} has ended")
        return view

    async def add(
        self, escalation_id: str, data: bytes, *, name: str, media_type: str, added_by: str
    ) -> tuple[EvidenceRecord, bool]:
        view = self._open_escalation(escalation_id)
        media_type, name = self.store.check(data, media_type, name)
        digest = await asyncio.to_thread(self.store.write_blob, data)
        record, created = self.store.attach(
            escalation_id,
            digest,
            name=name,
            media_type=media_type,
            size=len(data),
            added_by=added_by,
            now=self.wall(),
        )
        if created:
            await self._witness_action(view, record, "added", {"added_by": added_by})
        return record, created

    def attach_request(
        self, escalation_id: str, request: EscalationRequest
    ) -> tuple[dict[int, str], builtins.list[str]]:
        """Stores the evidence posted inline with the escalation (items with content) before the
        ladder starts, so the first INVITE can already carry links to it. Synchronous on purpose:
        the inline body is small (the API's body limit) and must be in place before ringing.

        Returns {item index: SHA-256} of the stored items (the caller witnesses them with the
        request) and why other items were not stored (bad media type, over the limit): those
        stay listed by name, they are just not shared."""
        stored: dict[int, str] = {}
        problems: builtins.list[str] = []
        for index, item in enumerate(request.evidence):
            if not item.content:
                continue
            try:
                record, _ = self.store.add(
                    escalation_id,
                    item.content.encode("utf-8"),
                    name=item.name,
                    media_type=item.content_type,
                    added_by=request.requester,
                    now=self.wall(),
                )
            except EvidenceError as exc:
                problems.append(f"inline evidence {item.name!r} not stored: {exc}")
                continue
            stored[index] = record.sha256
        return stored, problems

    def list(self, escalation_id: str) -> list[EvidenceRecord]:
        self.escalations.get(escalation_id)  # raises UnknownEscalation
        return self.store.list(escalation_id)

    # -- links ------------------------------------------------------------------------------------

    def url_for(self, token: str) -> str:
        return f"{self.public_url}{LINK_PATH}{token}"

    def _mint(
        self, record: EvidenceRecord, *, ttl: float | None, expert_id: str | None
    ) -> IssuedLink:
        token, claims = self.signer.mint(
            escalation_id=record.escalation_id,
            evidence_id=record.sha256,
            now=self.wall(),
            ttl=ttl,
            expert_id=expert_id,
        )
        return IssuedLink(self.url_for(token), token, claims, record)

    async def issue(
        self,
        escalation_id: str,
        evidence_id: str,
        *,
        ttl: float | None,
        expert_id: str | None,
        by: str,
    ) -> IssuedLink:
        """A link to one item for the API caller (ValueError for a bad ttl)."""
        view = self._open_escalation(escalation_id)
        record = self.store.get(escalation_id, evidence_id)
        if record is None:
            raise UnknownEvidence(f"no evidence {evidence_id} in escalation {escalation_id}")
        link = self._mint(record, ttl=ttl, expert_id=expert_id)
        await self._witness(view, self.issued_details(link, by))
        return link

    def links_for(self, escalation_id: str, expert_id: str) -> builtins.list[IssuedLink]:
        """Links to the escalation's evidence for one expert (SIP delivery), at most
        ``sip_links`` of them, oldest first. Not witnessed here: the escalation service records
        :meth:`issued_details` in the escalation's own order (its event stream shows them)."""
        records = self.store.list(escalation_id)[: self.sip_links]
        return [self._mint(r, ttl=None, expert_id=expert_id) for r in records]

    @staticmethod
    def issued_details(link: IssuedLink, by: str) -> dict[str, Any]:
        """The EVIDENCE_ACCESSED details of issuing ``link`` (by an API principal, or "sip")."""
        return _details(
            link.record,
            "link_issued",
            {
                "by": by,
                "expert_id": link.claims.expert_id,
                "link": fingerprint(link.token),
                "expires": format_time(link.claims.expires),
            },
        )

    async def open(self, token: str, *, peer: str | None) -> tuple[EvidenceRecord, bytes]:
        """The item a link grants, after witnessing the access; LinkError (witnessed as
        SECURITY_REJECTED) when it does not open."""
        view: EscalationView | None = None
        try:
            claims = self.signer.verify(token, now=self.wall())
            try:
                view = self.escalations.get(claims.escalation_id)
            except UnknownEscalation:
                raise LinkNotInEscalation("the escalation of this link is unknown") from None
            check_escalation(claims, view)
            record = self.store.get(claims.escalation_id, claims.evidence_id)
            if record is None:
                raise LinkNotInEscalation(
                    "this evidence is not part of the link's escalation", claims
                )
        except LinkError as exc:
            if view is None and exc.claims is not None:
                # Our signature vouches for the escalation the link names: witness under it.
                with contextlib.suppress(UnknownEscalation):
                    view = self.escalations.get(exc.claims.escalation_id)
            await self._witness_refusal(exc, token, peer, view)
            raise
        try:
            data = await asyncio.to_thread(self.store.read, record)
        except EvidenceCorrupt as exc:
            # Not the link's fault, but the chain must show that the evidence it vouched for
            # (by SHA-256) was altered on disk and not served.
            await self.witness.append(
                EventType.SECURITY_REJECTED,
                trace_id=view.trace_id,
                escalation_id=view.id,
                actor=_ACTOR,
                details={
                    "layer": "evidence_store",
                    "reason": "evidence_corrupt",
                    "detail": str(exc),
                    "sha256": record.sha256,
                    "source": peer,
                    "transport": "http",
                    "link": fingerprint(token),
                },
            )
            raise
        details = {
            "peer": peer,
            "expert_id": claims.expert_id,
            "link": fingerprint(token),
            "expires": format_time(claims.expires),
        }
        await self._witness_action(view, record, "read", details)
        return record, data

    # -- witness ----------------------------------------------------------------------------------

    async def _witness_action(
        self, view: EscalationView, record: EvidenceRecord, action: str, extra: dict[str, Any]
    ) -> None:
        await self._witness(view, _details(record, action, extra))

    async def _witness(self, view: EscalationView, details: dict[str, Any]) -> None:
        await self.witness.append(
            EventType.EVIDENCE_ACCESSED,
            trace_id=view.trace_id,
            escalation_id=view.id,
            actor=_ACTOR,
            details=details,
        )

    async def _witness_refusal(
        self, exc: LinkError, token: str, peer: str | None, view: EscalationView | None
    ) -> None:
        """Account the refusal; write the summaries of ended windows and, when this refusal opens
        its group's window, its own entry (the only one that can name a link and escalation)."""
        rejection = Reject(
            exc.status, http.HTTPStatus(exc.status).phrase, Layer.EVIDENCE_LINK, exc.code
        )
        # An unparsable or missing peer groups as "invalid" (audit_source).
        entries = self.refusals.add(rejection, peer or "", self.wall())
        for entry in entries:
            if entry.summary:
                await self._witness_refusals(entry)
                continue
            await self.witness.append(
                EventType.SECURITY_REJECTED,
                trace_id=view.trace_id if view is not None else None,
                escalation_id=view.id if view is not None else None,
                actor=_ACTOR,
                # ``source`` stays the exact peer here (the group folds IPv6 to its /64).
                details=entry.details()
                | {
                    "detail": str(exc),
                    "source": peer,
                    "transport": "http",
                    "link": fingerprint(token),
                },
            )
        self._arm_flush()

    async def _witness_refusals(self, entry: AuditEntry) -> None:
        """A window's summary: ``count`` refusals after the first, across whatever links and
        escalations they named (the group is per source and reason)."""
        await self.witness.append(
            EventType.SECURITY_REJECTED,
            trace_id=None,
            escalation_id=None,
            actor=_ACTOR,
            details=entry.details() | {"transport": "http"},
        )

    async def flush_refusals(self) -> None:
        """Witness the summaries of the refusal windows that have ended (the timer calls it)."""
        for entry in self.refusals.flush(self.wall()):
            await self._witness_refusals(entry)

    def _arm_flush(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            return
        if self.refusals.next_deadline() is not None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_when_due())

    async def _flush_when_due(self) -> None:
        while (deadline := self.refusals.next_deadline()) is not None:
            await asyncio.sleep(max(0.0, deadline - self.wall()))
            try:
                await self.flush_refusals()
            except Exception:
                # The witness is down: the counts stay lost rather than the timer dying
                # silently with the next windows (the open route logs the same failure).
                log.exception("could not witness refused evidence links")

    async def aclose(self) -> None:
        """At shutdown: witness every pending refusal summary, windows ended or not, then close
        the store. Call before the witness closes."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        try:
            for entry in self.refusals.flush_all():
                await self._witness_refusals(entry)
        finally:
            self.store.close()


def _details(record: EvidenceRecord, action: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "action": action,
        "evidence_id": record.sha256,
        "sha256": record.sha256,
        "name": record.name,
        "media_type": record.media_type,
        "size": record.size,
        **extra,
    }
