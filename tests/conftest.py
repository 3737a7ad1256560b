"""Shared fixtures: fake upstreams on 127.0.0.1 and a proxy app in front of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, settings

from stockade.config.load import load_settings
from stockade.config.model import Settings
from stockade.proxy.app import make_app
from testbed.fakes.policy import FakeEngine
from testbed.fakes.pypi_upstream import FakePyPI
from testbed.s3server import MotoServer

# On a busy two-core machine one example can take seconds: a property test checks
# what holds, never how fast, so no example has a deadline.
settings.register_profile("stockade", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("stockade")


@pytest.fixture
async def fake_pypi() -> AsyncIterator[FakePyPI]:
    index = FakePyPI()
    await index.start()
    yield index
    await index.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer]:
    """A real S3 server process (moto) for the session; tests make their own buckets."""
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


def settings_for(tmp_path: Path, pypi_upstreams: list[dict[str, Any]], **extra: Any) -> Settings:
    """Settings with storage under ``tmp_path`` and the given PyPI upstreams."""
    overrides: dict[str, Any] = {
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": pypi_upstreams,
                 "cache": {"metadata_ttl_s": 300}},
        "npm": {"upstreams": []},
        "maven": {"upstreams": []},
        **extra,
    }
    return load_settings(None, environ={}, overrides=overrides)


ProxyFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_proxy(
    aiohttp_client: Any, tmp_path: Path, engine: FakeEngine
) -> ProxyFactory:
    async def factory(settings: Settings | None = None, *, upstream: FakePyPI | None = None,
                      **extra: Any) -> TestClient:
        if settings is None:
            assert upstream is not None
            settings = settings_for(tmp_path, [{"name": "pypi", "url": upstream.url}], **extra)
        app = make_app(settings, environ={}, engine_factory=lambda _s: engine)
        client: TestClient = await aiohttp_client(app)
        return client

    return factory


@pytest.fixture(autouse=True, scope="session")
def _index_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Name index files in the session's temporary folder, not the user's cache."""
    import os

    os.environ.setdefault("STOCKADE_INDEX_CACHE", str(tmp_path_factory.mktemp("index-cache")))
