"""Coverage-guided fuzzing with atheris (libFuzzer) over the same targets and invariant.

atheris is optional (``pip install atheris``; wheels exist for CPython 3.11 on x86-64 Linux). The
first input byte picks the target, the rest is its input. Run from the repository root:

    mkdir -p /tmp/sipcorpus && python fuzz/fuzz_sip.py --seed-dir /tmp/sipcorpus -- \\
        /tmp/sipcorpus -max_total_time=600 -timeout=1 -rss_limit_mb=2048

``--seed-dir`` writes the RFC 4475 messages and the other seeds there first (one file per seed,
prefixed with its target's byte). libFuzzer's ``-timeout=1`` is the per-input hang limit and
``-rss_limit_mb`` the memory bound; an input that raises anything but the target's allowed
errors is a crash and libFuzzer writes it out as ``crash-<sha1>``.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]

with atheris.instrument_imports(include=["ifescalate", "fuzz"]):
    from fuzz.targets import TARGETS


def one_input(data: bytes) -> None:
    if not data:
        return
    target = TARGETS[data[0] % len(TARGETS)]
    with contextlib.suppress(*target.allowed):
        target.run(data[1:])


def write_seeds(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for index, target in enumerate(TARGETS):
        for number, seed in enumerate(target.seeds()):
            (directory / f"{target.name}-{number:03d}").write_bytes(bytes([index]) + seed)
            count += 1
    return count


def main(argv: list[str]) -> None:
    if len(argv) > 2 and argv[1] == "--seed-dir":
        print(f"fuzz_sip: wrote {write_seeds(Path(argv[2]))} seeds to {argv[2]}", flush=True)
        argv = [argv[0], *argv[4:]] if argv[3:4] == ["--"] else [argv[0], *argv[3:]]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
