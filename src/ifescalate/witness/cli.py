"""``witness verify`` and ``witness export``: usable standalone and from ``ifescalate witness``.

    python -m ifescalate.witness.cli verify --data-dir DIR
    python -m ifescalate.witness.cli verify --db postgresql://... [--schema S] [--public-key PEM]
    python -m ifescalate.witness.cli verify --file events.jsonl [--public-key PEM|HEX]
    python -m ifescalate.witness.cli export [--data-dir DIR | --db URL] [--out FILE]

Exit codes: 0 valid, 1 broken, 2 usage or IO error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .core import VerifyResult, WitnessError
from .export import (
    build_manifest,
    export_store,
    manifest_path_for,
    read_manifest,
    verify_export,
)
from .keys import (
    KEY_FILE,
    PUBLIC_KEY_FILE,
    load_or_create_signer,
    load_public_key,
    parse_public_key,
)
from .ranges import verify_pg, verify_sqlite
from .service import PUBLIC_KEY_META
from .store import DB_FILE, SqliteStore, WitnessStore

EXIT_OK, EXIT_BROKEN, EXIT_ERROR = 0, 1, 2


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR", help="data dir (SQLite store and key)")
    parser.add_argument("--db", metavar="URL", help="PostgreSQL URL instead of the SQLite store")
    parser.add_argument("--schema", default="public", help="PostgreSQL schema (default public)")


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    parser.add_argument("--file", metavar="FILE", help="verify an export file offline")
    parser.add_argument("--public-key", metavar="FILE", help="trusted public key (PEM or hex)")
    parser.add_argument(
        "--manifest", metavar="FILE", help="export manifest (default FILE.manifest.json)"
    )
    parser.add_argument(
        "--signatures",
        choices=("all", "last"),
        default="all",
        help="check every signature (default) or only the last (hashes always all)",
    )
    parser.add_argument(
        "--jobs",
        type=_jobs,
        default=0,
        help="worker processes: a number, or 0/auto for every core (default); any value gives "
        "the same answer",
    )


def _jobs(text: str) -> int:
    if text == "auto":
        return 0
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    parser.add_argument("--out", metavar="FILE", help="JSON Lines output (default stdout)")
    parser.add_argument(
        "--manifest", metavar="FILE", help="manifest path (default OUT.manifest.json)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ifescalate witness", description=__doc__)
    sub = parser.add_subparsers(dest="witness_command", required=True)
    add_verify_arguments(sub.add_parser("verify", help="verify the chain and signatures"))
    add_export_arguments(sub.add_parser("export", help="export events as JSON Lines"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.witness_command == "verify":
        return verify_command(args)
    return export_command(args)


def verify_command(args: argparse.Namespace) -> int:
    """``witness verify``: prints OK/BROKEN; 0 valid, 1 broken, 2 could not check."""
    try:
        result = _verify(args)
    except (WitnessError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(result.message())
    return EXIT_OK if result.ok else EXIT_BROKEN


def export_command(args: argparse.Namespace) -> int:
    """``witness export``: writes JSON Lines (and the signed manifest); 0 done, 2 error."""
    try:
        count = asyncio.run(_export(args))
    except (WitnessError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"exported {count} events", file=sys.stderr)
    return EXIT_OK


def _pinned_key(args: argparse.Namespace) -> Ed25519PublicKey | None:
    if args.public_key:
        text = Path(args.public_key)
        return load_public_key(text) if text.exists() else parse_public_key(args.public_key)
    if args.data_dir:
        directory = Path(args.data_dir)
        if (directory / PUBLIC_KEY_FILE).exists():
            return load_public_key(directory / PUBLIC_KEY_FILE)
        if (directory / KEY_FILE).exists():
            return load_or_create_signer(directory).public_key()
    return None


def _verify(args: argparse.Namespace) -> VerifyResult:
    pinned = _pinned_key(args)
    if args.file:
        manifest_path = Path(args.manifest) if args.manifest else manifest_path_for(args.file)
        manifest = read_manifest(manifest_path, pinned) if manifest_path.exists() else None
        if manifest is None:
            print("note: no manifest, a cut-off tail cannot be detected", file=sys.stderr)
        return verify_export(
            args.file,
            public_key=pinned,
            manifest=manifest,
            signatures=args.signatures,
            jobs=args.jobs or None,
        )
    if not args.db and not args.data_dir:
        raise WitnessError("give --data-dir DIR, --db URL or --file FILE")
    key = pinned or asyncio.run(_recorded_key(args))
    # Workers read their own ranges of rows (ranges.py): no event crosses a pipe.
    if args.db:
        return verify_pg(
            args.db, args.schema, key, signatures=args.signatures, jobs=args.jobs or None
        )
    return verify_sqlite(
        Path(args.data_dir) / DB_FILE, key, signatures=args.signatures, jobs=args.jobs or None
    )


async def _recorded_key(args: argparse.Namespace) -> Ed25519PublicKey:
    store = _open_source(args)
    await store.open()
    try:
        recorded = await store.get_meta(PUBLIC_KEY_META)
    finally:
        await store.close()
    if recorded is None:
        raise WitnessError("no public key: pass --public-key")
    print("note: public key taken from the store itself; pin it with --public-key", file=sys.stderr)
    return parse_public_key(recorded)


def _open_source(args: argparse.Namespace) -> WitnessStore:
    if args.db:
        from .pg import PostgresStore  # asyncpg only when PostgreSQL is asked for

        return PostgresStore(args.db, schema=args.schema)
    if not args.data_dir:
        raise WitnessError("give --data-dir DIR, --db URL or --file FILE")
    path = Path(args.data_dir) / DB_FILE
    if not path.exists():
        raise WitnessError(f"no witness database at {path}")
    return SqliteStore(path)


async def _export(args: argparse.Namespace) -> int:
    store = _open_source(args)
    signer = load_or_create_signer(args.data_dir) if args.data_dir else None
    await store.open()
    try:
        if args.out:
            with open(args.out, "wb") as handle:
                count, head = await export_store(store, handle)
        else:
            count, head = await export_store(store, sys.stdout.buffer)
            sys.stdout.buffer.flush()
    finally:
        await store.close()
    manifest = args.manifest or (str(manifest_path_for(args.out)) if args.out else None)
    if signer is None or manifest is None:
        print(
            "note: no manifest written (needs --data-dir for the key and --out or --manifest)",
            file=sys.stderr,
        )
    else:
        Path(manifest).write_bytes(build_manifest(signer, head, count))
    return count


if __name__ == "__main__":
    sys.exit(main())
