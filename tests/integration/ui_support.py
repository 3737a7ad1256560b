"""What the web page's tests share: an app whose callers say who they are.

Authentication is another module's job; until it sets the caller, these tests
set it with a middleware that reads ``X-Test-Identity: name[,team[,admin]]``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from stockade.config.load import load_settings
from stockade.config.model import Settings
from stockade.proxy.app import make_app
from stockade.proxy.gate import PolicyEngine
from stockade.proxy.identity import Identity, set_identity

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ADMIN = {"X-Test-Identity": "alice,platform,admin"}
DEVELOPER = {"X-Test-Identity": "bob,payments"}


@web.middleware
async def test_identity(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sets the caller from ``X-Test-Identity`` (tests only)."""
    raw = request.headers.get("X-Test-Identity")
    if raw:
        name, team, admin = ([*raw.split(","), "", ""])[:3]
        set_identity(request, Identity(name, team or None, admin == "admin"))
    return await handler(request)


def ui_settings(tmp_path: Path, *, pypi_url: str, npm_url: str = "http://127.0.0.1:9/",
                **extra: Any) -> Settings:
    return load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": [{"name": "pypi", "url": pypi_url, "retries": 0}]},
        "npm": {"upstreams": [{"name": "npmjs", "url": npm_url, "retries": 0}]},
        "maven": {"upstreams": []},
        **extra,
    })


def ui_app(settings: Settings, factory: Callable[[Settings], PolicyEngine],
           environ: dict[str, str] | None = None) -> web.Application:
    """The stockade app for ``settings``, its callers named by ``X-Test-Identity``."""
    app = make_app(settings, environ=environ or {}, engine_factory=factory)
    app.middlewares.append(test_identity)
    return app
