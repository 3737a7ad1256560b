"""Offline, for the whole server or one upstream: nothing is asked, what is
cached is served, and what is not fails at once saying so."""

from __future__ import annotations

from pathlib import Path

from stockade.storage.refs import RefStore
from testbed.fakes.maven_upstream import FakeMaven
from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.pypi_upstream import FakePyPI
from tests.integration.outage_support import JAR, POM, TINY_S, ProxyFor, central, status


class TestOffline:
    async def test_server_offline_serves_the_cache_and_asks_nobody(
            self, central_repo: FakeMaven, npm_registry: FakeNpm, proxy_for: ProxyFor) -> None:
        npm_registry.publish("left-pad", "1.3.0")
        tarball = "/npm/left-pad/-/left-pad-1.3.0.tgz"
        meta = "/maven/org/example/demo/maven-metadata.xml"
        upstreams = {"maven": central(central_repo),
                     "npm": [{"name": "npmjs", "url": npm_registry.url, "retries": 0}]}
        online = await proxy_for(**upstreams)
        for path in (f"/maven/{JAR}", meta, "/npm/left-pad", tarball):
            assert await status(online, path) == 200, path
        seen = len(central_repo.requests), len(npm_registry.requests)
        # Every TTL has passed: online, all of it would be asked again.
        offline = await proxy_for(**upstreams, server={"offline": True},
                                  cache={"metadata_ttl_s": TINY_S, "negative_ttl_s": TINY_S})
        for path in (f"/maven/{JAR}", f"/maven/{JAR}.sha1", meta, "/npm/left-pad", tarball):
            assert (await offline.get(path)).status == 200, path
        for path in (f"/maven/{POM}", "/maven/org/example/other/maven-metadata.xml",
                     "/npm/right-pad"):
            resp = await offline.get(path)
            assert resp.status == 404, path
            assert "offline" in await resp.text(), path
        assert (len(central_repo.requests), len(npm_registry.requests)) == seen

    async def test_one_upstream_offline(self, fake_pypi: FakePyPI, proxy_for: ProxyFor) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        other = fake_pypi.add_wheel("demo", "2.0")
        pypi = {"name": "pypi", "url": fake_pypi.url, "retries": 0}
        online = await proxy_for(pypi=[pypi])
        assert await status(online, f"/pypi/files/demo/{dist.filename}") == 200
        seen = len(fake_pypi.requests)
        offline = await proxy_for(pypi=[{**pypi, "offline": True}],
                                  cache={"metadata_ttl_s": TINY_S})
        resp = await offline.get(f"/pypi/files/demo/{dist.filename}")
        assert resp.status == 200
        assert await resp.read() == dist.data
        assert (await offline.get("/pypi/simple/demo/")).status == 200
        resp = await offline.get(f"/pypi/files/demo/{other.filename}")
        assert resp.status == 404
        assert "offline" in await resp.text()
        assert (await offline.get("/pypi/simple/never-seen/")).status == 404
        assert len(fake_pypi.requests) == seen


async def test_artifact_stored_by_an_earlier_version_served_offline(
        central_repo: FakeMaven, proxy_for: ProxyFor, tmp_path: Path) -> None:
    upstreams = central(central_repo)
    central_repo.checksum_headers = ()  # earlier versions always asked for the checksum file
    assert await status(await proxy_for(maven=upstreams), f"/maven/{JAR}") == 200
    # As an earlier version left it: no publish date in the artifact's record, and
    # the 404s of .sha512 and .sha256 never remembered.
    data = tmp_path / "data"
    for record in RefStore(data, "artifacts").records():
        record.pop("published_at")
        await RefStore(data, "artifacts").put(record["key"], record)
    metadata = RefStore(data, "metadata")
    for record in list(metadata.records()):
        if "missing" in record:
            await metadata.delete(record["key"])
    offline = await proxy_for(maven=upstreams, server={"offline": True})
    resp = await offline.get(f"/maven/{JAR}")
    assert resp.status == 200
    assert await resp.read() == central_repo.files[JAR]
