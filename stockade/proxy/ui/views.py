"""The page's handlers: overview, refusals and holds, explain, approve, cache.

Owns turning requests into pages. Everything shown comes from the services the
registry routes use; explain is the explain API's own code path
(``admin.explanation``). Admin actions need an identity with ``admin`` (set by
authentication, ``identity.identity_of``), a same-origin request and an
anti-CSRF token issued to that identity.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import web

from stockade.policy import approvals
from stockade.policy.model import Ecosystem
from stockade.policy.names import KINDS, valid
from stockade.proxy.admin import caller_team, explanation
from stockade.proxy.adminactions import reload_policy
from stockade.proxy.errors import ProxyError
from stockade.proxy.identity import Identity, identity_of
from stockade.proxy.state import Services, services
from stockade.proxy.ui import cache as cached
from stockade.proxy.ui import forms, logtail
from stockade.proxy.ui.approvals import NoApprovalsFile, approvals_file
from stockade.proxy.ui.csrf import CsrfError, CsrfTokens, check_same_origin
from stockade.proxy.ui.prefix import base, browser_origin
from stockade.proxy.ui.render import SECURITY_HEADERS, Templates, html
from stockade.storage.backends import open_records

logger = logging.getLogger(__name__)

MAX_APPROVAL = timedelta(days=366)


@dataclass(frozen=True, slots=True)
class UiState:
    """What the page needs besides the services: templates, keys, file locations."""

    env: Templates
    tokens: CsrfTokens
    decision_log: Path
    artifacts: str  # the record namespace of cached artifacts
    page_size: int
    style: bytes


UI = web.AppKey("ui", UiState)


def _state(request: web.Request) -> UiState:
    return request.app[UI]


def _page(request: web.Request, template: str, context: dict[str, Any], *,
          status: int = 200) -> web.Response:
    svc = services(request)
    who = identity_of(request)
    common = {
        "base": base(request, svc.settings.server), "who": who,
        "revision": svc.gate.revision, "ecosystems": [e.value for e in Ecosystem],
        "error": None, "q": urlencode,
    }
    return html(_state(request).env, template, {**common, **context}, status=status)


async def to_index(request: web.Request) -> web.StreamResponse:
    """``/_stockade/ui`` without its slash: the page's relative links need it."""
    raise web.HTTPPermanentRedirect(base(request, services(request).settings.server),
                                    headers=SECURITY_HEADERS)


def _safe_url(url: str) -> str:
    """An upstream URL without the credentials or query it may carry."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _upstream_counts(svc: Services) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for metric in svc.metrics.upstream_requests.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                name, status = sample.labels["upstream"], sample.labels["status"]
                counts.setdefault(name, {})[status] = int(sample.value)
    return counts


def _upstreams(svc: Services) -> list[dict[str, Any]]:
    counts = _upstream_counts(svc)
    rows = []
    for eco, group in svc.admission.upstreams.items():
        for upstream in group:
            wait = upstream.unreachable_for_s
            rows.append({
                "ecosystem": eco.value, "name": upstream.name, "url": _safe_url(upstream.url),
                "internal": upstream.internal, "offline": upstream.offline,
                "state": ("offline" if upstream.offline else
                          f"unreachable (asked again in {wait:.0f} s)" if wait > 0 else "ok"),
                "requests": dict(sorted(counts.get(upstream.name, {}).items())),
            })
    return rows


async def index(request: web.Request) -> web.Response:
    """The overview: the policy in force, its last reload, upstream health."""
    svc = services(request)
    reloader = svc.reloader
    reloads = {}
    for metric in svc.metrics.policy_reloads.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                reloads[sample.labels["result"]] = int(sample.value)
    return _page(request, "index.html", {
        "last_reload": reloader.last if reloader is not None else None,
        "reloads": reloads, "policy_file": svc.settings.policy.file is not None,
        "upstreams": _upstreams(svc), "offline": svc.settings.server.offline,
    })


def _log_filter(request: web.Request, now: datetime) -> logtail.Filter:
    query = request.query
    return logtail.Filter(
        ecosystem=forms.ecosystem(query.get("ecosystem")),
        rule=forms.text(query.get("rule"), "rule"),
        team=forms.text(query.get("team"), "team"),
        decision=forms.text(query.get("decision"), "decision"),
        name=forms.text(query.get("name"), "name"),
        since=forms.moment(query.get("since"), "since", now=now),
        until=forms.moment(query.get("until"), "until", now=now),
    )


async def refusals(request: web.Request) -> web.Response:
    """Recent refusals and holds from the decision log, newest first."""
    state = _state(request)
    fields = {k: request.query.get(k, "") for k in
              ("ecosystem", "rule", "team", "decision", "name", "since", "until")}
    try:
        wanted = _log_filter(request, datetime.now(UTC))
        before = forms.number(request.query.get("before"), "before", default=-1)
    except forms.FormError as exc:
        return _page(request, "refusals.html", {"fields": fields, "page": None,
                                                "error": str(exc)}, status=400)
    page = await asyncio.to_thread(logtail.read_page, state.decision_log, wanted,
                                   limit=state.page_size,
                                   before=None if before < 0 else before)
    older = None
    if page.older is not None:
        older = urlencode({**{k: v for k, v in fields.items() if v}, "before": page.older})
    return _page(request, "refusals.html", {"fields": fields, "page": page, "older": older})


async def explain(request: web.Request) -> web.Response:
    """The explain form, and every rule's verdict on the name it was sent."""
    query = request.query
    fields = {k: query.get(k, "") for k in ("ecosystem", "name", "version")}
    context: dict[str, Any] = {"fields": fields, "result": None}
    if not fields["name"]:
        return _page(request, "explain.html", context)
    try:
        eco = Ecosystem(forms.ecosystem(query.get("ecosystem"), required=True))
        name = forms.text(query.get("name"), "name")
        version = forms.text(query.get("version"), "version") or None
        context["result"] = await explanation(services(request).admission, eco, name, version,
                                              caller_team(request))
    except forms.FormError as exc:
        return _page(request, "explain.html", {**context, "error": str(exc)}, status=400)
    except ProxyError as exc:
        return _page(request, "explain.html", {**context, "error": exc.diagnostics()},
                     status=exc.status)
    return _page(request, "explain.html", context)


def _admin(request: web.Request) -> Identity | None:
    who = identity_of(request)
    return who if who is not None and who.admin else None


@dataclass(frozen=True, slots=True)
class _Approvals:
    """The approvals file the policy reads (None: it reads none, ``missing`` says
    why), what it holds, and why it could not be read."""

    path: Path | None
    current: list[approvals.Approval]
    missing: str | None = None
    problem: str | None = None


def _read_approvals(svc: Services) -> _Approvals:
    try:
        path = approvals_file(svc.settings)
    except NoApprovalsFile as exc:
        return _Approvals(None, [], missing=str(exc))
    try:
        return _Approvals(path, approvals.load(path))
    except approvals.ApprovalError as exc:
        return _Approvals(path, [], problem=str(exc))


async def _approvals(svc: Services) -> _Approvals:
    return await asyncio.to_thread(_read_approvals, svc)


async def approve_form(request: web.Request) -> web.Response:
    """The approve/extend form (admins), with the approvals in force."""
    who = _admin(request)
    state = _state(request)
    fields = {k: request.query.get(k, "") for k in ("ecosystem", "name", "until", "reason")}
    if who is None:
        return _page(request, "approve.html", {
            "fields": fields, "approvals": [], "token": None, "done": None,
            "now": datetime.now(UTC), "path": None, "missing": None,
            "error": "approving or extending a hold needs an admin identity"}, status=403)
    found = await _approvals(services(request))
    return _page(request, "approve.html", {
        "fields": fields, "approvals": found.current, "path": found.path,
        "missing": found.missing,
        "token": None if found.missing else state.tokens.issue(who),
        "done": request.query.get("done"), "error": found.problem, "now": datetime.now(UTC)})


def _refuse(request: web.Request, status: int, why: str) -> web.Response:
    logger.info("web page: %s refused: %s", request.path, why)
    return _page(request, "refused.html", {"reason": why}, status=status)


async def approve(request: web.Request) -> web.StreamResponse:
    """Record an approval (or extend one) for a held name, then apply the policy."""
    svc = services(request)
    state = _state(request)
    try:
        check_same_origin(request, browser_origin(request, svc.settings.server))
    except CsrfError as exc:
        return _refuse(request, 403, str(exc))
    who = _admin(request)
    if who is None:
        return _refuse(request, 403, "approving or extending a hold needs an admin identity")
    form = await request.post()
    try:
        state.tokens.check(str(form.get("csrf", "")), who)
    except CsrfError as exc:
        return _refuse(request, 403, str(exc))
    fields = {k: str(form.get(k, "")) for k in ("ecosystem", "name", "until", "reason")}
    now = datetime.now(UTC)
    try:
        path = await asyncio.to_thread(approvals_file, svc.settings)
    except NoApprovalsFile as exc:
        logger.info("web page: %s could not approve: %s", who.name, exc)
        return _page(request, "approve.html", {
            "fields": fields, "approvals": [], "token": None, "done": None, "path": None,
            "missing": str(exc), "now": now}, status=409)
    try:
        eco = Ecosystem(forms.ecosystem(fields["ecosystem"], required=True))
        name = forms.text(fields["name"], "name")
        if not valid(eco, name):
            raise forms.FormError(f"{name!r} is not a valid {KINDS[eco]}")
        until = forms.moment(fields["until"], "until", now=now, future=True)
        if until is None or until <= now or until - now > MAX_APPROVAL:
            raise forms.FormError("until must be a time in the next 366 days (e.g. 7d, "
                                  "2026-01-31)")
        reason = forms.text(fields["reason"], "reason")
        if not reason:
            raise forms.FormError("say why the hold is lifted (reason)")
        await asyncio.to_thread(approvals.approve, path, eco, name, until=until,
                                reason=reason, by=who.name, now=now)
    except (forms.FormError, approvals.ApprovalError) as exc:
        found = await _approvals(svc)
        return _page(request, "approve.html", {
            "fields": fields, "approvals": found.current, "token": state.tokens.issue(who),
            "path": path, "missing": None, "done": None, "error": str(exc), "now": now},
            status=400)
    logger.info("web page: %s approved %s %s until %s: %s", who.name, eco.value, name,
                until.isoformat(), reason)
    applied = True
    if svc.reloader is not None:  # the policy reads approvals when it is built (in
        # every worker: the admin reload's path)
        applied, _ = await reload_policy(request.app, "approval from the web page")
    done = urlencode({"ecosystem": eco.value, "name": name,
                      "done": "applied" if applied else "rejected"})
    raise web.HTTPSeeOther(f"{base(request, svc.settings.server)}approve?{done}",
                           headers=SECURITY_HEADERS)


async def cache(request: web.Request) -> web.Response:
    """Cached files: search by name, ecosystem and size; provenance and last use."""
    svc = services(request)
    state = _state(request)
    fields = {k: request.query.get(k, "") for k in ("name", "ecosystem", "min_size", "sort")}
    try:
        query = cached.Query(
            name=forms.text(fields["name"], "name"),
            ecosystem=forms.ecosystem(fields["ecosystem"]),
            min_size=forms.number(fields["min_size"], "min_size"),
            largest_first=fields["sort"] == "size")
        page = forms.number(request.query.get("page"), "page", default=1, least=1)
    except forms.FormError as exc:
        return _page(request, "cache.html", {"fields": fields, "listing": None,
                                             "error": str(exc)}, status=400)
    found = await cached.listing(
        open_records(svc.settings, svc.store, state.artifacts), svc.store, svc.provenance,
        query, offset=(page - 1) * state.page_size, limit=state.page_size)
    kept = {k: v for k, v in fields.items() if v}
    return _page(request, "cache.html", {
        "fields": fields, "listing": found, "page": page,
        "prev": urlencode({**kept, "page": page - 1}) if page > 1 else None,
        "next": (urlencode({**kept, "page": page + 1})
                 if page * state.page_size < found.matched else None)})


async def style(request: web.Request) -> web.Response:
    """The page's one style sheet (the CSP allows no other)."""
    return web.Response(body=_state(request).style, content_type="text/css",
                        headers={**SECURITY_HEADERS, "Cache-Control": "max-age=3600"})
