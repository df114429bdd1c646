"""The monitoring shipped in deploy/ against a real `ifescalate serve`, a real Prometheus and a real
blackbox exporter (Debian packages prometheus, prometheus-blackbox-exporter).

- promtool accepts deploy/prometheus/alerts.yml and its unit tests (alerts_test.yml) pass: every alert
  fires on the failure it names and stays silent on healthy traffic;
- every metric name in the alert rules and in the Grafana dashboard is exported by a real `/metrics`
  scrape (or is one of the two series Prometheus and the blackbox exporter make themselves), and the
  label values the rules match on are ones the code can emit: a rule cannot silently watch nothing;
- every alert has its section in docs/runbook.md;
- a real Prometheus, with deploy/prometheus/prometheus.yml's jobs pointed at the running service (token
  from a file, /ready through the blackbox exporter), scrapes it, evaluates every rule without error,
  answers every dashboard query, and puts IfescalateInstanceDown in pending once the service is killed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ifescalate.escalation.model import Outcome
from ifescalate.security.facts import Layer
from tests.peers import PeerError, PeerProcess, free_port, require_binary, wait_port
from tests.system.conftest import ExpertSpec, Service, write_config, write_registry

ROOT = Path(__file__).parents[2]
PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "ifescalate.json"
RUNBOOK = ROOT / "docs" / "runbook.md"

#: Series that come from Prometheus itself (up) and the blackbox exporter's /ready probe.
EXTERNAL = {"up", "probe_success"}

_PROMQL_WORDS = {
    "sum", "rate", "increase", "irate", "histogram_quantile", "count", "absent", "avg", "max", "min",
    "by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool",
    "offset", "label_values", "topk", "bottomk", "clamp_min", "clamp_max", "delta", "deriv",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers outside strings, label matchers, grouping
    clauses and range brackets that are not PromQL functions or keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set(re.findall(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    return {n for n in names if n not in _PROMQL_WORDS}


def label_values(expr: str, label: str) -> set[str]:
    """Values `label` is matched against with = or =~ (alternatives of a regex split on |)."""
    out: set[str] = set()
    for op, value in re.findall(rf'\b{label}\s*(=~|=)\s*"([^"]*)"', expr):
        out.update(value.split("|") if op == "=~" else [value])
    return out


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(re.sub(r"^label_values\((.*), \w+\)$", r"\1", var["definition"]))
    return exprs


def exported_names(exposition: str) -> set[str]:
    """Sample names a scrape can carry: each family's name plus its histogram/counter suffixes."""
    names: set[str] = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE):
        names.add(family)
        if kind == "histogram":
            names.update(f"{family}_{s}" for s in ("bucket", "count", "sum"))
    return names


def http_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def make_service(tmp: Path) -> Service:
    experts = write_registry(tmp / "experts.yaml", [ExpertSpec("ops-1", "sip:ops@127.0.0.1:9")])
    return Service(tmp / "data", write_config(tmp / "config.yaml", experts_file=experts))


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with make_service(tmp_path) as svc:
        yield svc


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    promtool = require_binary("promtool")
    check = subprocess.run(
        [promtool, "check", "rules", str(PROM / "alerts.yml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in check.stdout, check.stdout
    unit = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=PROM, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert unit.returncode == 0, unit.stdout + unit.stderr
    # Every alert is exercised by at least one unit test.
    tested = set(re.findall(r"alertname: (\w+)", (PROM / "alerts_test.yml").read_text()))
    assert {r["alert"] for r in alert_rules()} <= tested


def test_rules_and_dashboard_name_only_exported_metrics(service: Service) -> None:
    req = urllib.request.Request(
        service.api_url + "/metrics",
        headers={"Authorization": f"Bearer {service.tokens['auditor']}"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        exposition = resp.read().decode()
    exported = exported_names(exposition) | EXTERNAL
    assert "sip_responses_total" in exported, exposition[:2000]

    rule_exprs = {r["alert"]: r["expr"] for r in alert_rules()}
    for where, exprs in (
        ("alerts.yml", rule_exprs),
        ("ifescalate.json", dict.fromkeys(dashboard_exprs(), "")),
    ):
        for name, expr in exprs.items():
            text = expr or name
            used = metric_names(text)
            assert used, f"{where}: no metric found in {text!r}"
            missing = used - exported
            assert not missing, (
                f"{where} {name or text!r}: {sorted(missing)} not in a real /metrics scrape"
            )

    everything = " ".join([*rule_exprs.values(), *dashboard_exprs()])
    # Label values the rules match on are in the code's vocabulary.
    assert label_values(everything, "outcome") <= {o.value for o in Outcome}
    assert label_values(everything, "layer") <= {layer.value for layer in Layer}
    assert label_values(everything, "status_class") <= {f"{c}xx" for c in range(1, 7)}
    results = label_values(everything, "result")
    assert results == {"answered"}, results  # the other results are failed_<status>
    assert label_values(everything, "route") <= {"/v1/escalations"}


def test_every_alert_has_a_runbook_section() -> None:
    runbook = RUNBOOK.read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", runbook, re.MULTILINE)
    }
    for rule in alert_rules():
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert rule["annotations"]["runbook"].startswith("docs/runbook.md#")
        assert anchor in headings, f"{rule['alert']}: no heading for #{anchor} in {RUNBOOK}"


def _prometheus_config(tmp: Path, service: Service, blackbox_port: int) -> Path:
    """deploy/prometheus/prometheus.yml with its targets, files and intervals pointed at this test."""
    doc = yaml.safe_load((PROM / "prometheus.yml").read_text())
    token = tmp / "token"
    token.write_text(service.tokens["auditor"])
    api = urllib.parse.urlsplit(service.api_url).netloc
    doc["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    doc["rule_files"] = [str(PROM / "alerts.yml")]
    jobs = {job["job_name"]: job for job in doc["scrape_configs"]}
    assert set(jobs) == {"ifescalate", "ifescalate-ready"}, jobs
    jobs["ifescalate"]["authorization"]["credentials_file"] = str(token)
    jobs["ifescalate"]["static_configs"] = [{"targets": [api]}]
    jobs["ifescalate-ready"]["static_configs"] = [{"targets": [f"{service.api_url}/ready"]}]
    relabels = jobs["ifescalate-ready"]["relabel_configs"]
    assert relabels[-1]["target_label"] == "__address__"
    relabels[-1]["replacement"] = f"127.0.0.1:{blackbox_port}"
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    body = http_json(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _wait(what: str, check: Any, timeout: float, log: PeerProcess) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout} s\n{log.log_tail(40)}")
        time.sleep(0.5)


def test_prometheus_scrapes_probes_and_evaluates_the_shipped_config(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    # Started by hand, not with `with`: this test kills it on purpose.
    service = make_service(tmp_path).start()
    bb_port, prom_port = free_port("tcp"), free_port("tcp")
    token = tmp_path / "token"
    token.write_text(service.tokens["auditor"])
    bb_cfg = tmp_path / "blackbox.yml"
    bb_cfg.write_text(
        (PROM / "blackbox.yml")
        .read_text()
        .replace("/etc/blackbox/secrets/ifescalate-metrics-token", str(token))
    )
    prom_cfg = _prometheus_config(tmp_path, service, bb_port)
    checked = subprocess.run(
        [promtool, "check", "config", str(prom_cfg)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    blackbox = PeerProcess(
        "blackbox",
        ["prometheus-blackbox-exporter", f"--config.file={bb_cfg}",
         f"--web.listen-address=127.0.0.1:{bb_port}"],
        log_path=tmp_path / "blackbox.log",
    )  # fmt: skip
    prometheus = PeerProcess(
        "prometheus",
        ["prometheus", f"--config.file={prom_cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        log_path=tmp_path / "prometheus.log",
    )  # fmt: skip
    base = f"http://127.0.0.1:{prom_port}"
    blackbox.start()
    prometheus.start()
    try:
        wait_port("127.0.0.1", bb_port, "tcp", timeout=20, process=blackbox)
        wait_port("127.0.0.1", prom_port, "tcp", timeout=30, process=prometheus)

        def value(expr: str) -> float | None:
            try:
                res = _query(base, expr)
            except OSError:
                return None
            return float(res[0]["value"][1]) if res else None

        _wait(
            "up{job=ifescalate} == 1", lambda: value('up{job="ifescalate"}') == 1.0, 30, prometheus
        )
        _wait(
            "probe_success{job=ifescalate-ready} == 1",
            lambda: value('probe_success{job="ifescalate-ready"}') == 1.0,
            30,
            prometheus,
        )

        # Every rule loaded and evaluated without error.
        def rules_evaluated() -> list[dict[str, Any]] | None:
            groups = http_json(f"{base}/api/v1/rules")["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return (
                rules
                if rules
                and all(
                    r.get("lastEvaluation", "").startswith("2") and r["health"] != "unknown"
                    for r in rules
                )
                else None
            )

        rules = _wait("every rule evaluated", rules_evaluated, 20, prometheus)
        bad = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
        assert not bad, bad
        assert {r["name"] for r in rules} == {r["alert"] for r in alert_rules()}
        # Healthy: nothing active (AllInstancesDown may be pending from before the first scrape
        # and clears at the next evaluation).
        _wait(
            "no active alert on a healthy instance",
            lambda: not http_json(f"{base}/api/v1/alerts")["data"]["alerts"],
            10,
            prometheus,
        )
        # Every dashboard query is valid PromQL for this Prometheus ($instance as Grafana's All).
        for expr in dashboard_exprs():
            _query(base, expr.replace("$instance", ".*"))
        assert _query(base, 'sum(up{job="ifescalate", instance=~".*"})')[0]["value"][1] == "1"

        # The instance dies: the scrape fails and the alert goes pending at once (for: 1m).
        service.kill()

        def pending() -> list[dict[str, Any]]:
            alerts = http_json(f"{base}/api/v1/alerts")["data"]["alerts"]
            return [a for a in alerts if a["labels"]["alertname"] == "IfescalateInstanceDown"]

        down = _wait("IfescalateInstanceDown pending", pending, 20, prometheus)
        assert down[0]["state"] == "pending", down
    except BaseException:
        print(blackbox.log_tail(40))
        print(prometheus.log_tail(60))
        raise
    finally:
        service.kill()
        prometheus.stop()
        blackbox.stop()
        shutil.rmtree(tmp_path / "tsdb", ignore_errors=True)
    if prometheus.returncode not in (0, None):
        raise PeerError(f"prometheus exited {prometheus.returncode}\n{prometheus.log_tail()}")


def test_dashboard_is_well_formed() -> None:
    """What Grafana needs to lay the dashboard out and bind its queries (no Grafana runs here)."""
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), ids
    cells: set[tuple[int, int]] = set()
    for panel in dash["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        area = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    names = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "instance"} <= names
