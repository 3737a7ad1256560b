"""A burst of cold Maven requests: what reaches the upstream, counted by the fake.

Fifty concurrent requests for one cold jar make one request for the jar and one for
each checksum file asked; an algorithm the origin was found not to publish is not
asked again for the next artifact (by this process or another worker), while one it
was ever seen publishing always is.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from testbed.fakes.maven_upstream import FakeMaven
from testbed.fakes.policy import FakeEngine
from testbed.fakes.threaded import ThreadedServer
from tests.integration.test_workers import Served, _burst

BURST = 50


def _jar(artifact: str) -> str:
    return f"org/example/{artifact}/1.0/{artifact}-1.0.jar"


def _asked(repo: FakeMaven) -> list[str]:
    paths = [path.removeprefix("/maven2/") for _, path in repo.requests]
    repo.requests.clear()
    return paths


@pytest.fixture
async def central() -> Any:
    """An origin publishing ``.md5`` and ``.sha1`` only, as Central long did."""
    fake = FakeMaven(published=("md5", "sha1"), checksum_headers=())
    for artifact in ("first", "second", "third"):
        fake.add("org.example", artifact, "1.0", payload_bytes=26_000)
    await fake.start()
    yield fake
    await fake.stop()


async def _proxy(aiohttp_client: Any, tmp_path: Path, engine: FakeEngine,
                 repo: FakeMaven) -> TestClient[web.Request, web.Application]:
    settings = load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": []}, "npm": {"upstreams": []},
        "maven": {"upstreams": [{"name": "central", "url": repo.url, "retries": 0}]},
    })
    client: TestClient[web.Request, web.Application] = await aiohttp_client(
        make_app(settings, environ={}, engine_factory=lambda _s: engine))
    return client


Client = TestClient[web.Request, web.Application]


async def _cold_burst(proxy: Client, repo: FakeMaven, path: str) -> None:
    async def get() -> tuple[int, bytes]:
        resp = await proxy.get(f"/maven/{path}")
        return resp.status, await resp.read()

    results = await asyncio.gather(*(get() for _ in range(BURST)))
    assert results == [(200, repo.files[path])] * BURST


async def test_a_cold_burst_asks_each_file_once_and_no_known_absent_checksum(
    aiohttp_client: Any, tmp_path: Path, engine: FakeEngine, central: FakeMaven,
) -> None:
    proxy = await _proxy(aiohttp_client, tmp_path, engine, central)

    await _cold_burst(proxy, central, _jar("first"))
    # the first artifact of this origin finds out what it publishes, once per file
    assert sorted(_asked(central)) == sorted(
        f"{_jar('first')}{ext}" for ext in ("", ".sha512", ".sha256", ".sha1"))

    await _cold_burst(proxy, central, _jar("second"))
    # the next one: its checksum file and itself, nothing else
    assert _asked(central) == [_jar("second"), f"{_jar('second')}.sha1"]
    resp = await proxy.get(f"/maven/{_jar('second')}.sha256")  # computed, not asked
    assert await resp.text() == hashlib.sha256(central.files[_jar("second")]).hexdigest()
    assert _asked(central) == []


async def test_an_algorithm_once_published_is_always_asked_for(
    aiohttp_client: Any, tmp_path: Path, engine: FakeEngine, central: FakeMaven,
) -> None:
    central.published = ("sha1", "sha512")  # newer uploads carry a sha512
    proxy = await _proxy(aiohttp_client, tmp_path, engine, central)
    await _cold_burst(proxy, central, _jar("first"))
    assert _asked(central) == [_jar("first"), f"{_jar('first')}.sha512"]

    central.published = ("sha1",)  # older ones do not: sha512 stays worth asking
    await _cold_burst(proxy, central, _jar("second"))
    assert _asked(central) == [f"{_jar('second')}{ext}"
                               for ext in ("", ".sha512", ".sha256", ".sha1")]
    await _cold_burst(proxy, central, _jar("third"))
    assert _asked(central) == [f"{_jar('third')}{ext}" for ext in ("", ".sha512", ".sha1")]


async def test_a_wrong_checksum_is_still_refused_after_the_skip(
    aiohttp_client: Any, tmp_path: Path, engine: FakeEngine, central: FakeMaven,
) -> None:
    proxy = await _proxy(aiohttp_client, tmp_path, engine, central)
    await _cold_burst(proxy, central, _jar("first"))
    central.wrong_checksums.add(_jar("second"))
    with pytest.raises(aiohttp.ClientPayloadError):  # the body is cut where it ends
        await (await proxy.get(f"/maven/{_jar('second')}")).read()
    assert _asked(central)[-2:] == [_jar("second"), f"{_jar('second')}.sha1"]
    resp = await proxy.get(f"/maven/{_jar('second')}")  # nothing stored: asked again
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


@pytest.fixture
def threaded_central() -> Iterator[tuple[FakeMaven, ThreadedServer]]:
    fake = FakeMaven(published=("md5", "sha1"), checksum_headers=())
    for artifact in ("first", "second"):
        fake.add("org.example", artifact, "1.0", payload_bytes=26_000)
    server = ThreadedServer(fake.app).start()
    yield fake, server
    server.stop()


@pytest.mark.timeout(600)  # a multi-process start-up on a busy machine
def test_workers_share_what_the_origin_publishes(
    tmp_path: Path, threaded_central: tuple[FakeMaven, ThreadedServer],
) -> None:
    repo, server = threaded_central
    served = Served(tmp_path, server.url("/simple/"), server={"workers": 2}, maven={
        "upstreams": [{"name": "central", "url": server.url("/maven2/"), "retries": 0}]})
    try:
        assert len(served.workers()) == 2
        for artifact, expected in (
                ("first", ("", ".sha512", ".sha256", ".sha1")), ("second", ("", ".sha1"))):
            results = asyncio.run(_burst(f"{served.url}/maven/{_jar(artifact)}", BURST))
            assert results == [(200, repo.files[_jar(artifact)])] * BURST
            assert sorted(_asked(repo)) == sorted(f"{_jar(artifact)}{e}" for e in expected)
    finally:
        assert served.stop() == 0
