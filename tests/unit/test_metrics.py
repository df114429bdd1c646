"""observability: the metric names and labels operators' dashboards and alerts depend on, and JSON logs."""

from __future__ import annotations

import io
import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ifescalate.escalation.model import Outcome
from ifescalate.observability import Metrics, log_context, setup_logging
from ifescalate.observability.metrics import status_class


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_every_documented_family_is_exported() -> None:
    names = {f.name for f in text_string_to_metric_families(Metrics().render().decode())}
    # prometheus_client strips _total from counter family names.
    assert names >= {
        "sip_calls",
        "sip_call_setup_seconds",
        "sip_call_duration_seconds",
        "sip_active_calls",
        "sip_responses",
        "sip_errors",
        "ifguard_decisions",
        "ifguard_eval_seconds",
        "ifwitness_events",
        "ifwitness_append_seconds",
        "escalations",
        "security_rejections",
        "http_requests",
    }


def test_methods_update_the_named_series() -> None:
    m = Metrics()
    m.call_result("safety", "answered")
    m.call_result("safety", "answered")
    m.call_setup(0.3)
    m.call_started()
    m.call_started()
    m.call_ended(42.0)
    m.sip_response(486)
    m.sip_error("parse")
    m.guard_decision("permit", 0.0002)
    m.witness_event("RINGING", 0.004)
    m.escalation_ended(Outcome.NO_ANSWER)
    m.security_rejection("flood", "rate")
    m.http_request("GET", "/v1/escalations/{id}", 404)
    s = samples(m)
    assert s[("sip_calls_total", (("hazard", "safety"), ("result", "answered")))] == 2
    assert s[("sip_call_setup_seconds_count", ())] == 1
    assert s[("sip_call_setup_seconds_bucket", (("le", "0.5"),))] == 1
    assert s[("sip_call_setup_seconds_bucket", (("le", "0.25"),))] == 0
    assert s[("sip_active_calls", ())] == 1
    assert s[("sip_call_duration_seconds_sum", ())] == 42.0
    assert s[("sip_responses_total", (("status_class", "4xx"), ("status_code", "486")))] == 1
    assert s[("sip_errors_total", (("kind", "parse"),))] == 1
    assert s[("ifguard_decisions_total", (("result", "permit"),))] == 1
    assert s[("ifguard_eval_seconds_count", ())] == 1
    assert s[("ifwitness_events_total", (("type", "RINGING"),))] == 1
    assert s[("ifwitness_append_seconds_count", ())] == 1
    assert s[("escalations_total", (("outcome", "no_answer"),))] == 1
    assert s[("security_rejections_total", (("layer", "flood"), ("reason", "rate")))] == 1
    key = (
        "http_requests_total",
        (("method", "GET"), ("route", "/v1/escalations/{id}"), ("status", "404")),
    )
    assert s[key] == 1


def test_instances_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()
    a.sip_error("x")
    assert ("sip_errors_total", (("kind", "x"),)) in samples(a)
    assert ("sip_errors_total", (("kind", "x"),)) not in samples(b)


def test_decision_without_timing_does_not_observe() -> None:
    m = Metrics()
    m.guard_decision("deny")
    assert samples(m)[("ifguard_eval_seconds_count", ())] == 0


@pytest.mark.parametrize(("code", "cls"), [(100, "1xx"), (200, "2xx"), (487, "4xx"), (699, "6xx")])
def test_status_class(code: int, cls: str) -> None:
    assert status_class(code) == cls


@pytest.mark.parametrize("code", [99, 700, 0])
def test_status_class_refuses_non_sip_codes(code: int) -> None:
    with pytest.raises(ValueError):
        status_class(code)


def test_json_logs_carry_ids_from_extra_and_context() -> None:
    buf = io.StringIO()
    handler = setup_logging("DEBUG", stream=buf)
    try:
        log = logging.getLogger("ifescalate.test")
        log.info("plain %s", "text")
        log.warning("with extra", extra={"trace_id": "t-1", "route": "/x"})
        with log_context(trace_id="t-2", escalation_id="e-2"):
            log.error("in context\nsecond line")
        log.info("after")
        setup_logging("DEBUG", stream=buf)  # replaces, does not duplicate
        log.info("once")
    finally:
        logging.getLogger().removeHandler(handler)
        for h in list(logging.getLogger().handlers):
            if h.get_name() == "ifescalate":
                logging.getLogger().removeHandler(h)
    lines = buf.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["message"] for r in records] == [
        "plain text",
        "with extra",
        "in context\nsecond line",
        "after",
        "once",
    ]
    assert set(records[0]) == {"time", "level", "logger", "message"}
    assert records[0]["logger"] == "ifescalate.test" and records[0]["level"] == "INFO"
    assert records[0]["time"].endswith("Z") and len(records[0]["time"]) == 24
    assert records[1]["trace_id"] == "t-1" and records[1]["route"] == "/x"
    assert records[2]["trace_id"] == "t-2" and records[2]["escalation_id"] == "e-2"
    assert "trace_id" not in records[3]
