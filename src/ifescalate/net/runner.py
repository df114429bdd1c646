"""Start an endpoint with a user agent from command-line style options, and the CLI's SIP verbs.

``sip answer``, ``sip call`` and ``sip options`` (cli.py) are thin wrappers over these coroutines,
so tests and benchmarks drive exactly what a person runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..security import SecurityConfig
from ..sip.message import Response
from .endpoint import SipEndpoint, Target
from .security_gate import GateOptions, SecurityGate, make_pipeline, single_user_expert
from .tls import TlsOptions, client_context, server_context
from .transport import ListenSpec, StreamLimits
from .ua import Call, CallFailed, IncomingCall, UaConfig, UserAgent, target_for_uri


@dataclass(slots=True)
class AgentOptions:
    """Everything needed to run a user agent."""

    listen: list[ListenSpec] = field(default_factory=list)
    tls: TlsOptions = field(default_factory=TlsOptions)
    config: UaConfig = field(default_factory=UaConfig)
    verbose: bool = False
    #: The security pipeline (``--flood``, ``--allow``, ``--lockout``, ``--require-tls``); None:
    #: no gate at all, the fast path of old.
    security: SecurityConfig | None = None
    gate: GateOptions = field(default_factory=GateOptions)
    #: ``--message-timeout``, ``--tls-handshake-timeout``, ``--idle-timeout``,
    #: ``--max-connections-per-peer``, ``--max-connections``.
    stream: StreamLimits = field(default_factory=StreamLimits)
    #: ``--client-cert-fingerprint``: the ``--auth`` user must present one of these certificates.
    client_cert_fingerprints: tuple[str, ...] = ()


def _say(text: str) -> None:
    print(text, flush=True)


async def start_agent(opts: AgentOptions) -> UserAgent:
    """Bind every listener and return an attached user agent (the caller closes ua.endpoint)."""
    ua = UserAgent(opts.config)
    tls_client = client_context(opts.tls)
    endpoint = SipEndpoint(ua, tls_client_context=tls_client, limits=opts.stream)
    ua.attach(endpoint)
    server_tls = None
    if any(s.transport == "TLS" for s in opts.listen):
        server_tls = server_context(opts.tls)
    try:
        for spec in opts.listen:
            bound = await endpoint.listen(spec, server_tls if spec.transport == "TLS" else None)
            _say(f"listening on {bound}")
    except BaseException:
        await endpoint.close()
        raise
    return ua


def tune_gc() -> None:
    # Start-up objects never die: freeze them out of the collector's scans. Per-call state is
    # free of reference cycles (it dies by refcount), but ~21 objects per call live 32 s (Timers
    # L and J), so a large young generation only makes each young scan long (13-46 ms pauses at
    # 50,000) while older scans find nothing: keep gen0 small and run older generations rarely
    # (gen1 every 100 young scans, gen2 every 100 gen1). Measured with bench.sip_cps, digest at
    # 1,000 calls/s: p99 setup 12 ms -> 4 ms; UDP at 1,750/s: 4 ms -> 0 ms.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 100, 100)


def attach_security(ua: UserAgent, opts: AgentOptions) -> SecurityGate | None:
    """Put the security gate in front of ``ua``'s endpoint when ``opts.security`` is set."""
    sec = opts.security
    if sec is None or ua.endpoint is None:
        return None
    user = opts.config.auth_user
    expert = (
        single_user_expert(
            user,
            allow_md5="MD5" in opts.config.auth_algorithms,
            cert_fingerprints=opts.client_cert_fingerprints,
        )
        if user is not None
        else None
    )
    gate = SecurityGate(
        make_pipeline(sec),
        ua,
        experts=lambda name: expert if expert is not None and name == expert.expert_id else None,
        options=opts.gate,
    )
    gate.attach(ua.endpoint)
    return gate


async def run_answer(opts: AgentOptions, *, stop: asyncio.Event | None = None) -> int:
    """``sip answer``: answer every call until interrupted."""
    ua = await start_agent(opts)
    gate = attach_security(ua, opts)
    if gate is not None:
        await gate.share_nonce_key()
    if opts.verbose:
        default = ua.on_incoming

        def verbose(incoming: IncomingCall) -> None:
            req = incoming.request
            _say(f"incoming call {req.call_id} from {req.headers.get('From')}")
            default(incoming)

        ua.on_incoming = verbose
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    tune_gc()
    _say("ready")
    try:
        await stop.wait()
    finally:
        assert ua.endpoint is not None
        stats = dict(ua.endpoint.stats) | ua.stats
        _say(f"stopping; stats {stats}")
        if gate is not None:
            _say(f"security {dict(gate.stats)}")
            await gate.aclose()
        await ua.endpoint.close()
    return 0


def _client_listen(
    uri_target: Target, listen: list[ListenSpec], tls: TlsOptions | None = None
) -> list[ListenSpec]:
    if listen:
        return listen
    host = "::1" if ":" in uri_target.host else "127.0.0.1"
    if not uri_target.host.startswith("127.") and uri_target.host not in ("::1", "localhost"):
        host = "::" if ":" in uri_target.host else "0.0.0.0"
    specs = [ListenSpec("UDP", host, 0)]
    # Our Contact and Via name a listener of the call's transport (§8.1.1.8, §18.1.1): without one
    # they would point a TCP peer at the UDP port, where nothing accepts its in-dialog requests.
    if uri_target.transport == "TCP" or (
        uri_target.transport == "TLS" and tls is not None and tls.cert_file and tls.key_file
    ):
        specs.append(ListenSpec(uri_target.transport, host, 0))
    return specs


async def run_call(
    opts: AgentOptions,
    uri: str,
    *,
    auth: tuple[str, str] | None,
    hangup_after: float | None,
    headers: Sequence[tuple[str, str]] = (),
    proxy: str | None = None,
) -> int:
    """``sip call``: place one call, report progress, hang up; exit 0 only if it was answered."""
    target = target_for_uri(proxy or uri)
    opts.listen = _client_listen(target, opts.listen, opts.tls)
    ua = await start_agent(opts)
    assert ua.endpoint is not None
    try:
        try:
            call = await ua.call(
                uri,
                target=target,
                auth=auth,
                headers=list(headers),
                on_provisional=lambda r: _say(f"progress {r.status} {r.reason}"),
            )
        except CallFailed as exc:
            _say(f"call failed: {exc.status} {exc.reason}")
            return 1
        _say(f"answered 200 call-id {call.call_id}")
        return await _hold_call(call, hangup_after)
    finally:
        await ua.endpoint.close()


async def _hold_call(call: Call, hangup_after: float | None) -> int:
    ended = asyncio.ensure_future(call.wait_ended())
    try:
        if hangup_after is None:
            reason = await ended
        else:
            done, _ = await asyncio.wait({ended}, timeout=hangup_after)
            if done:
                reason = ended.result()
            else:
                await call.hangup()
                reason = "bye"
    finally:
        ended.cancel()
    _say(f"ended: {reason}")
    return 0


async def run_options(opts: AgentOptions, uri: str, *, timeout: float = 10.0) -> int:
    """``sip options``: print the final response; exit 0 for a 2xx."""
    target = target_for_uri(uri)
    opts.listen = _client_listen(target, opts.listen)
    ua = await start_agent(opts)
    assert ua.endpoint is not None
    try:
        try:
            resp: Response = await asyncio.wait_for(ua.options(uri, target=target), timeout)
        except (CallFailed, TimeoutError) as exc:
            _say(f"no answer: {exc}")
            return 1
        _say(f"{resp.status} {resp.reason}")
        for name, value in resp.headers.items():
            if name in ("Allow", "Accept", "Supported", "Server", "User-Agent"):
                _say(f"{name}: {value}")
        return 0 if 200 <= resp.status < 300 else 1
    finally:
        await ua.endpoint.close()


def read_auth(text: str | None) -> tuple[str, str] | None:
    """``USER:PASSWORD`` from the command line."""
    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise ValueError("--auth takes USER:PASSWORD")
    return user, password


def tls_options(cert: str | None, key: str | None, ca: str | None, insecure: bool) -> TlsOptions:
    return TlsOptions(
        cert_file=Path(cert) if cert else None,
        key_file=Path(key) if key else None,
        ca_file=Path(ca) if ca else None,
        verify_server=not insecure,
    )


def run(coro: Coroutine[Any, Any, int]) -> int:
    """Run ``coro`` on uvloop where installed: it halves the event loop's cost per datagram."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay runnable without it
        return asyncio.run(coro)
    return uvloop.run(coro)
