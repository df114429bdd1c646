"""The media issue's proof with real peers: RTP and RFC 4733 DTMF from SIPp and baresip reach the room.

1. SIPp calls in as the expert (digest MD5 against the registry's HA1, source inside the expert's
   networks) while the escalation rings that expert at a silent socket. Its scenario
   (peers/scenarios/uac_pcap_auth_dtmf.xml) plays the G.711 A-law pcap and then the RFC 4733 pcap of
   key "1": an agent on the media WebSocket hears the expert's speech (not silence), the VERDICT
   approve is witnessed, SIPp's BYE ends the escalation as completed, and the chain verifies.
2. baresip 1.0 as the expert's desk phone: we call it, it auto-answers, and its ``ctrl_tcp`` module
   (JSON in netstrings) runs the menu command ``sndcode 2``, which baresip sends as RFC 4733 events on
   its RTP stream: VERDICT reject.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import yaml

from ifescalate.sip.digest import ha1
from tests.peers import Baresip, SippProcess, free_port

from .conftest import HOST, SCENARIOS, Deployment, ExpertSpec, Service, assert_chain_ok
from .test_escalation_media import RATE, Agent, terminated

pytestmark = pytest.mark.interop

PCAPS = Path("/usr/share/sip-tester")
REALM = "ifescalate"
USER = "erin"
PASSWORD = "erin-sipp-secret"


# ------------------------------------------------------------------------------------- helpers


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A bound UDP socket that never answers: the outbound INVITE to the expert rings on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def add_digest(dep: Deployment, expert_id: str) -> None:
    """conftest's registry has no credentials: store SHA-256 and MD5 HA1s, and challenge with MD5
    alone (SIPp 3.6 takes the first WWW-Authenticate and computes MD5 only; by RFC 8760 section 2.4
    the default offers SHA-256 first, which SIPp refuses with "authentication must use MD5")."""
    config = yaml.safe_load(dep.config.read_text())
    config["sip"] = {"auth_algorithms": ["MD5"]}
    dep.config.write_text(yaml.safe_dump(config, sort_keys=False))
    doc = yaml.safe_load(dep.registry.read_text())
    (expert,) = [e for e in doc["experts"] if e["id"] == expert_id]
    expert["digest"] = {
        "username": USER,
        "realm": REALM,
        "ha1_sha256": ha1(USER, REALM, PASSWORD, "SHA-256"),
        "ha1_md5": ha1(USER, REALM, PASSWORD, "MD5"),
    }
    dep.registry.write_text(yaml.safe_dump(doc, sort_keys=False))


def rms(samples: np.ndarray[Any, Any]) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0


async def listen_to_expert(svc: Service, esc_id: str, seconds: float) -> np.ndarray[Any, Any]:
    """An agent joins the room for ``seconds``, silent itself, and returns everything it heard."""
    url = svc.api_url.replace("http://", "ws://") + f"/v1/escalations/{esc_id}/media"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        agent = await Agent.join(
            http, url, svc.tokens["council"], role="chair", name="listening-agent"
        )
        await asyncio.sleep(seconds)
        heard = agent.heard(0)
        await agent.ws.close()
    return heard


def verdicts(svc: Service, esc_id: str) -> list[dict[str, Any]]:
    return [e["details"] for e in svc.witness(esc_id) if e["type"] == "VERDICT"]


def poll(svc: Service, check: Callable[[], bool], what: str, timeout: float) -> None:
    """Every 0.2 s: conftest's 20 ms polls would run into the API's 300 requests / 10 s limit
    while a peer takes seconds to get to its key press."""
    deadline = time.monotonic() + timeout
    while not check():
        assert svc.running, f"serve died:\n{svc.output()[-3000:]}"
        assert time.monotonic() < deadline, (
            f"{what} not within {timeout} s:\n{svc.output()[-3000:]}"
        )
        time.sleep(0.2)


# ------------------------------------------------------------------- 1. SIPp calls in with RTP


def sipp_call_in(svc: Service, cwd: Path) -> SippProcess:
    args = [
        "-sf", str(SCENARIOS / "uac_pcap_auth_dtmf.xml"), f"{HOST}:{svc.sip_port}",
        "-s", "ifescalate", "-au", USER, "-ap", PASSWORD,
        "-i", HOST, "-p", str(free_port("udp")), "-mp", str(free_port("udp")),
        "-m", "1", "-recv_timeout", "20000",
    ]  # fmt: skip
    return SippProcess(args, cwd=cwd, max_lifetime=60, name="sipp-expert")


def test_sipp_calls_in_agent_hears_speech_and_dtmf_1_approves(
    deploy: Callable[..., Deployment], silent_port: int, tmp_path: Path
) -> None:
    assert (PCAPS / "g711a.pcap").exists() and (PCAPS / "dtmf_2833_1.pcap").exists()
    (tmp_path / "pcap").symlink_to(PCAPS)  # the scenario names pcap/g711a.pcap relative to its cwd
    dep = deploy(
        [ExpertSpec(USER, f"sip:{USER}@{HOST}:{silent_port}")],
        ring_timeout=30.0,
        deadline=60.0,
    )
    add_digest(dep, USER)
    with dep.service() as svc:
        esc_id = svc.escalate()["id"]
        svc.wait_state(esc_id, "ringing")
        with sipp_call_in(svc, tmp_path) as sipp:
            view = svc.wait_state(esc_id, "connected", timeout=10)
            assert view["connected_expert"] == USER, view
            # The pcap speaks for ~8 s from the ACK; listen for 4 s of it, then wait for the key.
            heard = asyncio.run(listen_to_expert(svc, esc_id, 4.0))
            poll(svc, lambda: bool(verdicts(svc, esc_id)), "VERDICT", timeout=15)
            verdict_view = svc.escalation(esc_id)
            poll(svc, lambda: svc.escalation(esc_id)["state"] == "ended", "ended", timeout=15)
            ended = svc.escalation(esc_id)
            result = sipp.process.wait(15)
        details = terminated(svc, esc_id)
        types = svc.event_types(esc_id)
        found = verdicts(svc, esc_id)

    outcome = sipp.stop()  # SIPp has exited: this only reads its counters
    assert result == 0 and outcome.successful == 1 and outcome.failed == 0, outcome.explain()
    # The agent heard the expert: at least 3 s of frames, clearly louder than silence.
    assert heard.size >= 3 * RATE, f"the agent got {heard.size / RATE:.2f} s"
    loud = [rms(heard[i : i + RATE // 10]) for i in range(0, heard.size - RATE // 10, RATE // 10)]
    assert rms(heard) > 300, f"the agent heard (nearly) silence: RMS {rms(heard):.0f}"
    assert sum(level > 300 for level in loud) >= 10, loud
    # One verdict, approve, from the RFC 4733 key on the expert's RTP.
    assert verdict_view["verdict"] == "approve", verdict_view
    assert len(found) == 1 and "approve" in json.dumps(found[0]), found
    assert types.index("CONNECTED") < types.index("VERDICT") < types.index("TERMINATED"), types
    assert ended["outcome"] == "completed", ended
    media = details["media"]
    assert len(media) == 1 and media[0]["codec"] == "PCMA", media
    assert media[0]["received"] > 100 and media[0]["dtmf"] == 1, media
    assert assert_chain_ok(dep.data_dir).startswith("OK: ")


# --------------------------------------------------------- 2. baresip presses a key over RTP


def baresip_command(port: int, command: str, params: str) -> dict[str, Any]:
    """One command to baresip's ctrl_tcp module: JSON in a netstring, the reply likewise."""
    body = json.dumps({"command": command, "params": params, "token": "t1"}).encode()
    with socket.create_connection((HOST, port), timeout=5) as conn:
        conn.sendall(b"%d:%s," % (len(body), body))
        raw = b""
        while not raw.endswith(b","):
            chunk = conn.recv(4096)
            assert chunk, f"ctrl_tcp closed after {raw!r}"
            raw += chunk
    length, _, rest = raw.partition(b":")
    assert int(length) == len(rest) - 1, raw
    reply: dict[str, Any] = json.loads(rest[:-1])
    return reply


def test_baresip_expert_presses_2_over_rfc4733_and_the_verdict_is_reject(
    deploy: Callable[..., Deployment],
) -> None:
    ctrl = free_port("tcp")
    extra = f"module_app ctrl_tcp.so\nctrl_tcp_listen {HOST}:{ctrl}\n"
    with Baresip(USER, answer=True, duration=40, sip_trace=True, extra_config=extra) as phone:
        dep = deploy([ExpertSpec(USER, phone.uri)])
        with dep.service() as svc:
            esc_id = svc.escalate()["id"]
            svc.wait_state(esc_id, "connected", timeout=10)
            phone.wait_established(timeout=5)
            svc.wait_witness(esc_id, "BRIDGE_ESTABLISHED")
            # A key that is no verdict first: nothing may happen.
            assert baresip_command(ctrl, "sndcode", "5")["ok"] is True
            phone.wait_for(r"send DTMF digit end: '5'", timeout=5)
            time.sleep(0.6)
            assert not verdicts(svc, esc_id)
            reply = baresip_command(ctrl, "sndcode", "2")
            assert reply["ok"] is True and reply["token"] == "t1", reply
            poll(svc, lambda: bool(verdicts(svc, esc_id)), "VERDICT", timeout=10)
            view = svc.escalation(esc_id)
            svc.cancel(esc_id)
            poll(svc, lambda: svc.escalation(esc_id)["state"] == "ended", "ended", timeout=10)
            details = terminated(svc, esc_id)
            types = svc.event_types(esc_id)
            found = verdicts(svc, esc_id)
        log = phone.log()

    assert view["state"] == "connected" and view["verdict"] == "reject", view
    assert len(found) == 1 and "reject" in json.dumps(found[0]), found
    assert types.index("BRIDGE_ESTABLISHED") < types.index("VERDICT") < types.index("TERMINATED")
    # baresip negotiated telephone-event and sent both keys as RFC 4733 events on its RTP stream
    # (the serve side counted them on the expert's leg); no SIP INFO carried them.
    assert re.search(r"^a=rtpmap:\d+ telephone-event/8000", log, re.M), log[-3000:]
    assert "INFO sip:" not in log
    media = details["media"]
    assert len(media) == 1 and media[0]["dtmf"] == 2, media
    assert assert_chain_ok(dep.data_dir).startswith("OK: ")
