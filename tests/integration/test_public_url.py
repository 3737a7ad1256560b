"""The base of the URLs stockade writes: configured, from a trusted proxy, or the Host.

Before, every new Host value rendered a large packument again (the rendered copy
was keyed by the request's origin), and any client could choose the host that
tarball URLs pointed at with X-Forwarded-Host... or Host itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from stockade.proxy.ecosystems import npm_documents
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.policy import FakeEngine


@pytest.fixture
async def fake_npm() -> AsyncIterator[FakeNpm]:
    registry = FakeNpm()
    await registry.start()
    registry.publish("left-pad", "1.3.0")
    yield registry
    await registry.stop()


async def _proxy(aiohttp_client: Any, tmp_path: Path, fake_npm: FakeNpm,
                 **server: Any) -> TestClient[Any, Any]:
    settings = load_settings(None, environ={}, overrides={
        "server": server, "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": []}, "maven": {"upstreams": []},
        "npm": {"upstreams": [{"name": "npmjs", "url": fake_npm.url}]},
    })
    client: TestClient[Any, Any] = await aiohttp_client(
        make_app(settings, environ={}, engine_factory=lambda _s: FakeEngine()))
    return client


async def _tarball(proxy: TestClient[Any, Any], **headers: str) -> str:
    resp = await proxy.get("/npm/left-pad", headers={"Accept": "application/json", **headers})
    assert resp.status == 200
    url: str = (await resp.json())["versions"]["1.3.0"]["dist"]["tarball"]
    return url


async def test_public_url_wins_over_any_host(aiohttp_client: Any, tmp_path: Path,
                                             fake_npm: FakeNpm) -> None:
    proxy = await _proxy(aiohttp_client, tmp_path, fake_npm,
                         public_url="https://stockade.example.com")
    for host in ("evil.example", "127.0.0.1:1"):
        url = await _tarball(proxy, Host=host, **{"X-Forwarded-Host": "evil.example"})
        assert url == "https://stockade.example.com/npm/left-pad/-/left-pad-1.3.0.tgz"


async def test_forwarded_headers_only_from_trusted_proxies(
    aiohttp_client: Any, tmp_path: Path, fake_npm: FakeNpm
) -> None:
    forwarded = {"X-Forwarded-Host": "pkgs.example.com", "X-Forwarded-Proto": "https"}
    untrusting = await _proxy(aiohttp_client, tmp_path / "a", fake_npm)
    assert "pkgs.example.com" not in await _tarball(untrusting, **forwarded)
    trusting = await _proxy(aiohttp_client, tmp_path / "b", fake_npm,
                            trusted_proxies=["127.0.0.0/8"])
    assert (await _tarball(trusting, **forwarded)).startswith("https://pkgs.example.com/npm/")


async def test_a_new_host_does_not_render_again(
    aiohttp_client: Any, tmp_path: Path, fake_npm: FakeNpm, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = npm_documents.render_body

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(kwargs["base"])
        return real(*args, **kwargs)

    monkeypatch.setattr(npm_documents, "render_body", counting)
    proxy = await _proxy(aiohttp_client, tmp_path, fake_npm)
    for n in range(5):
        url = await _tarball(proxy, Host=f"mirror{n}.example:8080")
        assert url == f"http://mirror{n}.example:8080/npm/left-pad/-/left-pad-1.3.0.tgz"
    assert len(calls) == 1
