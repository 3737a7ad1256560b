"""``stockade token create|list|revoke``: managing the tokens file.

Owns the arguments, printing and exit codes of the token commands; the file
format and hashing are ``tokens``'s. ``create`` prints the token once, on
standard output alone (so a script can capture it); nothing else ever shows it.
A running server picks the change up within ``auth.reload_check_s``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from stockade.config.load import ConfigError, load_settings
from stockade.proxy.tokens import Role, TokenFileError, create_token, load_tokens, revoke_token


def add_subcommands(sub: Any) -> None:
    """Register ``token`` on the ``stockade`` parser."""
    token = sub.add_parser("token", help="client, admin and metrics access tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="YAML config file (or $STOCKADE_CONFIG): its "
                                        "auth.tokens names the tokens file")
        p.add_argument("--file", help="the tokens file (instead of the config's auth.tokens)")

    create = token_sub.add_parser("create", help="add a token and print it (shown once)")
    create.add_argument("name", help="who the token stands for (logged with each request)")
    create.add_argument("--team", help="the team whose policy applies to its requests")
    create.add_argument("--role", action="append", choices=[r.value for r in Role],
                        help="client (default), admin or metrics; repeat for several")
    common(create)
    create.set_defaults(func=_create)

    listing = token_sub.add_parser("list", help="the tokens (never their secrets)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    common(listing)
    listing.set_defaults(func=_list)

    revoke = token_sub.add_parser("revoke", help="remove a token by id or name")
    revoke.add_argument("which", help="a token's id or name (every token of that name)")
    common(revoke)
    revoke.set_defaults(func=_revoke)


def _path(args: argparse.Namespace) -> Path:
    if args.file:
        return Path(args.file)
    config = args.config or os.environ.get("STOCKADE_CONFIG")
    settings = load_settings(Path(config) if config else None, environ=os.environ)
    if settings.auth.tokens is None:
        raise ConfigError("no tokens file: give --file, or set auth.tokens in the config")
    return settings.auth.tokens


def _create(args: argparse.Namespace) -> int:
    try:
        token, entry = create_token(_path(args), args.name, team=args.team,
                                    roles=[Role(r) for r in args.role or [Role.CLIENT]])
    except TokenFileError as exc:
        print(exc.diagnostics(), file=sys.stderr)
        return 2
    print(token)
    print(f"created token {entry.id} for {entry.name} (team {entry.team or '-'}, roles "
          f"{', '.join(sorted(entry.roles))}); it is shown only this once", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    try:
        tokens = load_tokens(_path(args))
    except TokenFileError as exc:
        print(exc.diagnostics(), file=sys.stderr)
        return 2
    for e in tokens.entries:
        roles = sorted(r.value for r in e.roles)
        if args.json:
            print(json.dumps({"id": e.id, "name": e.name, "team": e.team, "roles": roles,
                              "created": e.created or None}))
        else:
            print(f"{e.id}  {e.name}  team={e.team or '-'}  roles={','.join(roles)}  "
                  f"created={e.created or '-'}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    try:
        removed = revoke_token(_path(args), args.which)
    except TokenFileError as exc:
        print(exc.diagnostics(), file=sys.stderr)
        return 2
    if not removed:
        print(f"no token with id or name {args.which!r}", file=sys.stderr)
        return 1
    for e in removed:
        print(f"revoked {e.id} ({e.name})")
    return 0
