"""``ifescalate tokens create|list|revoke``: API tokens in the data dir (only hashes are stored)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .auth import Scope, TokenError, TokenStore

DB_FILENAME = "ifescalate.db"


def add_tokens_parser(sub: Any) -> None:
    tokens: argparse.ArgumentParser = sub.add_parser("tokens", help="API bearer tokens")
    tokens.add_argument("--data-dir", default="data", help="state directory")
    verbs = tokens.add_subparsers(dest="tokens_command", required=True)
    create = verbs.add_parser("create", help="create a token; it is printed once")
    create.add_argument("principal", help="who the token is for, e.g. council-agent-7")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=[s.value for s in Scope],
        help="council, operator or auditor (repeatable)",
    )
    imp = verbs.add_parser(
        "import",
        help="accept a token made elsewhere (one secret for every instance); idempotent",
    )
    imp.add_argument("principal", help="who the token is for, e.g. prometheus")
    imp.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=[s.value for s in Scope],
        help="council, operator or auditor (repeatable)",
    )
    # From a file, never the command line: argv is visible to every local user (ps).
    imp.add_argument("--token-file", required=True, help="file holding the token (a Secret mount)")
    verbs.add_parser("list", help="list tokens (ids, principals, scopes; never secrets)")
    revoke = verbs.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id")


def run_tokens(args: argparse.Namespace) -> int:
    store = TokenStore(Path(args.data_dir) / DB_FILENAME)
    try:
        if args.tokens_command == "create":
            try:
                token = store.create(args.principal, args.scope)
            except TokenError as exc:
                print(f"ifescalate: error: {exc}")
                return 2
            print(token)
            return 0
        if args.tokens_command == "import":
            return _import(store, args)
        if args.tokens_command == "list":
            for info in store.list():
                scopes = ",".join(sorted(s.value for s in info.scopes))
                state = "revoked" if info.revoked else "active"
                print(f"{info.id}\t{info.principal}\t{scopes}\t{state}")
            return 0
        if store.revoke(args.token_id):
            print(f"revoked {args.token_id}")
            return 0
        print(f"no token {args.token_id}")
        return 1
    finally:
        store.close()


def _import(store: TokenStore, args: argparse.Namespace) -> int:
    try:
        token = Path(args.token_file).read_text().strip()
    except OSError as exc:
        print(f"ifescalate: error: cannot read token file: {exc}")
        return 2
    try:
        added = store.import_token(token, args.principal, args.scope)
    except TokenError as exc:
        print(f"ifescalate: error: {exc}")
        return 2
    token_id = token.split("_", 2)[1]
    print(f"{'imported' if added else 'already present'} {token_id}")
    return 0
