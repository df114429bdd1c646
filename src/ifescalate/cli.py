"""The ``ifescalate`` command line: ``serve``, ``sip answer|call|options``.

Used alike by people, tests and benchmarks; names and flags are a contract (see README).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from .api.tokens_cli import add_tokens_parser, run_tokens
from .guard import GuardError
from .guard.cli import add_experts_parser, run_experts
from .net.media_session import cli_media_config
from .net.runner import (
    AgentOptions,
    read_auth,
    run,
    run_answer,
    run_call,
    run_options,
    tls_options,
)
from .net.security_gate import GateOptions
from .net.tls import TlsConfigError
from .net.transport import ListenSpec, StreamLimits
from .net.ua import UaConfig
from .security import SecurityConfig
from .security.facts import normalize_fingerprint, parse_networks
from .witness.cli import add_export_arguments, add_verify_arguments, export_command, verify_command
from .witness.core import WitnessError


def _listen(text: str) -> ListenSpec:
    try:
        return ListenSpec.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"--header takes 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def _add_tls(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-cert", metavar="FILE", help="certificate (PEM) for TLS")
    p.add_argument("--tls-key", metavar="FILE", help="private key (PEM) for TLS")
    p.add_argument("--tls-ca", metavar="FILE", help="CA file to verify the peer")
    p.add_argument(
        "--tls-insecure",
        action="store_true",
        help="do not verify the server certificate (development only)",
    )


def _add_media(p: argparse.ArgumentParser, *, echo: bool) -> None:
    p.add_argument("--play", metavar="WAV", help="send this 16-bit WAV to the other side, looped")
    p.add_argument("--record", metavar="WAV", help="record what the other side sends")
    if echo:
        p.add_argument("--echo", action="store_true", help="send back what the other side sends")
    p.add_argument("--media", action="store_true", help="run RTP even without play/record/echo")
    p.add_argument(
        "--codecs",
        metavar="LIST",
        help="audio codecs, best first, comma-separated (default opus,G722,PCMU,PCMA)",
    )
    p.add_argument(
        "--no-media-timeout",
        type=float,
        metavar="SECONDS",
        default=30.0,
        help="hang up after this long without RTP, not while held (0: never; default 30)",
    )
    p.add_argument(
        "--no-rtcp-mux",
        action="store_true",
        help="do not offer or accept RTP/RTCP on one port (RFC 5761)",
    )
    p.add_argument(
        "--rtp-ports",
        metavar="LOW-HIGH",
        default="40000-49999",
        help="UDP port range for RTP/RTCP pairs (default 40000-49999)",
    )


def _add_security(p: argparse.ArgumentParser) -> None:
    # Any of these turns the security pipeline on (the others keep their documented defaults).
    p.add_argument("--flood", metavar="N/SECONDS", help="per-source request limit (e.g. 30/10)")
    p.add_argument("--allow", metavar="CIDR", action="append", default=[], help="allowlist")
    p.add_argument("--lockout", metavar="N/SECONDS", help="digest failures before lockout")
    p.add_argument(
        "--require-tls", action="store_true", help="403 for plain transports off loopback"
    )
    p.add_argument("--trusted", metavar="CIDR", action="append", default=[], help="flood-exempt")
    p.add_argument("--counters", metavar="URL", help="share counters in Redis (redis://...)")
    p.add_argument("--counters-prefix", metavar="PREFIX", default="ifescalate:sec:")
    p.add_argument(
        "--counters-timeout",
        type=float,
        metavar="SECONDS",
        default=0.5,
        help="longest a Redis operation may take before the request is answered 503",
    )
    p.add_argument(
        "--trusted-proxy",
        metavar="CIDR",
        action="append",
        default=[],
        help="a proxy (the Kamailio edge) whose X-IF-Source header names the caller (repeatable)",
    )
    p.add_argument("--drop-failed", action="store_true", help="rejected INVITEs get no answer")
    p.add_argument(
        "--tls-loopback-strict",
        action="store_true",
        help="--require-tls applies to loopback too (testing on one host)",
    )
    p.add_argument(
        "--client-cert-fingerprint",
        metavar="SHA256",
        action="append",
        default=[],
        help="the --auth user must present this TLS client certificate (repeatable; needs --tls-ca)",
    )


def _add_stream_limits(p: argparse.ArgumentParser) -> None:
    d = StreamLimits()
    p.add_argument(
        "--message-timeout",
        type=float,
        metavar="SECONDS",
        default=d.message_timeout,
        help="a TCP/TLS message must be complete this long after its first byte",
    )
    p.add_argument(
        "--tls-handshake-timeout",
        type=float,
        metavar="SECONDS",
        default=d.tls_handshake_timeout,
        help="TLS handshake deadline after accept",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        metavar="SECONDS",
        default=d.idle_timeout,
        help="close TCP/TLS connections silent this long",
    )
    p.add_argument(
        "--max-connections-per-peer",
        type=int,
        metavar="N",
        default=d.max_per_peer,
        help="open TCP/TLS connections per source address",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        default=d.max_total,
        help="open TCP/TLS connections in all",
    )


def _stream_limits(args: argparse.Namespace) -> StreamLimits:
    if not hasattr(args, "message_timeout"):
        return StreamLimits()
    return StreamLimits(
        message_timeout=args.message_timeout,
        tls_handshake_timeout=args.tls_handshake_timeout,
        idle_timeout=args.idle_timeout,
        max_per_peer=args.max_connections_per_peer,
        max_total=args.max_connections,
    )


def _security(args: argparse.Namespace) -> tuple[SecurityConfig | None, GateOptions]:
    gate = GateOptions(
        drop_failed_invites=getattr(args, "drop_failed", False),
        loopback_exempt_from_tls=not getattr(args, "tls_loopback_strict", False),
    )
    flood, lockout = getattr(args, "flood", None), getattr(args, "lockout", None)
    allow, require_tls = getattr(args, "allow", []), getattr(args, "require_tls", False)
    pinned = getattr(args, "client_cert_fingerprint", [])
    if pinned and not getattr(args, "auth", None):
        raise ValueError("--client-cert-fingerprint pins the --auth user: give --auth too")
    proxied = bool(getattr(args, "trusted_proxy", []))
    if (
        flood is None
        and lockout is None
        and not allow
        and not require_tls
        and not pinned
        and not proxied
    ):
        return None, gate
    config = SecurityConfig.from_cli(
        flood=flood,
        allow=allow,
        lockout=lockout,
        require_tls=require_tls,
        trusted=getattr(args, "trusted", []),
    )
    if getattr(args, "counters", None):
        config = dataclasses.replace(
            config,
            counters_url=args.counters,
            counters_prefix=args.counters_prefix,
            counters_timeout=args.counters_timeout,
        )
    proxies = getattr(args, "trusted_proxy", [])
    if proxies:
        config = dataclasses.replace(config, trusted_proxies=parse_networks(proxies))
    return config, gate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ifescalate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service on its embedded defaults")
    serve.add_argument("--config", metavar="FILE", help="configuration file (YAML)")
    serve.add_argument(
        "--data-dir", metavar="DIR", default=None, help="state directory (default data)"
    )
    serve.add_argument(
        "--api", metavar="HOST:PORT", help="HTTP API address (default 127.0.0.1:8080)"
    )
    serve.add_argument("--listen", type=_listen, action="append", default=[])

    demo = sub.add_parser("demo", help="run a complete escalation on this machine and verify it")
    demo.add_argument(
        "--data-dir", metavar="DIR", help="keep state here (default: a temporary dir)"
    )
    demo.add_argument("--keep", action="store_true", help="keep the temporary data dir")

    add_experts_parser(sub)
    add_tokens_parser(sub)
    witness = sub.add_parser("witness", help="IF.witness audit log").add_subparsers(
        dest="witness_command", required=True
    )
    add_verify_arguments(witness.add_parser("verify", help="check chain and signatures"))
    add_export_arguments(witness.add_parser("export", help="write the log as JSON Lines"))

    sip = sub.add_parser("sip", help="SIP user agent tools").add_subparsers(
        dest="sip_command", required=True
    )
    answer = sip.add_parser("answer", help="answer every call until interrupted")
    answer.add_argument(
        "--listen",
        type=_listen,
        action="append",
        required=True,
        help="udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT (repeatable)",
    )
    answer.add_argument("--auth", metavar="USER:PASSWORD", help="challenge callers (digest)")
    answer.add_argument(
        "--auth-algorithm",
        dest="auth_algorithms",
        action="append",
        choices=["SHA-256", "MD5"],
        help="digest algorithm to offer, strongest first (repeatable; default SHA-256 then MD5)",
    )
    answer.add_argument("--ring-ms", type=int, default=0, help="send 180 and wait before 200")
    _add_security(answer)
    _add_stream_limits(answer)
    answer.add_argument("--verbose", action="store_true", help="print a line per call")
    _add_tls(answer)
    _add_media(answer, echo=True)

    call = sip.add_parser("call", help="place one call")
    call.add_argument("uri")
    call.add_argument("--auth", metavar="USER:PASSWORD", help="credentials for a challenge")
    call.add_argument(
        "--hangup-after",
        type=float,
        metavar="SECONDS",
        help="send BYE after this long (default: wait for the other side)",
    )
    call.add_argument("--proxy", metavar="URI", help="send via this outbound proxy")
    call.add_argument(
        "--header",
        type=_header,
        action="append",
        default=[],
        help="extra header 'Name: value' (repeatable)",
    )
    call.add_argument("--listen", type=_listen, action="append", default=[])
    _add_tls(call)
    _add_media(call, echo=False)

    options = sip.add_parser("options", help="send OPTIONS and print the answer")
    options.add_argument("uri")
    options.add_argument("--listen", type=_listen, action="append", default=[])
    options.add_argument("--timeout", type=float, default=10.0)
    _add_tls(options)
    return parser


def _agent_options(args: argparse.Namespace) -> AgentOptions:
    auth = (
        read_auth(getattr(args, "auth", None))
        if getattr(args, "sip_command", "") == "answer"
        else None
    )
    config = UaConfig(
        auth_user=auth[0] if auth else None,
        auth_password=auth[1] if auth else None,
        ring_ms=getattr(args, "ring_ms", 0),
    )
    if getattr(args, "auth_algorithms", None):
        config.auth_algorithms = tuple(args.auth_algorithms)
    play, record, echo = (getattr(args, k, None) for k in ("play", "record", "echo"))
    codecs_arg = getattr(args, "codecs", None)
    if play or record or echo or codecs_arg or getattr(args, "media", False):
        # With any media option every call runs RTP (net/rtp.py); else SIP only.
        config.media = cli_media_config(
            play=play,
            record=record,
            echo=bool(echo),
            verbose=getattr(args, "verbose", False),
            codecs=[c.strip() for c in codecs_arg.split(",")] if codecs_arg else None,
            no_media_timeout=getattr(args, "no_media_timeout", 30.0),
            rtcp_mux=not getattr(args, "no_rtcp_mux", False),
            rtp_ports=getattr(args, "rtp_ports", "40000-49999"),
        )
    security, gate = _security(args)
    return AgentOptions(
        listen=list(args.listen),
        tls=tls_options(args.tls_cert, args.tls_key, args.tls_ca, args.tls_insecure),
        config=config,
        verbose=getattr(args, "verbose", False),
        security=security,
        gate=gate,
        stream=_stream_limits(args),
        client_cert_fingerprints=tuple(
            normalize_fingerprint(fp) for fp in getattr(args, "client_cert_fingerprint", [])
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import main as demo_main

            return demo_main(args)
        if args.command == "tokens":
            return run_tokens(args)
        if args.command == "experts":
            return run_experts(args)
        if args.command == "witness":
            if args.witness_command == "verify":
                return verify_command(args)
            return export_command(args)
        if args.command == "serve":
            from .serve import serve

            return serve(args)
        opts = _agent_options(args)
        if args.sip_command == "answer":
            return run(run_answer(opts))
        if args.sip_command == "call":
            return run(
                run_call(
                    opts,
                    args.uri,
                    auth=read_auth(args.auth),
                    hangup_after=args.hangup_after,
                    headers=args.header,
                    proxy=args.proxy,
                )
            )
        return run(run_options(opts, args.uri, timeout=args.timeout))
    except (ValueError, TlsConfigError, OSError, GuardError, WitnessError) as exc:
        print(f"ifescalate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
