"""`ifescalate sip answer` for benchmarks: the same CLI entry point, plus two bench-only knobs.

    python -m bench.answer [--digest-algorithms MD5] [--profile FILE.prof] -- sip answer --listen ...

--digest-algorithms: SIPp 3.6 answers only MD5 challenges and takes the first WWW-Authenticate it sees,
while `sip answer --auth` offers SHA-256 first (RFC 8760 section 2.4). This narrows the server's
challenge to the given algorithms; everything else is `ifescalate.cli.main` unchanged.
--profile: run under cProfile and dump stats to FILE when the process stops (SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import cProfile
import sys

from ifescalate import cli
from ifescalate.net import runner
from ifescalate.net.ua import UserAgent
from ifescalate.sip.digest import DigestServer


def _narrow_digest(algorithms: list[str]) -> None:
    original = runner.start_agent

    async def start_agent(opts: runner.AgentOptions) -> UserAgent:
        ua = await original(opts)
        if ua.digest is not None:
            ua.digest = DigestServer(ua.config.realm, ua.config.auth_key, algorithms=algorithms)
        return ua

    runner.start_agent = start_agent  # type: ignore[assignment]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.answer")
    parser.add_argument("--digest-algorithms", default=None, help="comma list, e.g. MD5")
    parser.add_argument("--profile", default=None, help="write cProfile stats here on exit")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    if args.digest_algorithms:
        _narrow_digest(args.digest_algorithms.split(","))
    if args.profile is None:
        return cli.main(rest)
    prof = cProfile.Profile()
    try:
        return prof.runcall(cli.main, rest)
    finally:
        prof.dump_stats(args.profile)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
