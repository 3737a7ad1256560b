"""The policy side of ``stockade``: ``check``, ``audit``, ``osv import``, ``log verify``.

Owns parsing their arguments, printing and exit codes; deciding is
``stockade.policy``'s job, checking the log ``decisionlog``'s.

``stockade check ECOSYSTEM NAME[@VERSION] [--config FILE] [--json]`` decides
names without a server, with the facts routing gives (which upstream, internal
or not) and, for a version, when the server first saw it (from its storage);
facts only an upstream knows (publish dates, install scripts) are not fetched,
so rules that need them decide as they do when a fact is missing. ``audit``
dates cached versions the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stockade.config.load import load_settings
from stockade.config.model import Settings
from stockade.policy.file import load_policy
from stockade.policy.model import Decision, Ecosystem, Facts, PackageRef, Verdict
from stockade.policy.names import normalize
from stockade.policy.osv import OsvDatabase, OsvError
from stockade.proxy.app import decision_log_path, load_engine
from stockade.proxy.decisionlog import verify
from stockade.proxy.firstseen import FirstSeen
from stockade.storage.refs import RefStore


def add_subcommands(sub: Any) -> None:
    """Register ``check`` and ``log`` on the ``stockade`` parser."""
    check = sub.add_parser("check", help="decide package names against the policy, no server")
    check.add_argument("ecosystem", choices=[e.value for e in Ecosystem])
    check.add_argument("name", help="NAME or NAME@VERSION (Maven: group:artifact[:version]); "
                                    "'-' reads names from standard input, one per line")
    check.add_argument("--config", help="YAML config file (or $STOCKADE_CONFIG)")
    check.add_argument("--json", action="store_true", help="one JSON object per line")
    check.set_defaults(func=_check)

    audit = sub.add_parser("audit", help="re-decide everything in the cache against the "
                                         "current policy and intel; changes nothing")
    audit.add_argument("--config", help="YAML config file (or $STOCKADE_CONFIG)")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(func=_audit)

    osv = sub.add_parser("osv", help="OSV advisory data")
    osv_sub = osv.add_subparsers(dest="osv_command", required=True)
    imp = osv_sub.add_parser("import", help="check OSV records (an export zip, a folder or a "
                                            "JSON file) and copy them where the policy reads "
                                            "them; a running server reloads them")
    imp.add_argument("path")
    imp.add_argument("--config", help="YAML config file (or $STOCKADE_CONFIG)")
    imp.set_defaults(func=_osv_import)

    log = sub.add_parser("log", help="the decision log")
    log_sub = log.add_subparsers(dest="log_command", required=True)
    lv = log_sub.add_parser("verify", help="check that no record was edited or deleted")
    lv.add_argument("path", nargs="?", help="log file (default: from the config)")
    lv.add_argument("--config", help="YAML config file (or $STOCKADE_CONFIG)")
    lv.set_defaults(func=_log_verify)


def _settings(args: argparse.Namespace) -> Settings:
    path = args.config or os.environ.get("STOCKADE_CONFIG")
    return load_settings(Path(path) if path else None, environ=os.environ)


def split_spec(ecosystem: Ecosystem, spec: str) -> tuple[str, str | None]:
    """(name, version) from ``name@version`` (npm scopes kept; Maven ``g:a:v``)."""
    spec = spec.strip()
    if ecosystem is Ecosystem.MAVEN:
        parts = spec.split(":")
        if len(parts) == 3:
            return f"{parts[0]}:{parts[1]}", parts[2] or None
        return spec, None
    head, sep, version = spec[1:].rpartition("@") if spec.startswith("@") else \
        spec.rpartition("@")
    if not sep:
        return spec, None
    name = ("@" + head) if spec.startswith("@") else head
    return name, version or None


def _names(arg: str) -> Iterator[str]:
    if arg != "-":
        yield arg
        return
    for line in sys.stdin:
        if line.strip() and not line.lstrip().startswith("#"):
            yield line.strip()


def _facts(settings: Settings, ecosystem: Ecosystem, name: str,
           version: str | None = None) -> Facts:
    """What can be known without an upstream: the routing, and when the server first
    saw ``version`` (its publish date is not at hand, so a cooldown uses that)."""
    upstreams = getattr(settings, ecosystem.value).upstreams
    lowered = name.lower()
    owner = next((u for u in upstreams if u.owns(lowered)), None)
    if owner is None:
        owner = next((u for u in upstreams if not u.internal), None)
    seen = None
    if version is not None:
        first_seen = FirstSeen(RefStore(settings.storage.path, "firstseen"))
        seen = first_seen.recorded(ecosystem, name, version) or first_seen.recorded(
            ecosystem, normalize(ecosystem, name), version)
    if owner is None:
        return Facts(first_seen_at=seen)
    return Facts(upstream=owner.name, internal=owner.internal, first_seen_at=seen)


def _line(ref: PackageRef, verdict: Verdict, as_json: bool) -> str:
    if as_json:
        return json.dumps({
            "ecosystem": ref.ecosystem.value, "name": ref.name, "version": ref.version,
            "decision": verdict.decision.value, "rule": verdict.rule,
            "reason": verdict.reason, "target": verdict.target,
        })
    mode = " (audit: would refuse)" if verdict.audit_only else ""
    return f"{ref.display()}: {verdict.decision.value}{mode} [{verdict.rule}] {verdict.reason}"


def _check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    engine = load_engine(settings)
    if settings.policy.file is not None:
        for warning in load_policy(settings.policy.file).warnings:
            print(f"warning: {warning}", file=sys.stderr)
    ecosystem = Ecosystem(args.ecosystem)
    refused = False
    for spec in _names(args.name):
        name, version = split_spec(ecosystem, spec)
        ref = PackageRef(ecosystem, name, version)
        verdict = engine.decide(ref, _facts(settings, ecosystem, name, version))
        refused = refused or verdict.blocks
        print(_line(ref, verdict, args.json))
    return 1 if refused else 0


def _log_verify(args: argparse.Namespace) -> int:
    path = Path(args.path) if args.path else decision_log_path(_settings(args))
    try:
        result = verify(path)
    except FileNotFoundError:
        print(f"no decision log at {path}", file=sys.stderr)
        return 2
    for problem in result.problems:
        print(problem)
    state = "intact" if result.ok else f"{len(result.problems)} problems"
    print(f"{path}: {result.records} records, {state}; last hash {result.last_hash}")
    return 0 if result.ok else 1


def _audit(args: argparse.Namespace) -> int:
    settings = _settings(args)
    engine = load_engine(settings)
    refs = RefStore(settings.storage.path, "artifacts")
    checked = refused = 0
    for record in refs.records():
        ref = _cached_ref(record)
        if ref is None:
            continue
        checked += 1
        known = _facts(settings, ref.ecosystem, ref.name, ref.version)
        facts = Facts(upstream=record.get("upstream"), internal=known.internal,
                      first_seen_at=known.first_seen_at)
        verdict = engine.decide(ref, facts)
        if verdict.decision is Decision.ALLOW:
            continue
        refused += verdict.blocks
        if args.json:
            print(json.dumps({"ecosystem": ref.ecosystem.value, "name": ref.name,
                              "version": ref.version, "filename": ref.filename,
                              "decision": verdict.decision.value, "rule": verdict.rule,
                              "reason": verdict.reason, "target": verdict.target}))
        else:
            print(f"{ref.display()} ({ref.filename}): {verdict.decision.value} "
                  f"[{verdict.rule}] {verdict.reason}")
    print(f"{checked} cached artifacts checked against policy revision {engine.revision}: "
          f"{refused} would now be refused", file=sys.stderr)
    return 1 if refused else 0


def _cached_ref(record: dict[str, Any]) -> PackageRef | None:
    try:
        ecosystem = Ecosystem(record.get("ecosystem", ""))
    except ValueError:
        return None
    name, version = record.get("name"), record.get("version")
    if not isinstance(name, str):
        return None
    return PackageRef(ecosystem, name, version if isinstance(version, str) else None,
                      record.get("filename"))


def _osv_import(args: argparse.Namespace) -> int:
    settings = _settings(args)
    source = Path(args.path)
    try:
        database = OsvDatabase.load([source])
    except OsvError as exc:
        print(f"cannot import {source}: {exc}", file=sys.stderr)
        return 2
    records = sum(len(v) for v in database.records.values())
    target = _osv_target(settings)
    if target is None:
        print("the policy has no rules.osv.paths folder to import into", file=sys.stderr)
        return 2
    target.mkdir(parents=True, exist_ok=True)
    name = source.name if source.is_file() else f"{source.name}.d"
    destination = target / name
    tmp = target / f".{name}.importing"
    if source.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        shutil.rmtree(destination, ignore_errors=True)
    else:
        shutil.copyfile(source, tmp)
    os.replace(tmp, destination)
    os.utime(target)
    print(f"imported {records} advisories ({database.skipped} unreadable records skipped) "
          f"into {destination}")
    return 0


def _osv_target(settings: Settings) -> Path | None:
    """The first folder the policy's ``osv`` rule reads records from."""
    if settings.policy.file is None:
        return None
    policy = load_policy(settings.policy.file)
    for path in policy.osv_paths:
        if path.is_dir():
            return path
    return None
