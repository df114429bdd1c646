"""The escalation service: drives ``EscalationMachine`` with IF.guard, the user agent and IF.witness.

Each escalation has one worker task that applies the machine's actions in order, so the witness log
records the steps in exactly the order the machine took them. Inputs (call progress, timers, the
council's cancel) are fed to the machine synchronously and queue their actions for that worker.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..council import Council, RoomEvent
from ..guard import Candidate, ExpertNotFound, Guard, Registry
from ..guard import Decision as GuardDecision
from ..net.rtp import MediaSession
from ..net.ua import Call, CallFailed, IncomingCall, UserAgent
from ..witness.core import EventType, Signer
from ..witness.service import Witness
from .bridge import Bridge
from .callin import (
    CallInRejection,
    DigestLookup,
    cert_rejection,
    choose_escalation,
    policy_rejection,
    source_allowed,
)
from .machine import (
    CancelRing,
    EscalationMachine,
    Finished,
    Hangup,
    Record,
    Ring,
)
from .model import (
    EscalationEvent,
    EscalationRequest,
    EscalationState,
    EscalationView,
    LadderStep,
    Outcome,
    ServiceUnavailable,
    UnknownEscalation,
    Verdict,
)
from .signing import sign_invite_headers
from .store import EscalationStore

if TYPE_CHECKING:
    from ..evidence.service import EvidenceService, IssuedLink
    from ..security.proxy import Origin
    from ..sip.message import Request

log = logging.getLogger("ifescalate.escalation")

#: DTMF digit -> verdict (ARCHITECTURE.md step 6).
DTMF_VERDICTS = {"1": Verdict.APPROVE, "2": Verdict.REJECT, "3": Verdict.NEED_MORE_INFO}


@dataclass(slots=True)
class EscalationSettings:
    ring_timeout: float = 30.0
    deadline: float = 300.0
    max_duration: float = 3600.0
    actor: str = "ifescalate"
    #: Record the council room to WAV (its SHA-256 goes into the TERMINATED entry).
    record: bool = False


class _Escalation:
    """One live escalation: its machine, calls, event history and worker."""

    def __init__(
        self, machine: EscalationMachine, request: EscalationRequest, created_at: float
    ) -> None:
        self.machine = machine
        self.request = request
        self.created_at = created_at
        self.updated_at = created_at
        self.events: list[EscalationEvent] = []
        self.changed = asyncio.Condition()
        self.queue: deque[list[Any]] = deque()
        self.wakeup = asyncio.Event()
        self.rings: dict[int, asyncio.Task[None]] = {}
        self.calls: dict[int, Call] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.worker: asyncio.Task[None] | None = None
        self.finished = asyncio.Event()
        self.connected_at: float | None = None
        self.bridge: Bridge | None = None
        # The API view as of the last batch whose Records are all committed to the witness: the
        # machine runs ahead of the worker, the view never runs ahead of the durable log.
        self.visible: EscalationView | None = None
        self.fed = 0  # batches fed to the worker
        self.published = 0  # batches whose view is visible


class EscalationServiceImpl:
    """Implements ``model.EscalationService`` (the HTTP API's view of the domain)."""

    def __init__(
        self,
        *,
        guard: Guard,
        witness: Witness,
        ua: UserAgent,
        store: EscalationStore,
        signer: Signer,
        settings: EscalationSettings | None = None,
        metrics: Any | None = None,
        council: Council | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.guard = guard
        self.witness = witness
        self.ua = ua
        self.store = store
        self.signer = signer
        self.settings = settings or EscalationSettings()
        self.metrics = metrics
        self.council = council
        self.clock = clock
        self.wall = wall
        self._live: dict[str, _Escalation] = {}
        self._recent_calls: dict[str, deque[float]] = {}
        self._by_call: dict[str, str] = {}
        self._lookup: DigestLookup | None = None
        #: True once the security gate asks layer 6 (``call_in_decision``) before the call
        #: arrives here; else the call-in path asks it itself.
        self.policy_in_gate = False
        self._background: set[asyncio.Task[Any]] = set()
        #: Evidence links for the expert (Call-Info in the INVITE, MESSAGE after answering).
        self.evidence: EvidenceService | None = None
        #: The security gate's :meth:`~ifescalate.net.security_gate.SecurityGate.vouched_origin`:
        #: behind a trusted proxy the transport peer of a call-in is the edge, so its witness
        #: entries name the caller the gate believed (``security.proxy``) instead.
        self.vouched_origin: Callable[[Request], Origin | None] | None = None
        ua.on_info = self._on_info

    # -- lifecycle -------------------------------------------------------------------------------

    async def recover(self) -> int:
        """Mark escalations left unfinished by a dead process as failed; witness each. Returns count."""
        stale = self.store.unfinished()
        for view in stale:
            now = self.wall()
            ended = EscalationView(
                **{
                    **{f: getattr(view, f) for f in EscalationView.__dataclass_fields__},
                    "state": EscalationState.ENDED,
                    "outcome": Outcome.FAILED,
                    "end_reason": "process restarted while the escalation was in flight",
                    "updated_at": now,
                }
            )
            self.store.update(ended)
            await self.witness.append(
                EventType.FAILED,
                trace_id=view.trace_id,
                escalation_id=view.id,
                actor=self.settings.actor,
                details={"reason": ended.end_reason or "", "previous_state": view.state.value},
            )
            self._count_outcome(Outcome.FAILED)
        return len(stale)

    async def close(self) -> None:
        """Cancel every live escalation (hang up calls) and wait for the workers."""
        for esc_id in list(self._live):
            with contextlib.suppress(UnknownEscalation):
                await self.cancel(esc_id, by="system")
        for esc in list(self._live.values()):
            if esc.worker is not None:
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(esc.worker), 5.0)

    # -- the EscalationService protocol ----------------------------------------------------------

    async def create(
        self, request: EscalationRequest, *, idempotency_key: str | None = None
    ) -> EscalationView:
        if self.witness.broken is not None:
            # Nothing may happen unwitnessed: refuse before storing anything (API 503).
            raise ServiceUnavailable(f"witness unavailable: {self.witness.broken}")
        if idempotency_key is not None:
            existing = self.store.by_idempotency_key(request.requester, idempotency_key)
            if existing is not None:
                return self.get(existing.id)
        esc_id = uuid.uuid4().hex
        trace_id = request.trace_id or uuid.uuid4().hex
        machine = EscalationMachine(
            esc_id,
            request,
            trace_id=trace_id,
            now=self.clock(),
            ring_timeout=self.settings.ring_timeout,
            deadline=self.settings.deadline,
            max_duration=self.settings.max_duration,
        )
        esc = _Escalation(machine, request, self.wall())
        self._live[esc_id] = esc
        view = self._view(esc)
        self.store.insert(view, idempotency_key)
        stored: dict[int, str] = {}
        if self.evidence is not None:
            # Inline evidence is stored before the ladder starts: the first INVITE links to it,
            # and its SHA-256 enters the witness with the request (custody from the first entry).
            stored, problems = self.evidence.attach_request(esc_id, request)
            for problem in problems:
                log.warning(problem, extra={"escalation_id": esc_id})
        await self._record(
            esc,
            "ESCALATION_REQUESTED",
            {
                "hazard": request.hazard,
                "question": request.question,
                "requester": request.requester,
                "urgency": request.urgency.value,
                "evidence": [
                    {"name": e.name, "sensitivity": e.sensitivity}
                    | ({"sha256": stored[i]} if i in stored else {})
                    for i, e in enumerate(request.evidence)
                ],
            },
        )
        esc.worker = asyncio.create_task(self._work(esc), name=f"escalation-{esc_id}")
        esc.visible = esc.machine.view(created_at=esc.created_at, updated_at=esc.updated_at)
        self._decide(esc)
        return self._view(esc)

    def get(self, escalation_id: str) -> EscalationView:
        esc = self._live.get(escalation_id)
        if esc is not None:
            return self._view(esc)
        view = self.store.get(escalation_id)
        if view is None:
            raise UnknownEscalation(escalation_id)
        return view

    def list(self, *, limit: int = 100) -> list[EscalationView]:
        return [self.get(v.id) for v in self.store.recent(limit)]

    async def cancel(self, escalation_id: str, *, by: str) -> EscalationView:
        esc = self._live.get(escalation_id)
        if esc is None:
            return self.get(escalation_id)  # ended already (idempotent) or unknown (raises)
        self._feed(esc, esc.machine.cancel(by, self.clock()))
        # Answer once CANCELLED is witnessed (or the escalation ended), so the answer is durable.
        fed = esc.fed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10), esc.changed:
                await esc.changed.wait_for(lambda: esc.published >= fed or esc.finished.is_set())
        return self.get(escalation_id)

    async def events(self, escalation_id: str, *, after: int = 0) -> AsyncIterator[EscalationEvent]:
        esc = self._live.get(escalation_id)
        if esc is None:
            self.get(escalation_id)  # raises UnknownEscalation when it never existed
            return
        sent = after
        while True:
            async with esc.changed:
                await esc.changed.wait_for(_has_news(esc, sent))
                pending = esc.events[sent:]
                done = esc.finished.is_set()
            for ev in pending:
                sent = ev.seq
                yield ev
            if done and sent >= len(esc.events):
                return

    def wait_finished(self, escalation_id: str) -> asyncio.Event:
        """An Event set when the escalation ends (tests, the demo)."""
        return self._live[escalation_id].finished

    # -- guard -------------------------------------------------------------------------------------

    def _load(self) -> dict[str, int]:
        now = self.clock()
        load: dict[str, int] = {}
        for expert_id, times in self._recent_calls.items():
            while times and now - times[0] > 60.0:
                times.popleft()
            load[expert_id] = len(times)
        return load

    def _decide(self, esc: _Escalation) -> None:
        req = esc.request
        started = time.perf_counter()
        candidates: list[Candidate] = self.guard.candidates(
            req.hazard,
            req.sensitivity,
            datetime.now(UTC),
            self._load(),
            escalation_id=esc.machine.escalation_id,
        )
        elapsed = time.perf_counter() - started
        permitted = [c for c in candidates if c.permitted]
        steps = [
            LadderStep(c.expert.id, c.expert.sip_uri, c.rank or i + 1)
            for i, c in enumerate(permitted)
        ]
        denied = {c.expert.id: c.reasons for c in candidates if not c.permitted}
        policy_hash = candidates[0].decision.policy_set_hash if candidates else ""
        if self.metrics is not None:
            for c in candidates:
                self.metrics.guard_decision("permit" if c.permitted else "deny", elapsed)
        decisions: builtins.list[dict[str, Any]] = [
            {
                "expert_id": c.expert.id,
                "permit": c.permitted,
                "policy_ids": list(c.reasons),
                "errors": list(c.decision.errors),
                "rank": c.rank,
            }
            for c in candidates
        ]
        esc.queue.append(
            [
                Record(
                    "GUARD_DECISION",
                    {"policy_set_hash": policy_hash, "decisions": decisions},
                )
            ]
        )
        self._feed(esc, esc.machine.guard_decided(steps, denied, policy_hash, self.clock()))

    # -- feeding the machine and applying its actions ------------------------------------------------

    def _feed(self, esc: _Escalation, actions: builtins.list[Any]) -> None:
        if actions:
            esc.fed += 1
            view = esc.machine.view(created_at=esc.created_at, updated_at=esc.updated_at)
            esc.queue.append([*actions, _Publish(esc.fed, view)])
            esc.wakeup.set()
        self._arm(esc)

    def _arm(self, esc: _Escalation) -> None:
        if esc.timer is not None:
            esc.timer.cancel()
            esc.timer = None
        deadline = esc.machine.get_timer()
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, deadline - self.clock())
        esc.timer = loop.call_later(delay, self._fire, esc)

    def _fire(self, esc: _Escalation) -> None:
        esc.timer = None
        self._feed(esc, esc.machine.handle_timer(self.clock()))

    async def _work(self, esc: _Escalation) -> None:
        while True:
            while esc.queue:
                for action in esc.queue.popleft():
                    await self._apply(esc, action)
                    if isinstance(action, Finished):
                        await self._finish(esc, action)
                        return
            esc.wakeup.clear()
            await esc.wakeup.wait()

    async def _apply(self, esc: _Escalation, action: Any) -> None:
        if isinstance(action, Record):
            details = dict(action.details)
            if action.type == "TERMINATED" and esc.bridge is not None:
                # The room closes before TERMINATED is witnessed: its recording's SHA-256 and
                # the RTP figures belong in that entry (media issue).
                queued = len(esc.queue)
                details.update(esc.bridge.close())
                # Closing emits the room's last events (LEFT for each participant,
                # RECORDING_STOPPED) as new batches; witness them now, before TERMINATED: the
                # worker stops at Finished, so batches queued behind it would be dropped.
                closing = [esc.queue.pop() for _ in range(len(esc.queue) - queued)]
                for batch in reversed(closing):
                    for record in batch:
                        if isinstance(record, Record):
                            await self._record(esc, record.type, dict(record.details))
            await self._record(esc, action.type, details)
        elif isinstance(action, _Publish):
            async with esc.changed:
                esc.visible, esc.published = action.view, action.batch
                esc.changed.notify_all()
            self.store.update(self._view(esc))
        elif isinstance(action, Ring):
            esc.rings[action.index] = asyncio.create_task(self._ring(esc, action))
        elif isinstance(action, CancelRing):
            task = esc.rings.pop(action.index, None)
            if task is not None and not task.done():
                task.cancel()  # UserAgent.call answers cancellation with a CANCEL (§9.1)
        elif isinstance(action, Hangup):
            call = esc.calls.get(action.index)
            if call is not None:
                await call.hangup()

    async def _record(self, esc: _Escalation, kind: str, details: dict[str, Any]) -> None:
        started = time.perf_counter()
        event = await self.witness.append(
            EventType(kind),
            trace_id=esc.machine.trace_id,
            escalation_id=esc.machine.escalation_id,
            actor=self.settings.actor,
            details=details,
        )
        if self.metrics is not None:
            self.metrics.witness_event(kind, time.perf_counter() - started)
        log.info(
            "escalation step %s",
            kind,
            extra={
                "trace_id": esc.machine.trace_id,
                "escalation_id": esc.machine.escalation_id,
                "witness_seq": event.seq,
            },
        )
        esc.updated_at = self.wall()
        async with esc.changed:
            esc.events.append(
                EscalationEvent(
                    esc.machine.escalation_id,
                    len(esc.events) + 1,
                    kind,
                    esc.updated_at,
                    {**details, "witness_seq": event.seq},
                )
            )
            esc.changed.notify_all()
        self.store.update(self._view(esc))

    async def _finish(self, esc: _Escalation, action: Finished) -> None:
        if esc.timer is not None:
            esc.timer.cancel()
        if esc.bridge is not None:
            esc.bridge.close()
        for task in esc.rings.values():
            task.cancel()
        self._count_outcome(action.outcome)
        esc.visible = None  # every Record before Finished is committed: the machine's view it is
        self.store.update(self._view(esc))
        async with esc.changed:
            esc.finished.set()
            esc.changed.notify_all()
        self._live.pop(esc.machine.escalation_id, None)
        for call_id in [k for k, v in self._by_call.items() if v == esc.machine.escalation_id]:
            del self._by_call[call_id]

    def _count_outcome(self, outcome: Outcome) -> None:
        if self.metrics is not None:
            self.metrics.escalation_ended(outcome.value)

    # -- ringing one expert ---------------------------------------------------------------------------

    async def _ring(self, esc: _Escalation, ring: Ring) -> None:
        req = esc.request
        headers = sign_invite_headers(
            self.signer,
            escalation_id=esc.machine.escalation_id,
            hazard=req.hazard,
            expert_id=ring.expert_id,
            expert_uri=ring.sip_uri,
            trace_id=esc.machine.trace_id,
            now=self.wall(),
        )
        headers += self._call_info(esc, ring.expert_id)
        self._recent_calls.setdefault(ring.expert_id, deque()).append(self.clock())
        started = self.clock()

        def provisional(resp: Any) -> None:
            if resp.status in (180, 183):
                self._feed(esc, esc.machine.ringing(ring.index, self.clock()))

        try:
            call = await self.ua.call(ring.sip_uri, headers=headers, on_provisional=provisional)
        except CallFailed as exc:
            self._call_metrics(req.hazard, f"failed_{exc.status}", None)
            self._feed(esc, esc.machine.call_failed(ring.index, exc.status, self.clock()))
            return
        except (OSError, ValueError) as exc:
            log.warning("cannot call %s: %s", ring.sip_uri, exc)
            self._feed(esc, esc.machine.call_failed(ring.index, 503, self.clock()))
            return
        self._call_metrics(req.hazard, "answered", self.clock() - started)
        await self._connected(esc, ring.index, call)

    async def _connected(self, esc: _Escalation, index: int, call: Call) -> None:
        """The expert's leg is up (we called, or they called in): track it until it ends."""
        esc.calls[index] = call
        self._by_call[call.call_id] = esc.machine.escalation_id
        if call.media is not None:
            # RFC 4733 telephone-events from the expert's leg carry the verdict.
            call.media.on_dtmf = lambda key: self._dtmf(esc, key)
        self._feed(esc, esc.machine.answered(index, self.clock()))
        if self.evidence is not None:
            task = asyncio.create_task(self._message_evidence(esc, index, call))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if self.metrics is not None:
            self.metrics.call_started()
        if self.council is not None and call.media is not None:
            self._bridge(esc, index, call.media)
        connected = self.clock()
        reason = await call.wait_ended()
        if self.metrics is not None:
            self.metrics.call_ended(self.clock() - connected)
        by = "expert" if reason == "remote-bye" else "system" if reason == "no-ack" else "council"
        if esc.machine.state is EscalationState.CONNECTED:
            self._feed(esc, esc.machine.hangup(by, self.clock()))

    def _call_info(self, esc: _Escalation, expert_id: str) -> builtins.list[tuple[str, str]]:
        """Links to the evidence, bound to this expert, as RFC 3261 §20.9 Call-Info with
        ``purpose=info`` ("a URI for information about the caller"): the phone may show them."""
        if self.evidence is None:
            return []
        links = self.evidence.links_for(esc.machine.escalation_id, expert_id)
        self._witness_links(esc, links, "sip-invite")
        return [("Call-Info", f"<{link.url}>;purpose=info") for link in links]

    def _witness_links(self, esc: _Escalation, links: builtins.list[IssuedLink], by: str) -> None:
        """Issued links go to the witness and the event stream in the escalation's order."""
        assert self.evidence is not None
        if links:
            details = [self.evidence.issued_details(link, by) for link in links]
            esc.queue.append([Record("EVIDENCE_ACCESSED", d) for d in details])
            esc.wakeup.set()

    async def _message_evidence(self, esc: _Escalation, index: int, call: Call) -> None:
        """After answering, the links (fresh, bound to the connected expert) in an in-dialog
        MESSAGE (RFC 3428), so a phone that ignored Call-Info still gets them as text."""
        assert self.evidence is not None
        expert_id = esc.machine.ladder[index].expert_id
        links = self.evidence.links_for(esc.machine.escalation_id, expert_id)
        if not links:
            return
        self._witness_links(esc, links, "sip-message")
        lines = [f"IF.ESCALATE evidence for escalation {esc.machine.escalation_id}:"]
        lines += [f"{link.name}: {link.url}" for link in links]
        body = ("\r\n".join(lines) + "\r\n").encode("utf-8")
        try:
            resp = await call.send_message(body, "text/plain;charset=utf-8")
        except (CallFailed, OSError) as exc:
            log.warning("evidence MESSAGE not delivered: %s", exc)
            return
        if resp.status >= 300:
            log.warning("evidence MESSAGE refused: %d %s", resp.status, resp.reason)

    def _bridge(self, esc: _Escalation, index: int, session: MediaSession) -> None:
        """Join the expert's leg to the council room; BRIDGE_ESTABLISHED once it is in."""
        assert self.council is not None
        if esc.bridge is None:
            esc.bridge = Bridge(
                self.council,
                esc.machine.escalation_id,
                record=self.settings.record,
                on_event=lambda ev: self._room_event(esc, ev),
            )
        esc.bridge.add_expert(esc.machine.ladder[index].expert_id, session)
        self._feed(esc, esc.machine.bridged(self.clock()))

    def _room_event(self, esc: _Escalation, event: RoomEvent) -> None:
        """Room events go to the witness and the event stream, in the escalation's order."""
        details: dict[str, Any] = {"participant": event.participant, **dict(event.details)}
        esc.queue.append([Record(event.type.value, details)])
        esc.wakeup.set()

    # -- experts calling in -----------------------------------------------------------------------

    def accept_call_in(self, registry: Registry, *, realm: str) -> None:
        """Challenge inbound calls with digest against the registry and route them to escalations."""
        self._lookup = DigestLookup(registry)
        self.ua.enable_digest(self._lookup, realm=realm)
        self.ua.on_incoming = self._on_incoming

    def _on_incoming(self, incoming: IncomingCall) -> None:
        call = incoming.call
        user = call.auth_user
        expert = self._lookup.expert_for(user) if self._lookup is not None and user else None
        if expert is None:
            self._refuse(incoming, CallInRejection(403, "Forbidden", "digest", "no_expert", ""))
            return
        source = call.source
        # With the gate on, it bound the caller to the expert's networks already (layer 2, on the
        # caller a trusted proxy named: behind the edge ``source`` is the edge, not the caller).
        if source is None or (not self.policy_in_gate and not source_allowed(expert, source.host)):
            host = source.host if source is not None else "?"
            self._refuse(
                incoming,
                CallInRejection(
                    403, "Forbidden - IP Not Allowlisted", "allowlist", "not_expert_network", host
                ),
                expert.id,
            )
            return
        # Normally the security gate refused this already; checked again here so call-in stays
        # pinned with the gate switched off (security.enabled: false).
        cert_refusal = cert_rejection(expert, source.tls.peer_cert_sha256 if source.tls else None)
        if cert_refusal is not None:
            self._refuse(incoming, cert_refusal, expert.id)
            return
        wanted = incoming.request.headers.get("X-IF-Escalation-ID")
        esc_id = self._pending_for(expert.id, wanted)
        if esc_id is None:
            rejection = CallInRejection(
                404,
                "Not Found - No Pending Escalation",
                "escalation",
                "no_pending_escalation",
                wanted or "",
            )
            self._refuse(incoming, rejection, expert.id)
            return
        if not self.policy_in_gate:
            # Without the security gate, layer 6 is asked here (the gate asks it before this).
            denied = policy_rejection(self.call_in_decision(expert.id, esc_id))
            if denied is not None:
                self._refuse(incoming, denied, expert.id)
                return
        esc = self._live[esc_id]
        index = esc.machine.current_index
        assert index is not None
        ring = esc.rings.pop(index, None)
        if ring is not None:
            ring.cancel()  # our own INVITE to them is CANCELled; their call replaces it
        incoming.answer()
        esc.rings[index] = asyncio.create_task(self._connected(esc, index, call))

    def policy_decided_by_gate(self) -> None:
        """The security gate asks :meth:`call_in_decision` (layer 6) before a call-in reaches
        :meth:`_on_incoming`: do not ask twice, and let suspended experts pass digest so the
        policy refuses them by name (``DigestLookup.include_suspended``)."""
        self.policy_in_gate = True
        if self._lookup is not None:
            self._lookup.include_suspended = True

    def _pending_for(self, expert_id: str, wanted: str | None) -> str | None:
        """The escalation a call-in by ``expert_id`` joins: one whose ladder rings them now."""
        offered = [
            (esc_id, e.machine.ladder[e.machine.current_index].expert_id)
            for esc_id, e in self._live.items()
            if e.machine.state is EscalationState.RINGING and e.machine.current_index is not None
        ]
        return choose_escalation(expert_id, offered, wanted)

    def call_in_decision(self, expert_id: str, wanted: str | None) -> GuardDecision | None:
        """IF.guard's decision *now* for ``expert_id`` calling in to the escalation they would
        join (``wanted``: the caller's X-IF-Escalation-ID selector). The ladder was decided when
        the escalation began; since then the expert may have been suspended, left their
        availability window or lost their organisation's approval. The same ``Guard.decide``
        and load as at ladder time. None: no escalation rings them (the call-in answers 404)."""
        esc_id = self._pending_for(expert_id, wanted)
        if esc_id is None:
            return None
        try:
            expert = self.guard.registry.get(expert_id)
        except ExpertNotFound:
            return None
        req = self._live[esc_id].request
        started = time.perf_counter()
        decision = self.guard.decide(
            expert,
            req.hazard,
            req.sensitivity,
            datetime.now(UTC),
            self._load(),
            escalation_id=esc_id,
        )
        if self.metrics is not None:
            elapsed = time.perf_counter() - started
            self.metrics.guard_decision("permit" if decision.permit else "deny", elapsed)
        return decision

    def _refuse(
        self, incoming: IncomingCall, rejection: CallInRejection, expert_id: str | None = None
    ) -> None:
        incoming.reject(rejection.status, rejection.reason)
        if self.metrics is not None:
            self.metrics.security_rejection(rejection.layer, rejection.label)
        source = incoming.call.source
        details: dict[str, Any] = {
            "layer": rejection.layer,
            "reason": rejection.label,
            "reason_phrase": rejection.reason,
            "detail": rejection.detail,
            "expert_id": expert_id,
            "source": f"{source.host}:{source.port}" if source is not None else None,
            "transport": source.transport if source is not None else None,
        }
        # Asked now, while the gate still holds this request's origin (it answers synchronously).
        vouched = self.vouched_origin(incoming.request) if self.vouched_origin else None
        if vouched is not None:
            # The caller the proxy named and the proxy, as the gate's own entries record them;
            # ``transport`` stays the hop from the proxy, the only one this process saw.
            details |= {"source": vouched.source, "proxy": vouched.proxy}
        task = asyncio.create_task(
            self.witness.append(
                EventType.SECURITY_REJECTED,
                trace_id=None,
                escalation_id=None,
                actor=self.settings.actor,
                details=details,
            )
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _call_metrics(self, hazard: str, result: str, setup: float | None) -> None:
        if self.metrics is None:
            return
        self.metrics.call_result(hazard, result)
        if setup is not None:
            self.metrics.call_setup(setup)

    def _on_info(self, call: Call, request: Any) -> None:
        """SIP INFO DTMF (application/dtmf-relay, "Signal=1"): the verdict fallback of RFC 4733."""
        esc_id = self._by_call.get(call.call_id)
        esc = self._live.get(esc_id) if esc_id else None
        if esc is None or esc.machine.state is not EscalationState.CONNECTED:
            return
        digit = _dtmf_digit(request.headers.get("Content-Type") or "", request.body)
        if digit is not None:
            self._dtmf(esc, digit)

    def _dtmf(self, esc: _Escalation, digit: str) -> None:
        """A key from the expert (RFC 4733 event or SIP INFO): 1 approve, 2 reject, 3 more info."""
        verdict = DTMF_VERDICTS.get(digit)
        if verdict is not None and esc.machine.state is EscalationState.CONNECTED:
            self._feed(esc, esc.machine.verdict(verdict, self.clock()))

    # -- views ------------------------------------------------------------------------------------------

    def _view(self, esc: _Escalation) -> EscalationView:
        if esc.visible is None:  # before the first Record, and once finished
            return esc.machine.view(created_at=esc.created_at, updated_at=esc.updated_at)
        return dataclasses.replace(esc.visible, updated_at=esc.updated_at)


@dataclass(frozen=True, slots=True)
class _Publish:
    """Queued after a batch of machine actions: its view becomes the API's once the worker has
    applied (witnessed) everything before it."""

    batch: int
    view: EscalationView


def _has_news(esc: _Escalation, sent: int) -> Callable[[], bool]:
    return lambda: len(esc.events) > sent or esc.finished.is_set()


def _dtmf_digit(content_type: str, body: bytes) -> str | None:
    """The digit of an INFO body: application/dtmf-relay ("Signal=1") or application/dtmf ("1")."""
    ctype = content_type.split(";")[0].strip().lower()
    text = body.decode("ascii", "replace").strip()
    if ctype == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                return value.strip()[:1] or None
        return None
    if ctype == "application/dtmf":
        return text[:1] or None
    return None
