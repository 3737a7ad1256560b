"""The Maven proxy against a fake repository on loopback: layout, checksums, faults."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from stockade.config.load import load_settings
from stockade.proxy.app import make_app
from testbed.fakes.maven_upstream import FakeMaven
from testbed.fakes.policy import FakeEngine

JAR = "org/example/demo/1.0/demo-1.0.jar"
POM = "org/example/demo/1.0/demo-1.0.pom"


@pytest.fixture
async def repo() -> AsyncIterator[FakeMaven]:
    fake = FakeMaven()
    fake.add("org.example", "demo", "1.0", payload_bytes=300_000)
    fake.add("org.example", "demo", "2.0")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def maven_proxy(aiohttp_client: Any, tmp_path: Path, engine: FakeEngine) -> Any:
    async def factory(upstreams: list[dict[str, Any]], **maven: Any) -> TestClient:
        settings = load_settings(None, environ={}, overrides={
            "storage": {"path": str(tmp_path / "data")},
            "pypi": {"upstreams": []}, "npm": {"upstreams": []},
            "maven": {"upstreams": upstreams, "cache": {"metadata_ttl_s": 300}, **maven},
        })
        client: TestClient = await aiohttp_client(
            make_app(settings, environ={}, engine_factory=lambda _s: engine))
        return client

    return factory


def blobs(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "data" / "blobs").rglob("*") if p.is_file()]


async def one(maven_proxy: Any, repo: FakeMaven, **maven: Any) -> TestClient:
    client: TestClient = await maven_proxy([{"name": "central", "url": repo.url,
                                             "retries": 0}], **maven)
    return client


class TestArtifacts:
    async def test_served_verified_cached(self, repo: FakeMaven, maven_proxy: Any,
                                          tmp_path: Path) -> None:
        repo.checksum_headers = ()  # the checksum files' path
        proxy = await one(maven_proxy, repo)
        for _ in range(2):
            resp = await proxy.get(f"/maven/{JAR}")
            assert resp.status == 200
            assert await resp.read() == repo.files[JAR]
        assert repo.count("demo-1.0.jar") == 1
        assert repo.count("demo-1.0.jar.sha512") == 1  # the strongest published checksum
        assert await (await proxy.get(f"/maven/{POM}")).read() == repo.files[POM]
        assert len(blobs(tmp_path)) == 2

    @pytest.mark.parametrize("alg", ["md5", "sha1", "sha256", "sha512"])
    async def test_checksums_served_from_verified_bytes(self, repo: FakeMaven,
                                                        maven_proxy: Any, alg: str) -> None:
        proxy = await one(maven_proxy, repo)
        resp = await proxy.get(f"/maven/{JAR}.{alg}")
        assert resp.status == 200
        assert await resp.text() == hashlib.new(alg, repo.files[JAR]).hexdigest()

    async def test_concurrent_misses_fetch_once(self, repo: FakeMaven, maven_proxy: Any) -> None:
        proxy = await one(maven_proxy, repo)

        async def get() -> bytes:
            return await (await proxy.get(f"/maven/{JAR}")).read()

        bodies = await asyncio.gather(*(get() for _ in range(20)))
        assert all(b == repo.files[JAR] for b in bodies)
        assert repo.count("demo-1.0.jar") == 1

    async def test_wrong_checksum_stores_nothing(self, repo: FakeMaven, maven_proxy: Any,
                                                 tmp_path: Path) -> None:
        repo.wrong_checksums.add(JAR)
        proxy = await one(maven_proxy, repo)
        with pytest.raises(aiohttp.ClientPayloadError):
            await (await proxy.get(f"/maven/{JAR}")).read()
        assert blobs(tmp_path) == []

    @pytest.mark.parametrize("fault", ["truncate", "reset"])
    async def test_broken_body_stores_nothing(self, repo: FakeMaven, maven_proxy: Any,
                                              tmp_path: Path, fault: str) -> None:
        repo.faults[JAR] = fault
        proxy = await one(maven_proxy, repo)
        with pytest.raises(aiohttp.ClientPayloadError):
            await (await proxy.get(f"/maven/{JAR}")).read()
        assert blobs(tmp_path) == []

    async def test_missing_checksum_warn_or_block(self, repo: FakeMaven, maven_proxy: Any,
                                                  tmp_path: Path) -> None:
        repo.no_checksums.add(JAR)
        warn = await one(maven_proxy, repo)
        assert await (await warn.get(f"/maven/{JAR}")).read() == repo.files[JAR]

    async def test_missing_checksum_blocked_in_strict_mode(self, repo: FakeMaven,
                                                           maven_proxy: Any) -> None:
        repo.no_checksums.add(JAR)
        strict = await one(maven_proxy, repo, missing_checksum="block")
        resp = await strict.get(f"/maven/{JAR}")
        assert resp.status == 502
        assert "publishes no checksum" in resp.reason

    async def test_not_found_and_bad_paths(self, repo: FakeMaven, maven_proxy: Any) -> None:
        proxy = await one(maven_proxy, repo)
        assert (await proxy.get("/maven/org/example/demo/9.9/demo-9.9.jar")).status == 404
        for bad in ("/maven/org/../etc/passwd", "/maven/a/b", "/maven/org/x/1.0/other-1.0.jar",
                    "/maven/org/x/1.0/%5C..%5Cx-1.0.jar"):
            assert (await proxy.get(bad)).status in (400, 404), bad

    async def test_upstream_down_serves_cache(self, repo: FakeMaven, maven_proxy: Any) -> None:
        proxy = await maven_proxy([{"name": "central", "url": repo.url, "retries": 0}],
                                  cache={"metadata_ttl_s": 0.01})
        meta = "/maven/org/example/demo/maven-metadata.xml"
        assert (await proxy.get(meta)).status == 200
        assert (await proxy.get(f"/maven/{JAR}")).status == 200
        await repo.stop()
        await asyncio.sleep(0.05)
        assert await (await proxy.get(f"/maven/{JAR}")).read() == repo.files[JAR]
        assert (await proxy.get(meta)).status == 200
        assert (await proxy.get(f"/maven/{POM}")).status == 502

    async def test_internal_group_never_asks_public(self, repo: FakeMaven,
                                                    maven_proxy: Any) -> None:
        internal = FakeMaven()
        internal.add("com.acme", "core", "1.0")
        repo.add("com.acme", "core", "9.0")  # the confusion attempt
        await internal.start()
        try:
            proxy = await maven_proxy([
                {"name": "internal", "url": internal.url, "namespaces": ["com.acme.*"]},
                {"name": "central", "url": repo.url},
            ])
            meta = await (await proxy.get("/maven/com/acme/core/maven-metadata.xml")).text()
            assert "<version>1.0</version>" in meta
            assert "9.0" not in meta
            assert (await proxy.get("/maven/com/acme/core/9.0/core-9.0.jar")).status == 404
            assert not [p for _, p in repo.requests if "/com/acme/" in p]
        finally:
            await internal.stop()


class TestMetadata:
    async def test_merged_filtered_and_checksummed(self, repo: FakeMaven, maven_proxy: Any,
                                                   engine: FakeEngine) -> None:
        engine.blocked_versions.add(("org.example:demo", "2.0"))
        proxy = await one(maven_proxy, repo)
        resp = await proxy.get("/maven/org/example/demo/maven-metadata.xml")
        body = await resp.read()
        assert b"<version>1.0</version>" in body
        assert b"2.0" not in body
        assert b"<release>1.0</release>" in body
        assert "1 versions hidden" in resp.headers["X-Stockade-Filtered"]
        sha1 = await (await proxy.get("/maven/org/example/demo/maven-metadata.xml.sha1")).text()
        assert sha1 == hashlib.sha1(body).hexdigest()  # noqa: S324 (Maven's checksum)
        refused = await proxy.get("/maven/org/example/demo/2.0/demo-2.0.jar")
        assert refused.status == 403
        assert refused.reason.startswith("Blocked by stockade:")

    async def test_hostile_xml_is_refused(self, repo: FakeMaven, maven_proxy: Any) -> None:
        repo.files["org/evil/x/maven-metadata.xml"] = (
            b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;">]><metadata><groupId>&b;</groupId></metadata>')
        proxy = await one(maven_proxy, repo)
        resp = await proxy.get("/maven/org/evil/x/maven-metadata.xml")
        assert resp.status == 502
        assert "unusable maven-metadata.xml" in await resp.text()

    async def test_snapshots_refused_or_proxied(self, repo: FakeMaven,
                                                maven_proxy: Any) -> None:
        base = "org/example/snap/1.0-SNAPSHOT"
        name = "snap-1.0-20240101.000000-1.jar"
        repo.files[f"{base}/{name}"] = b"snapshot bytes"
        refuse = await one(maven_proxy, repo)
        resp = await refuse.get(f"/maven/{base}/{name}")
        assert resp.status == 404
        assert "SNAPSHOT" in await resp.text()

    async def test_blocked_name_reason_phrase(self, repo: FakeMaven, maven_proxy: Any,
                                              engine: FakeEngine) -> None:
        engine.blocked_names.add("org.example:demo")
        proxy = await one(maven_proxy, repo)
        resp = await proxy.get(f"/maven/{POM}")
        assert resp.status == 403
        assert "Blocked by stockade" in resp.reason
        assert repo.requests == []


class TestLayout:
    async def test_classifiers_gradle_modules_and_signatures(self, repo: FakeMaven,
                                                            maven_proxy: Any) -> None:
        base = repo.add("org.example", "multi", "3.1", extra={
            "multi-3.1-sources.jar": b"sources", "multi-3.1.module": b'{"formatVersion":"1.1"}',
            "multi-3.1.jar.asc": b"-----BEGIN PGP SIGNATURE-----\n"})
        proxy = await one(maven_proxy, repo)
        for name, ctype in (("multi-3.1-sources.jar", "application/java-archive"),
                            ("multi-3.1.module", "application/json"),
                            ("multi-3.1.jar.asc", "application/pgp-signature")):
            resp = await proxy.get(f"/maven/{base}/{name}")
            assert resp.status == 200, name
            assert resp.headers["Content-Type"] == ctype
            assert await resp.read() == repo.files[f"{base}/{name}"]

    async def test_snapshots_proxied_when_configured(self, repo: FakeMaven,
                                                     maven_proxy: Any) -> None:
        base = "org/example/snap/1.0-SNAPSHOT"
        name = "snap-1.0-20240101.000000-1.jar"
        repo.files[f"{base}/{name}"] = b"snapshot bytes"
        repo.files[f"{base}/maven-metadata.xml"] = (
            b"<metadata><groupId>org.example</groupId><artifactId>snap</artifactId>"
            b"<version>1.0-SNAPSHOT</version><versioning><snapshot><timestamp>20240101.000000"
            b"</timestamp><buildNumber>1</buildNumber></snapshot></versioning></metadata>")
        proxy = await one(maven_proxy, repo, snapshots="proxy")
        resp = await proxy.get(f"/maven/{base}/{name}")
        assert await resp.read() == b"snapshot bytes"
        assert resp.headers["Cache-Control"] == "no-cache"
        meta = await (await proxy.get(f"/maven/{base}/maven-metadata.xml")).text()
        assert "<buildNumber>1</buildNumber>" in meta


async def test_release_age_from_the_published_checksum(aiohttp_client: Any, tmp_path: Path,
                                                       repo: FakeMaven) -> None:
    from datetime import UTC, datetime
    from email.utils import format_datetime

    fresh = "org/example/demo/2.0/demo-2.0.jar"
    repo.last_modified[fresh] = format_datetime(datetime.now(UTC), usegmt=True)
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: {cooldown: {min_age: 3d}}\n")
    settings = load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": []}, "npm": {"upstreams": []},
        "maven": {"upstreams": [{"name": "central", "url": repo.url}]},
        "policy": {"file": str(policy)},
    })
    client = await aiohttp_client(make_app(settings, environ={}))
    old = await client.get(f"/maven/{JAR}")
    assert old.status == 200  # published in 2024
    assert await old.read() == repo.files[JAR]
    refused = await client.get(f"/maven/{fresh}")
    assert refused.status == 403
    assert "held back" in refused.reason
    # decided on the jar's headers: its response was opened, never read nor stored
    assert repo.count("demo-2.0.jar") == 1
    assert hashlib.sha256(repo.files[fresh]).hexdigest() not in {p.name for p in blobs(tmp_path)}
    assert hashlib.sha256(repo.files[JAR]).hexdigest() in {p.name for p in blobs(tmp_path)}


async def test_explain_lists_hidden_maven_versions(repo: FakeMaven, maven_proxy: Any,
                                                   engine: FakeEngine) -> None:
    engine.blocked_versions.add(("org.example:demo", "2.0"))
    proxy = await one(maven_proxy, repo)
    body = await (await proxy.get("/_stockade/explain/maven/org.example:demo")).json()
    assert body["versions"]["total"] == 2
    assert list(body["versions"]["hidden"]) == ["2.0"]


async def test_cached_artifacts_carry_checksum_headers(repo: FakeMaven,
                                                       maven_proxy: Any) -> None:
    proxy = await one(maven_proxy, repo)
    await (await proxy.get(f"/maven/{JAR}")).read()
    resp = await proxy.get(f"/maven/{JAR}")
    assert resp.headers["X-Checksum-Sha1"] == hashlib.sha1(repo.files[JAR]).hexdigest()  # noqa: S324
    assert resp.headers["X-Checksum-Md5"] == hashlib.md5(repo.files[JAR]).hexdigest()  # noqa: S324


@pytest.mark.parametrize("headers", [(), ("sha1", "md5")])
async def test_a_fetched_artifact_carries_the_checksum_it_is_verified_against(
        repo: FakeMaven, maven_proxy: Any, headers: tuple[str, ...]) -> None:
    """Streamed while fetched, the answer carries the sha1 (from the upstream's header
    or its checksum file) the bytes are checked against, so Maven asks no ``.sha1``;
    not an md5 it was never checked with."""
    repo.checksum_headers = headers
    repo.published = ("md5", "sha1")  # as Central long did: sha1 the strongest
    proxy = await one(maven_proxy, repo)
    resp = await proxy.get(f"/maven/{JAR}")
    assert resp.headers["X-Stockade-Cache"] == "miss"
    assert resp.headers["X-Checksum-Sha1"] == hashlib.sha1(repo.files[JAR]).hexdigest()  # noqa: S324
    assert "X-Checksum-Md5" not in resp.headers
    assert await resp.read() == repo.files[JAR]
