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
instead, so the answer is that server's, on the metadata it holds or fetches
(with ``$STOCKADE_TOKEN`` sent as a bearer token, for a private explain API); a
line with a project's facts goes to it as ``?facts=LINE``, decided there on those facts.
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
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from stockade.config.load import load_settings
from stockade.config.model import Settings
from stockade.policy.file import load_policy
from stockade.policy.model import Decision, Ecosystem, Facts, PackageRef, ProjectFacts, Verdict
from stockade.policy.names import KINDS, valid
from stockade.policy.osv import OsvDatabase, OsvError
from stockade.proxy import approve_cli, fleet_cli
from stockade.proxy.admission import Admission
from stockade.proxy.app import (
    ARTIFACT_REFS,
    decision_log_path,
    load_engine,
    make_admission,
    make_upstreams,
)
from stockade.proxy.bundlepull import with_policy_file
from stockade.proxy.checkpoint import key_from_env
from stockade.proxy.decisionlog import verify
from stockade.proxy.errors import NotFoundError
from stockade.proxy.facts_lines import FactsLineError, is_facts_line, parse_line
from stockade.proxy.gate import Gate, PolicyEngine
from stockade.proxy.metrics import Metrics
from stockade.storage.refs import RefStore

_REMOTE_TIMEOUT_S = 120  # a name's explain may fetch the upstream's metadata first


def add_subcommands(sub: Any) -> None:
    """Register ``check`` and ``log`` on the ``stockade`` parser."""
    check = sub.add_parser("check", help="decide package names against the policy, no server")
    check.add_argument("ecosystem", choices=[e.value for e in Ecosystem])
    check.add_argument("name", nargs="+",
                       help="NAME or NAME@VERSION (Maven: group:artifact[:version]), one or "
                            "more; '-' reads names from standard input, one per line; a "
                            "line may be a JSON object with a name and its project's facts "
                            "(first_release, releases, owners, summary, repository)")
    check.add_argument("--config", help="YAML config file (or $STOCKADE_CONFIG)")
    check.add_argument("--json", action="store_true", help="one JSON object per line")
    check.add_argument("--server", metavar="URL",
                       help="ask a running stockade instead (its explain API): its policy, "
                            "and the upstream metadata it holds or fetches")
    check.set_defaults(func=_check)
    approve_cli.add_subcommand(sub)

    audit = sub.add_parser("audit", help="re-decide everything in the cache against the "
                                         "current policy and intel; changes nothing")
    audit.add_argument("--config", help="YAML config file (or $STOCKADE_CONFIG)")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.add_argument("--diff", metavar="OLD_POLICY",
                       help="print only what the configured policy newly refuses and newly "
                            "allows compared with OLD_POLICY (e.g. before applying an edit)")
    audit.set_defaults(func=_audit)

    osv = sub.add_parser("osv", help="OSV advisory data")
    osv_sub = osv.add_subparsers(dest="osv_command", required=True)
    imp = osv_sub.add_parser("import", help="check OSV records (an export zip, a folder or a "
                                            "JSON file) and copy them where the policy reads "
                                            "them; a running server reloads them")
    imp.add_argument("path")
    imp.add_argument("--config", help="YAML config file (or $STOCKADE_CONFIG)")
    imp.set_defaults(func=_osv_import)
    sync = osv_sub.add_parser("sync", help="fetch the configured OSV exports (osv.url; "
                              "conditional GET), verify them and swap them in")
    sync.add_argument("--config", help="YAML config file (or $STOCKADE_CONFIG)")
    sync.set_defaults(func=fleet_cli.osv_sync)

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


def _offline(settings: Settings, engine: PolicyEngine) -> Admission:
    """The admission path as the server runs it, over what the server stored: it asks
    no upstream and records nothing."""
    metrics = Metrics()
    gate = Gate(engine, metrics)
    return make_admission(settings, gate, metrics, make_upstreams(settings, metrics, os.environ),
                          offline=True)


def _provenance(facts: Facts | None) -> list[dict[str, str]] | None:
    """The provenance results the server verified, as ``check`` and ``audit`` show them."""
    if facts is None or facts.provenance is None:
        return None
    return [{"kind": r.kind.value, "result": r.result.value, "detail": r.detail}
            for r in facts.provenance]


def _line(ref: PackageRef, verdict: Verdict, as_json: bool,
          facts: Facts | None = None) -> str:
    known = _provenance(facts)
    if as_json:
        return json.dumps({
            "ecosystem": ref.ecosystem.value, "name": ref.name, "version": ref.version,
            "decision": verdict.decision.value, "rule": verdict.rule,
            "reason": verdict.reason, "target": verdict.target,
            **({"until": verdict.until.isoformat() if verdict.until is not None else None}
               if verdict.decision is Decision.HOLD else {}),  # a hold says until when
            **({"provenance": known} if known is not None else {}),
        })
    mode = " (audit: would refuse)" if verdict.audit_only else ""
    shown = "".join(f" ({r['kind']}: {r['result']})" for r in known or ())
    return (f"{ref.display()}: {verdict.decision.value}{mode} [{verdict.rule}] "
            f"{verdict.reason}{shown}")


def _fail(ecosystem: Ecosystem, spec: str, why: str, as_json: bool) -> None:
    """A name that could not be decided: an error, never a decision.

    The sentence goes to standard error; with ``--json`` standard output also
    gets a line for it (an ``error`` field and no ``decision``), so a consumer
    reading one line per name sees every name it asked about.
    """
    print(f"{spec}: {why}", file=sys.stderr)
    if as_json:
        name, version = split_spec(ecosystem, spec)
        print(json.dumps({"ecosystem": ecosystem.value, "name": name, "version": version,
                          "error": why}))


def _check(args: argparse.Namespace) -> int:
    if args.server:
        return asyncio.run(_check_remote(args))
    settings = _settings(args)
    engine = load_engine(settings)
    if settings.policy.file is not None:
        for warning in load_policy(settings.policy.file).warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return asyncio.run(_check_local(args, settings, engine))


async def _check_local(args: argparse.Namespace, settings: Settings,
                       engine: PolicyEngine) -> int:
    ecosystem = Ecosystem(args.ecosystem)
    admission = _offline(settings, engine)
    refused = failed = False
    for spec in _names(args.name):
        read = _read_spec(ecosystem, spec, args.json)
        if read is None:
            failed = True
            continue
        name, version, project = read
        if not valid(ecosystem, name):  # what the server answers with a 400, not decided
            _fail(ecosystem, spec, f"not a valid {KINDS[ecosystem]}", args.json)
            failed = True
            continue
        ref = PackageRef(ecosystem, name, version)
        facts = await _facts(admission, ref)
        if project is not None:  # the facts given stand for the project's metadata
            facts = dataclasses.replace(facts, project=project)
        verdict = engine.decide(ref, facts)
        refused = refused or verdict.blocks
        print(_line(ref, verdict, args.json, facts))
    return 2 if failed else 1 if refused else 0


def _read_spec(ecosystem: Ecosystem, spec: str, as_json: bool
               ) -> tuple[str, str | None, ProjectFacts | None] | None:
    """The name, version and given facts (a JSON facts line) of one argument or
    line; None, the failure printed, when its facts cannot be read."""
    if not is_facts_line(spec):
        return (*split_spec(ecosystem, spec), None)
    try:
        return parse_line(spec)
    except FactsLineError as exc:
        _fail(ecosystem, spec, str(exc), as_json)
        return None


async def _facts(admission: Admission, ref: PackageRef, upstream: str | None = None) -> Facts:
    try:
        return await admission.facts(ref, upstream)
    except NotFoundError:
        return Facts()  # no upstream serves the name: decided on the name alone


async def _check_remote(args: argparse.Namespace) -> int:
    """``check --server``: each name as the server's explain API decides it."""
    ecosystem = Ecosystem(args.ecosystem)
    base = args.server.rstrip("/")
    headers = {"Accept": "application/json"}
    token = os.environ.get("STOCKADE_TOKEN")
    if token:  # a server whose explain API is private (auth.anonymous.explain: false)
        headers["Authorization"] = f"Bearer {token}"
    refused = failed = False
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_REMOTE_TIMEOUT_S),
                                     trust_env=True) as session:
        for spec in _names(args.name):
            read = _read_spec(ecosystem, spec, args.json)
            if read is None:
                failed = True
                continue
            name, version, project = read
            # the server decides on the facts given
            query = {"facts": spec} if project is not None else {}
            parts = [*name.split("/"), *([version] if version else [])]
            url = f"{base}/_stockade/explain/{ecosystem.value}/" + "/".join(
                quote(part, safe="@:") for part in parts)
            try:
                async with session.get(url, headers=headers, params=query) as resp:
                    text = await resp.text()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                print(f"cannot ask {base}: {str(exc) or type(exc).__name__}", file=sys.stderr)
                return 2
            try:
                body, verdict = _explained(status, text)
            except (ValueError, KeyError, TypeError):
                _fail(ecosystem, spec, f"{base} answered HTTP {status}: {text.strip()[:300]}",
                      args.json)
                failed = True
                continue
            if body.get("facts_error"):
                print(f"warning: {spec}: {body['facts_error']}", file=sys.stderr)
            refused = refused or verdict.blocks
            print(_line(PackageRef(ecosystem, name, version), verdict, args.json))
    return 2 if failed else 1 if refused else 0


def _explained(status: int, text: str) -> tuple[dict[str, Any], Verdict]:
    """The explain API's answer and its decision.

    Raises:
        ValueError, KeyError, TypeError: the answer is not an explanation.
    """
    body = json.loads(text) if status == 200 else None
    if not isinstance(body, dict) or not isinstance(body.get("decision"), dict):
        raise TypeError("not an explanation")
    decision: dict[str, Any] = body["decision"]
    until = decision.get("until")
    verdict = Verdict(Decision(decision["decision"]), str(decision["rule"]),
                      str(decision["reason"]), decision.get("target"),
                      bool(decision.get("audit_only")),
                      until=datetime.fromisoformat(until) if isinstance(until, str) else None)
    return body, verdict


def _log_verify(args: argparse.Namespace) -> int:
    settings = _settings(args)
    path = Path(args.path) if args.path else decision_log_path(settings)
    key_env = settings.policy.decision_log_key_env
    key = key_from_env(key_env, os.environ)
    if key_env and key is None:
        print(f"warning: ${key_env} is not set: the checkpoint's signature is not checked",
              file=sys.stderr)
    try:
        result = verify(path, key)
    except FileNotFoundError:
        print(f"no decision log at {path}", file=sys.stderr)
        return 2
    for problem in result.problems:
        print(problem)
    state = "intact" if result.ok else f"{len(result.problems)} problems"
    anchored = (f"checkpoint at {result.anchor.records} records" if result.anchor
                else "no checkpoint")
    print(f"{path}: {result.records} records, {state}; {anchored}; "
          f"last hash {result.last_hash}")
    return 0 if result.ok else 1


def _audit(args: argparse.Namespace) -> int:
    settings = _settings(args)
    engine = load_engine(settings)
    if args.diff:
        old = load_engine(with_policy_file(settings, Path(args.diff)))
        return asyncio.run(_audit_diff(args, settings, old, engine))
    return asyncio.run(_audit_cache(args, settings, engine))


async def _audit_diff(args: argparse.Namespace, settings: Settings, old: PolicyEngine,
                      new: PolicyEngine) -> int:
    """``audit --diff``: the cached artifacts whose decision the change flips."""
    admission = _offline(settings, new)
    refs = RefStore(settings.storage.path, ARTIFACT_REFS)
    cached = sorted(((ref, record.get("upstream")) for record in refs.records()
                     if (ref := _cached_ref(record)) is not None),
                    key=lambda item: (item[0].ecosystem, item[0].name, str(item[1])))
    refused = allowed = 0
    for ref, upstream in cached:
        facts = await _facts(admission, ref, upstream if isinstance(upstream, str) else None)
        before, after = old.decide(ref, facts), new.decide(ref, facts)
        if before.blocks == after.blocks:
            continue
        change, shown = ("newly_refused", after) if after.blocks else ("newly_allowed", before)
        refused += after.blocks
        allowed += before.blocks
        if args.json:
            print(json.dumps({"change": change, "ecosystem": ref.ecosystem.value,
                              "name": ref.name, "version": ref.version,
                              "filename": ref.filename, "decision": after.decision.value,
                              "rule": shown.rule, "reason": shown.reason}))
        else:
            what = "refuse" if after.blocks else "allow (was refused)"
            print(f"{'+' if after.blocks else '-'} {what} {ref.display()} ({ref.filename}): "
                  f"[{shown.rule}] {shown.reason}")
    print(f"{len(cached)} cached artifacts: policy revision {old.revision} -> {new.revision} "
          f"newly refuses {refused} and newly allows {allowed}", file=sys.stderr)
    return 1 if refused else 0


async def _audit_cache(args: argparse.Namespace, settings: Settings,
                       engine: PolicyEngine) -> int:
    admission = _offline(settings, engine)
    refs = RefStore(settings.storage.path, ARTIFACT_REFS)
    cached = [(ref, record.get("upstream")) for record in refs.records()
              if (ref := _cached_ref(record)) is not None]
    # one package's artifacts together, so its metadata is read and parsed once
    cached.sort(key=lambda item: (item[0].ecosystem, item[0].name, str(item[1])))
    checked = refused = 0
    for ref, upstream in cached:
        checked += 1
        facts = await _facts(admission, ref, upstream if isinstance(upstream, str) else None)
        verdict = engine.decide(ref, facts)
        if verdict.decision is Decision.ALLOW:
            continue
        refused += verdict.blocks
        if args.json:
            print(json.dumps({"ecosystem": ref.ecosystem.value, "name": ref.name,
                              "version": ref.version, "filename": ref.filename,
                              "decision": verdict.decision.value, "rule": verdict.rule,
                              "reason": verdict.reason, "target": verdict.target,
                              **({"provenance": known} if (known := _provenance(facts))
                                 is not None else {})}))
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
