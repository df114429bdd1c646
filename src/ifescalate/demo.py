"""``ifescalate demo``: one complete escalation on this machine, shown live, then verified.

The whole service runs in this process (``App``) with its own registry of two demo experts, each a
real SIP user agent on a loopback port: ``dana`` rings and never answers, ``eli`` answers, checks
the INVITE's X-IF-Signature against the key the API publishes, presses 1 (approve) by SIP INFO
DTMF and hangs up. The council side talks to the service only as a council agent would: real HTTP
(POST the escalation, follow its event stream, GET the result). At the end the witness log is
verified against the published key. Exit 0 only if every one of those steps happened as expected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .api import Scope
from .app import App, Started
from .config import ConfigError, load_settings
from .escalation.signing import verify_invite_headers
from .guard import GuardError
from .net.endpoint import SipEndpoint
from .net.transport import ListenSpec
from .net.ua import CallFailed, IncomingCall, UaConfig, UserAgent
from .witness import SqliteStore, VerifyResult, WitnessError, parse_public_key, verify_store

HAZARD = "safety"
QUESTION = "The planner wants to disable the rate limiter on the payments API. Approve?"
#: Short enough that the demo takes seconds, long enough for a loaded CI machine.
RING_TIMEOUT = 3.0
ANSWER_AFTER = 0.5
VERDICT_AFTER = 1.0
HANGUP_AFTER = 1.0
#: The whole demo must end well within this (the issue asks for < 20 s).
OVERALL_TIMEOUT = 20.0
DTMF_APPROVE = b"Signal=1\r\nDuration=160\r\n"


class DemoFailed(Exception):
    """A step did not happen as the demo expects; the message says which."""


# --------------------------------------------------------------------------------------- output


class Clock:
    """Elapsed time since the escalation was posted (wall clock: event times are wall clock)."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall
        self.t0 = wall()

    def reset(self) -> None:
        self.t0 = self.wall()

    def ms_since(self, when: float | None = None) -> int:
        return round(((self.wall() if when is None else when) - self.t0) * 1000)


def _line(ms: int, text: str) -> None:
    print(f"  +{ms:>5} ms  {text}", flush=True)


def describe(kind: str, details: dict[str, Any]) -> str:
    """One readable line for an escalation event (the live progress view)."""
    who = details.get("expert_id", "")
    if kind == "ESCALATION_REQUESTED":
        text = f"hazard {details.get('hazard')}, urgency {details.get('urgency')}"
    elif kind == "GUARD_DECISION":
        text = ", ".join(
            f"{d.get('expert_id')} {'permit' if d.get('permit') else 'deny'}"
            for d in details.get("decisions", [])
        )
    elif kind == "INVITE":
        text = f"{who} at {details.get('sip_uri')} (rank {details.get('rank')})"
    elif kind == "NO_ANSWER":
        text = f"{who} ({details.get('reason') or details.get('status')})"
    elif kind == "VERDICT":
        text = f"{who}: {details.get('verdict')}"
    elif kind == "EVIDENCE_ACCESSED":
        text = f"{details.get('action')} {details.get('name')} for {who or 'anyone'}"
        text += f" ({details.get('by')})" if details.get("by") else ""
    elif kind == "TERMINATED":
        text = f"{details.get('outcome')}: {details.get('reason')}"
        if "duration" in details:
            text += f" after {details['duration']} s connected"
    elif who:
        text = str(who)
    else:
        text = json.dumps({k: v for k, v in details.items() if k != "witness_seq"})
    seq = details.get("witness_seq")
    return f"{kind:<20} {text}" + (f"  [witness #{seq}]" if seq is not None else "")


# -------------------------------------------------------------------------------- demo experts


@dataclass(slots=True)
class ExpertReport:
    """What one demo expert saw and did, checked at the end."""

    invites: int = 0
    signature_ok: bool | None = None
    answered: bool = False
    info_status: int | None = None
    hung_up: bool = False
    end_reason: str | None = None
    errors: list[str] = field(default_factory=list)


class DemoExpert:
    """A SIP user agent on loopback playing one expert: ring and maybe answer, vote, hang up."""

    def __init__(self, expert_id: str, clock: Clock, *, answers: bool) -> None:
        self.expert_id = expert_id
        self.clock = clock
        self.answers = answers
        self.public_key: Ed25519PublicKey | None = None
        self.report = ExpertReport()
        self.ua = UserAgent(UaConfig(user=expert_id))
        self.ua.on_incoming = self._on_incoming
        self.endpoint = SipEndpoint(self.ua)
        self.ua.attach(self.endpoint)
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def uri(self) -> str:
        return f"sip:{self.expert_id}@127.0.0.1:{self.port}"

    async def start(self) -> None:
        bound = await self.endpoint.listen(ListenSpec("UDP", "127.0.0.1", 0))
        self.port = bound.port

    async def finished(self, timeout: float) -> None:
        """Wait for this expert's call handling to end (its tasks)."""
        if self._tasks:
            await asyncio.wait_for(asyncio.gather(*self._tasks), timeout)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.endpoint.close()

    def _say(self, text: str) -> None:
        _line(self.clock.ms_since(), f"{'expert ' + self.expert_id + ':':<20} {text}")

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

    def _on_incoming(self, incoming: IncomingCall) -> None:
        self.report.invites += 1
        incoming.ring()
        ok = self._check_signature(incoming)
        plan = "will answer" if self.answers else "will not answer"
        self._say(f"INVITE received, ringing (180), {plan}; X-IF-Signature {ok}")
        if self.answers:
            self._spawn(self._converse(incoming))
        else:
            self._spawn(self._watch(incoming))

    def _check_signature(self, incoming: IncomingCall) -> str:
        headers: dict[str, str] = {}
        for name, value in incoming.request.headers.items():
            headers.setdefault(name, value)
        if self.public_key is None:
            self.report.errors.append("INVITE arrived before the public key was known")
            self.report.signature_ok = False
        else:
            self.report.signature_ok = verify_invite_headers(
                self.public_key,
                headers,
                expert_id=self.expert_id,
                expert_uri=self.uri,
                now=time.time(),
            )
        return "verified" if self.report.signature_ok else "INVALID"

    async def _watch(self, incoming: IncomingCall) -> None:
        reason = await incoming.call.wait_ended()
        self.report.end_reason = reason
        self._say(f"call ended while ringing ({reason}: the service sent CANCEL)")

    async def _converse(self, incoming: IncomingCall) -> None:
        await asyncio.sleep(ANSWER_AFTER)
        if incoming.call.end_reason is not None:
            self.report.end_reason = incoming.call.end_reason
            return
        call = incoming.answer()
        self.report.answered = True
        self._say("answered (200 OK)")
        await asyncio.sleep(VERDICT_AFTER)
        try:
            response = await call.send_info(DTMF_APPROVE, "application/dtmf-relay")
        except CallFailed as exc:
            self.report.errors.append(f"INFO failed: {exc}")
            self._say(f"pressing 1 failed: {exc}")
        else:
            self.report.info_status = response.status
            self._say(f"pressed 1 (approve): SIP INFO dtmf-relay -> {response.status}")
        await asyncio.sleep(HANGUP_AFTER)
        await call.hangup()
        self.report.hung_up = True
        self.report.end_reason = call.end_reason
        self._say("hung up (BYE)")


# ------------------------------------------------------------------------------ council (HTTP)


async def read_sse(lines: AsyncIterable[bytes]) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """``(event, data)`` pairs of a text/event-stream read line by line (an aiohttp response's
    ``content`` iterates lines); comments (heartbeats) are skipped."""
    kind, data = "", list[str]()
    async for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield kind, json.loads("\n".join(data))
            kind, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            kind = value
        elif name == "data":
            data.append(value)


async def fetch_public_key(http: aiohttp.ClientSession, api_url: str) -> Ed25519PublicKey:
    async with http.get(f"{api_url}/v1/witness/public-key") as resp:
        if resp.status != 200:
            raise DemoFailed(f"GET /v1/witness/public-key answered {resp.status}")
        body = await resp.json()
    return parse_public_key(body["public_key_hex"])


async def check_ready(http: aiohttp.ClientSession, api_url: str) -> None:
    """GET /ready first: a service that cannot serve (a broken witness log) is named, not posted to."""
    async with http.get(f"{api_url}/ready") as resp:
        if resp.status == 200:
            return
        body = await resp.json()
    checks = body.get("checks", {})
    failed = "; ".join(f"{name}: {checks.get(name)}" for name in body.get("failed", []))
    raise DemoFailed(f"service not ready ({resp.status}): {failed}")


async def run_council(
    http: aiohttp.ClientSession, api_url: str, token: str, clock: Clock
) -> dict[str, Any]:
    """Post the escalation, print its events as they happen, return the final escalation."""
    auth = {"Authorization": f"Bearer {token}"}
    body = {
        "hazard": HAZARD,
        "question": QUESTION,
        "urgency": "high",
        "evidence": [{"name": "change-request.txt", "content": "disable rate limiter"}],
    }
    clock.reset()
    async with http.post(f"{api_url}/v1/escalations", json=body, headers=auth) as resp:
        if resp.status != 201:
            raise DemoFailed(f"POST /v1/escalations answered {resp.status}: {await resp.text()}")
        created = await resp.json()
    esc_id = created["id"]
    # Stamped with the moment it was sent: the events below are stamped when they happened.
    _line(0, f"{'council:':<20} POST /v1/escalations -> 201, id {esc_id}")
    url = f"{api_url}/v1/escalations/{esc_id}"
    async with http.get(f"{url}/events", headers=auth) as resp:
        if resp.status != 200:
            raise DemoFailed(f"GET {url}/events answered {resp.status}")
        async for kind, event in read_sse(resp.content):
            _line(clock.ms_since(event.get("time")), describe(kind, event.get("details", {})))
    async with http.get(url, headers=auth) as resp:
        if resp.status != 200:
            raise DemoFailed(f"GET {url} answered {resp.status}")
        final: dict[str, Any] = await resp.json()
    return final


# ------------------------------------------------------------------------------- orchestration


def write_registry(path: Path, experts: list[DemoExpert]) -> None:
    entries = [
        {
            "id": e.expert_id,
            "name": f"{e.expert_id.capitalize()} (demo expert)",
            "sip_uri": e.uri,
            "org": "demo-lab",
            "networks": ["127.0.0.0/8"],
            "specializations": [HAZARD],
            "clearance": 3,
            "availability": ["always"],
            "calls_per_minute": 10,
        }
        for e in experts
    ]
    path.write_text(yaml.safe_dump({"experts": entries}, sort_keys=False))


def check_outcome(final: dict[str, Any], dana: ExpertReport, eli: ExpertReport) -> list[str]:
    """Everything the demo promises; an empty list means it all happened."""
    problems: list[str] = []
    ladder = {step["expert_id"]: step.get("result") for step in final.get("ladder", [])}
    if list(ladder)[:2] != ["dana", "eli"]:
        problems.append(f"ladder should ring dana then eli, was {list(ladder)}")
    if ladder.get("dana") not in ("timeout", "no_answer"):
        problems.append(f"dana should not have answered (result {ladder.get('dana')!r})")
    if ladder.get("eli") != "answered":
        problems.append(f"eli should have answered (result {ladder.get('eli')!r})")
    expected = {"outcome": "completed", "verdict": "approve", "connected_expert": "eli"}
    for key, value in expected.items():
        if final.get(key) != value:
            problems.append(f"{key} should be {value!r}, was {final.get(key)!r}")
    if dana.invites != 1 or eli.invites != 1:
        problems.append(
            f"each expert should get one INVITE (dana {dana.invites}, eli {eli.invites})"
        )
    if not (dana.signature_ok and eli.signature_ok):
        problems.append("an INVITE's X-IF-Signature did not verify")
    if dana.end_reason != "cancelled":
        problems.append(f"dana's ringing call should end by CANCEL, ended {dana.end_reason!r}")
    if eli.info_status != 200 or not eli.hung_up:
        problems.append(f"eli's INFO answered {eli.info_status}, hung up {eli.hung_up}")
    problems += dana.errors + eli.errors
    return problems


def print_final(final: dict[str, Any]) -> None:
    print(
        f"\nescalation {final.get('id')}: outcome {final.get('outcome')}, "
        f"verdict {final.get('verdict')}, connected expert {final.get('connected_expert')}"
    )
    for step in final.get("ladder", []):
        print(f"  ladder {step['rank']}. {step['expert_id']:<6} {step['result']}")
    print(f"  ended: {final.get('end_reason')}", flush=True)


async def verify_witness(data_dir: Path, public_key: Ed25519PublicKey) -> VerifyResult:
    """Check every hash link and signature of the log, against the key the API published."""
    store = SqliteStore.in_data_dir(data_dir)
    await store.open()
    try:
        return await verify_store(store, public_key)
    finally:
        await store.close()


async def start_service(data_dir: Path, experts: list[DemoExpert]) -> tuple[App, Started]:
    """The whole service in this process: the demo registry, a short ring timeout, loopback only."""
    registry = data_dir / "demo-experts.yaml"
    data_dir.mkdir(parents=True, exist_ok=True)
    write_registry(registry, experts)
    settings = load_settings(None, data_dir=str(data_dir))
    settings.database_url = None  # the embedded SQLite store, whatever the environment says
    settings.experts_file = str(registry)
    settings.escalation.ring_timeout = RING_TIMEOUT
    settings.sip.listen = ["udp:127.0.0.1:0"]
    settings.api.host, settings.api.port = "127.0.0.1", 0
    app = App(settings)
    try:
        started = await app.start()
    except BaseException:
        await app.stop()
        raise
    return app, started


def council_token(app: App, started: Started) -> str:
    token = started.new_tokens.get("council")
    if token is None:  # a reused data dir: its first tokens were printed on its first run
        assert app.tokens is not None
        token = app.tokens.create("demo-council", [Scope.COUNCIL])
    return token


async def run_escalation(
    app: App, started: Started, experts: list[DemoExpert], clock: Clock
) -> tuple[dict[str, Any], Ed25519PublicKey]:
    """The council's part over HTTP while the experts play theirs; the final escalation and key."""
    print(f"service: API {started.api_url}, SIP {', '.join(map(str, started.sip))}")
    for expert in experts:
        print(f"expert {expert.expert_id}: {expert.uri}")
    token = council_token(app, started)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        await check_ready(http, started.api_url)
        key = await fetch_public_key(http, started.api_url)
        for expert in experts:
            expert.public_key = key
        print("\nlive progress (council: the API event stream; expert: the expert's own UA):")
        final = await run_council(http, started.api_url, token, clock)
    for expert in experts:
        try:
            await expert.finished(5.0)
        except TimeoutError:
            raise DemoFailed(f"expert {expert.expert_id} did not finish its call") from None
    print_final(final)
    return final, key


async def run_demo(data_dir: Path) -> int:
    clock = Clock()
    dana = DemoExpert("dana", clock, answers=False)
    eli = DemoExpert("eli", clock, answers=True)
    experts = [dana, eli]
    try:
        for expert in experts:
            await expert.start()
        app, started = await start_service(data_dir, experts)
        try:
            final, key = await run_escalation(app, started, experts, clock)
        finally:
            await app.stop()
    finally:
        for expert in experts:
            await expert.close()
    result = await verify_witness(data_dir, key)
    print(f"witness: {result.message()}")
    problems = check_outcome(final, dana.report, eli.report)
    if not result.ok:
        problems.append(f"witness log does not verify: {result.message()}")
    for problem in problems:
        print(f"demo: FAILED: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"demo: OK ({clock.ms_since() / 1000:.1f} s from POST to verified log)", flush=True)
    return 0


def main(args: argparse.Namespace) -> int:
    """``ifescalate demo [--data-dir DIR] [--keep]``; 0 when every step happened as expected."""
    given = getattr(args, "data_dir", None)
    keep = bool(getattr(args, "keep", False)) or given is not None
    data_dir = Path(given) if given else Path(tempfile.mkdtemp(prefix="ifescalate-demo-"))
    print(f"data dir: {data_dir}")
    try:
        return asyncio.run(asyncio.wait_for(run_demo(data_dir), OVERALL_TIMEOUT))
    except TimeoutError:
        print(f"demo: FAILED: did not finish within {OVERALL_TIMEOUT:.0f} s", file=sys.stderr)
        return 1
    except (DemoFailed, aiohttp.ClientError, OSError, ConfigError, GuardError, WitnessError) as exc:
        print(f"demo: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if keep:
            print(f"data dir kept: {data_dir}")
        else:
            with contextlib.suppress(OSError):
                shutil.rmtree(data_dir)


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="ifescalate demo")
    parser.add_argument("--data-dir")
    parser.add_argument("--keep", action="store_true")
    sys.exit(main(parser.parse_args()))
