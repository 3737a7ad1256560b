"""The warm serving path: small verified blobs from memory, front-server mode.

A blob served warm is read and hashed once, then held in memory; later requests
send those bytes without reading storage, while a file changed on disk is still
caught. With ``server.accel_redirect`` a stored artifact is answered with an
``X-Accel-Redirect`` to its file and no body, after the same per-request policy
decision as ever.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from stockade.proxy import rendered as rendered_module
from stockade.proxy.ecosystems import npm_documents, pypi_pages
from stockade.proxy.rendered import RenderedCache
from stockade.proxy.state import SERVICES
from stockade.storage import verify
from testbed.counting import count_body_reads, count_calls
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.policy import FakeEngine
from testbed.fakes.pypi_upstream import Dist, FakePyPI
from tests.conftest import ProxyFactory
from tests.integration.outage_support import ProxyFor, blobs


def _count_reads(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every blob the proxy's store is asked to read, from now on."""
    store = client.server.app[SERVICES].store
    read = store.read
    asked: list[str] = []

    def counting(sha256: str, start: int = 0) -> AsyncIterator[bytes]:
        asked.append(sha256)
        return read(sha256, start)

    monkeypatch.setattr(store, "read", counting)
    return asked


def _file_path(dist: Dist) -> str:
    return f"/pypi/files/demo/{dist.filename}"


def _upstream_asked(fake: FakePyPI, dist: Dist) -> int:
    return sum(1 for _, p in fake.requests if p.endswith(dist.filename))


async def _get(client: TestClient, path: str, **kwargs: Any) -> tuple[int, bytes, Any]:
    resp = await client.get(path, **kwargs)
    return resp.status, await resp.read(), resp.headers


class TestMemoryBlobs:
    async def test_a_fetched_blob_is_served_from_memory_without_a_read(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory,
            monkeypatch: pytest.MonkeyPatch) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        client = await make_proxy(upstream=fake_pypi)
        assert (await _get(client, _file_path(dist)))[0] == 200  # cold: fetched
        reads = _count_reads(client, monkeypatch)
        for _ in range(5):
            status, body, headers = await _get(client, _file_path(dist))
            assert (status, body) == (200, dist.data)
            assert headers["X-Stockade-Cache"] == "hit"
        assert reads == []  # held since its fill verified it: never read back
        assert _upstream_asked(fake_pypi, dist) == 1

    async def test_a_held_blob_changed_on_disk_is_fetched_again(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory, tmp_path: Path) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        client = await make_proxy(upstream=fake_pypi)
        for _ in range(3):  # cold, then held
            assert (await _get(client, _file_path(dist)))[1] == dist.data
        [blob] = blobs(tmp_path)
        blob.write_bytes(dist.data[:-1] + b"!")
        status, body, _ = await _get(client, _file_path(dist))
        assert (status, body) == (200, dist.data)
        assert _upstream_asked(fake_pypi, dist) == 2
        [blob] = blobs(tmp_path)
        assert blob.read_bytes() == dist.data

    async def test_a_held_blob_rewritten_with_its_own_bytes_is_hashed_again(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        client = await make_proxy(upstream=fake_pypi)
        for _ in range(2):
            await _get(client, _file_path(dist))
        reads = _count_reads(client, monkeypatch)
        [blob] = blobs(tmp_path)
        blob.write_bytes(dist.data)  # same bytes, but a write: verified again
        for _ in range(3):
            assert (await _get(client, _file_path(dist)))[1] == dist.data
        assert len(reads) == 1
        assert _upstream_asked(fake_pypi, dist) == 1

    async def test_a_blob_dropped_from_memory_is_read_from_its_file_without_a_hash(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> None:
        first, second = fake_pypi.add_wheel("demo", "1.0"), fake_pypi.add_wheel("demo", "2.0")
        room = max(len(first.data), len(second.data))  # one blob held at a time
        client = await make_proxy(upstream=fake_pypi,
                                  server={"memory_blobs": {"max_bytes": room}})
        for dist in (first, second):  # fetched, verified and held; the first dropped
            assert (await _get(client, _file_path(dist)))[1] == dist.data
        reads = _count_reads(client, monkeypatch)
        for _ in range(3):
            status, body, headers = await _get(client, _file_path(first))
            assert (status, body) == (200, first.data)
            assert headers["X-Stockade-Cache"] == "hit"
        # Its file is the one its fill hashed: read from there as it is, not read
        # through the store and hashed into memory again.
        assert reads == []
        [blob] = [p for p in blobs(tmp_path) if p.name == hashlib.sha256(first.data).hexdigest()]
        st = blob.stat()
        # Other bytes of the same size, the old mtime put back (ctime still moves);
        # then the file cut short: neither is served.
        for changed in (first.data[:-1] + bytes([first.data[-1] ^ 1]), first.data[:-1]):
            blob.write_bytes(changed)
            os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
            assert (await _get(client, _file_path(first)))[1] == first.data
        assert _upstream_asked(fake_pypi, first) == 3
        assert blob.read_bytes() == first.data

    async def test_range_head_and_entity_tag_from_memory(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        client = await make_proxy(upstream=fake_pypi)
        for _ in range(2):
            await _get(client, _file_path(dist))
        status, body, headers = await _get(client, _file_path(dist),
                                           headers={"Range": "bytes=-100"})
        size = len(dist.data)
        assert (status, body) == (206, dist.data[-100:])
        assert headers["Content-Range"] == f"bytes {size - 100}-{size - 1}/{size}"
        status, _, headers = await _get(client, _file_path(dist),
                                        headers={"Range": f"bytes={size}-"})
        assert status == 416
        assert headers["Content-Range"] == f"bytes */{size}"
        head = await client.head(_file_path(dist))
        assert head.status == 200
        assert head.headers["Content-Length"] == str(size)
        etag = head.headers["ETag"]
        status, body, _ = await _get(client, _file_path(dist), headers={"If-None-Match": etag})
        assert (status, body) == (304, b"")

    async def test_memory_off_serves_from_the_file_each_time(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory,
            monkeypatch: pytest.MonkeyPatch) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        client = await make_proxy(upstream=fake_pypi,
                                  server={"memory_blobs": {"max_bytes": 0}})
        await _get(client, _file_path(dist))
        reads = _count_reads(client, monkeypatch)
        hashes: list[Path] = []
        real = verify.hash_file

        def counting(path: Path) -> str:
            hashes.append(path)
            return real(path)

        monkeypatch.setattr(verify, "hash_file", counting)
        for _ in range(3):
            assert (await _get(client, _file_path(dist)))[1] == dist.data
        # Nothing held in memory: each answer is the stored file's, which the read
        # verifier hashed once and then trusts while the file is unchanged.
        assert reads == [] and len(hashes) == 1


ACCEL = {"server": {"accel_redirect": {"prefix": "/_blobs/"}}}


class TestAccelRedirect:
    async def test_a_stored_artifact_is_named_to_the_front_server_without_a_body(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory, tmp_path: Path) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        client = await make_proxy(upstream=fake_pypi, **ACCEL)
        # The cold request streams the bytes as they arrive: no file to name yet.
        status, body, headers = await _get(client, _file_path(dist))
        assert (status, body) == (200, dist.data)
        assert "X-Accel-Redirect" not in headers
        [blob] = blobs(tmp_path)
        for _ in range(2):
            status, body, headers = await _get(client, _file_path(dist))
            assert (status, body) == (200, b"")
            where = headers["X-Accel-Redirect"]
            assert where == "/_blobs/" + str(blob.relative_to(tmp_path / "data"))
            assert headers["Content-Type"] == "application/octet-stream"
            assert headers["ETag"] == f'"{blob.name}"'

    async def test_a_policy_change_refuses_an_artifact_already_stored(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory, engine: FakeEngine) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        client = await make_proxy(upstream=fake_pypi, **ACCEL)
        for _ in range(2):
            await _get(client, _file_path(dist))
        engine.blocked_versions.add(("demo", "1.0"))
        engine.revision = "fake-2"
        status, _, headers = await _get(client, _file_path(dist))
        assert status == 403
        assert "X-Accel-Redirect" not in headers
        assert headers["X-Stockade-Rule"] == "age"

    async def test_a_changed_blob_is_not_handed_to_the_front_server(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory, tmp_path: Path) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        client = await make_proxy(upstream=fake_pypi, **ACCEL)
        for _ in range(2):
            await _get(client, _file_path(dist))
        [blob] = blobs(tmp_path)
        blob.write_bytes(dist.data[:-1] + b"!")
        status, body, headers = await _get(client, _file_path(dist))
        # fetched again and streamed; the file on disk is the upstream's again
        assert (status, body) == (200, dist.data)
        assert "X-Accel-Redirect" not in headers
        assert _upstream_asked(fake_pypi, dist) == 2
        [blob] = blobs(tmp_path)
        assert blob.read_bytes() == dist.data


class TestRenderedOnce:
    async def test_a_simple_page_is_rendered_once_across_warm_requests(
            self, fake_pypi: FakePyPI, make_proxy: ProxyFactory,
            monkeypatch: pytest.MonkeyPatch) -> None:
        fake_pypi.add_wheel("demo", "1.0")
        fake_pypi.add_wheel("demo", "1.1")
        renders = count_calls(monkeypatch, pypi_pages, "render_html")
        client = await make_proxy(upstream=fake_pypi)
        bodies = {(await _get(client, "/pypi/simple/demo/"))[1] for _ in range(10)}
        assert len(bodies) == 1 and b"demo-1.1" in bodies.pop()
        assert len(renders) == 1
        assert sum(1 for _, p in fake_pypi.requests if p.endswith("/demo/")) == 1

    async def test_a_small_packument_is_rendered_once_and_served_from_memory(
            self, npm_registry: FakeNpm, proxy_for: ProxyFor, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> None:
        npm_registry.publish("left", "1.0.0")
        renders = count_calls(monkeypatch, npm_documents, "render_body")
        client = await proxy_for(npm=[{"name": "npm", "url": npm_registry.url}])
        status, first, headers = await _get(client, "/npm/left")
        assert status == 200
        # The files behind it gone: a warm request is answered from memory.
        files = list((tmp_path / "data" / "rendered").rglob("*.json*"))
        assert files
        for rendered in files:
            rendered.unlink()
        for _ in range(5):
            assert (await _get(client, "/npm/left"))[:2] == (200, first)
        resp = await client.get("/npm/left", headers={"Accept-Encoding": "gzip"},
                                auto_decompress=False)
        assert resp.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await resp.read()) == first
        status, body, _ = await _get(client, "/npm/left",
                                     headers={"If-None-Match": headers["ETag"]})
        assert (status, body) == (304, b"")
        assert len(renders) == 1

    async def test_a_large_packument_served_warm_reads_no_raw_body(
            self, npm_registry: FakeNpm, proxy_for: ProxyFor,
            monkeypatch: pytest.MonkeyPatch) -> None:
        pub = npm_registry.publish("left", "1.0.0")
        client = await proxy_for(npm=[{"name": "npm", "url": npm_registry.url}])
        metacache = client.server.app[SERVICES].admission.metacache
        # Any document counts as too large for memory (64 MiB / 4 by default).
        monkeypatch.setattr(metacache, "_memory_bytes", 64)
        paths = ("/npm/left", "/npm/left/1.0.0", "/npm/left/-/left-1.0.0.tgz")
        first = {p: (await _get(client, p))[:2] for p in paths}
        assert first["/npm/left/-/left-1.0.0.tgz"] == (200, pub.data)
        corgi = {"Accept": "application/vnd.npm.install-v1+json"}
        abbreviated = await _get(client, "/npm/left", headers=corgi)  # rendered: read once
        refs = metacache._refs
        reads = count_body_reads(refs, monkeypatch)
        for _ in range(3):
            assert {p: (await _get(client, p))[:2] for p in paths} == first
            assert (await _get(client, "/npm/left", headers=corgi))[:2] == abbreviated[:2]
        assert abbreviated[0] == 200 and b'"1.0.0"' in abbreviated[1]
        assert reads == []

    async def test_a_large_rendered_packument_is_named_to_the_front_server(
            self, npm_registry: FakeNpm, proxy_for: ProxyFor, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> None:
        npm_registry.publish("left", "1.0.0")
        monkeypatch.setattr(rendered_module, "_IN_MEMORY_MAX", 0)  # every one is "large"
        client = await proxy_for(npm=[{"name": "npm", "url": npm_registry.url}], **ACCEL)
        status, body, headers = await _get(client, "/npm/left")
        assert (status, body) == (200, b"")
        where = headers["X-Accel-Redirect"]
        assert where.startswith("/_blobs/rendered/") and where.endswith(".json")
        file = tmp_path / "data" / where.removeprefix("/_blobs/")
        assert b'"name":"left"' in file.read_bytes()
        assert file.with_name(file.name + ".gz").exists()  # for nginx's gzip_static
        assert headers["Content-Type"].startswith("application/json")
        status, _, again = await _get(client, "/npm/left",
                                      headers={"If-None-Match": headers["ETag"]})
        assert status == 304
        assert "X-Accel-Redirect" not in again  # nginx would follow it and send a 200


async def test_a_starting_process_keeps_the_rendered_files_of_running_ones(
        tmp_path: Path) -> None:
    """Worker processes share storage.path: one that starts (or restarts) clears its
    own rendered folder and those of processes gone, never a running one's."""
    root = tmp_path / "rendered"
    running, gone = root / str(os.getppid()), root / "999999999"
    for folder in (running, gone):
        folder.mkdir(parents=True)
        (folder / "doc.json").write_bytes(b"{}")
    (root / "old-layout.json").write_bytes(b"{}")
    cache = RenderedCache(root)
    await cache.open()
    try:
        made = await cache.get("k", bytes, b"{}", max_age_s=60, heavy=False)
        assert made.path.parent == root / str(os.getpid())
        assert (running / "doc.json").exists()
        assert not gone.exists() and not (root / "old-layout.json").exists()
    finally:
        await cache.close()
