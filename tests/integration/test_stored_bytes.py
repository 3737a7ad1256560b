"""Stored bytes are checked again before they are served: a blob changed on disk,
or removed by `stockade cache verify` while the server runs, is fetched again."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockade.storage.filesystem import FilesystemBlobStore
from stockade.storage.verify import verify_all
from testbed.fakes.maven_upstream import FakeMaven
from testbed.fakes.pypi_upstream import FakePyPI
from tests.integration.outage_support import JAR, ProxyFor, asked, blobs, central, status


class TestStoredBytes:
    @pytest.mark.parametrize("verify_max", [0, 1024 * 1024])
    async def test_blob_removed_by_cache_verify_is_fetched_again(
            self, central_repo: FakeMaven, proxy_for: ProxyFor, tmp_path: Path,
            verify_max: int) -> None:
        client = await proxy_for(maven=central(central_repo),
                                 storage={"verify_on_read_max_bytes": verify_max})
        assert await status(client, f"/maven/{JAR}") == 200
        [blob] = blobs(tmp_path)
        blob.write_bytes(b"changed on disk")
        # `stockade cache verify`, another process with its own view of the store
        store = FilesystemBlobStore(tmp_path / "data")
        await store.open()
        assert len((await verify_all(store))[1]) == 1
        resp = await client.get(f"/maven/{JAR}")
        assert resp.status == 200
        assert await resp.read() == central_repo.files[JAR]
        assert asked(central_repo, JAR)["file"] == 2

    async def test_blob_changed_on_disk_is_fetched_again(
            self, fake_pypi: FakePyPI, proxy_for: ProxyFor, tmp_path: Path) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        client = await proxy_for(pypi=[{"name": "pypi", "url": fake_pypi.url, "retries": 0}])
        assert await status(client, f"/pypi/files/demo/{dist.filename}") == 200
        [blob] = blobs(tmp_path)
        blob.write_bytes(dist.data[:-1] + b"!")
        resp = await client.get(f"/pypi/files/demo/{dist.filename}")
        assert resp.status == 200
        assert await resp.read() == dist.data
        assert sum(1 for _, p in fake_pypi.requests if p.endswith(dist.filename)) == 2
        [blob] = blobs(tmp_path)
        assert blob.read_bytes() == dist.data
