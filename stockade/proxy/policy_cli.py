"""The policy side of ``stockade``: ``check``, ``audit``, ``osv import``, ``log verify``.

Owns parsing their arguments, printing and exit codes; deciding is
``stockade.policy``'s job, checking the log ``decisionlog``'s.

``stockade check ECOSYSTEM NAME[@VERSION] [--config FILE] [--json]`` decides
names without a server, with the facts routing gives (which upstream, internal
or not) and, for a version, what the server's storage knows: when it first saw
the version, and the upstream's metadata as it last cached it (npm and PyPI:
publish date, install scripts, licence, wheels). Nothing is fetched: a version
whose metadata was never cached is decided as a request is when a fact is
missing. With ``--server URL`` it asks a running stockade's explain API
instead, so the answer is that server's, on the metadata it holds or fetches.
``audit`` decides cached artifacts on the same facts as ``check``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from stockade.config.load import load_settings
from stockade.config.model import Settings, UpstreamSettings
from stockade.policy.file import load_policy
from stockade.policy.model import Decision, Ecosystem, Facts, PackageRef, Verdict
from stockade.policy.names import KINDS, normalize, valid
from stockade.policy.osv import OsvDatabase, OsvError
from stockade.proxy.app import (
    ARTIFACT_REFS,
    FIRST_SEEN_REFS,
    METADATA_REFS,
    decision_log_path,
    load_engine,
)
from stockade.proxy.decisionlog import verify
from stockade.proxy.ecosystems import npm, pypi
from stockade.proxy.firstseen import FirstSeen
from stockade.proxy.routing import serving
from stockade.storage.refs import RefStore

_REMOTE_TIMEOUT_S = 120  # a name's explain may fetch the upstream's metadata first


def add_subcommands(sub: Any) -> None:
    """Register ``check`` and ``log`` on the ``stockade`` parser."""
    check = sub.add_parser("check", help="decide package names against the policy, no server")
    check.add_argument("ecosystem", choices=[e.value for e in Ecosystem])
    check.add_argument("name", nargs="+",
                       help="NAME or NAME@VERSION (Maven: group:artifact[:version]), one or "
                            "more; '-' reads names from standard input, one per line")
    check.add_argument("--config", help="YAML config file (or $STOCKADE_CONFIG)")
    check.add_argument("--json", action="store_true", help="one JSON object per line")
    check.add_argument("--server", metavar="URL",
                       help="ask a running stockade instead (its explain API): its policy, "
                            "and the upstream metadata it holds or fetches")
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


def _names(args: list[str]) -> Iterator[str]:
    for arg in args:
        if arg != "-":
            yield arg
            continue
        yield from _stdin_names()


def _stdin_names() -> Iterator[str]:
    for line in sys.stdin:
        if line.strip() and not line.lstrip().startswith("#"):
            yield line.strip()


_STORED: dict[Ecosystem, Callable[[RefStore, UpstreamSettings, str], dict[str, Facts]]] = {
    Ecosystem.NPM: npm.stored_facts,
    Ecosystem.PYPI: pypi.stored_facts,
}


class _Known:
    """What can be known without an upstream: the routing, when the server first saw
    a version, and the upstream's metadata as the server last cached it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._first_seen = FirstSeen(RefStore(settings.storage.path, FIRST_SEEN_REFS))
        self._metadata = RefStore(settings.storage.path, METADATA_REFS)
        self._stored: tuple[tuple[Ecosystem, str, str], dict[str, Facts]] | None = None

    def owner(self, ecosystem: Ecosystem, name: str,
              upstream: str | None = None) -> UpstreamSettings | None:
        """The upstream named ``upstream``, else the one routing gives ``name``."""
        upstreams = getattr(self._settings, ecosystem.value).upstreams
        if upstream is not None:
            named = next((u for u in upstreams if u.name == upstream), None)
            if named is not None:
                return named
        return serving(name, upstreams)

    def facts(self, ecosystem: Ecosystem, name: str, version: str | None = None,
              upstream: str | None = None) -> Facts:
        owner = self.owner(ecosystem, name, upstream)
        base = Facts() if owner is None else Facts(upstream=owner.name, internal=owner.internal)
        if version is None:
            return base
        seen = self._first_seen.recorded(ecosystem, name, version) or \
            self._first_seen.recorded(ecosystem, normalize(ecosystem, name), version)
        stored = self._versions(ecosystem, owner, name).get(version, base)
        return dataclasses.replace(stored, upstream=base.upstream, internal=base.internal,
                                   first_seen_at=seen)

    def _versions(self, ecosystem: Ecosystem, owner: UpstreamSettings | None,
                  name: str) -> dict[str, Facts]:
        reader = _STORED.get(ecosystem)
        if reader is None or owner is None:
            return {}
        key = (ecosystem, owner.name, name)
        if self._stored is None or self._stored[0] != key:  # one package at a time
            self._stored = (key, reader(self._metadata, owner, name))
        return self._stored[1]


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
    if args.server:
        return asyncio.run(_check_remote(args))
    settings = _settings(args)
    engine = load_engine(settings)
    if settings.policy.file is not None:
        for warning in load_policy(settings.policy.file).warnings:
            print(f"warning: {warning}", file=sys.stderr)
    ecosystem = Ecosystem(args.ecosystem)
    known = _Known(settings)
    refused = failed = False
    for spec in _names(args.name):
        name, version = split_spec(ecosystem, spec)
        if not valid(ecosystem, name):  # what the server answers with a 400, not decided
            print(f"{spec}: not a valid {KINDS[ecosystem]}", file=sys.stderr)
            failed = True
            continue
        ref = PackageRef(ecosystem, name, version)
        verdict = engine.decide(ref, known.facts(ecosystem, name, version))
        refused = refused or verdict.blocks
        print(_line(ref, verdict, args.json))
    return 2 if failed else 1 if refused else 0


async def _check_remote(args: argparse.Namespace) -> int:
    """``check --server``: each name as the server's explain API decides it."""
    ecosystem = Ecosystem(args.ecosystem)
    base = args.server.rstrip("/")
    refused = failed = False
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_REMOTE_TIMEOUT_S),
                                     trust_env=True) as session:
        for spec in _names(args.name):
            name, version = split_spec(ecosystem, spec)
            parts = [*name.split("/"), *([version] if version else [])]
            url = f"{base}/_stockade/explain/{ecosystem.value}/" + "/".join(
                quote(part, safe="@:") for part in parts)
            try:
                async with session.get(url, headers={"Accept": "application/json"}) as resp:
                    text = await resp.text()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                print(f"cannot ask {base}: {exc or type(exc).__name__}", file=sys.stderr)
                return 2
            try:
                body = json.loads(text) if status == 200 else None
                decision = body["decision"] if isinstance(body, dict) else None
                verdict = Verdict(Decision(decision["decision"]), str(decision["rule"]),
                                  str(decision["reason"]), decision.get("target"),
                                  bool(decision.get("audit_only")))
            except (ValueError, KeyError, TypeError):
                print(f"{spec}: {base} answered HTTP {status}: {text.strip()[:300]}",
                      file=sys.stderr)
                failed = True
                continue
            if body.get("facts_error"):
                print(f"warning: {spec}: {body['facts_error']}", file=sys.stderr)
            refused = refused or verdict.blocks
            print(_line(PackageRef(ecosystem, name, version), verdict, args.json))
    return 2 if failed else 1 if refused else 0


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
    refs = RefStore(settings.storage.path, ARTIFACT_REFS)
    known = _Known(settings)
    cached = [(ref, record.get("upstream")) for record in refs.records()
              if (ref := _cached_ref(record)) is not None]
    # one package's artifacts together, so its metadata is read and parsed once
    cached.sort(key=lambda item: (item[0].ecosystem, item[0].name, str(item[1])))
    checked = refused = 0
    for ref, upstream in cached:
        checked += 1
        facts = known.facts(ref.ecosystem, ref.name, ref.version,
                            upstream if isinstance(upstream, str) else None)
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
