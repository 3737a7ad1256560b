"""A packument (and a simple page) going stale under concurrent requests: one
revalidation upstream, the rendered copies kept when the upstream answers 304, a
changed document parsed and rendered once, and every request answered (by the last
answer while the changed document's is made); a large body handed to the worker
process by its file."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from stockade.proxy.ecosystems import npm, npm_documents, pypi, pypi_pages
from stockade.proxy.state import SERVICES
from testbed.counting import count_body_reads, count_calls
from testbed.fakes.npm_upstream import CORGI, FakeNpm
from testbed.fakes.pypi_upstream import FakePyPI
from tests.conftest import ProxyFactory
from tests.integration.outage_support import ProxyFor

_CONCURRENT = 24
_DEADLINE_S = 10.0


class Clock:
    """The clock of the metadata cache, decisions and rendered copies, moved by the test."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _packument_asks(registry: FakeNpm) -> int:
    return sum(1 for _, path in registry.requests if path == "/left")


async def _proxy(registry: FakeNpm, proxy_for: ProxyFor, monkeypatch: pytest.MonkeyPatch,
                 large: bool) -> tuple[TestClient, Clock]:
    client = await proxy_for(npm=[{"name": "npm", "url": registry.url}])
    services = client.server.app[SERVICES]
    metacache = services.admission.metacache
    clock = Clock()
    for timed in (metacache, services.admission, services.rendered):
        monkeypatch.setattr(timed, "_clock", clock)
    if large:  # any document counts as too large for memory: kept on disk only
        monkeypatch.setattr(metacache, "_memory_bytes", 64)
    return client, clock


async def _all(client: TestClient, accept: str) -> set[bytes]:
    async def one() -> bytes:
        resp = await client.get("/npm/left", headers={"Accept": accept})
        assert resp.status == 200
        return await resp.read()

    return set(await asyncio.gather(*(one() for _ in range(_CONCURRENT))))


@pytest.mark.parametrize("large", [False, True], ids=["in memory", "on disk"])
async def test_a_304_keeps_the_parsed_and_rendered_packument(
        npm_registry: FakeNpm, proxy_for: ProxyFor, monkeypatch: pytest.MonkeyPatch,
        large: bool) -> None:
    npm_registry.publish("left", "1.0.0")
    npm_registry.publish("left", "1.1.0", time="2024-02-01T00:00:00.000Z")
    parses = count_calls(monkeypatch, npm_documents, "index")
    renders = count_calls(monkeypatch, npm_documents, "render_body")
    client, clock = await _proxy(npm_registry, proxy_for, monkeypatch, large)
    forms = {}
    for accept in ("application/json", CORGI):
        forms[accept] = await (await client.get("/npm/left", headers={"Accept": accept})).read()
    assert (len(parses), len(renders), _packument_asks(npm_registry)) == (1, 2, 1)
    clock.now += 301  # past metadata_ttl_s: stale
    for accept, body in forms.items():
        assert await _all(client, accept) == {body}
    # one revalidation (answered 304), and nothing parsed or rendered again
    assert _packument_asks(npm_registry) == 2
    assert (len(parses), len(renders)) == (1, 2)


@pytest.mark.parametrize("large", [False, True], ids=["in memory", "on disk"])
async def test_a_changed_packument_is_parsed_and_rendered_once(
        npm_registry: FakeNpm, proxy_for: ProxyFor, monkeypatch: pytest.MonkeyPatch,
        large: bool) -> None:
    npm_registry.publish("left", "1.0.0")
    parses = count_calls(monkeypatch, npm_documents, "index")
    renders = count_calls(monkeypatch, npm_documents, "render_body")
    client, clock = await _proxy(npm_registry, proxy_for, monkeypatch, large)
    before = await (await client.get("/npm/left")).read()
    npm_registry.publish("left", "1.1.0", time="2024-02-01T00:00:00.000Z")
    clock.now += 301
    bodies = await _all(client, "application/json")
    # the held copy answers while the one revalidation runs, then the new one
    assert bodies - {before}
    assert all(b"1.1.0" in body for body in bodies - {before})
    after = await (await client.get("/npm/left")).read()
    assert b"1.1.0" in after
    assert _packument_asks(npm_registry) == 2
    assert (len(parses), len(renders)) == (2, 2)


async def test_a_cold_packument_asked_at_once_is_read_parsed_and_rendered_once(
        npm_registry: FakeNpm, proxy_for: ProxyFor, monkeypatch: pytest.MonkeyPatch) -> None:
    npm_registry.publish("left", "1.0.0")
    parses = count_calls(monkeypatch, npm_documents, "index")
    renders = count_calls(monkeypatch, npm_documents, "render_body")
    # as a 20 MB one is: its body not held past the fetch, read back where needed
    monkeypatch.setattr(npm, "LARGE_BYTES", 1)
    client, _ = await _proxy(npm_registry, proxy_for, monkeypatch, large=True)
    admission = client.server.app[SERVICES].admission

    async def not_on_disk(_doc: Any) -> None:
        return None  # as on storage whose files no worker process can open

    monkeypatch.setattr(admission, "stored_body", not_on_disk)
    refs = admission.metacache._refs
    reads = count_body_reads(refs, monkeypatch)
    gate = client.server.app[SERVICES].admission.gate
    decided: list[int] = []
    filter_versions = gate.filter_versions

    def deciding(*args: Any, **kwargs: Any) -> Any:
        decided.append(1)
        return filter_versions(*args, **kwargs)

    monkeypatch.setattr(gate, "filter_versions", deciding)
    assert len(await _all(client, "application/json")) == 1
    assert _packument_asks(npm_registry) == 1
    assert (len(parses), len(renders), len(decided)) == (1, 1, 1)
    # read back once to parse it, once to render it
    assert len(reads) == 2


async def test_while_a_changed_packument_is_rendered_the_last_answer_stands_in(
        npm_registry: FakeNpm, proxy_for: ProxyFor, monkeypatch: pytest.MonkeyPatch) -> None:
    npm_registry.publish("left", "1.0.0")
    renders, release = _second_held(monkeypatch, npm_documents, "render_body")
    client, clock = await _proxy(npm_registry, proxy_for, monkeypatch, large=True)
    before = await (await client.get("/npm/left")).read()
    npm_registry.publish("left", "1.1.0", time="2024-02-01T00:00:00.000Z")
    clock.now += 301
    await _stood_in(client, "/npm/left", renders, release, before, b"1.1.0")
    assert (_packument_asks(npm_registry), len(renders)) == (2, 2)


@pytest.mark.parametrize("replaced", [False, True], ids=["stored", "replaced since"])
async def test_a_large_body_is_handed_to_the_worker_process_by_its_file(
        npm_registry: FakeNpm, proxy_for: ProxyFor, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, replaced: bool) -> None:
    npm_registry.publish("left", "1.0.0")
    npm_registry.publish("left", "1.1.0", time="2024-02-01T00:00:00.000Z")
    monkeypatch.setattr(npm, "LARGE_BYTES", 1)  # parsed and rendered as a 20 MB one is
    client, _ = await _proxy(npm_registry, proxy_for, monkeypatch, large=True)
    services = client.server.app[SERVICES]
    if replaced:  # the file holds another version's body by the time it is read
        other = tmp_path / "other.body"
        other.write_bytes(b'{"name": "left", "versions": {}}')

        async def elsewhere(_doc: Any) -> Path:
            return other

        monkeypatch.setattr(services.admission, "stored_body", elsewhere)
    refs = services.admission.metacache._refs
    reads = count_body_reads(refs, monkeypatch)
    given: list[str] = []  # what the worker processes were given to do
    compute = services.rendered.compute

    async def recorded(heavy: bool, fn: Any, *args: Any, **kwargs: Any) -> Any:
        given.append(args[3].__name__ if fn.__name__ == "_render_to_file" else fn.__name__)
        return await compute(heavy, fn, *args, **kwargs)

    monkeypatch.setattr(services.rendered, "compute", recorded)
    for accept in ("application/json", CORGI):
        resp = await client.get("/npm/left", headers={"Accept": accept})
        assert resp.status == 200
        assert set((await resp.json(content_type=None))["versions"]) == {"1.0.0", "1.1.0"}
    if replaced:  # found out in the worker process, and read here instead
        assert given.count("index") == 1 and given.count("render_body") == 2
        assert len(reads) == 3
    else:
        assert given.count("index_parts_of_file") == 1 and given.count("render_file") == 2
        assert reads == []  # never read into the serving process


async def test_a_304_keeps_the_parsed_and_rendered_simple_page(
        fake_pypi: FakePyPI, make_proxy: ProxyFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pypi.add_wheel("demo", "1.0")
    parses = count_calls(monkeypatch, pypi_pages, "parse_project")
    renders = count_calls(monkeypatch, pypi_pages, "render_html")
    client, clock = await _pypi_proxy(fake_pypi, make_proxy, monkeypatch)
    first = await (await client.get("/pypi/simple/demo/")).read()
    clock.now += 301
    assert await (await client.get("/pypi/simple/demo/")).read() == first
    assert sum(1 for _, p in fake_pypi.requests if p.endswith("/demo/")) == 2
    assert (len(parses), len(renders)) == (1, 1)


async def test_while_a_changed_simple_page_is_made_the_last_page_stands_in(
        fake_pypi: FakePyPI, make_proxy: ProxyFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pypi.add_wheel("demo", "1.0")
    parses, release = _second_held(monkeypatch, pypi_pages, "parse_project")
    monkeypatch.setattr(pypi, "_OFFLOAD_BYTES", 0)  # parsed in a thread, as a large page is
    client, clock = await _pypi_proxy(fake_pypi, make_proxy, monkeypatch)
    before = await (await client.get("/pypi/simple/demo/")).read()
    fake_pypi.add_wheel("demo", "1.1")
    clock.now += 301
    await _stood_in(client, "/pypi/simple/demo/", parses, release, before, b"demo-1.1")
    assert len(parses) == 2
    assert sum(1 for _, p in fake_pypi.requests if p.endswith("/demo/")) == 2


async def _pypi_proxy(fake_pypi: FakePyPI, make_proxy: ProxyFactory,
                      monkeypatch: pytest.MonkeyPatch) -> tuple[TestClient, Clock]:
    client = await make_proxy(upstream=fake_pypi)
    services = client.server.app[SERVICES]
    clock = Clock()
    for timed in (services.admission.metacache, services.admission):
        monkeypatch.setattr(timed, "_clock", clock)
    return client, clock


def _second_held(monkeypatch: pytest.MonkeyPatch, module: Any,
                 name: str) -> tuple[list[int], threading.Event]:
    """``module.name``'s calls, counted; from the second on (the changed document's),
    each held (in its thread or process) until the event is set."""
    calls: list[int] = []
    release = threading.Event()
    real = getattr(module, name)

    def held(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            release.wait(_DEADLINE_S)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, held)
    return calls, release


async def _stood_in(client: TestClient, path: str, made: list[int], release: threading.Event,
                    before: bytes, new: bytes) -> None:
    """With the changed document's answer held in the making (its second entry in
    ``made``) until ``release``: the request that fetched it waits, every other is
    answered with ``before``, marked stale; once released, ``new`` answers, a hit."""
    try:
        leader = asyncio.ensure_future(client.get(path))  # fetches it: waits
        deadline = asyncio.get_running_loop().time() + _DEADLINE_S
        while len(made) < 2:
            assert asyncio.get_running_loop().time() < deadline, "never made"
            await asyncio.sleep(0.005)

        async def meanwhile() -> tuple[bytes, str]:
            resp = await client.get(path)
            assert resp.status == 200
            return await resp.read(), resp.headers["X-Stockade-Cache"]

        others = await asyncio.wait_for(
            asyncio.gather(*(meanwhile() for _ in range(_CONCURRENT))), _DEADLINE_S)
        assert set(others) == {(before, "stale")}
        assert not leader.done()
    finally:
        release.set()
    assert new in await (await leader).read()
    after = await client.get(path)
    assert (new in await after.read(), after.headers["X-Stockade-Cache"]) == (True, "hit")
