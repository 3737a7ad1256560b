"""The page's admin actions besides approvals: reload the policy, purge the cache.

Owns the ``actions`` page and its two forms. Each form passes the same checks as
the approve form (an admin identity, a same-origin request, an anti-CSRF token
issued to that identity) and then calls what the admin API calls
(``adminactions``), so a reload reaches every worker and a purge is recorded in
the decision log either way.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from stockade.policy.model import Ecosystem
from stockade.proxy.adminactions import UnavailableError, purge_package, reload_policy
from stockade.proxy.errors import ProxyError
from stockade.proxy.identity import Identity
from stockade.proxy.state import services
from stockade.proxy.ui import forms
from stockade.proxy.ui.csrf import CsrfError, check_same_origin
from stockade.proxy.ui.prefix import browser_origin
from stockade.proxy.ui.views import _admin, _page, _refuse, _state

logger = logging.getLogger(__name__)

NOT_ADMIN = "reloading the policy or purging the cache needs an admin identity"


def _context(request: web.Request, who: Identity, **extra: Any) -> dict[str, Any]:
    fields = {k: "" for k in ("ecosystem", "name", "version")}
    return {"fields": fields, "token": _state(request).tokens.issue(who), "reload": None,
            "purge": None, **extra}


async def page(request: web.Request) -> web.Response:
    """The actions page (admins): a reload button and the purge form."""
    who = _admin(request)
    if who is None:
        return _page(request, "actions.html", {
            "fields": {}, "token": None, "reload": None, "purge": None,
            "error": NOT_ADMIN}, status=403)
    return _page(request, "actions.html", _context(request, who))


async def _checked(request: web.Request) -> tuple[Identity, dict[str, str]] | web.Response:
    """The admin who sent the form and its fields, or the refusal to answer with."""
    try:
        check_same_origin(request, browser_origin(request, services(request).settings.server))
    except CsrfError as exc:
        return _refuse(request, 403, str(exc))
    who = _admin(request)
    if who is None:
        return _refuse(request, 403, NOT_ADMIN)
    form = await request.post()
    try:
        _state(request).tokens.check(str(form.get("csrf", "")), who)
    except CsrfError as exc:
        return _refuse(request, 403, str(exc))
    return who, {k: str(form.get(k, "")) for k in ("ecosystem", "name", "version")}


async def reload(request: web.Request) -> web.Response:
    """Reload the policy now, in every worker; show the result."""
    checked = await _checked(request)
    if isinstance(checked, web.Response):
        return checked
    who, _ = checked
    try:
        applied, answer = await reload_policy(request.app,
                                              f"web page request by {who.name}")
    except UnavailableError as exc:
        return _page(request, "actions.html", _context(request, who,
                                                       error=exc.diagnostics()), status=409)
    logger.info("web page: %s reloaded the policy: %s", who.name,
                "applied" if applied else "rejected")
    return _page(request, "actions.html", _context(request, who, reload=answer),
                 status=200 if applied else 422)


async def purge(request: web.Request) -> web.Response:
    """Purge a name (or one version) from the cache; show what was removed."""
    checked = await _checked(request)
    if isinstance(checked, web.Response):
        return checked
    who, fields = checked
    try:
        eco = Ecosystem(forms.ecosystem(fields["ecosystem"], required=True))
        name = forms.text(fields["name"], "name")
        if not name:
            raise forms.FormError("name the package to purge")
        version = forms.text(fields["version"], "version") or None
        result = await purge_package(request, eco, name, version, who)
    except forms.FormError as exc:
        return _page(request, "actions.html", _context(request, who, fields=fields,
                                                       error=str(exc)), status=400)
    except ProxyError as exc:
        return _page(request, "actions.html", _context(request, who, fields=fields,
                                                       error=exc.diagnostics()),
                     status=exc.status)
    return _page(request, "actions.html", _context(request, who, purge=result.as_json()))
