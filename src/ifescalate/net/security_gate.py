"""The security pipeline wired in front of the SIP endpoint (ARCHITECTURE.md, "Security pipeline").

The endpoint calls the gate for every request that starts a new server transaction (retransmissions,
ACK and CANCEL are matched before, so they cost nothing here). The gate:

1. strips ``X-IF-*`` headers a caller sent (they are ours; ``security.hygiene``),
2. builds :class:`~ifescalate.security.RequestFacts` from the transport's :class:`Source` only
   (peer address, transport, negotiated TLS, whether the request matched one of our dialogs),
3. runs layers 1-3, then for requests the user agent challenges (out-of-dialog INVITE, MESSAGE)
   the digest verdict and layers 4-6,
   (behind a trusted proxy the source is the caller the proxy names in ``X-IF-Source``:
   ``security.proxy``),
4. answers a rejection with the layer's status, reason phrase and headers (or drops it silently for
   INVITE when configured), and feeds the bounded :class:`RejectionAggregator` whose entries go to
   the witness (``SECURITY_REJECTED``) and ``security_rejections_total{layer,reason}``.

With the in-memory counters the pipeline never suspends, so the decision is taken synchronously on
the datagram's call stack (no task per request). With Redis each decision is a task; the request
is held (duplicates dropped) and handed to the endpoint when it passes.

When the counters live in Redis and Redis does not answer (refused, lost, or silent past
``counters_timeout``), the layers that need them answer ``503 Service Unavailable - Security Counters
Down`` with Retry-After (``security.availability``): one log line when the outage starts, one when it
ends, a probe every ``counters_probe`` seconds meanwhile, and no request waits on a dead Redis.
Requests that need no counter (in-dialog ones, a trusted source's OPTIONS) keep passing.

Digest verification happens here, once: the user agent learns the proved username through
:meth:`SecurityGate.verified_user` instead of verifying again (which would burn the nonce-count and
look like a replay).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from ..observability import Metrics
from ..security import (
    Allow,
    AuditEntry,
    AuthFacts,
    AuthOutcome,
    Challenge,
    Decision,
    ExpertFacts,
    Layer,
    MemoryCounters,
    Pipeline,
    PolicyDecision,
    Reject,
    RejectionAggregator,
    RequestFacts,
    SecurityConfig,
    TlsFacts,
    auth_facts,
    parse_rate,
    strip_if_headers,
)
from ..security.availability import (
    CountersUnavailable,
    GuardedCounters,
    is_outage,
    unavailable,
)
from ..security.facts import parse_networks
from ..security.layers import TLS_REQUIRED, ExpertLimitConfig, FloodConfig, TransportLayer
from ..security.proxy import SOURCE_HEADER, Origin, origin
from ..sip.build import make_response
from ..sip.digest import NonceCountCheck, parse_auth_header
from ..sip.errors import SipError
from ..sip.message import Request, Response
from .endpoint import SipEndpoint
from .transport import Source
from .ua import UserAgent

if TYPE_CHECKING:
    from ..guard import Expert

log = logging.getLogger("ifescalate.security")

#: Requests the user agent challenges with digest when they start something (§22.2).
CHALLENGED_METHODS = frozenset({"INVITE", "MESSAGE"})

ExpertResolver = Callable[[str], ExpertFacts | None]
#: Layer 6: IF.guard's decision for the authenticated expert and the request they sent (a
#: call-in names the escalation it joins); called only once layers 1-5 let the request in.
Authorizer = Callable[[ExpertFacts, Request], PolicyDecision]
AuditSink = Callable[[AuditEntry], None]

T = TypeVar("T")

#: Connections the endpoint refused or cut off (``net.transport.StreamLimits``), by its stats key,
#: as the transport layer's rejections. No response is sent (there is no request to answer, or the
#: connection is refused outright); the status says what it would have been.
STREAM_REJECTIONS = {
    kind: Reject(status, phrase, Layer.TRANSPORT, label)
    for kind, status, phrase, label in (
        ("connections_refused", 503, "Service Unavailable", "connection_limit_peer"),
        ("connections_limit", 503, "Service Unavailable", "connection_limit_total"),
        ("message_timeout", 408, "Request Timeout", "message_timeout"),
        ("tls_handshake_timeout", 408, "Request Timeout", "tls_handshake_timeout"),
        ("tls_handshake_failed", 403, TLS_REQUIRED, "tls_handshake_failed"),
    )
}


@dataclass(frozen=True, slots=True)
class GateOptions:
    """How the gate answers.

    ``drop_failed_invites``: audited rejections of INVITE get no response at all (scanners learn
    nothing, not even that something listens). ``loopback_exempt_from_tls``: the transport layer
    lets plain UDP/TCP from loopback through (the documented rule); tests switch it off to prove
    ``--require-tls`` on a loopback-only machine. ``keep_if_headers`` names the ``X-IF-*`` headers a
    caller may send as a mere selector (serve keeps ``X-IF-Escalation-ID``).
    """

    drop_failed_invites: bool = False
    loopback_exempt_from_tls: bool = True
    keep_if_headers: tuple[str, ...] = ()


class _NoLoopbackExemption(TransportLayer):
    """``require_tls`` applied to loopback sources too (tests on a loopback-only host)."""

    def decide(self, facts: RequestFacts) -> Decision:
        if facts.tls is None and self.config.require_tls:
            return Reject(403, TLS_REQUIRED, Layer.TRANSPORT, "tls_required")
        return super().decide(facts)


def run_now(coro: Coroutine[Any, Any, T]) -> T:
    """Drive a coroutine that never suspends (the in-memory counters) to its result, without a
    loop. Raises RuntimeError if it does suspend (a misconfigured backend)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("the counter backend suspended: it needs the asynchronous path")


def single_user_expert(
    user: str,
    *,
    allow_md5: bool,
    networks: Iterable[str] = (),
    cert_fingerprints: Iterable[str] = (),
) -> ExpertFacts:
    """The one identity of ``sip answer --auth USER:PASSWORD``: any network the allowlist lets in
    (the pre-authentication allowlist already bound the source), MD5 only if offered, pinned to
    ``--client-cert-fingerprint`` certificates when given."""
    nets = tuple(ipaddress.ip_network(n, strict=False) for n in networks) or (
        ipaddress.ip_network("0.0.0.0/0"),
        ipaddress.ip_network("::/0"),
    )
    return ExpertFacts(
        expert_id=user,
        org="*",
        networks=nets,
        allow_md5=allow_md5,
        cert_fingerprints=tuple(cert_fingerprints),
    )


class SecurityGate:
    """The glue between endpoint, user agent and pipeline; see the module docstring."""

    def __init__(
        self,
        pipeline: Pipeline,
        ua: UserAgent,
        *,
        experts: ExpertResolver,
        authorize: Authorizer | None = None,
        on_audit: AuditSink | None = None,
        metrics: Metrics | None = None,
        options: GateOptions = GateOptions(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pipeline = pipeline
        self.ua = ua
        self.experts = experts
        self.authorize = authorize
        self.on_audit = on_audit
        self.metrics = metrics
        self.options = options
        self.clock = clock
        if not options.loopback_exempt_from_tls:
            pipeline.transport = _NoLoopbackExemption(pipeline.config.transport)
        self.aggregator = RejectionAggregator(pipeline.config.audit_window)
        self.sync = isinstance(pipeline.counters, MemoryCounters)
        counters = pipeline.counters
        #: The shared counters' circuit breaker (None with the in-memory counters).
        self.guarded = counters if isinstance(counters, GuardedCounters) else None
        if self.guarded is not None:
            self.guarded.on_down = self._counters_down
        self._probe: asyncio.Task[None] | None = None
        #: Rejections by (layer, reason) and other outcomes, for tests and the CLI's stop line.
        self.stats: Counter[str] = Counter()
        self._verified: tuple[Request, str] | None = None
        #: The last admitted request that came through a trusted proxy, and whom it vouched for.
        self._vouched: tuple[Request, Origin] | None = None
        self._pending: set[tuple[str, str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flush_handle: asyncio.TimerHandle | None = None
        self.endpoint: SipEndpoint | None = None

    # -- wiring ------------------------------------------------------------------------------------

    def attach(self, endpoint: SipEndpoint) -> None:
        """Put the gate in front of ``endpoint`` and tell the user agent who was verified here."""
        self.endpoint = endpoint
        endpoint.gate = self.admit
        endpoint.on_stream_refused = self.stream_refused
        self.ua.verified_user = self.verified_user

    async def share_nonce_key(self) -> bool:
        """Sign digest nonces with the key every instance on the same shared counters uses, so a
        nonce issued by one instance verifies at another (RFC 7616 §3.3: the nonce is opaque to
        the client, which may send its answer anywhere behind the edge). True when shared."""
        digest = self.ua.digest
        if digest is None:
            return False
        try:
            key = await self.pipeline.counters.shared_secret("digest-nonce-key", 32)
        except CountersUnavailable:
            # Start anyway (the outage is logged and probed): nothing that needs a nonce is
            # admitted until the counters answer, and the probe shares the key first.
            return False
        if key is None:
            return False
        self.ua.digest = digest.with_key(key)
        return True

    # -- counters outage ---------------------------------------------------------------------------

    def _counters_down(self, error: str) -> None:
        log.error(
            "security counters unavailable (%s): requests that need them are answered 503 until "
            "they answer again; probing every %g s",
            error,
            self.pipeline.config.counters_probe,
        )
        self.stats["counters_outages"] += 1
        if self.metrics is not None:
            self.metrics.set_security_counters_up(False)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_up())

    async def _probe_until_up(self) -> None:
        guarded = self.guarded
        assert guarded is not None
        while True:
            await asyncio.sleep(self.pipeline.config.counters_probe)
            try:
                await guarded.probe()
                # Read the shared nonce key again before admitting anything: a Redis restarted
                # without its data has a new one (the first instance back creates it), and an
                # instance that started during the outage never had it.
                if self.ua.digest is not None:
                    key = await guarded.inner.shared_secret("digest-nonce-key", 32)
                    if key is not None:
                        self.ua.digest = self.ua.digest.with_key(key)
            except CountersUnavailable:
                continue
            refused = guarded.health.refused
            length = guarded.health.recovered(self.clock())
            log.warning(
                "security counters answer again after %.1f s unavailable; %d request(s) were "
                "refused meanwhile",
                length or 0.0,
                refused,
            )
            if self.metrics is not None:
                self.metrics.set_security_counters_up(True)
            return

    def counters_problem(self) -> str | None:
        """None when the counters answer (or live in memory), else why not (for ``/ready``)."""
        if self.guarded is None:
            return None
        return self.guarded.health.problem(self.clock())

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._probe is not None:
            self._probe.cancel()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._emit(self.aggregator.flush_all())
        await self.pipeline.aclose()

    def verified_user(self, request: Request) -> str | None:
        """The username this gate proved for ``request`` (asked by the UA's digest check)."""
        verified = self._verified
        if verified is not None and verified[0] is request:
            self._verified = None
            return verified[1]
        return None

    def vouched_origin(self, request: Request) -> Origin | None:
        """The caller a trusted proxy named for ``request`` and the proxy, when this gate just
        admitted it from one (None: a direct caller). Asked synchronously by whoever handles
        the admitted request (the call-in path), so one slot suffices, as for
        :meth:`verified_user`; later audit entries of that request then name the caller, not
        the edge."""
        vouched = self._vouched
        if vouched is not None and vouched[0] is request:
            return vouched[1]
        return None

    # -- the endpoint's hook -----------------------------------------------------------------------

    def admit(self, req: Request, source: Source) -> bool:
        """True: the endpoint goes on with ``req`` now. False: the gate answered, dropped or holds
        it (and hands it to the endpoint itself if it passes)."""
        claimed = req.headers.get_lines(SOURCE_HEADER)
        strip_if_headers(req.headers, self.options.keep_if_headers)
        try:
            where = origin(
                source.host, source.transport, claimed, self.pipeline.config.trusted_proxies
            )
            facts = None if isinstance(where, Reject) else self._facts(req, source, where)
        except ValueError:
            self.stats["unparsable_source"] += 1
            return False
        now = self.clock()
        if facts is None:
            assert isinstance(where, Reject)
            return self._apply(req, source, Origin(source.host), where, None, now)
        if facts.proxy is not None:
            self.stats["proxied"] += 1
        if self.sync:
            decision, user = run_now(self._decide(req, facts, now))
            return self._apply(req, source, _origin_of(facts), decision, user, now)
        key = (req.call_id, req.headers.first("Via") or "", req.method)
        if key in self._pending:
            self.stats["duplicate_while_pending"] += 1
            return False
        self._pending.add(key)
        task = asyncio.get_running_loop().create_task(self._admit_later(req, source, facts, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return False

    async def _admit_later(
        self, req: Request, source: Source, facts: RequestFacts, key: tuple[str, str, str]
    ) -> None:
        try:
            now = self.clock()
            decision, user = await self._decide(req, facts, now)
        finally:
            self._pending.discard(key)
        if self._apply(req, source, _origin_of(facts), decision, user, now):
            self._resume(req, source)

    def _resume(self, req: Request, source: Source) -> None:
        ep = self.endpoint
        if ep is None or ep.table.match_request(req) is not None:
            return
        entry = ep._new_server_tx(req, source, ep.loop.time())
        ep.tu.on_request(req, entry.tx, source)

    # -- facts and decision ------------------------------------------------------------------------

    def _facts(self, req: Request, source: Source, where: Origin) -> RequestFacts:
        tls = source.tls
        return RequestFacts(
            source_ip=where.source,
            transport=source.transport,
            method=req.method,
            in_dialog=self._in_dialog(req),
            tls=None if tls is None else TlsFacts(tls.version, tls.cipher, tls.peer_cert_sha256),
            proxy=where.proxy,
        )

    def _in_dialog(self, req: Request) -> bool:
        # §12.2.2: only a request that matches one of our dialogs is in-dialog; a To tag alone is
        # something any attacker can write.
        to = req.headers.get("To") or ""
        return "tag=" in to and self.ua.dialogs.find_for_request(req) is not None

    def _needs_identity(self, req: Request, facts: RequestFacts) -> bool:
        return (
            self.ua.digest is not None and req.method in CHALLENGED_METHODS and not facts.in_dialog
        )

    async def _decide(
        self, req: Request, facts: RequestFacts, now: float
    ) -> tuple[Decision, str | None]:
        decision = await self.pipeline.check_request(facts, now)
        if isinstance(decision, Reject) or not self._needs_identity(req, facts):
            return decision, None
        try:
            auth = await self._authenticate(req, now)
        except CountersUnavailable:
            # The nonce-count check could not run: no replay check, no admission.
            return unavailable(Layer.DIGEST, self.pipeline.config.retry_after), None
        authorize = self.authorize
        policy = None if authorize is None else (lambda expert: authorize(expert, req))
        decision = await self.pipeline.check_identity(facts, auth, now, policy)
        return decision, auth.username if isinstance(decision, Allow) else None

    async def _authenticate(self, req: Request, now: float) -> AuthFacts:
        digest = self.ua.digest
        assert digest is not None
        creds = req.headers.get("Authorization")
        checked = digest.verify_digest(req.method, creds, self.ua.credential_lookup, now)
        # The nonce-count lives in the pipeline's counters: with Redis, a nonce answered at any
        # instance counts at all of them, so a replay is refused wherever it is sent.
        result = (
            checked.result(
                await self.pipeline.counters.nonce_count(
                    checked.nonce, checked.nc, checked.expires_at, now
                )
            )
            if isinstance(checked, NonceCountCheck)
            else checked
        )
        if not result.ok or result.username is None:
            return auth_facts(result)
        expert = self.experts(result.username)
        if expert is None:
            # Digest passed for a name that is nobody's expert record: the same failure as a wrong
            # password, so the answer tells nothing.
            return AuthFacts(AuthOutcome.FAILED, result.username)
        return auth_facts(result, algorithm=_algorithm(creds), expert=expert)

    # -- acting on the decision --------------------------------------------------------------------

    def _apply(
        self,
        req: Request,
        source: Source,
        where: Origin,
        decision: Decision,
        user: str | None,
        now: float,
    ) -> bool:
        if isinstance(decision, Allow):
            if user is not None:
                self._verified = (req, user)
            self._vouched = (req, where) if where.proxy is not None else None
            return True
        self._account(decision, where.source, now, where.proxy)
        if req.method == "ACK":
            return False  # §17.2.1: an ACK is never answered
        # Silence is for attackers; a caller refused for our own outage is told to come back.
        drop = decision.audit and not is_outage(decision)
        if self.options.drop_failed_invites and req.method == "INVITE" and drop:
            self.stats["dropped_silently"] += 1
            return False
        self._answer(req, source, decision, now)
        return False

    def _answer(self, req: Request, source: Source, decision: Reject, now: float) -> None:
        ep = self.endpoint
        if ep is None:
            return
        headers = list(decision.headers)
        if decision.challenge is not None and self.ua.digest is not None:
            stale = decision.challenge is Challenge.STALE
            headers += [("WWW-Authenticate", c) for c in self.ua.digest.challenge(now, stale=stale)]
        banner = self.ua.config.banner
        if banner:
            headers.append(("Server", banner))
        resp = make_response(
            req, decision.status, decision.reason_phrase, to_tag=self.ua.ids.tag(), headers=headers
        )
        if decision.layer is Layer.FLOOD:
            # Stateless (§8.2.7): a flooding source gets no transaction state from us; a
            # retransmission is simply counted and refused again.
            ep.send_via_source(resp, source)
            return
        self._respond_in_transaction(ep, req, source, resp)

    @staticmethod
    def _respond_in_transaction(
        ep: SipEndpoint, req: Request, source: Source, resp: Response
    ) -> None:
        # A transaction absorbs retransmissions (§17.2), so a lost 401/403/429 is resent instead of
        # re-running the digest check (which would see the nonce-count again as a replay).
        if ep.table.match_request(req) is not None:
            return
        entry = ep._new_server_tx(req, source, ep.loop.time())
        try:
            ep.respond(entry.tx, resp)
        except SipError:
            log.debug("could not answer %s with %s", req.method, resp.status)

    def stream_refused(self, kind: str, host: str) -> None:
        """The endpoint refused or cut off a TCP/TLS connection from ``host`` (its StreamLimits):
        audited and counted like a rejection, so a slowloris is witnessed as one."""
        rejection = STREAM_REJECTIONS.get(kind)
        if rejection is not None:
            self._account(rejection, host, self.clock())

    def _account(self, decision: Reject, host: str, now: float, proxy: str | None = None) -> None:
        self.stats[f"{decision.layer.value}:{decision.reason_label}"] += 1
        if decision.audit:
            self.stats["rejected"] += 1
            if self.metrics is not None:
                self.metrics.security_rejection(decision.layer.value, decision.reason_label)
        self._emit(self.aggregator.add(decision, host, now, proxy))
        self._arm_flush(now)

    def _arm_flush(self, now: float) -> None:
        if self._flush_handle is not None or self.endpoint is None:
            return
        deadline = self.aggregator.next_deadline()
        if deadline is None:
            return
        self._flush_handle = self.endpoint.loop.call_later(max(0.0, deadline - now), self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        now = self.clock()
        self._emit(self.aggregator.flush(now))
        self._arm_flush(now)

    def _emit(self, entries: list[AuditEntry]) -> None:
        for entry in entries:
            self.stats["audit_entries"] += 1
            if self.on_audit is not None:
                self.on_audit(entry)
            else:
                log.info("SECURITY_REJECTED %s", entry.details())


def _origin_of(facts: RequestFacts) -> Origin:
    return Origin(facts.source_ip, facts.proxy)


def _algorithm(credentials: str | None) -> str | None:
    if not credentials:
        return None
    try:
        _, params = parse_auth_header(credentials)
    except SipError:
        return None
    return params.get("algorithm", "MD5")


def security_config(
    *,
    flood: str,
    flood_block: float,
    trusted: Iterable[str],
    allow: Iterable[str] | None,
    require_tls: bool,
    lockout: str,
    expert_calls: str,
    counters_url: str | None,
    counters_prefix: str,
    audit_window: float,
    counters_timeout: float = 0.5,
    counters_probe: float = 1.0,
    trusted_proxies: Iterable[str] = (),
) -> SecurityConfig:
    """The :class:`SecurityConfig` of serve's ``security:`` section (rates as "N/SECONDS")."""
    base = SecurityConfig.from_cli(
        flood=flood, allow=allow or (), lockout=lockout, require_tls=require_tls, trusted=trusted
    )
    calls, window = parse_rate(expert_calls)
    f = base.flood
    return replace(
        base,
        flood=FloodConfig(limit=f.limit, window=f.window, block=flood_block, trusted=f.trusted),
        # An empty list is "nobody before authentication", None "only experts' own networks".
        allow_by_org=None if allow is None else {"*": parse_networks(allow)},
        expert_limit=ExpertLimitConfig(calls=calls, window=window),
        counters_url=counters_url,
        counters_prefix=counters_prefix,
        audit_window=audit_window,
        counters_timeout=counters_timeout,
        counters_probe=counters_probe,
        trusted_proxies=parse_networks(trusted_proxies),
    )


def make_pipeline(config: SecurityConfig, clock: Callable[[], float] = time.time) -> Pipeline:
    """A pipeline on the configured counters: Redis when ``counters_url`` is set, behind the
    circuit breaker that turns an outage into 503s (``security.availability``)."""
    if config.counters_url is None:
        return Pipeline(config)
    from ..security.redis_counters import RedisCounters

    redis = RedisCounters.from_url(
        config.counters_url, prefix=config.counters_prefix, timeout=config.counters_timeout
    )
    return Pipeline(config, GuardedCounters(redis, clock))


def expert_facts(expert: Expert | None) -> ExpertFacts | None:
    """What the pipeline needs of a registry record (None stays None: no such expert)."""
    if expert is None:
        return None
    return ExpertFacts(
        expert_id=expert.id,
        org=expert.org,
        networks=expert.networks,
        allow_md5=expert.digest is not None and expert.digest.ha1_md5 is not None,
        cert_fingerprints=expert.cert_fingerprints,
        calls_per_minute=expert.calls_per_minute,
    )
