"""Composition root: builds every component from Settings, starts them in order, stops them in reverse.

Order matters: the witness first (nothing may happen unwitnessed), then the registry and policies
(an invalid policy set refuses to start), the SIP endpoint, the escalation service (which marks
escalations a dead process left in flight as failed), and the HTTP API last, so that the API never
accepts an escalation the rest cannot serve.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import urllib.parse
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from aiohttp import web

from .api import ApiConfig, Scope, StoreWitnessReader, TokenStore, build_app
from .config import ConfigError, Settings
from .council import Council
from .escalation.callin import DigestLookup, policy_reason
from .escalation.service import EscalationServiceImpl, EscalationSettings
from .escalation.store import EscalationStore
from .evidence.keyfile import load_or_create_link_key
from .evidence.links import LinkSigner
from .evidence.service import EvidenceService
from .evidence.store import EvidenceStore
from .guard import ExpertNotFound, Guard, GuardConfig, PolicyEngine, SqliteRegistry, load_yaml
from .net.devcert import dev_tls_cert
from .net.endpoint import SipEndpoint
from .net.rtp import MediaConfig
from .net.security_gate import (
    GateOptions,
    SecurityGate,
    expert_facts,
    make_pipeline,
    security_config,
)
from .net.tls import TlsOptions, client_context, server_context
from .net.transport import ListenSpec, StreamLimits
from .net.ua import UaConfig, UserAgent
from .observability import Metrics
from .security import AuditEntry, ExpertFacts, PolicyDecision
from .sip.message import Request
from .witness.core import EventType
from .witness.keys import load_or_create_signer
from .witness.service import Witness
from .witness.store import SqliteStore

log = logging.getLogger("ifescalate.app")

DB_FILENAME = "ifescalate.db"


@dataclass(slots=True)
class Started:
    """What ``start`` bound, for people (printed) and tests (ports)."""

    sip: list[ListenSpec] = field(default_factory=list)
    api_url: str = ""
    new_tokens: dict[str, str] = field(default_factory=dict)
    tls_cert: Path | None = None
    #: True when this start generated the development certificate (first run on this data dir).
    tls_cert_generated: bool = False


def sample_registry_path() -> Path:
    return Path(str(resources.files("ifescalate.guard").joinpath("sample/experts.yaml")))


class App:
    """The running service; ``await start()``, then ``await stop()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_path
        self.metrics = Metrics()
        self.witness: Witness | None = None
        self.registry: SqliteRegistry | None = None
        self.guard: Guard | None = None
        self.ua: UserAgent | None = None
        self.endpoint: SipEndpoint | None = None
        self.store: EscalationStore | None = None
        self.service: EscalationServiceImpl | None = None
        self.council: Council | None = None
        self.evidence: EvidenceService | None = None
        self.tokens: TokenStore | None = None
        self.runner: web.AppRunner | None = None
        self.gate: SecurityGate | None = None
        self._audit_tasks: set[asyncio.Task[object]] = set()
        self.started = Started()
        self._sip_seen: dict[str, int] = {}

    # -- start -------------------------------------------------------------------------------------

    async def start(self) -> Started:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        signer = load_or_create_signer(self.data_dir)
        self.witness = Witness(self._witness_store(), signer)
        await self.witness.start()
        self._start_guard()
        await self._start_sip()
        assert self.witness is not None and self.guard is not None and self.ua is not None
        assert self.registry is not None
        self.store = EscalationStore.in_data_dir(self.data_dir)
        self.council = Council(recording_dir=self.data_dir / "recordings")
        esc = self.settings.escalation
        self.service = EscalationServiceImpl(
            guard=self.guard,
            witness=self.witness,
            ua=self.ua,
            store=self.store,
            signer=signer,
            settings=EscalationSettings(
                ring_timeout=esc.ring_timeout,
                deadline=esc.deadline,
                max_duration=esc.max_duration,
                record=esc.record,
            ),
            metrics=self.metrics,
            council=self.council,
        )
        self.service.accept_call_in(self.registry, realm=self.settings.sip.realm)
        self._start_evidence()
        self._start_security()
        if self.gate is not None:
            await self.gate.share_nonce_key()
        failed = await self.service.recover()
        if failed:
            log.warning(
                "marked %d escalation(s) left in flight by a previous run as failed", failed
            )
        await self._start_api()
        return self.started

    def _witness_store(self) -> SqliteStore:
        url = self.settings.database_url
        if url:
            from .witness.pg import PostgresStore

            return PostgresStore(url, schema=self.settings.database_schema)  # type: ignore[return-value]
        return SqliteStore.in_data_dir(self.data_dir)

    def _start_guard(self) -> None:
        s = self.settings
        self.registry = SqliteRegistry(self.data_dir / DB_FILENAME)
        experts_file = s.experts_file
        if experts_file is None and not self.registry.list():
            experts_file = str(sample_registry_path())
        if experts_file is not None:
            result = self.registry.merge(load_yaml(experts_file, hazards=tuple(s.hazards)))
            log.info("registry merged from %s: %s", experts_file, result)
        engine = (
            PolicyEngine.from_files(s.policy_files) if s.policy_files else PolicyEngine.default()
        )
        self.guard = Guard(
            self.registry,
            engine,
            GuardConfig(
                hazards=tuple(s.hazards),
                approved_orgs=frozenset(s.approved_orgs) if s.approved_orgs is not None else None,
            ),
        )

    def _tls_options(self) -> TlsOptions:
        sip = self.settings.sip
        cert, key = sip.tls_cert, sip.tls_key
        if cert is None or key is None:
            tls_dir = self.data_dir / "tls"
            cert_path, key_path = tls_dir / "dev-cert.pem", tls_dir / "dev-key.pem"
            if not (cert_path.exists() and key_path.exists()):
                cert_path, key_path = dev_tls_cert(tls_dir)
                self.started.tls_cert_generated = True
            cert, key = str(cert_path), str(key_path)
            self.started.tls_cert = cert_path
        self._warn_unusable_pins()
        return TlsOptions(
            cert_file=Path(cert),
            key_file=Path(key),
            ca_file=Path(sip.tls_ca) if sip.tls_ca else None,
            require_client_cert=sip.require_client_cert,
            verify_server=sip.verify_peers,
            client_ca_file=Path(sip.tls_client_ca) if sip.tls_client_ca else None,
        )

    def _warn_unusable_pins(self) -> None:
        """Pinned experts need a client CA: without one no certificate is asked for, so they
        could never call in (fail closed, but say so at start rather than per refused call)."""
        sip = self.settings.sip
        if sip.tls_client_ca or sip.tls_ca or self.registry is None:
            return
        pinned = [e.id for e in self.registry.list() if e.cert_fingerprints]
        if pinned:
            log.warning(
                "experts %s pin TLS client certificates but sip.tls_client_ca is not set: "
                "no certificate is requested, so they cannot call in",
                ", ".join(pinned),
            )

    def _stream_limits(self) -> StreamLimits:
        sip = self.settings.sip
        try:
            return StreamLimits(
                message_timeout=sip.message_timeout,
                tls_handshake_timeout=sip.tls_handshake_timeout,
                idle_timeout=sip.idle_timeout,
                max_per_peer=sip.max_connections_per_peer,
                max_total=sip.max_connections,
            )
        except ValueError as exc:
            raise ConfigError(f"sip: {exc}") from exc

    async def _start_sip(self) -> None:
        sip = self.settings.sip
        auth_user = auth_password = None
        if sip.auth:
            auth_user, _, auth_password = sip.auth.partition(":")
        self.ua = UserAgent(
            UaConfig(
                user=sip.user,
                auth_user=auth_user,
                auth_password=auth_password,
                ring_ms=sip.ring_ms,
                media_host=sip.media_host,
                auth_algorithms=tuple(sip.auth_algorithms),
                media=self._media_config(),
            )
        )
        tls = self._tls_options()
        specs = [ListenSpec.parse(x) for x in sip.listen]
        client_ctx: ssl.SSLContext = client_context(tls)
        self.endpoint = SipEndpoint(
            self.ua, tls_client_context=client_ctx, limits=self._stream_limits()
        )
        self.ua.attach(self.endpoint)
        self.metrics.on_render(self._sync_sip_metrics)
        server_ctx = server_context(tls) if any(s.transport == "TLS" for s in specs) else None
        for spec in specs:
            bound = await self.endpoint.listen(
                spec, server_ctx if spec.transport == "TLS" else None
            )
            self.started.sip.append(bound)

    _SIP_ERROR_KINDS = (
        "malformed",
        "dropped",
        "invalid",
        "stream_errors",
        "connections_refused",
        "connections_limit",
        "message_timeout",
        "tls_handshake_timeout",
        "tls_handshake_failed",
    )

    def _sync_sip_metrics(self) -> None:
        """Copy the endpoint's counters into Prometheus at scrape time (no cost per message)."""
        if self.endpoint is None:
            return
        stats = self.endpoint.stats
        self.metrics.set_stream_connections(self.endpoint.stream_connections)
        for kind in self._SIP_ERROR_KINDS:
            self.metrics.sip_error(kind, stats[kind] - self._sip_seen.get(kind, 0))
            self._sip_seen[kind] = stats[kind]
        for status, count in list(self.endpoint.responses_by_status.items()):
            key = f"status:{status}"
            self.metrics.sip_response(status, count - self._sip_seen.get(key, 0))
            self._sip_seen[key] = count

    def _start_security(self) -> None:
        """The security gate in front of the endpoint; its rejections go to the witness as
        SECURITY_REJECTED entries (aggregated per source and window) and to the metrics."""
        sec = self.settings.security
        if not sec.enabled:
            return
        assert self.ua is not None and self.endpoint is not None and self.registry is not None
        config = security_config(
            flood=sec.flood,
            flood_block=sec.flood_block,
            trusted=sec.trusted,
            allow=sec.allow,
            require_tls=sec.require_tls,
            lockout=sec.lockout,
            expert_calls=sec.expert_calls,
            counters_url=sec.counters_url,
            counters_prefix=sec.counters_prefix,
            audit_window=sec.audit_window,
            counters_timeout=sec.counters_timeout,
            counters_probe=sec.counters_probe,
            trusted_proxies=sec.trusted_proxies,
        )
        lookup = DigestLookup(self.registry)
        self.gate = SecurityGate(
            make_pipeline(config),
            self.ua,
            experts=lambda name: expert_facts(lookup.expert_for(name)),
            authorize=self._call_in_policy,
            on_audit=self._witness_rejection,
            metrics=self.metrics,
            options=GateOptions(
                drop_failed_invites=sec.drop_failed_invites,
                keep_if_headers=("X-IF-Escalation-ID",),
            ),
        )
        self.gate.attach(self.endpoint)
        assert self.service is not None
        self.service.policy_decided_by_gate()
        self.service.vouched_origin = self.gate.vouched_origin

    def _call_in_policy(self, expert: ExpertFacts, request: Request) -> PolicyDecision:
        """Layer 6 for a call-in: IF.guard's decision now for the escalation the INVITE would join.

        A request that joins nothing (a MESSAGE, an INVITE no escalation rings them for) has no
        escalation to decide on and passes, except from a suspended expert: their digest passes
        only so that this layer refuses them by name (``DigestLookup.include_suspended``), never
        so that they get past the gate (a 200 to a MESSAGE, a 404 telling them nothing rings)."""
        if self.service is None:
            return PolicyDecision(True)
        if request.method == "INVITE":
            wanted = request.headers.get("X-IF-Escalation-ID")
            decision = self.service.call_in_decision(expert.expert_id, wanted)
            if decision is not None:
                if decision.permit:
                    return PolicyDecision(True)
                return PolicyDecision(False, policy_reason(decision), decision.policy_ids)
        if self._suspended(expert.expert_id):
            return PolicyDecision(False, "expert suspended")
        return PolicyDecision(True)

    def _suspended(self, expert_id: str) -> bool:
        assert self.registry is not None
        try:
            return self.registry.get(expert_id).suspended
        except ExpertNotFound:
            return True  # removed since digest looked them up: refuse

    def _witness_rejection(self, entry: AuditEntry) -> None:
        if self.witness is None:
            return
        task = asyncio.get_running_loop().create_task(
            self.witness.append(
                EventType.SECURITY_REJECTED,
                trace_id=None,
                escalation_id=None,
                actor="security",
                details=entry.details(),
            )
        )
        self._audit_tasks.add(task)
        task.add_done_callback(self._audit_tasks.discard)

    def _media_config(self) -> MediaConfig | None:
        m = self.settings.media
        if not m.enabled:
            return None
        if m.srtp not in ("auto", "off", "mandatory"):
            raise ConfigError(f"media.srtp must be auto, off or mandatory, not {m.srtp!r}")
        return MediaConfig(
            port_start=m.port_start,
            port_end=m.port_end,
            no_media_timeout=m.no_media_timeout,
            srtp=m.srtp,  # type: ignore[arg-type]
            codecs=tuple(m.codecs),
            rtcp_mux=m.rtcp_mux,
        )

    async def _start_api(self) -> None:
        assert self.service is not None and self.registry is not None and self.witness is not None
        self.tokens = TokenStore(self.data_dir / DB_FILENAME)
        if not self.tokens.list():
            # First run: one token per role, printed once (only their hashes are stored).
            self.started.new_tokens = {
                "council": self.tokens.create("council-agent", [Scope.COUNCIL]),
                "operator": self.tokens.create("operator", [Scope.OPERATOR]),
                "auditor": self.tokens.create("auditor", [Scope.AUDITOR]),
            }
        app = build_app(
            service=self.service,
            registry=self.registry,
            witness_reader=StoreWitnessReader.of(self.witness),
            tokens=self.tokens,
            metrics=self.metrics,
            readiness=self.readiness,
            config=ApiConfig(
                hazards=tuple(self.settings.hazards),
                rate_limit=self.settings.api.rate_limit,
                rate_window=self.settings.api.rate_window,
            ),
            council=self.council,
            evidence_service=self.evidence,
        )
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        api = self.settings.api
        site = web.TCPSite(self.runner, api.host, api.port)
        await site.start()
        # The runner knows the bound addresses: the real port when 0 was asked.
        port = self.runner.addresses[0][1] if self.runner.addresses else api.port
        host = f"[{api.host}]" if ":" in api.host else api.host
        self.started.api_url = f"http://{host}:{port}"
        if self.evidence is not None and api.public_url is None:
            self.evidence.public_url = self.started.api_url
        if self.evidence is not None:
            _warn_if_links_travel_in_clear(self.evidence.public_url)

    def _start_evidence(self) -> None:
        """Evidence items and their links; the link key is made on first start (0600)."""
        assert self.service is not None and self.witness is not None
        ev = self.settings.evidence
        try:
            signer = LinkSigner(
                load_or_create_link_key(self.data_dir),
                default_ttl=ev.link_ttl,
                max_ttl=ev.max_link_ttl,
            )
        except ValueError as exc:
            raise ConfigError(f"evidence.link_ttl / evidence.max_link_ttl: {exc}") from exc
        self.evidence = EvidenceService(
            store=EvidenceStore.in_data_dir(self.data_dir, max_bytes=ev.max_bytes),
            signer=signer,
            escalations=self.service,
            witness=self.witness,
            public_url=self.settings.api.public_url or "",
            sip_links=ev.sip_links,
            # Refused links share the SIP audit's window (security.audit_window).
            audit_window=self.settings.security.audit_window,
        )
        self.service.evidence = self.evidence

    async def readiness(self) -> dict[str, str | None]:
        """/ready: None for a passing check, a reason for a failing one."""
        checks: dict[str, str | None] = {}
        checks["sip"] = (
            None if self.endpoint is not None and self.endpoint.bound else "no SIP listener"
        )
        w = self.witness
        if w is None:
            checks["witness"] = "not started"
        else:
            checks["witness"] = str(w.broken) if w.broken is not None else None
        checks["policies"] = None if self.guard is not None else "policies not loaded"
        try:
            if self.registry is not None:
                self.registry.revision()
            checks["store"] = None if self.registry is not None else "registry not open"
        except Exception as exc:
            checks["store"] = f"registry unreachable: {exc}"
        if self.gate is not None and self.gate.guarded is not None:
            checks["security_counters"] = self.gate.counters_problem()
        return checks

    # -- stop --------------------------------------------------------------------------------------

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.service is not None:
            await self.service.close()
        if self.evidence is not None:
            await self.evidence.aclose()  # pending refusal summaries, while the witness is open
        if self.gate is not None:
            await self.gate.aclose()
        if self._audit_tasks:
            await asyncio.wait(self._audit_tasks, timeout=5.0)
        if self.endpoint is not None:
            await self.endpoint.close()
        if self.witness is not None:
            await self.witness.close()
        if self.store is not None:
            self.store.close()
        if self.tokens is not None:
            self.tokens.close()


def _warn_if_links_travel_in_clear(public_url: str) -> None:
    """Evidence links are bearer credentials: over plain HTTP off this host anyone on the path can
    read them (and the evidence). Not an error, since a TLS-terminating proxy may front the API
    with ``api.public_url`` unset during setup, but the operator must see it once at start."""
    parsed = urllib.parse.urlsplit(public_url)
    if parsed.scheme == "https":
        return
    try:
        loopback = ipaddress.ip_address((parsed.hostname or "").strip("[]")).is_loopback
    except ValueError:
        loopback = parsed.hostname == "localhost"
    if not loopback:
        log.warning(
            "evidence links use %s (not https): links are bearer credentials; set api.public_url "
            "to the https address of a TLS-terminating proxy",
            public_url,
        )
