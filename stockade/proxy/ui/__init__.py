"""The web page for platform teams at ``/_stockade/ui/``.

Owns the page's routes and its state (templates, the anti-CSRF key, where the
decision log is; the approvals file is the policy's, found by ``ui.approvals``).
The pages themselves are ``views``; what they read comes from the services every
route uses (the admission path for explain, the record stores for the cache, the
gate and reloader for the policy), so the page shows what the server decides and
never decides on its own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from aiohttp import web

from stockade.config.model import Settings
from stockade.proxy.checkpoint import key_from_env
from stockade.proxy.ui import actions, views
from stockade.proxy.ui.csrf import CsrfTokens
from stockade.proxy.ui.render import Templates
from stockade.proxy.ui.views import UI, UiState

logger = logging.getLogger(__name__)


def setup(app: web.Application, settings: Settings, *, decision_log: Path, artifacts: str,
          environ: Mapping[str, str]) -> None:
    """Register the page's routes on ``app``."""
    key = key_from_env(settings.ui.csrf_key_env, environ)
    if settings.ui.csrf_key_env and key is None:
        logger.warning("ui.csrf_key_env names %s, which is not set: the page's forms are "
                       "signed with a key of this process only", settings.ui.csrf_key_env)
    app[UI] = UiState(
        env=Templates(),
        tokens=CsrfTokens(key or os.urandom(32)),
        decision_log=decision_log,
        artifacts=artifacts,
        page_size=settings.ui.page_size,
        style=resources.files(__name__).joinpath("static/style.css").read_bytes(),
    )
    base = "/_stockade/ui"
    app.router.add_get(base, views.to_index, name="ui:home")
    app.router.add_get(base + "/", views.index, name="ui:index")
    app.router.add_get(base + "/refusals", views.refusals, name="ui:refusals")
    app.router.add_get(base + "/explain", views.explain, name="ui:explain")
    app.router.add_get(base + "/approve", views.approve_form, name="ui:approve")
    app.router.add_post(base + "/approve", views.approve, name="ui:approve")
    app.router.add_get(base + "/cache", views.cache, name="ui:cache")
    app.router.add_get(base + "/actions", actions.page, name="ui:actions")
    app.router.add_post(base + "/actions/reload", actions.reload, name="ui:reload")
    app.router.add_post(base + "/actions/purge", actions.purge, name="ui:purge")
    app.router.add_get(base + "/static/style.css", views.style, name="ui:static")
