"""The gate in one process with a controlled clock: stale nonces and spoofed X-IF headers, over
real loopback sockets (our endpoint and UA, the pipeline with in-memory counters)."""

from __future__ import annotations

import asyncio

from ifescalate.net.runner import AgentOptions, attach_security, start_agent
from ifescalate.net.security_gate import SecurityGate
from ifescalate.net.transport import ListenSpec
from ifescalate.net.ua import IncomingCall, UaConfig, UserAgent
from ifescalate.security import SecurityConfig
from ifescalate.sip.digest import DigestClient
from ifescalate.sip.message import Request

from .sipclient import SDP, SipClient


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def _start(auth: bool = True) -> tuple[UserAgent, SecurityGate, int, Clock]:
    cfg = UaConfig(auth_user="alice", auth_password="s3cret") if auth else UaConfig()
    opts = AgentOptions(
        listen=[ListenSpec("UDP", "127.0.0.1", 0)],
        config=cfg,
        security=SecurityConfig.from_cli(flood="1000/10", require_tls=False),
    )
    ua = await start_agent(opts)
    gate = attach_security(ua, opts)
    assert gate is not None and ua.endpoint is not None
    clock = Clock()
    gate.clock = clock
    return ua, gate, ua.endpoint.bound[0].port, clock


def test_stale_nonce_is_rechallenged_with_stale_true() -> None:
    async def body() -> None:
        ua, gate, port, clock = await _start()
        try:
            c = SipClient(("127.0.0.1", port), source="127.0.0.2", timeout=2.0)
            first = await asyncio.to_thread(c.request, "MESSAGE", user="alice", call_id="st1")
            assert first is not None and first.status == 401
            clock.now += 301.0  # past the 300 s nonce lifetime
            creds = DigestClient("alice", "s3cret").answer(
                first.headers.get_lines("WWW-Authenticate"),
                "MESSAGE",
                f"sip:alice@127.0.0.1:{port}",
            )
            data = c.build("MESSAGE", user="alice", call_id="st1", cseq=2, authorization=creds)
            await asyncio.to_thread(c.send, data)
            stale = await asyncio.to_thread(c.recv)
            assert stale is not None and stale.status == 401
            assert all("stale=true" in v for v in stale.headers.get_lines("WWW-Authenticate"))
            # The stale answer is no failure (a client that knows the password just retries).
            assert gate.stats["digest:stale_nonce"] == 1 and gate.stats["rejected"] == 0
            creds = DigestClient("alice", "s3cret").answer(
                stale.headers.get_lines("WWW-Authenticate"),
                "MESSAGE",
                f"sip:alice@127.0.0.1:{port}",
            )
            data = c.build("MESSAGE", user="alice", call_id="st1", cseq=3, authorization=creds)
            await asyncio.to_thread(c.send, data)
            ok = await asyncio.to_thread(c.recv)
            assert ok is not None and ok.status == 200
        finally:
            await gate.aclose()
            assert ua.endpoint is not None
            await ua.endpoint.close()

    asyncio.run(body())


def test_spoofed_x_if_headers_never_reach_the_user_agent() -> None:
    async def body() -> None:
        ua, gate, port, _ = await _start(auth=False)
        seen: list[Request] = []
        default = ua.on_incoming

        def spy(incoming: IncomingCall) -> None:
            seen.append(incoming.request)
            default(incoming)

        ua.on_incoming = spy
        try:
            c = SipClient(("127.0.0.1", port), source="127.0.0.2")
            spoof = [
                ("X-IF-Trace-ID", "forged-trace"),
                ("X-IF-Escalation-ID", "esc-forged"),
                ("x-if-signature", "AAAA"),
                ("X-IF-Hazard", "fire"),
            ]
            resp = await asyncio.to_thread(c.request, "INVITE", headers=spoof, body=SDP)
            assert resp is not None and resp.status == 200
            assert len(seen) == 1
            names = [n.lower() for n, _ in seen[0].headers.items()]
            assert not [n for n in names if n.startswith("x-if-")], names
        finally:
            await gate.aclose()
            assert ua.endpoint is not None
            await ua.endpoint.close()

    asyncio.run(body())
