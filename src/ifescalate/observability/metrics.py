"""Every metric the service exports, behind small typed methods.

One :class:`Metrics` owns its own ``CollectorRegistry`` (never prometheus_client's global one), so
tests and several instances in one process do not collide, and callers never touch prometheus
objects: they call ``metrics.call_result("safety", "answered")`` and friends.

Label values are free strings (enums are reduced to their ``.value``); callers must keep them to a
small fixed vocabulary, because every distinct value is a new time series.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]

#: The ``Content-Type`` of :meth:`Metrics.render`. Pinned to text format 0.0.4, which every
#: Prometheus (2.x and 3.x) scrapes; newer clients default to announcing 1.0.0, and our names
#: are all legacy-safe ASCII so the bytes are the same.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Call setup (INVITE to 200) spans ring time, so the buckets reach the ring timeout range.
_SETUP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0)
_DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
# A Cedar decision takes tens of microseconds; a slow one (>10 ms) is worth seeing.
_GUARD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
# A witness append waits for one group COMMIT (an fsync): milliseconds normally.
_WITNESS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

Label = str | int | enum.Enum


def _label(value: Label) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def status_class(status: int) -> str:
    """``183`` -> ``"1xx"``; the class keeps dashboards readable without losing the exact code."""
    if not 100 <= status <= 699:
        raise ValueError(f"not a SIP status code: {status}")
    return f"{status // 100}xx"


class Metrics:
    """The service's metrics in a private registry. ``render()`` gives the exposition text."""

    def __init__(self) -> None:
        self._hooks: list[Callable[[], None]] = []
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._calls = Counter(
            "sip_calls_total",
            "Outbound and inbound calls by hazard and result",
            ["hazard", "result"],
            registry=r,
        )
        self._setup = Histogram(
            "sip_call_setup_seconds",
            "INVITE sent to 200 OK received",
            buckets=_SETUP_BUCKETS,
            registry=r,
        )
        self._duration = Histogram(
            "sip_call_duration_seconds",
            "Connected call duration (200 OK to BYE)",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self._active = Gauge("sip_active_calls", "Calls currently connected", registry=r)
        self._streams = Gauge(
            "sip_stream_connections",
            "Open SIP TCP/TLS connections, TLS handshakes in progress included",
            registry=r,
        )
        self._responses = Counter(
            "sip_responses_total",
            "SIP responses sent and received",
            ["status_code", "status_class"],
            registry=r,
        )
        self._sip_errors = Counter(
            "sip_errors_total", "SIP protocol and transport errors", ["kind"], registry=r
        )
        self._guard = Counter(
            "ifguard_decisions_total", "IF.guard decisions", ["result"], registry=r
        )
        self._guard_time = Histogram(
            "ifguard_eval_seconds",
            "IF.guard policy evaluation time",
            buckets=_GUARD_BUCKETS,
            registry=r,
        )
        self._witness = Counter(
            "ifwitness_events_total", "IF.witness events appended", ["type"], registry=r
        )
        self._witness_time = Histogram(
            "ifwitness_append_seconds",
            "IF.witness append until durable",
            buckets=_WITNESS_BUCKETS,
            registry=r,
        )
        self._escalations = Counter(
            "escalations_total", "Escalations ended, by outcome", ["outcome"], registry=r
        )
        self._security = Counter(
            "security_rejections_total",
            "Inbound requests rejected by the security pipeline",
            ["layer", "reason"],
            registry=r,
        )
        self._counters_up = Gauge(
            "security_counters_up",
            "1 while the security pipeline's counters answer (always with counters in memory), "
            "0 during a Redis outage, when requests that need them are answered 503",
            registry=r,
        )
        self._counters_up.set(1)
        self._http = Counter(
            "http_requests_total", "HTTP API requests", ["method", "route", "status"], registry=r
        )

    # SIP calls ---------------------------------------------------------------------------------

    def call_result(self, hazard: Label, result: Label) -> None:
        """One call attempt finished: ``result`` is e.g. answered, busy, declined, no_answer."""
        self._calls.labels(hazard=_label(hazard), result=_label(result)).inc()

    def call_setup(self, seconds: float) -> None:
        self._setup.observe(seconds)

    def call_started(self) -> None:
        self._active.inc()

    def call_ended(self, duration_seconds: float) -> None:
        """A connected call hung up: it leaves the gauge and its duration is recorded."""
        self._active.dec()
        self._duration.observe(duration_seconds)

    def set_active_calls(self, count: int) -> None:
        """Resets the gauge from the true count (after a restart or a reconciliation)."""
        self._active.set(count)

    def set_stream_connections(self, count: int) -> None:
        """The endpoint's open stream connections, read at scrape time."""
        self._streams.set(count)

    def sip_response(self, status: int, count: int = 1) -> None:
        if count > 0:
            labels = self._responses.labels(
                status_code=str(status), status_class=status_class(status)
            )
            labels.inc(count)

    def sip_error(self, kind: Label, count: int = 1) -> None:
        if count > 0:
            self._sip_errors.labels(kind=_label(kind)).inc(count)

    # IF.guard and IF.witness ------------------------------------------------------------------

    def guard_decision(self, result: Label, seconds: float | None = None) -> None:
        """``result`` is permit or deny; ``seconds`` the evaluation time when measured."""
        self._guard.labels(result=_label(result)).inc()
        if seconds is not None:
            self._guard_time.observe(seconds)

    def witness_event(self, event_type: Label, seconds: float | None = None) -> None:
        """One witness append committed; ``seconds`` from the call to its durable commit."""
        self._witness.labels(type=_label(event_type)).inc()
        if seconds is not None:
            self._witness_time.observe(seconds)

    # Escalations, security, HTTP ------------------------------------------------------------------

    def escalation_ended(self, outcome: Label) -> None:
        self._escalations.labels(outcome=_label(outcome)).inc()

    def security_rejection(self, layer: Label, reason: Label) -> None:
        self._security.labels(layer=_label(layer), reason=_label(reason)).inc()

    def set_security_counters_up(self, up: bool) -> None:
        self._counters_up.set(1 if up else 0)

    def http_request(self, method: str, route: str, status: int) -> None:
        """``route`` must be the route template (``/v1/escalations/{id}``), never the raw path."""
        self._http.labels(method=method, route=route, status=str(status)).inc()

    def on_render(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` before each exposition: it copies counters kept elsewhere (the SIP
        endpoint's error counts) into this registry, so the hot path pays nothing for metrics."""
        self._hooks.append(hook)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric in this registry."""
        for hook in self._hooks:
            hook()
        return generate_latest(self.registry)
