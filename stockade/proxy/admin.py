"""The JSON admin API under ``/_stockade/``: explain a decision.

Owns ``GET /_stockade/explain/<ecosystem>/<name>[/<version>]``: the same
decision a request would get, with every rule's verdict, the facts it was made
on, and, for a name, the versions policy hides and why; decided with the policy of
the caller's team (or of ``?team=NAME``); ``?facts=LINE`` (a ``stockade check`` line
of a project's facts, ``facts_lines``) decides on those facts in place of the
project's own, as if it were published today. Facts come from the
admission path (the cached metadata, fetched if needed); when the upstream
cannot be reached the answer says so and decides on what routing knows.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

from aiohttp import web

from stockade.policy.model import Ecosystem, Facts, PackageRef, ProjectFacts, Verdict
from stockade.policy.names import KINDS, normalize, valid
from stockade.proxy.admission import Admission, base_facts, canonical
from stockade.proxy.errors import BadRequestError, ProxyError
from stockade.proxy.facts_lines import FactsLineError, parse_line
from stockade.proxy.identity import identity_of
from stockade.proxy.state import services

logger = logging.getLogger(__name__)

def setup(app: web.Application) -> None:
    """Register the admin routes."""
    app.router.add_get("/_stockade/explain/{ecosystem}/{rest:.+}", explain,
                       name="admin:explain")


def split_path(ecosystem: Ecosystem, rest: str) -> tuple[str, str | None]:
    parts = [p for p in rest.split("/") if p]
    if ecosystem is Ecosystem.NPM and parts and parts[0].startswith("@") and "/" not in parts[0]:
        if len(parts) < 2:
            raise BadRequestError(f"{rest!r} is not @scope/name[/version]")
        parts = [f"{parts[0]}/{parts[1]}", *parts[2:]]
    if not parts or len(parts) > 2:
        raise BadRequestError(f"{rest!r} is not <name>[/<version>]")
    return parts[0], parts[1] if len(parts) == 2 else None


def _verdict(verdict: Verdict) -> dict[str, Any]:
    return {"rule": verdict.rule, "decision": verdict.decision.value, "reason": verdict.reason,
            "target": verdict.target, "audit_only": verdict.audit_only,
            "refuses": verdict.blocks,
            **({"until": verdict.until.isoformat()} if verdict.until is not None else {}),
            **({"evidence": dict(verdict.evidence)} if verdict.evidence else {})}


def _facts(facts: Facts) -> dict[str, Any]:
    out = asdict(facts)
    for fields in (out, out.get("project") or {}):  # the project's facts hold times too
        for key, value in fields.items():
            if isinstance(value, datetime):
                fields[key] = value.isoformat()
    return out


def parse_ecosystem(value: str) -> Ecosystem:
    """The ecosystem named ``value``.

    Raises:
        BadRequestError: no such ecosystem.
    """
    try:
        return Ecosystem(value)
    except ValueError as exc:
        raise BadRequestError(
            f"unknown ecosystem {value!r} (one of {', '.join(e.value for e in Ecosystem)})"
        ) from exc


async def explanation(adm: Admission, ecosystem: Ecosystem, name: str,
                      version: str | None, team: str | None = None,
                      project: ProjectFacts | None = None) -> dict[str, Any]:
    """Every rule's verdict on a name or one version of it, with the facts, under the
    policy of ``team`` (None: the global one): the body of the explain API, which the
    web page shows too. ``project``: the project's facts to decide on in place of its
    own (a ``check`` line's).

    Raises:
        BadRequestError: ``name`` is not a valid name of the ecosystem.
        NotFoundError: no configured upstream may serve it.
    """
    if not valid(ecosystem, name):  # as the registry routes answer it, not decided
        raise BadRequestError(f"{name!r} is not a valid {KINDS[ecosystem]}")
    base = base_facts(adm.route(ecosystem, canonical(ecosystem, name)))
    versions: dict[str, Facts] = {}
    body: dict[str, Any] = {}
    try:
        base, versions = await adm.versions(ecosystem, name)
    except ProxyError as exc:
        body["facts_error"] = exc.diagnostics()
    engine = adm.gate.engine_for(team)
    ref = PackageRef(ecosystem, name, version)
    facts = versions.get(version, base) if version is not None else base
    if version is not None:  # what the server verified of it, shown and decided on
        facts = await adm.known_provenance(
            PackageRef(ecosystem, canonical(ecosystem, name), version), facts)
    if version is not None and version not in versions and project is None:
        body.setdefault("facts_error", f"{name} {version} is not in the upstream's metadata")
    if project is not None:  # the facts given stand for the project's metadata
        facts = dataclasses.replace(facts, project=project)
        body.pop("facts_error", None)  # a project not published yet is the question
    verdict = engine.decide(ref, facts)
    body.update({
        "ecosystem": ecosystem.value, "name": name, "version": version,
        "policy_revision": engine.revision, "team": team, "decision": _verdict(verdict),
        "verdicts": [_verdict(v) for v in engine.explain(ref, facts)],
        "facts": _facts(facts),
    })
    if version is None and versions:
        vf = adm.gate.filter_versions(PackageRef(ecosystem, name), versions, team)
        body["versions"] = {
            "total": len(versions),
            "hidden": {v: _verdict(vf.verdicts[v]) for v in sorted(vf.hidden)},
            "refused": {v: _verdict(vf.verdicts[v]) for v in sorted(vf.refused)},
        }
    return body


async def explain(request: web.Request) -> web.Response:
    """Every rule's verdict on a name or one version of it."""
    ecosystem = parse_ecosystem(request.match_info["ecosystem"])
    name, version = split_path(ecosystem, request.match_info["rest"])
    return web.json_response(await explanation(
        services(request).admission, ecosystem, name, version, caller_team(request),
        given_project(request, ecosystem, name, version)))


def given_project(request: web.Request, ecosystem: Ecosystem, name: str,
                  version: str | None) -> ProjectFacts | None:
    """The project's facts of ``?facts=LINE``, if given.

    Raises:
        BadRequestError: a line that is not a name with facts, or of another name or
            version than the path's.
    """
    text = request.query.get("facts")
    if text is None:
        return None
    try:
        given, given_version, project = parse_line(text)
    except FactsLineError as exc:
        raise BadRequestError(f"facts: {exc}") from exc
    if normalize(ecosystem, given) != normalize(ecosystem, name) or given_version != version:
        raise BadRequestError(f"facts: the line is for {given!r} {given_version or ''}, "
                              f"the path for {name!r} {version or ''}".replace(" ,", ","))
    return project


def caller_team(request: web.Request) -> str | None:
    """The team whose policy explains for ``request``: the caller's, or the one named
    by ``?team=NAME``."""
    who = identity_of(request)
    return request.query.get("team") or (who.team if who is not None else None)
