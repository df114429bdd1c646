"""Command line: ``python -m fuzz.run [--seconds N] [--target NAME ...] [--seed S]``,
or ``python -m fuzz.run --replay FILE --target NAME`` to rerun one saved input.

Run from the repository root with the package installed (``pip install -e .``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .engine import check, cpu_timer, fuzz
from .targets import BY_NAME, TARGETS, Target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="total budget, split evenly")
    parser.add_argument("--target", action="append", choices=sorted(BY_NAME), default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--per-input", type=float, default=1.0, help="hang limit, seconds")
    parser.add_argument("--keep-going", action="store_true", help="collect distinct crashes")
    parser.add_argument("--replay", type=Path, default=None, help="rerun one saved input")
    args = parser.parse_args(argv)
    targets = [BY_NAME[n] for n in args.target] if args.target else list(TARGETS)
    if args.replay is not None:
        return _replay(args.replay, targets, args.per_input)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    print(f"fuzz: seed {seed}, {args.seconds:.0f} s over {len(targets)} targets", flush=True)
    failed = 0
    total = 0
    for target in targets:
        stats = fuzz(
            target,
            args.seconds / len(targets),
            seed=seed,
            per_input=args.per_input,
            stop_on_first=not args.keep_going,
        )
        total += stats.executions
        print(stats.line(), flush=True)
        for violation in stats.violations:
            failed += 1
            print(violation.describe(), flush=True)
    print(f"fuzz: {total} executions, {failed} violations", flush=True)
    return 1 if failed else 0


def _replay(path: Path, targets: list[Target], per_input: float) -> int:
    data = path.read_bytes()
    bad = 0
    with cpu_timer():
        for target in targets:
            sig, violation, wall = check(target, data, per_input)
            print(f"{target.name}: {sig} ({wall * 1000:.1f} ms)")
            if violation is not None:
                bad += 1
                print(violation.describe())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
