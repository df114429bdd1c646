"""``ifescalate experts list|add|suspend``: functions the top-level CLI wires in.

Each takes an argparse-like namespace and returns an exit code (0 ok, 1 refused, 2 bad input).
Passwords are read from stdin or an environment variable, never from argv (which ``ps`` and shell
history would keep), hashed into HA1 and forgotten.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .errors import ExpertNotFound, ExpertValidationError, RegistryError
from .model import DEFAULT_HAZARDS, WILDCARD, Expert, provision_digest
from .registry import SqliteRegistry, load_yaml

__all__ = [
    "DB_FILENAME",
    "add_experts_parser",
    "db_path",
    "experts_add",
    "experts_list",
    "experts_suspend",
    "run_experts",
]

#: The shared embedded store's file name inside ``--data-dir``.
DB_FILENAME = "ifescalate.db"


def db_path(args: Any) -> Path:
    """``--db FILE`` if given, else ``DATA_DIR/ifescalate.db``."""
    explicit = getattr(args, "db", None)
    if explicit:
        return Path(explicit)
    return Path(getattr(args, "data_dir", None) or "data") / DB_FILENAME


def _hazards(args: Any) -> tuple[str, ...]:
    given = getattr(args, "hazards", None)
    return tuple(given) if given else DEFAULT_HAZARDS


def experts_list(args: Any, *, out: TextIO = sys.stdout) -> int:
    """Prints the registry: a table, or JSON lines with ``--json`` (no HA1 values either way)."""
    with SqliteRegistry(db_path(args)) as registry:
        experts = registry.list()
    for e in experts:
        if getattr(args, "json", False):
            data = e.to_dict()
            data.pop("digest", None)
            data["digest_user"] = e.digest.username if e.digest else None
            out.write(json.dumps(data, sort_keys=True) + "\n")
        else:
            state = "SUSPENDED" if e.suspended else "active"
            spec = ",".join(sorted(e.specializations))
            windows = "; ".join(str(w) for w in e.availability) or "never"
            out.write(
                f"{e.id}\t{state}\t{e.org}\t{spec}\tclearance={e.clearance}\t{e.sip_uri}"
                f"\t{windows}\n"
            )
    return 0


def _read_password(args: Any, stdin: TextIO) -> str | None:
    env = getattr(args, "password_env", None)
    if env:
        value = os.environ.get(env)
        if not value:
            raise ExpertValidationError(f"environment variable {env} is empty or unset")
        return value
    if getattr(args, "password_stdin", False):
        value = stdin.readline().rstrip("\r\n")
        if not value:
            raise ExpertValidationError("empty password on stdin")
        return value
    return None


def cert_file_fingerprint(path: str | Path) -> str:
    """SHA-256 of the DER encoding of the (first) certificate in a PEM file, lowercase hex: what
    the TLS layer computes from the session (``getpeercert(binary_form=True)``)."""
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except OSError as exc:
        raise ExpertValidationError(f"--cert-file {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise ExpertValidationError(f"--cert-file {path}: no PEM certificate in it") from None
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def _expert_from_args(args: Any, stdin: TextIO) -> Expert:
    password = _read_password(args, stdin)
    user = getattr(args, "digest_user", None)
    if (password is None) != (user is None):
        raise ExpertValidationError(
            "--digest-user and a password (--password-stdin/-env) go together"
        )
    digest = None
    if user is not None and password is not None:
        realm = getattr(args, "realm", None) or "ifescalate"
        digest = provision_digest(user, realm, password, allow_md5=bool(args.allow_md5))
    data: dict[str, Any] = {
        "id": args.id,
        "name": args.name or args.id,
        "sip_uri": args.sip_uri,
        "org": args.org,
        "networks": list(args.network or []),
        "specializations": list(args.specialization or []),
        "clearance": args.clearance,
        "availability": list(args.availability or []),
        "calls_per_minute": args.calls_per_minute,
    }
    fingerprints = list(getattr(args, "cert_fingerprint", None) or [])
    fingerprints += [cert_file_fingerprint(p) for p in getattr(args, "cert_file", None) or []]
    if fingerprints:
        data["cert_fingerprints"] = fingerprints
    if getattr(args, "public_key", None):
        data["public_key"] = args.public_key
    if digest is not None:
        data["digest"] = digest.to_dict()
    return Expert.from_dict(data)


def experts_add(args: Any, *, out: TextIO = sys.stdout, stdin: TextIO = sys.stdin) -> int:
    """Adds one expert from flags, or merges a YAML file with ``--from-yaml FILE``."""
    hazards = _hazards(args)
    try:
        with SqliteRegistry(db_path(args)) as registry:
            source = getattr(args, "from_yaml", None)
            if source:
                result = registry.merge(load_yaml(source, hazards=hazards))
                out.write(
                    f"added {len(result.added)}, updated {len(result.updated)}, "
                    f"unchanged {len(result.unchanged)}\n"
                )
                return 0
            if not all(getattr(args, k, None) for k in ("id", "sip_uri", "org")):
                raise ExpertValidationError("add needs --from-yaml FILE, or ID --sip-uri --org")
            expert = _expert_from_args(args, stdin)
            unknown = sorted(expert.specializations - set(hazards) - {WILDCARD})
            if unknown:
                raise ExpertValidationError(f"unknown hazard(s): {', '.join(unknown)}")
            if getattr(args, "replace", False):
                registry.merge([expert])
            else:
                registry.add(expert)
    except ExpertValidationError as exc:
        sys.stderr.write(f"experts add: {exc}\n")
        return 2
    except RegistryError as exc:
        sys.stderr.write(f"experts add: {exc}\n")
        return 1
    out.write(f"added {expert.id}\n")
    return 0


def experts_suspend(args: Any, *, out: TextIO = sys.stdout) -> int:
    """Suspends an expert (``--resume`` reinstates). Takes effect at the guard's next decision."""
    resume = bool(getattr(args, "resume", False))
    try:
        with SqliteRegistry(db_path(args)) as registry:
            registry.suspend(args.id, not resume)
    except ExpertNotFound as exc:
        sys.stderr.write(f"experts suspend: {exc}\n")
        return 1
    out.write(f"{'resumed' if resume else 'suspended'} {args.id}\n")
    return 0


def add_experts_parser(sub: Any) -> argparse.ArgumentParser:
    """Adds ``experts list|add|suspend`` to a subparsers object; sets ``func`` on each."""
    experts: argparse.ArgumentParser = sub.add_parser("experts", help="the expert registry")
    experts.add_argument("--data-dir", default="data", help="state directory")
    experts.add_argument(
        "--db", metavar="FILE", help="registry database (default DATA_DIR/ifescalate.db)"
    )
    cmds = experts.add_subparsers(dest="experts_command", required=True)

    ls = cmds.add_parser("list", help="list experts")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=experts_list)

    add = cmds.add_parser("add", help="add an expert, or merge a YAML registry file")
    add.add_argument("id", nargs="?")
    add.add_argument("--from-yaml", metavar="FILE")
    add.add_argument("--name")
    add.add_argument("--sip-uri")
    add.add_argument("--org")
    add.add_argument("--network", action="append", metavar="CIDR")
    add.add_argument("--specialization", action="append", metavar="HAZARD")
    add.add_argument("--clearance", type=int, default=0)
    add.add_argument("--availability", action="append", metavar="'DAYS HH:MM-HH:MM ZONE'")
    add.add_argument("--calls-per-minute", type=int, default=10)
    add.add_argument("--digest-user")
    add.add_argument("--realm", default="ifescalate")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--password-env", metavar="VAR", help="read the password from $VAR")
    add.add_argument("--allow-md5", action="store_true", help="also store the MD5 HA1")
    add.add_argument("--public-key", metavar="BASE64", help="Ed25519 public key (raw, base64)")
    add.add_argument(
        "--cert-fingerprint",
        action="append",
        metavar="SHA256",
        help="pin a TLS client certificate by SHA-256 fingerprint (hex or AB:CD:..; repeatable)",
    )
    add.add_argument(
        "--cert-file",
        action="append",
        metavar="PEM",
        help="pin the TLS client certificate in this PEM file (its SHA-256; repeatable)",
    )
    add.add_argument("--replace", action="store_true", help="update if the id exists")
    add.set_defaults(func=experts_add)

    sus = cmds.add_parser("suspend", help="suspend an expert (or --resume)")
    sus.add_argument("id")
    sus.add_argument("--resume", action="store_true")
    sus.set_defaults(func=experts_suspend)
    return experts


def run_experts(args: Any) -> int:
    """Dispatches a namespace built by :func:`add_experts_parser`."""
    func = getattr(args, "func", None)
    if func is None:
        sys.stderr.write("experts: choose list, add or suspend\n")
        return 2
    code: int = func(args)
    return code
