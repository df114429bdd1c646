"""``ifescalate serve``: the whole service (SIP, IF.guard, IF.witness, escalations, HTTP API).

On its embedded defaults it needs nothing but a data directory: SQLite there, a development TLS
certificate generated there, the packaged sample registry and default Cedar policies, and one API
token per role printed once on first start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from .app import App
from .config import load_settings
from .net.runner import run, tune_gc
from .observability import setup_logging


def _say(text: str) -> None:
    print(text, flush=True)


async def serve_async(app: App, stop: asyncio.Event | None = None) -> int:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        started = await app.start()
    except BaseException:
        await app.stop()
        raise
    try:
        if started.tls_cert is not None:
            # "generated" only on the run that made it: operators (and tests) tell a reused one apart.
            made = "generated development" if started.tls_cert_generated else "development"
            _say(f"{made} TLS certificate: {started.tls_cert}")
        for spec in started.sip:
            _say(f"listening on {spec}")
        _say(f"api on {started.api_url}")
        for role, token in started.new_tokens.items():
            _say(f"api token ({role}, shown once): {token}")
        # The collector policy of `sip answer`: start-up objects frozen, a small young generation,
        # older scans rare (their pauses, up to 14 ms with hundreds of bridged calls, are late
        # media frames for every room on the loop; bench.bridge_bench shows "gc max ms").
        tune_gc()
        _say("ready")
        await stop.wait()
    finally:
        # The same closing line as `sip answer` (net/runner.py): SIP counters for the operator.
        stats: dict[str, int] = {}
        if app.endpoint is not None and app.ua is not None:
            stats = dict(app.endpoint.stats) | app.ua.stats
        _say(f"stopping; stats {stats}")
        await app.stop()
    return 0


def serve(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, data_dir=args.data_dir)
    if args.listen:
        settings.sip.listen = [str(spec) for spec in args.listen]
    if getattr(args, "api", None):
        host, _, port = args.api.rpartition(":")
        settings.api.host, settings.api.port = host.strip("[]"), int(port)
    setup_logging(settings.log_level, json=True)
    return run(serve_async(App(settings)))
