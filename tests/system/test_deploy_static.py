"""deploy/ checked without Docker or a cluster (no images can be pulled here), plus the container
entrypoint run for real.

Static: the Compose file, the Kubernetes manifests (schema-validated offline with kubernetes-validate,
strict), the shipped ifescalate config (loaded with the project's own loader, the Kubernetes copy too),
the example registry (the project's registry parser), and the places that must agree: API port, SIP TLS
port, media range, probe paths, Secret names, the edge's address in `security.trusted`, every
IFESCALATE_* variable. `kamailio -c` accepts the edge config with TLS on.

Live: deploy/compose/make-secrets.sh makes the secrets (with openssl and `ifescalate tokens create`);
deploy/docker/entrypoint.sh then starts two real instances from them on PostgreSQL (one shared witness
chain, own schema) and Redis (own prefix): both sign with the one shared key, both accept the one
monitoring token, deploy/docker/probe.py (the readiness probe) passes on both, /health answers, and
the shared chain verifies after both stopped.
"""

from __future__ import annotations

import asyncio
import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ifescalate.config import _ENV, Settings, load_settings
from ifescalate.guard.registry import parse_yaml
from tests.peers import PeerError, require_binary
from tests.peers.tls import dev_tls_cert
from tests.system.conftest import cli_argv

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "docker-compose.yml"
CONFIG = DEPLOY / "config" / "ifescalate.yaml"
EXPERTS = DEPLOY / "config" / "experts.yaml"
K8S = DEPLOY / "k8s"
RUNBOOK = ROOT / "docs" / "runbook.md"
DSN = "postgresql://postgres@127.0.0.1:5432/test"


def k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def k8s_kind(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def port_of(spec: str) -> int:
    return int(spec.rsplit(":", 1)[1])


def settings_from_text(text: str, tmp: Path) -> Settings:
    path = tmp / f"cfg-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(text)
    return load_settings(str(path), env={})


# -- static -------------------------------------------------------------------------------------


def test_compose_has_the_whole_stack_and_ports_agree() -> None:
    doc = compose()
    services = doc["services"]
    instances = sorted(s for s in services if s.startswith("ifescalate-"))
    assert len(instances) >= 2, instances
    for needed in ("kamailio", "postgres", "redis", "prometheus", "grafana", "blackbox"):
        assert needed in services, needed
    settings = load_settings(str(CONFIG), env={})
    api_port = settings.api.port
    media = f"{settings.media.port_start}-{settings.media.port_end}"
    for name in instances:
        svc = services[name]
        published = {p.split(":", 1)[1] for p in svc["ports"]}
        assert f"{api_port}/tcp" in published, (name, svc["ports"])
        assert f"{media}/udp" in published, (name, svc["ports"])
        assert f":{api_port}/health" in " ".join(svc["healthcheck"]["test"])
        mounts = {v.split(":")[1] for v in svc["volumes"]}
        assert {"/etc/ifescalate/ifescalate.yaml", "/etc/ifescalate/experts.yaml"} <= mounts
        assert settings.data_dir in mounts
    # The edge's fixed address is exactly what the instances flood-exempt, and nothing wider.
    edge_ip = services["kamailio"]["networks"]["backplane"]["ipv4_address"]
    assert settings.security.trusted == [f"{edge_ip}/32"]
    assert settings.security.trusted_proxies == [f"{edge_ip}/32"]  # its X-IF-Source is believed
    # Every secret a service names is declared (make-secrets.sh making each file: the live test).
    declared = doc["secrets"]
    for svc in services.values():
        for s in svc.get("secrets", []):
            assert (s if isinstance(s, str) else s["source"]) in declared
    # Prometheus targets the instances' API port.
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    targets = jobs["ifescalate"]["static_configs"][0]["targets"]
    assert sorted(targets) == sorted(f"{n}:{api_port}" for n in instances)
    ready = jobs["ifescalate-ready"]["static_configs"][0]["targets"]
    assert sorted(ready) == sorted(f"http://{n}:{api_port}/ready" for n in instances)


def test_shipped_configs_load_with_the_real_loader(tmp_path: Path) -> None:
    base = load_settings(str(CONFIG), env={})
    cm = k8s_kind("ConfigMap", "ifescalate-config")["data"]
    k8s = settings_from_text(cm["ifescalate.yaml"], tmp_path)
    # The Kubernetes copy differs only in which network is trusted (the pod network).
    k8s_trusted = k8s.security.trusted
    k8s_proxies = k8s.security.trusted_proxies
    k8s.security.trusted = list(base.security.trusted)
    k8s.security.trusted_proxies = list(base.security.trusted_proxies)
    assert k8s == base
    assert k8s_trusted == k8s_proxies == ["10.244.0.0/16"]
    assert base.security.counters_url and base.security.counters_url.startswith("redis://")
    assert base.sip.tls_cert and base.sip.tls_key and base.security.require_tls
    experts = parse_yaml(EXPERTS.read_text(), hazards=base.hazards)
    assert experts and cm["experts.yaml"] == EXPERTS.read_text()
    # A typo in a key is refused by the same loader (the check can fail).
    broken = CONFIG.read_text().replace("counters_prefix:", "counter_prefix:")
    with pytest.raises(ValueError, match="counter_prefix"):
        settings_from_text(broken, tmp_path)


def test_every_ifescalate_variable_is_read_by_someone() -> None:
    entrypoint = (DEPLOY / "docker" / "entrypoint.sh").read_text()
    probe = (DEPLOY / "docker" / "probe.py").read_text()
    texts = [COMPOSE.read_text(), *(p.read_text() for p in K8S.glob("*.yaml"))]
    used = set(re.findall(r"\b(IFESCALATE_[A-Z_]+)\b", "\n".join(texts)))
    assert used, "no IFESCALATE_ variable found"
    for var in used:
        assert var in _ENV or var in entrypoint or var in probe, f"{var} is read by nobody"


def test_kubernetes_manifests_validate_and_agree(tmp_path: Path) -> None:
    import kubernetes_validate  # a [dev] dependency: missing is a failure, not a skip

    docs = k8s_docs()
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)
    # The validator bites: a misspelt field fails.
    bad = copy.deepcopy(k8s_kind("StatefulSet", "ifescalate"))
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.30", strict=True)

    settings = settings_from_text(
        k8s_kind("ConfigMap", "ifescalate-config")["data"]["ifescalate.yaml"], tmp_path
    )
    sts = k8s_kind("StatefulSet", "ifescalate")
    pod = sts["spec"]["template"]["spec"]
    box = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in box["ports"]}
    assert ports["http"] == settings.api.port
    assert [port_of(spec) for spec in settings.sip.listen] == [ports["sips"]]
    assert box["livenessProbe"]["httpGet"]["path"] == "/health"
    assert box["startupProbe"]["httpGet"]["path"] == "/health"
    assert box["readinessProbe"]["exec"]["command"][-1] == "/usr/local/lib/ifescalate/probe.py"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(box["resources"][kind])
    mounts = {m["name"]: m["mountPath"] for m in box["volumeMounts"]}
    assert mounts["data"] == settings.data_dir
    assert settings.sip.tls_cert and settings.sip.tls_cert.startswith(mounts["tls"] + "/")
    assert settings.experts_file == f"{mounts['config']}/experts.yaml"
    # Every Secret the manifests reference is created by the runbook's commands.
    runbook = RUNBOOK.read_text()
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    secrets |= {e["valueFrom"]["secretKeyRef"]["name"] for e in box["env"] if "valueFrom" in e}
    edge = k8s_kind("Deployment", "kamailio")["spec"]["template"]["spec"]
    secrets |= {v["secret"]["secretName"] for v in edge["volumes"] if "secret" in v}
    for name in secrets:
        assert f"kubectl -n ifescalate create secret generic {name}" in runbook or (
            f"kubectl -n ifescalate create secret tls {name}" in runbook
        ), f"runbook does not create Secret {name}"
    # The headless Service, the dispatcher list and the NetworkPolicy name the same SIP port.
    headless = k8s_kind("Service", "ifescalate-sip")
    assert [p["port"] for p in headless["spec"]["ports"]] == [ports["sips"]]
    dispatch = k8s_kind("ConfigMap", "kamailio-dispatcher")["data"]["dispatcher.list"]
    entries = re.findall(
        r"^1 sip:ifescalate-(\d+)\.ifescalate-sip\.ifescalate\.svc\.cluster\.local:(\d+);transport=tls",
        dispatch,
        re.MULTILINE,
    )
    assert len(entries) == sts["spec"]["replicas"], entries
    assert {int(p) for _, p in entries} == {ports["sips"]}
    policy = k8s_kind("NetworkPolicy", "ifescalate-sip-from-edge-only")["spec"]["ingress"]
    assert policy[0]["ports"] == [{"port": ports["sips"], "protocol": "TCP"}]
    media = next(p for p in policy[1]["ports"] if p["protocol"] == "UDP")
    assert (media["port"], media["endPort"]) == (settings.media.port_start, settings.media.port_end)
    pdb = k8s_kind("PodDisruptionBudget", "ifescalate")
    assert 0 < pdb["spec"]["minAvailable"] < sts["spec"]["replicas"]
    assert (
        k8s_kind("ConfigMap", "kamailio-dispatcher")["data"]["tls-edge.cfg"]
        == (DEPLOY / "kamailio" / "tls-edge.cfg").read_text()
    )


def test_compose_dispatcher_list_names_the_instances() -> None:
    settings = load_settings(str(CONFIG), env={})
    sip_port = port_of(settings.sip.listen[0])
    lines = [
        line.split()
        for line in (DEPLOY / "kamailio" / "dispatcher.list").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    instances = sorted(s for s in compose()["services"] if s.startswith("ifescalate-"))
    assert sorted(f"sip:{n}:{sip_port};transport=tls" for n in instances) == sorted(
        parts[1] for parts in lines
    )
    assert {parts[0] for parts in lines} == {"1"}  # the set kamailio.cfg dispatches to


def test_dockerfiles_copy_files_that_exist() -> None:
    for dockerfile in (ROOT / "Dockerfile", DEPLOY / "kamailio" / "Dockerfile"):
        for src in re.findall(r"^COPY (?!--from)(\S+)", dockerfile.read_text(), re.MULTILINE):
            assert (ROOT / src).exists(), f"{dockerfile}: COPY {src} does not exist"
    text = (ROOT / "Dockerfile").read_text()
    settings = load_settings(str(CONFIG), env={})
    assert f"{settings.api.port}/tcp" in text and f"{port_of(settings.sip.listen[0])}/tcp" in text
    assert f"{settings.media.port_start}-{settings.media.port_end}/udp" in text


def test_kamailio_accepts_the_edge_config_with_tls(tmp_path: Path) -> None:
    kamailio = require_binary("kamailio")
    cert, key = dev_tls_cert(tmp_path)
    tls_cfg = tmp_path / "tls-edge.cfg"
    tls_cfg.write_text(
        (DEPLOY / "kamailio" / "tls-edge.cfg")
        .read_text()
        .replace("/run/secrets/edge-tls/tls.crt", str(cert))
        .replace("/run/secrets/edge-tls/tls.key", str(key))
        .replace("/run/secrets/internal-ca/ca.crt", str(cert))
    )
    dispatch = tmp_path / "dispatcher.list"
    dispatch.write_text("1 sip:127.0.0.1:5061;transport=tls 8 0\n")
    defines = [
        "WITH_TLS", "ADVERTISE_ADDR=198.51.100.7", f'TLS_CONFIG="{tls_cfg}"',
        f'DISPATCHER_LIST="{dispatch}"', "LISTEN_IP=127.0.0.1",
    ]  # fmt: skip
    argv = [kamailio, "-c", "-f", str(DEPLOY / "kamailio" / "kamailio.cfg")]
    for d in defines:
        argv += ["-A", d]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "tls: 127.0.0.1 [127.0.0.1]:5061 advertise 198.51.100.7:5061" in out, out


# -- live: the entrypoint with real secrets, PostgreSQL and Redis --------------------------------


@pytest.fixture
def pg_schema() -> Iterator[str]:
    import asyncpg  # a runtime dependency of the package

    name = f"deploy_test_{uuid.uuid4().hex[:10]}"

    async def drop() -> None:
        conn = await asyncpg.connect(DSN, timeout=5)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()

    yield name
    asyncio.run(drop())


def _secrets(tmp: Path) -> Path:
    """Runs make-secrets.sh from a copy of deploy/compose (it writes next to itself)."""
    require_binary("openssl")
    work = tmp / "compose"
    work.mkdir()
    shutil.copy(DEPLOY / "compose" / "make-secrets.sh", work / "make-secrets.sh")
    env = {**os.environ, "PATH": f"{Path(cli_argv()[0]).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["sh", str(work / "make-secrets.sh")], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return work / "secrets"


def _layout(secrets: Path, run: Path) -> Path:
    """The files where Compose mounts them (the `target:` of each secret), under `run`."""
    targets = {
        "witness-key/witness_ed25519.pem": "witness_ed25519.pem",
        "evidence-key/evidence_link.key": "evidence_link.key",
        "monitoring-token": "monitoring-token",
        "council-token": "council-token",
    }
    for target, source in targets.items():
        (run / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(secrets / source, run / target)
    return run


class Instance:
    """deploy/docker/entrypoint.sh running `ifescalate serve` with a test config derived from the shipped one."""

    def __init__(self, name: str, tmp: Path, secrets: Path, schema: str, prefix: str) -> None:
        self.dir = tmp / name
        self.dir.mkdir()
        cert, key = dev_tls_cert(self.dir / "tls")
        cfg = yaml.safe_load(CONFIG.read_text())
        cfg["experts_file"] = str(EXPERTS)
        cfg["database_schema"] = schema
        cfg["sip"].update(
            listen=["tls:127.0.0.1:0"], tls_cert=str(cert), tls_key=str(key), tls_ca=str(cert)
        )
        cfg["media"].update(enabled=False)
        cfg["security"].update(
            counters_url="redis://127.0.0.1:6379/0", counters_prefix=f"{prefix}:"
        )
        (self.dir / "ifescalate.yaml").write_text(yaml.safe_dump(cfg))
        (self.dir / "database-url").write_text(DSN + "\n")
        run = _layout(secrets, self.dir / "run")
        self.run = run
        self.data = self.dir / "data"
        env = {
            **os.environ,
            "PATH": f"{Path(cli_argv()[0]).parent}:{os.environ['PATH']}",
            "IFESCALATE_DATA_DIR": str(self.data),
            "IFESCALATE_SECRETS_DIR": str(run),
            "IFESCALATE_CONFIG": str(self.dir / "ifescalate.yaml"),
            "IFESCALATE_API": "127.0.0.1:0",
            "IFESCALATE_DATABASE_URL_FILE": str(self.dir / "database-url"),
            "IFESCALATE_TOKEN_IMPORTS": (
                f"monitoring:auditor:{run / 'monitoring-token'} "
                f"council-agent:council:{run / 'council-token'}"
            ),
        }
        env.pop("IFESCALATE_DATABASE_URL", None)
        self.log = self.dir / "serve.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                ["sh", str(DEPLOY / "docker" / "entrypoint.sh")],
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.api = self._wait_ready()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            text = self.output()
            if re.search(r"^ready$", text, re.MULTILINE):
                found = re.search(r"^api on (http://\S+)$", text, re.MULTILINE)
                assert found, text
                return found.group(1)
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.kill()
        raise PeerError(f"entrypoint did not reach ready:\n{self.output()[-4000:]}")

    def probe(self) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "IFESCALATE_PROBE_URL": f"{self.api}/ready",
            "IFESCALATE_PROBE_TOKEN_FILE": str(self.run / "monitoring-token"),
        }
        return subprocess.run(
            [sys.executable, str(DEPLOY / "docker" / "probe.py")],
            env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    def get(self, path: str, token: str | None) -> int:
        req = urllib.request.Request(self.api + path)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def test_entrypoint_runs_two_instances_on_one_set_of_secrets(
    tmp_path: Path, pg_schema: str
) -> None:
    secrets = _secrets(tmp_path)
    for spec in compose()["secrets"].values():
        assert (secrets / Path(spec["file"]).name).is_file(), (
            f"make-secrets.sh made no {spec['file']}"
        )
    monitoring = (secrets / "monitoring-token").read_text().strip()
    council = (secrets / "council-token").read_text().strip()
    assert monitoring.startswith("ife_") and council.startswith("ife_")
    prefix = f"deploy-test-{uuid.uuid4().hex[:8]}"
    instances: list[Instance] = []
    try:
        for name in ("one", "two"):
            instances.append(Instance(name, tmp_path, secrets, pg_schema, prefix))
        for inst in instances:
            key = inst.data / "witness_ed25519.pem"
            assert key.read_bytes() == (secrets / "witness_ed25519.pem").read_bytes()
            assert key.stat().st_mode & 0o777 == 0o600
            assert (inst.data / "evidence_link.key").read_bytes() == (
                secrets / "evidence_link.key"
            ).read_bytes()
            assert "imported " in inst.output()
            probe = inst.probe()
            assert probe.returncode == 0, probe.stdout + inst.output()[-2000:]
            assert inst.get("/health", None) == 200
            assert inst.get("/metrics", monitoring) == 200
            assert inst.get("/metrics", None) == 401
            assert inst.get("/v1/escalations", council) == 200
        # The probe fails when the token is wrong (it can fail).
        (instances[0].run / "monitoring-token").write_text("ife_000000000000_" + "x" * 43)
        bad = instances[0].probe()
        assert bad.returncode == 1 and "/ready 401" in bad.stdout, bad.stdout
    finally:
        codes = [inst.stop() for inst in instances]
    assert codes == [0, 0], [i.output()[-2000:] for i in instances]
    # Both appended to one chain with one key; it verifies.
    verify = subprocess.run(
        [*cli_argv(), "witness", "verify", "--db", DSN, "--schema", pg_schema,
         "--data-dir", str(instances[0].data)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert verify.returncode == 0 and verify.stdout.startswith("OK"), verify.stdout + verify.stderr
