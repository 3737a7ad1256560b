"""Routes found again from the kept table: the same answers as aiohttp's dispatcher."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp.web_urldispatcher import MatchInfoError

from stockade.proxy.dispatch import KeptRoutes, keep_routes


async def _handler(request: web.Request) -> web.Response:
    return web.Response()


@pytest.fixture
def resolved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths aiohttp's own resolve was asked for."""
    asked: list[str] = []
    real = web.UrlDispatcher.resolve

    async def counting(self: web.UrlDispatcher, request: web.Request) -> Any:
        asked.append(f"{request.method} {request.path}")
        return await real(self, request)

    monkeypatch.setattr(web.UrlDispatcher, "resolve", counting)
    return asked


def _app() -> web.Application:
    app = web.Application()
    keep_routes(app)
    app.router.add_route("GET", "/maven2/{path:.+}", _handler, name="maven:repository")
    app.router.add_route("HEAD", "/maven2/{path:.+}", _handler, name="maven:head")
    app.router.add_get("/pypi/files/{name}/{filename}", _handler, name="pypi:artifact")
    app.freeze()
    return app


async def test_a_path_found_before_is_not_resolved_again(resolved: list[str]) -> None:
    app = _app()
    assert isinstance(app.router, KeptRoutes)
    path = "/pypi/files/demo/demo-1.0-py3-none-any.whl"
    found = []
    for _ in range(3):
        match = await app.router.resolve(make_mocked_request("GET", path, app=app))
        found.append((match.route.name, dict(match)))
        match["name"] = "changed"  # each request's own copy
    assert found == [("pypi:artifact", {"name": "demo",
                                        "filename": "demo-1.0-py3-none-any.whl"})] * 3
    assert resolved == [f"GET {path}"]


async def test_the_method_picks_the_route_and_misses_are_not_kept(
        resolved: list[str]) -> None:
    app = _app()
    router = app.router
    for method, name in (("GET", "maven:repository"), ("HEAD", "maven:head"),
                         ("GET", "maven:repository")):
        match = await router.resolve(make_mocked_request(method, "/maven2/a/b.jar", app=app))
        assert match.route.name == name
    for _ in range(2):
        missing = await router.resolve(make_mocked_request("GET", "/nowhere", app=app))
        assert isinstance(missing, MatchInfoError)
        assert missing.http_exception.status == 404
        wrong = await router.resolve(make_mocked_request("POST", "/maven2/a", app=app))
        assert isinstance(wrong, MatchInfoError)
        assert wrong.http_exception.status == 405
    assert resolved == ["GET /maven2/a/b.jar", "HEAD /maven2/a/b.jar",
                        "GET /nowhere", "POST /maven2/a", "GET /nowhere", "POST /maven2/a"]
