"""The fleet side of ``stockade``: ``bundle keygen|init|build|publish|timestamp``,
``osv sync`` and ``inventory``.

Owns parsing their arguments, printing and exit codes; packing is
``stockade.fleet.bundle``'s job, signing ``stockade.fleet.tufrepo``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from stockade.config.load import load_settings
from stockade.fleet.bundle import BundleError, build_bundle
from stockade.policy.model import Ecosystem, PackageRef
from stockade.proxy.app import internal_namespaces
from stockade.proxy.metrics import Metrics
from stockade.proxy.osvsync import OsvSync, Outcome, state_path, sync_folder
from stockade.proxy.provenance.checker import PROVENANCE_REFS, ProvenanceChecker
from stockade.proxy.served import FOLDER as SERVED_FOLDER
from stockade.proxy.served import read_served
from stockade.storage.refs import RefStore

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 12h, 1d, 52w)")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def add_subcommands(sub: Any) -> None:
    """Register ``bundle`` on the ``stockade`` parser."""
    bundle = sub.add_parser("bundle", help="signed policy bundles for a fleet of replicas")
    bsub = bundle.add_subparsers(dest="bundle_command", required=True)

    keygen = bsub.add_parser("keygen", help="write a new Ed25519 signing key (PEM)")
    keygen.add_argument("key", type=Path)
    keygen.set_defaults(func=_keygen)

    init = bsub.add_parser("init", help="create a TUF repository: root version 1, signed "
                           "by the (offline) root keys")
    init.add_argument("--repo", type=Path, required=True)
    for role in ("root", "targets", "snapshot", "timestamp"):
        what = "private" if role == "root" else "public or private"
        init.add_argument(f"--{role}-key", action="append", type=Path, required=True,
                          help=f"a {role} key file ({what} PEM); repeat for several")
        init.add_argument(f"--{role}-threshold", type=int, default=1)
    init.add_argument("--expires", type=_duration, default=_duration("365d"),
                      help="root expiry (default 365d)")
    init.set_defaults(func=_init)

    build = bsub.add_parser("build", help="pack the policy and what it reads into a bundle")
    build.add_argument("--config", help="YAML config file (or $STOCKADE_CONFIG): its policy "
                       "file and internal namespaces")
    build.add_argument("--policy", type=Path, help="the policy file (default: the config's)")
    build.add_argument("-o", "--output", type=Path, required=True)
    build.set_defaults(func=_build)

    pub = bsub.add_parser("publish", help="sign a bundle into the repository (online keys)")
    pub.add_argument("bundle", type=Path)
    pub.add_argument("--repo", type=Path, required=True)
    for role, default in (("targets", "90d"), ("snapshot", "7d"), ("timestamp", "1d")):
        pub.add_argument(f"--{role}-key", action="append", type=Path, required=True,
                         help=f"a {role} private key file; repeat to meet its threshold")
        pub.add_argument(f"--{role}-expires", type=_duration, default=_duration(default))
    pub.add_argument("--name", default="bundle.tar.gz", help="the target's name")
    pub.set_defaults(func=_publish)

    stamp = bsub.add_parser("timestamp", help="sign a fresh timestamp (run it more often "
                            "than the timestamp expires)")
    stamp.add_argument("--repo", type=Path, required=True)
    stamp.add_argument("--timestamp-key", action="append", type=Path, required=True)
    stamp.add_argument("--expires", type=_duration, default=_duration("1d"))
    stamp.set_defaults(func=_timestamp)

    inv = sub.add_parser("inventory", help="what was served, to whom: JSON or a CycloneDX SBOM")
    inv.add_argument("--since", type=_when, required=True,
                     help="ISO date or date-time (UTC unless it names a zone)")
    inv.add_argument("--until", type=_when, help="ISO date or date-time (default: now)")
    inv.add_argument("--team", help="only what this team's identities were served")
    inv.add_argument("--identity", help="only what this identity was served")
    inv.add_argument("--format", choices=["cyclonedx", "json"], default="cyclonedx")
    inv.add_argument("-o", "--output", type=Path, help="write here (default: standard output)")
    inv.add_argument("--config", help="YAML config file (or $STOCKADE_CONFIG)")
    inv.set_defaults(func=_inventory)


def _when(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date or date-time") from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _inventory(args: argparse.Namespace) -> int:
    # cyclonedx, imported for this command only: not by every ``stockade serve``
    from stockade.proxy.inventory import add_provenance, as_cyclonedx, as_json, collect
    path = args.config or os.environ.get("STOCKADE_CONFIG")
    settings = load_settings(Path(path) if path else None, environ=os.environ)
    until = args.until or datetime.now(UTC)
    if until < args.since:
        return _fail("--until is before --since")
    entries = read_served(settings.storage.path / SERVED_FOLDER, since=args.since.timestamp(),
                          until=until.timestamp())
    items = collect(entries, team=args.team, identity=args.identity)
    checker = ProvenanceChecker(RefStore(settings.storage.path, PROVENANCE_REFS),
                                read_only=True)

    async def lookup(eco: Ecosystem, name: str, version: str) -> list[dict[str, str]] | None:
        found = await checker.known_version(PackageRef(eco, name, version))
        return None if found is None else [
            {"kind": r.kind.value, "result": r.result.value, "detail": r.detail} for r in found]

    asyncio.run(add_provenance(items, lookup))
    if args.format == "json":
        text = json.dumps(as_json(items, since=args.since, until=until, team=args.team),
                          indent=2) + "\n"
    else:
        text = as_cyclonedx(items, since=args.since, until=until, team=args.team)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"{args.output}: {len(items)} artifacts", file=sys.stderr)
    return 0


def osv_sync(args: argparse.Namespace) -> int:
    """``stockade osv sync``: exit 0 when every export is fresh, 1 when one failed."""
    path = args.config or os.environ.get("STOCKADE_CONFIG")
    settings = load_settings(Path(path) if path else None, environ=os.environ)
    folder = sync_folder(settings)
    if folder is None:
        return _fail("nowhere to sync to: set osv.path or give the policy rules.osv.paths "
                     "with a folder")

    async def run() -> list[Outcome]:
        async with OsvSync(settings.osv, folder, state=state_path(settings), metrics=Metrics(),
                           environ=os.environ) as sync:
            return await sync.sync()

    outcomes = asyncio.run(run())
    for outcome in outcomes:
        detail = f": {outcome.detail}" if outcome.detail else ""
        print(f"{outcome.ecosystem}: {outcome.result}{detail}")
    return 1 if any(o.result == "failed" for o in outcomes) else 0


def _tufrepo() -> ModuleType:
    """The signing side, imported by the commands that sign: python-tuf's key library
    loads every cloud signer it knows (boto3 among them), half a second of every
    ``stockade`` start otherwise."""
    from stockade.fleet import tufrepo

    return tufrepo


def _fail(text: str) -> int:
    print(f"stockade: {text}", file=sys.stderr)
    return 2


def _keygen(args: argparse.Namespace) -> int:
    tuf = _tufrepo()
    try:
        keyid = tuf.generate_key(args.key)
    except tuf.RepositoryError as exc:
        return _fail(str(exc))
    print(f"{args.key}: ed25519 key {keyid}")
    return 0


def _init(args: argparse.Namespace) -> int:
    tuf = _tufrepo()
    try:
        tuf.init_repository(
            args.repo, root_signers=[tuf.load_signer(p) for p in args.root_key],
            keys={role: [tuf.load_public(p) for p in getattr(args, f"{role}_key")]
                  for role in ("targets", "snapshot", "timestamp")},
            thresholds={role: getattr(args, f"{role}_threshold")
                        for role in ("root", "targets", "snapshot", "timestamp")},
            expires=args.expires)
    except tuf.RepositoryError as exc:
        return _fail(str(exc))
    print(f"{args.repo}: root version 1 written; give replicas "
          f"{args.repo / 'metadata' / '1.root.json'} as policy.bundle.trusted_root")
    return 0


def _build(args: argparse.Namespace) -> int:
    path = args.config or os.environ.get("STOCKADE_CONFIG")
    settings = load_settings(Path(path) if path else None, environ=os.environ)
    policy = args.policy or settings.policy.file
    if policy is None:
        return _fail("no policy file: give --policy or a config with policy.file")
    try:
        built = build_bundle(policy, args.output, internal=internal_namespaces(settings))
    except BundleError as exc:
        return _fail(str(exc))
    print(f"{built.path}: {built.members} files, {built.length} bytes, sha256 {built.sha256}")
    return 0


def _publish(args: argparse.Namespace) -> int:
    tuf = _tufrepo()
    try:
        signers = tuf.Signers(targets=[tuf.load_signer(p) for p in args.targets_key],
                              snapshot=[tuf.load_signer(p) for p in args.snapshot_key],
                              timestamp=[tuf.load_signer(p) for p in args.timestamp_key])
        done = tuf.publish(args.repo, args.bundle, signers, name=args.name, expires={
            "targets": args.targets_expires, "snapshot": args.snapshot_expires,
            "timestamp": args.timestamp_expires})
    except tuf.RepositoryError as exc:
        return _fail(str(exc))
    print(f"{args.repo}: {args.name} version {done.version} published "
          f"(sha256 {done.sha256}, {done.length} bytes)")
    return 0


def _timestamp(args: argparse.Namespace) -> int:
    tuf = _tufrepo()
    try:
        version = tuf.refresh_timestamp(args.repo,
                                        [tuf.load_signer(p) for p in args.timestamp_key],
                                        expires=args.expires)
    except tuf.RepositoryError as exc:
        return _fail(str(exc))
    print(f"{args.repo}: timestamp version {version}")
    return 0
