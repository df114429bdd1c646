"""The inbound security pipeline: the layers in ARCHITECTURE.md order, stopping at the first no.

Two stages, because the cheap checks must run before anyone's credentials are verified:

* :meth:`Pipeline.check_request` - flood, allowlist, transport: facts of the connection only.
  Every inbound request goes through it, in-dialog ones included (flood exempts those).
* :meth:`Pipeline.check_identity` - digest (with lockout), then the bindings that need the
  expert (their networks, their registered client certificate), the per-expert call limit and
  the policy. The caller runs it for requests that need a caller identity (a new INVITE).

:meth:`Pipeline.run` chains both, calling ``authenticate`` only after stage one passed, and
``authorize`` (IF.guard) only after the call was admitted by the limit. Witnessing the rejections
(layer 7) is the caller's, through :class:`~ifescalate.security.audit.RejectionAggregator`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .availability import CountersUnavailable, unavailable
from .counters import Counters, MemoryCounters
from .facts import (
    Allow,
    AuthFacts,
    Decision,
    ExpertFacts,
    IPNetwork,
    Layer,
    PolicyDecision,
    Reject,
    RequestFacts,
    parse_networks,
)
from .layers import (
    AllowlistLayer,
    DigestLayer,
    ExpertLimitConfig,
    ExpertLimitLayer,
    FloodConfig,
    FloodLayer,
    LockoutConfig,
    PolicyLayer,
    TransportConfig,
    TransportLayer,
)

#: Requests that start a call and so count against the expert's limit.
CALL_METHODS = frozenset({"INVITE"})


def parse_rate(text: str) -> tuple[int, float]:
    """``"N/SECONDS"`` as the CLI takes it (``--flood 30/10``, ``--lockout 5/300``)."""
    count, sep, seconds = text.partition("/")
    if not sep:
        raise ValueError(f"expected N/SECONDS, got {text!r}")
    n, s = int(count), float(seconds)
    if n < 1 or not s > 0:
        raise ValueError(f"N and SECONDS must be positive: {text!r}")
    return n, s


def trusted_networks(items: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    return parse_networks(items)


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """Every knob of the pipeline, with the documented defaults.

    ``allow_by_org`` maps an organisation to its CIDRs (``--allow CIDR`` without an organisation
    goes under ``"*"``); None disables the pre-authentication allowlist (the per-expert network
    binding after authentication always applies).
    """

    flood: FloodConfig = field(default_factory=FloodConfig)
    allow_by_org: Mapping[str, tuple[IPNetwork, ...]] | None = None
    transport: TransportConfig = field(default_factory=TransportConfig)
    lockout: LockoutConfig = field(default_factory=LockoutConfig)
    expert_limit: ExpertLimitConfig = field(default_factory=ExpertLimitConfig)
    audit_window: float = 60.0
    counters_url: str | None = None  # "redis://127.0.0.1:6379/0"; None keeps counters in memory
    counters_prefix: str = "ifescalate:sec:"
    #: Seconds one Redis operation may take in all; then the request is answered 503.
    counters_timeout: float = 0.5
    #: Seconds between probes of an unreachable Redis; Retry-After of the 503s meanwhile.
    counters_probe: float = 1.0
    #: Networks of proxies whose ``X-IF-Source`` header names the caller (net.security_gate).
    trusted_proxies: tuple[IPNetwork, ...] = ()

    @property
    def retry_after(self) -> int:
        """Retry-After of a refusal during a counters outage: a few probe intervals."""
        return max(1, math.ceil(self.counters_probe * 5))

    @staticmethod
    def from_cli(
        *,
        flood: str | None = None,
        allow: Iterable[str] = (),
        lockout: str | None = None,
        require_tls: bool = True,
        trusted: Iterable[str] = (),
    ) -> SecurityConfig:
        """Build from ``--flood N/SECONDS --allow CIDR... --lockout N/SECONDS --require-tls``."""
        fl = FloodConfig(trusted=trusted_networks(trusted))
        if flood is not None:
            n, s = parse_rate(flood)
            fl = FloodConfig(limit=n, window=s, block=fl.block, trusted=fl.trusted)
        lo = LockoutConfig()
        if lockout is not None:
            n, s = parse_rate(lockout)
            lo = LockoutConfig(failures=n, window=s, duration=s)
        nets = parse_networks(allow)
        return SecurityConfig(
            flood=fl,
            allow_by_org={"*": nets} if nets else None,
            transport=TransportConfig(require_tls=require_tls),
            lockout=lo,
        )


class Pipeline:
    """Runs the layers in order and returns the first :class:`Reject`, or :class:`Allow`."""

    def __init__(
        self, config: SecurityConfig = SecurityConfig(), counters: Counters | None = None
    ) -> None:
        self.config = config
        self.counters: Counters = counters if counters is not None else MemoryCounters()
        self.flood = FloodLayer(self.counters, config.flood)
        self.allowlist = AllowlistLayer(config.allow_by_org)
        self.transport = TransportLayer(config.transport)
        self.digest = DigestLayer(self.counters, config.lockout)
        self.expert_limit = ExpertLimitLayer(self.counters, config.expert_limit)
        self.policy = PolicyLayer()

    async def check_request(self, facts: RequestFacts, now: float) -> Decision:
        """Layers 1-3 on the connection's facts."""
        try:
            decision = await self.flood.check(facts, now)
        except CountersUnavailable:
            return unavailable(Layer.FLOOD, self.config.retry_after)
        if isinstance(decision, Reject):
            return decision
        decision = self.allowlist.decide(facts)
        if isinstance(decision, Reject):
            return decision
        return self.transport.decide(facts)

    async def check_identity(
        self,
        facts: RequestFacts,
        auth: AuthFacts,
        now: float,
        authorize: Callable[[ExpertFacts], PolicyDecision] | None = None,
    ) -> Decision:
        """Layers 4-6 once the digest verdict is known."""
        try:
            decision = await self.digest.check(facts, auth, now)
        except CountersUnavailable:
            return unavailable(Layer.DIGEST, self.config.retry_after)
        if isinstance(decision, Reject):
            return decision
        # The digest layer allows only AuthOutcome.OK, which AuthFacts ties to an expert record.
        expert = decision.expert
        if expert is None:
            raise ValueError("digest allowed a request without an authenticated expert")
        decision = self.allowlist.decide_expert(facts, expert)
        if isinstance(decision, Reject):
            return decision
        decision = self.transport.decide_expert(facts, expert)
        if isinstance(decision, Reject):
            return decision
        if facts.method in CALL_METHODS and not facts.in_dialog:
            try:
                decision = await self.expert_limit.check(expert, now)
            except CountersUnavailable:
                return unavailable(Layer.EXPERT_LIMIT, self.config.retry_after)
            if isinstance(decision, Reject):
                return decision
        if authorize is not None:
            decision = self.policy.decide(authorize(expert))
            if isinstance(decision, Reject):
                return decision
        return Allow(expert)

    async def run(
        self,
        facts: RequestFacts,
        now: float,
        *,
        authenticate: Callable[[], AuthFacts] | None = None,
        authorize: Callable[[ExpertFacts], PolicyDecision] | None = None,
    ) -> Decision:
        """The whole pipeline; without ``authenticate`` only layers 1-3 run (in-dialog requests,
        OPTIONS)."""
        decision = await self.check_request(facts, now)
        if isinstance(decision, Reject) or authenticate is None:
            return decision
        return await self.check_identity(facts, authenticate(), now, authorize)

    async def aclose(self) -> None:
        await self.counters.aclose()
