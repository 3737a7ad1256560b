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
from tests.integration.test_workers import Served, _burst, _poll

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


@pytest.fixture(params=[(), ("sha1", "md5")], ids=["checksum files", "checksum headers"])
def threaded_central(request: pytest.FixtureRequest) -> Iterator[tuple[FakeMaven, ThreadedServer]]:
    fake = FakeMaven(published=("md5", "sha1"), checksum_headers=request.param)
    for artifact in ("first", "second"):
        fake.add("org.example", artifact, "1.0", payload_bytes=26_000)
    server = ThreadedServer(fake.app).start()
    yield fake, server
    server.stop()


@pytest.mark.timeout(600)  # a multi-process start-up on a busy machine
def test_workers_share_what_the_origin_publishes(
    tmp_path: Path, threaded_central: tuple[FakeMaven, ThreadedServer],
) -> None:
    """Across worker processes: with checksum headers, one request per artifact;
    without, the first jar finds out which checksum files the origin publishes,
    and the second asks only for those."""
    repo, server = threaded_central
    served = Served(tmp_path, server.url("/simple/"), server={"workers": 2}, maven={
        "upstreams": [{"name": "central", "url": server.url("/maven2/"), "retries": 0}]})
    files = {"first": ("", ".sha512", ".sha256", ".sha1"), "second": ("", ".sha1")}
    try:
        assert len(served.workers()) == 2
        for artifact, expected in files.items():
            results = asyncio.run(_burst(f"{served.url}/maven/{_jar(artifact)}", BURST))
            assert results == [(200, repo.files[_jar(artifact)])] * BURST
            asked = expected if not repo.checksum_headers else ("",)
            assert sorted(_asked(repo)) == sorted(f"{_jar(artifact)}{e}" for e in asked)
    finally:
        assert served.stop() == 0


@pytest.fixture
async def headed() -> Any:
    """An origin sending each file's sha1 and md5 as headers, as Maven Central does."""
    fake = FakeMaven(published=("md5", "sha1"), checksum_headers=("sha1", "md5"))
    for artifact in ("first", "second", "third"):
        fake.add("org.example", artifact, "1.0", payload_bytes=26_000)
    await fake.start()
    yield fake
    await fake.stop()


def _stored_blobs(tmp_path: Path) -> set[str]:
    return {p.name for p in (tmp_path / "data" / "blobs").rglob("*") if p.is_file()}


async def test_a_cold_burst_with_checksum_headers_is_one_upstream_request(
    aiohttp_client: Any, tmp_path: Path, engine: FakeEngine, headed: FakeMaven,
) -> None:
    proxy = await _proxy(aiohttp_client, tmp_path, engine, headed)
    for artifact in ("first", "second"):
        await _cold_burst(proxy, headed, _jar(artifact))
        assert _asked(headed) == [_jar(artifact)]  # no checksum file, no probe
    # a cold checksum request from a client: the jar, verified by its header
    resp = await proxy.get(f"/maven/{_jar('third')}.sha1")
    assert await resp.text() == hashlib.sha1(headed.files[_jar("third")]).hexdigest()  # noqa: S324
    assert _asked(headed) == [_jar("third")]
    for artifact in ("first", "second", "third"):
        resp = await proxy.get(f"/maven/{_jar(artifact)}")
        assert await resp.read() == headed.files[_jar(artifact)]
        assert resp.headers["X-Stockade-Cache"] == "hit"
    assert _asked(headed) == []


async def test_a_wrong_header_digest_is_refused_and_nothing_stored(
    aiohttp_client: Any, tmp_path: Path, engine: FakeEngine, headed: FakeMaven,
) -> None:
    proxy = await _proxy(aiohttp_client, tmp_path, engine, headed)
    jar = _jar("first")
    # the checksum files are right: only the header vouches for other bytes
    headed.header_values[jar] = {"X-Checksum-Sha1": [hashlib.sha1(b"other").hexdigest()]}  # noqa: S324

    async def get() -> int:
        resp = await proxy.get(f"/maven/{jar}")
        try:
            await resp.read()
        except aiohttp.ClientPayloadError:  # the body is cut where it ends
            return -1
        return resp.status

    results = await asyncio.gather(*(get() for _ in range(BURST)))
    assert all(r != 200 for r in results), results
    assert _asked(headed) == [jar]
    assert hashlib.sha256(headed.files[jar]).hexdigest() not in _stored_blobs(tmp_path)

    del headed.header_values[jar]  # the upstream fixed: the next request succeeds
    resp = await proxy.get(f"/maven/{jar}")
    assert resp.status == 200
    assert await resp.read() == headed.files[jar]
    assert _asked(headed) == [jar]
    assert hashlib.sha256(headed.files[jar]).hexdigest() in _stored_blobs(tmp_path)


@pytest.mark.parametrize("values", [
    ["0123"],  # too short for a sha1
    ["zz" * 20],  # not hex
    ["a" * 40, "b" * 40],  # several values
    [""],
])
async def test_a_malformed_checksum_header_falls_back_to_the_checksum_file(
    aiohttp_client: Any, tmp_path: Path, engine: FakeEngine, headed: FakeMaven,
    values: list[str],
) -> None:
    proxy = await _proxy(aiohttp_client, tmp_path, engine, headed)
    jar = _jar("first")
    headed.header_values[jar] = {"X-Checksum-Sha1": values}
    headed.published = ("sha1",)
    await _cold_burst(proxy, headed, jar)
    assert _asked(headed) == [jar] + [f"{jar}{ext}" for ext in (".sha512", ".sha256", ".sha1")]
    # and what the checksum file says is what is verified: a wrong one refuses it
    second = _jar("second")
    headed.header_values[second] = {"X-Checksum-Sha1": values}
    headed.wrong_checksums.add(second)
    with pytest.raises(aiohttp.ClientPayloadError):
        await (await proxy.get(f"/maven/{second}")).read()
    assert hashlib.sha256(headed.files[second]).hexdigest() not in _stored_blobs(tmp_path)


async def test_an_origin_known_to_publish_sha512_still_gets_it_asked(
    aiohttp_client: Any, tmp_path: Path, engine: FakeEngine, headed: FakeMaven,
) -> None:
    headed.published = ("sha1", "sha512")
    headed.checksum_headers = ()  # the first jar teaches that the origin has .sha512
    proxy = await _proxy(aiohttp_client, tmp_path, engine, headed)
    await _cold_burst(proxy, headed, _jar("first"))
    assert _asked(headed) == [_jar("first"), f"{_jar('first')}.sha512"]

    headed.checksum_headers = ("sha1", "md5")  # a sha1 header is weaker than known
    await _cold_burst(proxy, headed, _jar("second"))
    assert _asked(headed) == [_jar("second"), f"{_jar('second')}.sha512"]
    headed.wrong_checksums.add(_jar("third"))  # the .sha512 decides, not the sha1 header
    headed.header_values[_jar("third")] = {"X-Checksum-Sha1": [hashlib.sha1(  # noqa: S324
        headed.files[_jar("third")]).hexdigest()]}
    with pytest.raises(aiohttp.ClientPayloadError):
        await (await proxy.get(f"/maven/{_jar('third')}")).read()
    assert _asked(headed) == [_jar("third"), f"{_jar('third')}.sha512"]

    headed.wrong_checksums.clear()
    headed.header_values.clear()
    headed.checksum_headers = ("sha1", "sha512")  # a header as strong as the file
    await _cold_burst(proxy, headed, _jar("third"))
    assert _asked(headed) == [_jar("third")]


@pytest.fixture
def threaded_headed() -> Iterator[tuple[FakeMaven, ThreadedServer]]:
    """An origin sending checksum headers, its ~1 MB jar sent slowly (a fill lasts
    while a burst arrives)."""
    fake = FakeMaven(published=("md5", "sha1"), checksum_headers=("sha1", "md5"))
    fake.add("org.example", "slow", "1.0", payload_bytes=1_000_000)
    fake.faults[_jar("slow")] = "slow"
    server = ThreadedServer(fake.app).start()
    yield fake, server
    server.stop()


def _maven_served(tmp_path: Path, server: ThreadedServer) -> Served:
    return Served(tmp_path, server.url("/simple/"), server={"workers": 2}, maven={
        "upstreams": [{"name": "central", "url": server.url("/maven2/"), "retries": 0}]})


@pytest.mark.timeout(600)  # multi-process start-ups on a busy machine
def test_a_404_is_asked_once_by_every_worker_and_after_a_restart(
    tmp_path: Path, threaded_headed: tuple[FakeMaven, ThreadedServer],
) -> None:
    """A missing artifact's 404 is remembered where every worker process reads it
    (and a restarted server too), not by the process that asked."""
    repo, server = threaded_headed
    absent = _jar("absent")
    served = _maven_served(tmp_path, server)
    try:
        assert len(served.workers()) == 2
        for _ in range(2):
            results = asyncio.run(_burst(f"{served.url}/maven/{absent}", BURST))
            assert [status for status, _ in results] == [404] * BURST
        _poll(lambda: len(served.served_by(f"/maven/{absent}")) == 2)  # both workers answered
        assert _asked(repo) == [absent]
    finally:
        assert served.stop() == 0
    served = _maven_served(tmp_path, server)  # new processes, the same storage
    try:
        results = asyncio.run(_burst(f"{served.url}/maven/{absent}", BURST))
        assert [status for status, _ in results] == [404] * BURST
        assert _asked(repo) == []
    finally:
        assert served.stop() == 0


@pytest.mark.timeout(600)
def test_a_header_first_fill_is_one_request_across_workers(
    tmp_path: Path, threaded_headed: tuple[FakeMaven, ThreadedServer],
) -> None:
    """Fifty requests over two workers for a jar fetched slowly: one response opened,
    decided on by its header, streamed to every client; the other worker waits for
    it and serves what was stored."""
    repo, server = threaded_headed
    jar = _jar("slow")
    served = _maven_served(tmp_path, server)
    try:
        results = asyncio.run(_burst(f"{served.url}/maven/{jar}", BURST))
        assert results == [(200, repo.files[jar])] * BURST
        _poll(lambda: len(served.served_by(f"/maven/{jar}")) == 2)  # both workers answered
        assert _asked(repo) == [jar]  # no checksum file, no second opening
        assert hashlib.sha256(repo.files[jar]).hexdigest() in _stored_blobs(tmp_path)
    finally:
        assert served.stop() == 0


async def test_a_refused_burst_closes_its_opened_response_unread(
    aiohttp_client: Any, tmp_path: Path, engine: FakeEngine, headed: FakeMaven,
) -> None:
    """Every request of a burst refused on the opened response's head: one opening,
    closed without its body stored; once allowed, the next request opens it anew."""
    engine.blocked_versions.add(("org.example:first", "1.0"))
    proxy = await _proxy(aiohttp_client, tmp_path, engine, headed)
    jar = _jar("first")

    async def status() -> int:
        resp = await proxy.get(f"/maven/{jar}")
        await resp.read()
        return resp.status

    assert await asyncio.gather(*(status() for _ in range(BURST))) == [403] * BURST
    assert _asked(headed) == [jar]
    assert hashlib.sha256(headed.files[jar]).hexdigest() not in _stored_blobs(tmp_path)

    engine.blocked_versions.clear()
    await _cold_burst(proxy, headed, jar)
    assert _asked(headed) == [jar]
    assert hashlib.sha256(headed.files[jar]).hexdigest() in _stored_blobs(tmp_path)
