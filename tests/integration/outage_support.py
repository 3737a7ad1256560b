"""What the outage tests share: the registry paths, a proxy over one storage
folder with any upstreams, and counting what a fake registry was asked."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from testbed.fakes.maven_upstream import FakeMaven
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.policy import FakeEngine

JAR = "org/example/demo/1.0/demo-1.0.jar"
POM = "org/example/demo/1.0/demo-1.0.pom"
MODULE = "org/example/demo/1.0/demo-1.0.module"  # Gradle asks; this repository has none
TINY_S = 1e-6  # a TTL that has always passed by the next request

ProxyFor = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def central_repo() -> AsyncIterator[FakeMaven]:
    """A Maven repository publishing md5 and sha1 files, as Maven Central does."""
    fake = FakeMaven(published=("md5", "sha1"))
    fake.add("org.example", "demo", "1.0")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def npm_registry() -> AsyncIterator[FakeNpm]:
    registry = FakeNpm()
    await registry.start()
    yield registry
    await registry.stop()


@pytest.fixture
def proxy_for(aiohttp_client: Any, tmp_path: Path, engine: FakeEngine) -> ProxyFor:
    """A proxy over ``tmp_path/data`` (each call a new app on the same storage);
    ``maven``, ``npm``, ``pypi``: upstream lists; ``use``: another engine."""

    async def factory(*, maven: list[dict[str, Any]] | None = None,
                      npm: list[dict[str, Any]] | None = None,
                      pypi: list[dict[str, Any]] | None = None,
                      cache: dict[str, Any] | None = None, use: FakeEngine | None = None,
                      maven_opts: dict[str, Any] | None = None, **top: Any) -> TestClient:
        cache = {"metadata_ttl_s": 300, **(cache or {})}
        settings = load_settings(None, environ={}, overrides={
            **top,
            "storage": {"path": str(tmp_path / "data"), **top.get("storage", {})},
            "pypi": {"upstreams": pypi or [], "cache": cache},
            "npm": {"upstreams": npm or [], "cache": cache},
            "maven": {"upstreams": maven or [], "cache": cache, **(maven_opts or {})},
        })
        chosen = use or engine
        client: TestClient = await aiohttp_client(
            make_app(settings, environ={}, engine_factory=lambda _s: chosen))
        return client

    return factory


def central(repo: FakeMaven, **extra: Any) -> list[dict[str, Any]]:
    return [{"name": "central", "url": repo.url, "retries": 0, **extra}]


async def status(client: TestClient, path: str) -> int:
    """GET ``path`` and read the whole body (a fill is stored once it is read)."""
    resp = await client.get(path)
    await resp.read()
    return resp.status


def blobs(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "data" / "blobs").rglob("*") if p.is_file()]


def asked(repo: FakeMaven, path: str) -> dict[str, int]:
    """How often the registry was asked for ``path`` and each file beside it."""
    counts: dict[str, int] = {}
    for _, seen in repo.requests:
        if seen.startswith(f"/maven2/{path}"):
            tail = seen.removeprefix(f"/maven2/{path}") or "file"
            counts[tail] = counts.get(tail, 0) + 1
    return counts
