"""``stockade approve ECOSYSTEM NAME [--until DATE] [--reason TEXT] [--by WHO]``.

Owns the command's arguments, output and exit codes: it writes a time-limited
allow entry to the approvals file the policy includes
(``rules.typosquat.approvals``, relative to the policy file) with
``stockade.policy.approvals.approve``. A running server picks it up at its next
policy check (the file is watched like the policy file), puts it in force and
records it in the decision log.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from stockade.config.load import ConfigError, load_settings
from stockade.policy.approvals import ApprovalError, approve
from stockade.policy.file import load_policy
from stockade.policy.model import Ecosystem


def add_subcommand(sub: Any) -> None:
    """Register ``approve`` on the ``stockade`` parser."""
    cmd = sub.add_parser("approve", help="let a held (or refused) look-alike name through "
                                         "the typosquat rule until a date")
    cmd.add_argument("ecosystem", choices=[e.value for e in Ecosystem])
    cmd.add_argument("name", help="the package name (Maven: group:artifact)")
    cmd.add_argument("--until", metavar="DATE",
                     help="last day it is approved (YYYY-MM-DD, UTC); default: 30 days")
    cmd.add_argument("--reason", default="", help="why, for the decision log")
    cmd.add_argument("--by", default=None, help="who approves (default: the user name)")
    cmd.add_argument("--config", help="YAML config file (or $STOCKADE_CONFIG)")
    cmd.set_defaults(func=run)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return str(os.getuid())


def approvals_path(config: str | None) -> Path:
    """The approvals file the configured policy includes.

    Raises:
        ConfigError: no policy file, or a policy without ``rules.typosquat.approvals``.
    """
    path = config or os.environ.get("STOCKADE_CONFIG")
    settings = load_settings(Path(path) if path else None, environ=os.environ)
    if settings.policy.file is None:
        raise ConfigError("no policy file is configured (policy.file): approvals live in a "
                          "file the policy names")
    policy = load_policy(settings.policy.file)
    if policy.approvals is None:
        raise ConfigError(f"{settings.policy.file}: rules.typosquat.approvals names no file "
                          "(add e.g. `approvals: approvals.yaml`)")
    return policy.approvals


def run(args: argparse.Namespace) -> int:
    try:
        path = approvals_path(args.config)
        approval = approve(path, Ecosystem(args.ecosystem), args.name, until=args.until,
                           reason=args.reason, by=args.by if args.by is not None else _user())
    except ConfigError as exc:
        print(f"cannot approve: {exc.diagnostics()}", file=sys.stderr)
        return 2
    except ApprovalError as exc:
        print(f"cannot approve: {exc}", file=sys.stderr)
        return 2
    print(f"{approval.ecosystem.value} {approval.name}: {approval.describe()} (written to "
          f"{path}; a running server applies it at its next policy check)")
    return 0
