"""The npm proxy against a fake registry on loopback: protocol, cache, faults, policy."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from stockade.config.load import load_settings
from stockade.config.model import Settings
from stockade.proxy.app import make_app
from stockade.proxy.decisionlog import verify
from testbed.fakes.npm_upstream import CORGI, FakeNpm, integrity
from testbed.fakes.policy import FakeEngine

NPM_CORGI_ACCEPT = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*"


@pytest.fixture
async def fake_npm() -> AsyncIterator[FakeNpm]:
    registry = FakeNpm()
    await registry.start()
    yield registry
    await registry.stop()


def npm_settings(tmp_path: Path, upstreams: list[dict[str, Any]], **cache: Any) -> Settings:
    return load_settings(None, environ={}, overrides={
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": []}, "maven": {"upstreams": []},
        "npm": {"upstreams": upstreams, "cache": {"metadata_ttl_s": 300, **cache}},
    })


@pytest.fixture
def npm_proxy(aiohttp_client: Any, tmp_path: Path, engine: FakeEngine) -> Any:
    async def factory(upstreams: list[dict[str, Any]], **cache: Any) -> TestClient:
        app = make_app(npm_settings(tmp_path, upstreams, **cache), environ={},
                       engine_factory=lambda _s: engine)
        client: TestClient = await aiohttp_client(app)
        return client

    return factory


def blobs(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "data" / "blobs").rglob("*") if p.is_file()]


async def one(npm_proxy: Any, fake_npm: FakeNpm) -> TestClient:
    client: TestClient = await npm_proxy([{"name": "npmjs", "url": fake_npm.url}])
    return client


class TestPackuments:
    async def test_full_document_rewritten_and_intact(self, fake_npm: FakeNpm,
                                                      npm_proxy: Any) -> None:
        pub = fake_npm.publish("left-pad", "1.3.0", time="2024-05-01T00:00:00.000Z")
        proxy = await one(npm_proxy, fake_npm)
        resp = await proxy.get("/npm/left-pad", headers={"Accept": "application/json"})
        assert resp.status == 200
        doc = await resp.json()
        dist = doc["versions"]["1.3.0"]["dist"]
        origin = str(proxy.make_url("/")).rstrip("/")
        assert dist["tarball"] == f"{origin}/npm/left-pad/-/left-pad-1.3.0.tgz"
        assert dist["attestations"]["url"] == f"{origin}/npm/-/npm/v1/attestations/left-pad@1.3.0"
        assert dist["integrity"] == integrity(pub.data)
        assert dist["signatures"] == [{"keyid": "SHA256:fake", "sig": "MEUCIQ=="}]
        assert doc["time"]["1.3.0"] == "2024-05-01T00:00:00.000Z"
        assert doc["readme"] == "# left-pad"

    async def test_abbreviated_document(self, fake_npm: FakeNpm, npm_proxy: Any) -> None:
        fake_npm.publish("esb", "1.0.0", scripts={"postinstall": "node install.js"})
        proxy = await one(npm_proxy, fake_npm)
        resp = await proxy.get("/npm/esb", headers={"Accept": NPM_CORGI_ACCEPT})
        assert resp.headers["Content-Type"].startswith(CORGI)
        doc = await resp.json(content_type=None)
        assert set(doc) == {"name", "dist-tags", "versions", "modified"}
        version = doc["versions"]["1.0.0"]
        assert version["hasInstallScript"] is True
        assert "scripts" not in version and "readme" not in doc
        # the proxy asks upstream for the full document only: it carries `time`
        assert all(h.get("Accept") == "application/json" for h in fake_npm.headers_seen)

    @pytest.mark.parametrize("path", ["/npm/@acme%2fwidget", "/npm/@acme%2Fwidget",
                                      "/npm/@acme/widget"])
    async def test_scoped_name_forms(self, fake_npm: FakeNpm, npm_proxy: Any, path: str) -> None:
        fake_npm.publish("@acme/widget", "2.0.0")
        proxy = await one(npm_proxy, fake_npm)
        resp = await proxy.get(path)
        assert resp.status == 200
        doc = await resp.json()
        assert doc["versions"]["2.0.0"]["dist"]["tarball"].endswith(
            "/npm/@acme/widget/-/widget-2.0.0.tgz")
        assert doc["versions"]["2.0.0"]["dist"]["attestations"]["url"].endswith(
            "/npm/-/npm/v1/attestations/@acme%2fwidget@2.0.0")

    async def test_gzip_and_etag(self, fake_npm: FakeNpm, npm_proxy: Any) -> None:
        fake_npm.publish("zipped", "1.0.0")
        proxy = await one(npm_proxy, fake_npm)
        resp = await proxy.get("/npm/zipped", headers={"Accept-Encoding": "gzip"},
                               auto_decompress=False)
        assert resp.headers["Content-Encoding"] == "gzip"
        raw = await resp.read()
        assert b'"name":"zipped"' in gzip.decompress(raw)
        etag = resp.headers["ETag"]
        again = await proxy.get("/npm/zipped", headers={"If-None-Match": etag})
        assert again.status == 304

    async def test_cached_render_is_not_fetched_again(self, fake_npm: FakeNpm,
                                                      npm_proxy: Any) -> None:
        fake_npm.publish("once", "1.0.0")
        proxy = await one(npm_proxy, fake_npm)
        for _ in range(3):
            assert (await proxy.get("/npm/once")).status == 200
        assert fake_npm.count("/once") == 1

    async def test_unknown_package_is_404_with_npm_error(self, fake_npm: FakeNpm,
                                                         npm_proxy: Any) -> None:
        proxy = await one(npm_proxy, fake_npm)
        resp = await proxy.get("/npm/nope")
        assert resp.status == 404
        assert "error" in await resp.json()

    @pytest.mark.parametrize("path", ["/npm/..%2f..%2fetc", "/npm/a%20b", "/npm/@/x",
                                      "/npm/left-pad/-/..%2fx.tgz", "/npm/x/-/x.zip"])
    async def test_malformed_names(self, fake_npm: FakeNpm, npm_proxy: Any, path: str) -> None:
        proxy = await one(npm_proxy, fake_npm)
        resp = await proxy.get(path)
        assert resp.status in (400, 404)
        assert fake_npm.requests == []

    async def test_version_document(self, fake_npm: FakeNpm, npm_proxy: Any) -> None:
        fake_npm.publish("tagged", "1.0.0")
        proxy = await one(npm_proxy, fake_npm)
        latest = await (await proxy.get("/npm/tagged/latest")).json()
        assert latest["version"] == "1.0.0"
        assert latest["dist"]["tarball"].endswith("/npm/tagged/-/tagged-1.0.0.tgz")
        assert (await proxy.get("/npm/tagged/9.9.9")).status == 404


class TestTarballs:
    async def test_served_verified_and_cached(self, fake_npm: FakeNpm, npm_proxy: Any,
                                              tmp_path: Path) -> None:
        pub = fake_npm.publish("left-pad", "1.3.0")
        proxy = await one(npm_proxy, fake_npm)
        for path in ("/npm/left-pad/-/left-pad-1.3.0.tgz", "/left-pad/-/left-pad-1.3.0.tgz"):
            resp = await proxy.get(path)
            assert resp.status == 200
            assert await resp.read() == pub.data
        assert fake_npm.count("/left-pad-1.3.0.tgz") == 1
        assert len(blobs(tmp_path)) == 1

    async def test_scoped_tarball_at_root_and_prefix(self, fake_npm: FakeNpm,
                                                     npm_proxy: Any) -> None:
        pub = fake_npm.publish("@acme/widget", "2.0.0")
        proxy = await one(npm_proxy, fake_npm)
        for path in ("/npm/@acme/widget/-/widget-2.0.0.tgz", "/@acme/widget/-/widget-2.0.0.tgz",
                     "/npm/@acme%2fwidget/-/widget-2.0.0.tgz"):
            assert await (await proxy.get(path)).read() == pub.data

    async def test_concurrent_misses_fetch_once(self, fake_npm: FakeNpm, npm_proxy: Any) -> None:
        pub = fake_npm.publish("popular", "1.0.0", payload_bytes=2 * 1024 * 1024)
        proxy = await one(npm_proxy, fake_npm)

        async def fetch() -> bytes:
            return await (await proxy.get("/npm/popular/-/popular-1.0.0.tgz")).read()

        bodies = await asyncio.gather(*(fetch() for _ in range(20)))
        assert all(b == pub.data for b in bodies)
        assert fake_npm.count("/popular-1.0.0.tgz") == 1

    @pytest.mark.parametrize("fault", ["corrupt", "truncate", "reset"])
    async def test_bad_bytes_are_never_stored(self, fake_npm: FakeNpm, npm_proxy: Any,
                                              tmp_path: Path, fault: str) -> None:
        pub = fake_npm.publish("shaky", "1.0.0", payload_bytes=512 * 1024)
        fake_npm.faults["shaky-1.0.0.tgz"] = fault
        proxy = await one(npm_proxy, fake_npm)
        got = b""
        with pytest.raises(aiohttp.ClientPayloadError):
            resp = await proxy.get("/npm/shaky/-/shaky-1.0.0.tgz")
            got = await resp.read()
        assert got != pub.data
        assert blobs(tmp_path) == []
        del fake_npm.faults["shaky-1.0.0.tgz"]
        assert await (await proxy.get("/npm/shaky/-/shaky-1.0.0.tgz")).read() == pub.data

    async def test_missing_integrity_is_refused(self, fake_npm: FakeNpm, npm_proxy: Any) -> None:
        fake_npm.publish("bare", "1.0.0")
        fake_npm.faults["bare-1.0.0.tgz"] = "no-integrity"
        proxy = await one(npm_proxy, fake_npm)
        resp = await proxy.get("/npm/bare/-/bare-1.0.0.tgz")
        assert resp.status == 502
        assert "no integrity" in (await resp.json())["error"]
        assert fake_npm.count("/bare-1.0.0.tgz") == 0

    async def test_foreign_tarball_host_is_refused(self, fake_npm: FakeNpm,
                                                   npm_proxy: Any) -> None:
        fake_npm.publish("evil", "1.0.0")
        fake_npm.publish("evil", "1.0.1")
        fake_npm.foreign_tarballs["evil-1.0.1.tgz"] = "https://attacker.example/evil-1.0.1.tgz"
        proxy = await one(npm_proxy, fake_npm)
        doc = await (await proxy.get("/npm/evil")).json()
        assert list(doc["versions"]) == ["1.0.0"]
        resp = await proxy.get("/npm/evil/-/evil-1.0.1.tgz")
        assert resp.status == 502
        assert "outside upstream" in (await resp.json())["error"]

    async def test_upstream_down_serves_cache(self, fake_npm: FakeNpm, npm_proxy: Any) -> None:
        pub = fake_npm.publish("sturdy", "1.0.0")
        proxy = await npm_proxy([{"name": "npmjs", "url": fake_npm.url}], metadata_ttl_s=0.01)
        assert (await proxy.get("/npm/sturdy")).status == 200
        assert (await proxy.get("/npm/sturdy/-/sturdy-1.0.0.tgz")).status == 200
        await fake_npm.stop()
        await asyncio.sleep(0.05)
        resp = await proxy.get("/npm/sturdy")
        assert resp.status == 200
        assert resp.headers["X-Stockade-Cache"] == "stale"
        assert await (await proxy.get("/npm/sturdy/-/sturdy-1.0.0.tgz")).read() == pub.data
        assert (await proxy.get("/npm/never-seen")).status == 502

    async def test_upstream_500_is_502(self, fake_npm: FakeNpm, npm_proxy: Any) -> None:
        fake_npm.publish("flaky", "1.0.0")
        fake_npm.packument_faults["flaky"] = "500"
        proxy = await one(npm_proxy, fake_npm)
        resp = await proxy.get("/npm/flaky")
        assert resp.status == 502
        assert "500" in (await resp.json())["error"]


class TestRoutingAndPolicy:
    async def test_internal_scope_never_asks_public(self, fake_npm: FakeNpm,
                                                    npm_proxy: Any) -> None:
        internal = FakeNpm()
        await internal.start()
        try:
            fake_npm.publish("@acme/utils", "99.0.0")  # the confusion attempt
            mine = internal.publish("@acme/utils", "1.0.0")
            proxy = await npm_proxy([
                {"name": "internal", "url": internal.url, "namespaces": ["@acme/*"]},
                {"name": "npmjs", "url": fake_npm.url},
            ])
            doc = await (await proxy.get("/npm/@acme%2futils")).json()
            assert list(doc["versions"]) == ["1.0.0"]
            tgz = await (await proxy.get("/npm/@acme/utils/-/utils-1.0.0.tgz")).read()
            assert tgz == mine.data
            assert (await proxy.get("/npm/@acme/utils/-/utils-99.0.0.tgz")).status == 404
            assert fake_npm.requests == []
        finally:
            await internal.stop()

    async def test_blocked_name_shows_reason_and_is_logged(
        self, fake_npm: FakeNpm, npm_proxy: Any, engine: FakeEngine, tmp_path: Path
    ) -> None:
        fake_npm.publish("lodahs", "1.0.0")
        engine.blocked_names.add("lodahs")
        proxy = await one(npm_proxy, fake_npm)
        resp = await proxy.get("/npm/lodahs", headers={"X-Request-Id": "req-42"})
        assert resp.status == 403
        assert resp.reason.startswith("Blocked by stockade:")
        assert (await resp.json())["error"].startswith("Blocked by stockade:")
        assert fake_npm.requests == []
        log = tmp_path / "data" / "decisions.jsonl"
        deadline = asyncio.get_running_loop().time() + 30  # written off the loop: poll
        while not (log.exists() and log.read_text()):
            assert asyncio.get_running_loop().time() < deadline, "no decision record"
            await asyncio.sleep(0.02)
        (record,) = [json.loads(line) for line in log.read_text().splitlines()]
        assert record["name"] == "lodahs"
        assert record["ecosystem"] == "npm"
        assert record["decision"] == "block"
        assert record["request_id"] == "req-42"
        assert verify(log).ok

    async def test_refused_version_hidden_and_latest_repointed(
        self, fake_npm: FakeNpm, npm_proxy: Any, engine: FakeEngine
    ) -> None:
        fake_npm.publish("pkg", "1.0.0", time="2024-01-01T00:00:00.000Z")
        fake_npm.publish("pkg", "1.1.0", time="2024-02-01T00:00:00.000Z")
        engine.blocked_versions.add(("pkg", "1.1.0"))
        proxy = await one(npm_proxy, fake_npm)
        for accept in ("application/json", NPM_CORGI_ACCEPT):
            resp = await proxy.get("/npm/pkg", headers={"Accept": accept})
            doc = await resp.json(content_type=None)
            assert list(doc["versions"]) == ["1.0.0"]
            assert doc["dist-tags"]["latest"] == "1.0.0"
            assert "1 versions hidden" in resp.headers["X-Stockade-Filtered"]
        full = await (await proxy.get("/npm/pkg")).json()
        assert "1.1.0" not in full["time"]
        resp = await proxy.get("/npm/pkg/-/pkg-1.1.0.tgz")
        assert resp.status == 403
        assert "Blocked by stockade" in (await resp.json())["error"]
        assert fake_npm.count("/pkg-1.1.0.tgz") == 0

    async def test_every_version_refused_gives_the_reason(
        self, fake_npm: FakeNpm, npm_proxy: Any, engine: FakeEngine
    ) -> None:
        fake_npm.publish("solo", "1.0.0")
        engine.blocked_versions.add(("solo", "1.0.0"))
        proxy = await one(npm_proxy, fake_npm)
        resp = await proxy.get("/npm/solo")
        assert resp.status == 403
        assert "Blocked by stockade" in (await resp.json())["error"]


class TestSideEndpoints:
    async def test_keys_passed_through_at_prefix_and_root(self, fake_npm: FakeNpm,
                                                          npm_proxy: Any) -> None:
        proxy = await one(npm_proxy, fake_npm)
        for path in ("/npm/-/npm/v1/keys", "/-/npm/v1/keys"):
            doc = await (await proxy.get(path)).json()
            assert doc["keys"][0]["keyid"] == "SHA256:fake"

    async def test_attestations_scoped(self, fake_npm: FakeNpm, npm_proxy: Any) -> None:
        fake_npm.publish("@acme/widget", "2.0.0")
        proxy = await one(npm_proxy, fake_npm)
        for path in ("/npm/-/npm/v1/attestations/@acme%2fwidget@2.0.0",
                     "/-/npm/v1/attestations/@acme%2fwidget@2.0.0"):
            doc = await (await proxy.get(path)).json()
            assert doc["attestations"][0]["bundle"] == {"spec": "@acme/widget@2.0.0"}

    async def test_ping(self, fake_npm: FakeNpm, npm_proxy: Any) -> None:
        proxy = await one(npm_proxy, fake_npm)
        assert await (await proxy.get("/npm/-/ping")).json() == {}

    async def test_bulk_advisories_split_by_owner(self, fake_npm: FakeNpm,
                                                  npm_proxy: Any) -> None:
        internal = FakeNpm()
        await internal.start()
        try:
            advisory = {"id": 1, "url": "https://example.test/1", "title": "bad",
                        "severity": "high", "vulnerable_versions": "<2.0.0"}
            fake_npm.advisories["minimist"] = [advisory]
            proxy = await npm_proxy([
                {"name": "internal", "url": internal.url, "namespaces": ["@acme/*"]},
                {"name": "npmjs", "url": fake_npm.url},
            ])
            body = gzip.compress(b'{"minimist": ["1.2.0"], "@acme/secret": ["1.0.0"]}')
            resp = await proxy.post("/npm/-/npm/v1/security/advisories/bulk", data=body,
                                    headers={"Content-Encoding": "gzip",
                                             "Content-Type": "application/json"})
            assert resp.status == 200
            assert await resp.json() == {"minimist": [advisory]}
            assert fake_npm.audit_bodies == [{"minimist": ["1.2.0"]}]  # internal names stay in
            assert internal.audit_bodies == [{"@acme/secret": ["1.0.0"]}]
        finally:
            await internal.stop()

    async def test_bulk_advisories_upstream_down_is_clear(self, fake_npm: FakeNpm,
                                                          npm_proxy: Any) -> None:
        proxy = await one(npm_proxy, fake_npm)
        await fake_npm.stop()
        resp = await proxy.post("/npm/-/npm/v1/security/advisories/bulk",
                                json={"minimist": ["1.2.0"]})
        assert resp.status == 502
        assert "npmjs" in (await resp.json())["error"]



class TestLargePackuments:
    async def test_large_document_rendered_in_a_worker_process(
        self, fake_npm: FakeNpm, npm_proxy: Any, engine: FakeEngine
    ) -> None:
        # 400 versions with long descriptions: well past the size rendered off-process.
        for i in range(400):
            fake_npm.publish("busy", f"1.0.{i}", time=f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
                             extra={"description": "d" * 2000})
        engine.blocked_versions.add(("busy", "1.0.399"))
        proxy = await one(npm_proxy, fake_npm)
        resp = await proxy.get("/npm/busy", headers={"Accept": NPM_CORGI_ACCEPT})
        assert resp.status == 200
        doc = await resp.json(content_type=None)
        assert len(doc["versions"]) == 399
        assert doc["dist-tags"]["latest"] == "1.0.398"
        full = await (await proxy.get("/npm/busy")).json()
        assert len(full["versions"]) == 399
        assert full["versions"]["1.0.5"]["description"] == "d" * 2000
        tgz = await proxy.get("/npm/busy/-/busy-1.0.5.tgz")
        assert await tgz.read() == fake_npm.packages["busy"]["1.0.5"].data
        assert (await proxy.get("/npm/busy/-/busy-1.0.399.tgz")).status == 403

    async def test_a_large_packument_in_both_encodings(
        self, fake_npm: FakeNpm, npm_proxy: Any
    ) -> None:
        """A packument too large to hold in memory is sent from its file; its gzip form,
        small, from memory: the same document both ways, and the gzip form's entity
        tag answers 304."""
        for i in range(300):
            fake_npm.publish("wide", f"1.0.{i}", extra={"description": "d" * 4000})
        proxy = await one(npm_proxy, fake_npm)
        plain = await proxy.get("/npm/wide", headers={"Accept-Encoding": "identity"})
        assert plain.status == 200 and "Content-Encoding" not in plain.headers
        body = await plain.read()
        assert len(body) > 1024 * 1024  # past what a rendered copy holds in memory
        for _ in range(2):  # rendered, then answered again from what was kept
            zipped = await proxy.get("/npm/wide", headers={"Accept-Encoding": "gzip"},
                                     auto_decompress=False)
            assert zipped.status == 200
            assert zipped.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(await zipped.read()) == body
        etag = zipped.headers["ETag"]
        again = await proxy.get("/npm/wide", headers={"Accept-Encoding": "gzip",
                                                      "If-None-Match": etag})
        assert again.status == 304
