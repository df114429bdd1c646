"""End-to-end harness: `ifescalate serve` as a subprocess, a registry of real-peer experts, the HTTP API.

`Service` starts `ifescalate serve` with its own data dir, a registry YAML naming experts whose SIP URIs point
at SIPp or baresip on free loopback ports, and a config with short timers. Its output goes to a log file (a
pipe nobody reads would fill up and stall the service). Every wait is bounded; the process is killed (with
its process group) whatever happens. After each test the witness chain of each data dir must verify.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ifescalate.witness.store import DB_FILE as WITNESS_DB_FILE
from tests.peers import PeerError

HOST = "127.0.0.1"
SCENARIOS = Path(__file__).parents[1] / "peers" / "scenarios"

_LISTENING = re.compile(r"^listening on (udp|tcp|tls):(\S+):(\d+)$", re.MULTILINE)
_API = re.compile(r"^api on (http://\S+)$", re.MULTILINE)
_TOKEN = re.compile(r"^api token \((\w+), shown once\): (\S+)$", re.MULTILINE)


def cli_argv() -> list[str]:
    """The installed `ifescalate` console script next to this interpreter, else `python -m`."""
    beside = Path(sys.executable).with_name("ifescalate")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "ifescalate.cli"]


@dataclass(frozen=True, slots=True)
class ExpertSpec:
    """One expert in the registry the test writes: ``sip_uri`` points at a real peer."""

    id: str
    sip_uri: str
    specializations: tuple[str, ...] = ("safety",)
    calls_per_minute: int = 1000


def write_registry(path: Path, experts: Sequence[ExpertSpec]) -> Path:
    doc = {
        "experts": [
            {
                "id": e.id,
                "name": f"Expert {e.id}",
                "sip_uri": e.sip_uri,
                "org": "system-test-lab",
                "networks": ["127.0.0.0/8"],
                "specializations": list(e.specializations),
                "clearance": 3,
                "availability": ["daily 00:00-24:00 UTC"],
                "calls_per_minute": e.calls_per_minute,
            }
            for e in experts
        ]
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_config(
    path: Path,
    *,
    experts_file: Path,
    ring_timeout: float = 2.0,
    deadline: float = 20.0,
    max_duration: float = 60.0,
    database_url: str | None = None,
    log_level: str = "INFO",
) -> Path:
    doc: dict[str, Any] = {
        "experts_file": str(experts_file),
        "log_level": log_level,
        "escalation": {
            "ring_timeout": ring_timeout,
            "deadline": deadline,
            "max_duration": max_duration,
        },
    }
    if database_url is not None:
        doc["database_url"] = database_url
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class HttpError(AssertionError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class Service:
    """`ifescalate serve` for the length of a `with` block (or until `kill()` / `stop()`)."""

    def __init__(
        self,
        data_dir: Path,
        config: Path,
        *,
        start_timeout: float = 30.0,
        tokens: dict[str, str] | None = None,
        listen: Sequence[str] = (f"udp:{HOST}:0",),
    ) -> None:
        self.listen = tuple(listen)
        self.data_dir = data_dir
        self.config = config
        self.start_timeout = start_timeout
        self.log_path = data_dir.parent / f"{data_dir.name}-serve-{time.monotonic_ns()}.log"
        # Shared with the Deployment: a restart on the same data dir prints no tokens again.
        self.tokens: dict[str, str] = tokens if tokens is not None else {}
        self.api_url = ""
        self.sip_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    # -- lifetime ---------------------------------------------------------------------------------

    def start(self) -> Service:
        argv = [
            *cli_argv(),
            "serve",
            "--data-dir",
            str(self.data_dir),
            *[arg for spec in self.listen for arg in ("--listen", spec)],
            "--api",
            f"{HOST}:0",
            "--config",
            str(self.config),
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            text = self.output()
            if re.search(r"^ready$", text, re.MULTILINE):
                self._parse(text)
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise PeerError(f"ifescalate serve did not become ready:\n{self.output()[-4000:]}")

    def _parse(self, text: str) -> None:
        sip = _LISTENING.search(text)
        api = _API.search(text)
        if sip is None or api is None:
            raise PeerError(f"serve printed no SIP or API address:\n{text[-4000:]}")
        self.sip_port = int(sip.group(3))
        self.api_url = api.group(1)
        for role, token in _TOKEN.findall(text):
            self.tokens[role] = token
        if "council" not in self.tokens:
            raise PeerError("no council token: the data dir was used before without passing tokens")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; SIGKILL (the group) if it overruns. Returns the exit status."""
        if self.process is None:
            return -1
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise PeerError(
                    f"serve ignored SIGTERM for {timeout} s:\n{self.output()[-3000:]}"
                ) from None
        self.returncode = self.process.returncode
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group, no clean-up at all (a crash)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.returncode = self.process.returncode

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            code = self.stop()
        finally:
            self.kill()
        if exc_type is None:
            assert code == 0, f"serve exited {code}:\n{self.output()[-3000:]}"
        else:
            print(f"serve output tail:\n{self.output()[-5000:]}", file=sys.stderr)

    # -- HTTP API ---------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        role: str = "council",
        timeout: float = 10.0,
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        if role:
            req.add_header("Authorization", f"Bearer {self.tokens[role]}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            raise HttpError(exc.code, exc.read().decode(errors="replace")) from None
        return status, json.loads(raw) if raw else None

    def escalate(self, hazard: str = "safety", **extra: Any) -> dict[str, Any]:
        body = {"hazard": hazard, "question": "Is this plan safe to run?", **extra}
        status, view = self.request("POST", "/v1/escalations", body)
        assert status == 201, view
        assert isinstance(view, dict)
        return view

    def escalation(self, esc_id: str) -> dict[str, Any]:
        _, view = self.request("GET", f"/v1/escalations/{esc_id}")
        assert isinstance(view, dict)
        return view

    def cancel(self, esc_id: str) -> dict[str, Any]:
        _, view = self.request("DELETE", f"/v1/escalations/{esc_id}")
        assert isinstance(view, dict)
        return view

    def wait_escalation(
        self, esc_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        """Poll GET /v1/escalations/{id} until ``until(view)``; AssertionError with the view on overrun."""
        deadline = time.monotonic() + timeout
        view = self.escalation(esc_id)
        while not until(view):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"escalation {esc_id} did not get there in {timeout} s: {view}\n"
                    f"events: {self.event_types(esc_id)}\nserve:\n{self.output()[-3000:]}"
                )
            if not self.running:
                raise AssertionError(f"serve died:\n{self.output()[-3000:]}")
            time.sleep(0.1)  # stays well inside the API's per-address rate limit
            view = self.escalation(esc_id)
        return view

    def wait_state(self, esc_id: str, state: str, timeout: float = 15.0) -> dict[str, Any]:
        return self.wait_escalation(esc_id, lambda v: v["state"] == state, timeout)

    def witness(self, esc_id: str) -> list[dict[str, Any]]:
        """Every witness event of one escalation, paging through /v1/witness as the auditor."""
        events: list[dict[str, Any]] = []
        after = 0
        while True:
            _, page = self.request(
                "GET", f"/v1/witness?escalation_id={esc_id}&after={after}&limit=500", role="auditor"
            )
            events += page["events"]
            if page["next_after"] is None:
                return events
            after = page["next_after"]

    def wait_witness(self, esc_id: str, *types: str, timeout: float = 10.0) -> list[str]:
        """Wait until the witness holds every type in `types` for this escalation; return all types.

        The API's view runs ahead of the witness by the time one append takes (the machine changes state
        synchronously; the worker then appends), so tests wait for the entry itself."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.event_types(esc_id)
            if all(t in seen for t in types):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"witness of {esc_id} lacks {types} after {timeout} s: {seen}")
            time.sleep(0.1)

    def event_types(self, esc_id: str) -> list[str]:
        return [e["type"] for e in self.witness(esc_id)]

    def public_key(self) -> Ed25519PublicKey:
        _, body = self.request("GET", "/v1/witness/public-key", role="auditor")
        assert body["algorithm"] == "Ed25519"
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(body["public_key_hex"]))


def witness_verify(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`ifescalate witness verify ARGS` to the end."""
    return subprocess.run(
        [*cli_argv(), "witness", "verify", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def assert_chain_ok(data_dir: Path) -> str:
    done = witness_verify("--data-dir", str(data_dir))
    assert done.returncode == 0, (
        f"witness verify failed ({done.returncode}):\n{done.stdout}{done.stderr}"
    )
    assert done.stdout.startswith("OK: "), done.stdout
    return done.stdout.strip()


def parse_sipp_messages(path: Path, method: str) -> list[dict[str, str]]:
    """The headers of every `method` request SIPp logged with `-trace_msg -message_file PATH`."""
    found: list[dict[str, str]] = []
    if not path.exists():
        return found
    blocks = re.split(r"^-{10,}.*$", path.read_text(errors="replace"), flags=re.MULTILINE)
    for block in blocks:
        lines = block.strip("\n").splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith(f"{method} ")), None)
        if start is None or "received" not in "\n".join(lines[:start]):
            continue
        headers: dict[str, str] = {}
        for line in lines[start + 1 :]:
            if not line.strip():
                break
            name, _, value = line.partition(":")
            headers.setdefault(name.strip(), value.strip())
        found.append(headers)
    return found


@dataclass(slots=True)
class Deployment:
    """The files of one test's service: data dir, registry and config (so a test can restart serve)."""

    root: Path
    data_dir: Path
    registry: Path
    config: Path
    tokens: dict[str, str]
    database_url: str | None = None

    def service(self) -> Service:
        """A Service on this deployment; tokens printed by the first start are reused by restarts."""
        return Service(self.data_dir, self.config, tokens=self.tokens)


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    """Makes a deployment (registry + config + data dir); after the test every data dir's chain verifies."""
    made: list[Deployment] = []

    def make(experts: Sequence[ExpertSpec], **config: Any) -> Deployment:
        root = tmp_path / f"deploy{len(made)}"
        root.mkdir()
        registry = write_registry(root / "experts.yaml", experts)
        cfg = write_config(root / "config.yaml", experts_file=registry, **config)
        dep = Deployment(root, root / "data", registry, cfg, {}, config.get("database_url"))
        made.append(dep)
        return dep

    yield make
    for dep in made:
        # A PostgreSQL-backed deployment keeps no witness in its data dir; its test verifies with --db.
        if not dep.data_dir.exists():
            continue  # the test failed before serve ever started
        if dep.database_url is None:
            assert_chain_ok(dep.data_dir)
        else:
            assert not (dep.data_dir / WITNESS_DB_FILE).exists()
