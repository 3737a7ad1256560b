"""The PyPI proxy against a fake index on loopback: protocol, cache, faults."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import aiohttp
import pytest

from stockade.proxy.ecosystems.pypi_pages import JSON_V1
from testbed.fakes.policy import FakeEngine
from testbed.fakes.pypi_upstream import FakePyPI
from tests.conftest import ProxyFactory, settings_for

PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)


def blobs(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "data" / "blobs").rglob("*") if p.is_file()]


class TestNegotiation:
    async def test_no_accept_gives_html(self, fake_pypi: FakePyPI,
                                        make_proxy: ProxyFactory) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0", requires_python=">=3.8")
        proxy = await make_proxy(upstream=fake_pypi)
        resp = await proxy.get("/pypi/simple/demo/")
        assert resp.headers["Content-Type"].startswith("text/html")
        assert resp.headers["Vary"] == "Accept"
        text = await resp.text()
        assert f'href="../../files/demo/{dist.filename}#sha256={dist.sha256}"' in text
        assert 'data-requires-python="&gt;=3.8"' in text
        assert "data-core-metadata=\"sha256=" in text

    @pytest.mark.parametrize(
        ("accept", "expected"),
        [
            (PIP_ACCEPT, JSON_V1),
            ("application/vnd.pypi.simple.v1+json, */*;q=0.1", JSON_V1),
            ("application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.v1+html"),
            ("text/html", "text/html"),
            ("*/*", "text/html"),
            ("application/xml", "text/html"),
            ("application/vnd.pypi.simple.latest+json", JSON_V1),
        ],
    )
    async def test_q_values(self, fake_pypi: FakePyPI, make_proxy: ProxyFactory,
                            accept: str, expected: str) -> None:
        fake_pypi.add_wheel("demo", "1.0")
        proxy = await make_proxy(upstream=fake_pypi)
        resp = await proxy.get("/pypi/simple/demo/", headers={"Accept": accept})
        assert resp.status == 200
        assert resp.headers["Content-Type"] == expected

    async def test_html_upstream_served_as_json(self, fake_pypi: FakePyPI,
                                                make_proxy: ProxyFactory) -> None:
        fake_pypi.serve_html_only = True
        dist = fake_pypi.add_wheel("demo", "1.0", yanked="broken build")
        proxy = await make_proxy(upstream=fake_pypi)
        doc = await (await proxy.get("/pypi/simple/demo/", headers={"Accept": PIP_ACCEPT})).json(
            content_type=None)
        (entry,) = doc["files"]
        assert entry["hashes"] == {"sha256": dist.sha256}
        assert entry["yanked"] == "broken build"
        assert doc["meta"]["api-version"] == "1.0"  # sizes unknown from HTML

    async def test_pep700_fields_kept(self, fake_pypi: FakePyPI, make_proxy: ProxyFactory) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        proxy = await make_proxy(upstream=fake_pypi)
        doc = await (await proxy.get("/pypi/simple/demo/", headers={"Accept": JSON_V1})).json(
            content_type=None)
        assert doc["meta"]["api-version"] == "1.1"
        assert doc["versions"] == ["1.0"]
        (entry,) = doc["files"]
        assert entry["size"] == len(dist.data)
        assert entry["upload-time"] == dist.upload_time

    async def test_redirects_to_normalised_name(self, fake_pypi: FakePyPI,
                                                make_proxy: ProxyFactory) -> None:
        fake_pypi.add_wheel("demo-pkg", "1.0")
        proxy = await make_proxy(upstream=fake_pypi)
        resp = await proxy.get("/pypi/simple/Demo_Pkg/", allow_redirects=False)
        assert resp.status == 301
        assert resp.headers["Location"] == "/pypi/simple/demo-pkg/"


class TestArtifacts:
    async def test_second_request_served_from_storage(
        self, fake_pypi: FakePyPI, make_proxy: ProxyFactory
    ) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        proxy = await make_proxy(upstream=fake_pypi)
        for expected_cache in ("miss", "hit"):
            resp = await proxy.get(f"/pypi/files/demo/{dist.filename}")
            assert resp.status == 200
            assert resp.headers["X-Stockade-Cache"] == expected_cache
            assert await resp.read() == dist.data
        assert fake_pypi.count(dist.filename) == 1

    async def test_concurrent_misses_fetch_once(
        self, fake_pypi: FakePyPI, make_proxy: ProxyFactory
    ) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0", payload_bytes=2_000_000)
        fake_pypi.faults[dist.filename] = "slow"
        proxy = await make_proxy(upstream=fake_pypi)
        await proxy.get("/pypi/simple/demo/")  # warm the page so only the file is raced

        async def fetch() -> bytes:
            resp = await proxy.get(f"/pypi/files/demo/{dist.filename}")
            assert resp.status == 200
            return await resp.read()

        bodies = await asyncio.gather(*(fetch() for _ in range(20)))
        assert all(hashlib.sha256(b).hexdigest() == dist.sha256 for b in bodies)
        assert fake_pypi.count(dist.filename) == 1

    @pytest.mark.parametrize("fault", ["corrupt", "truncate", "reset"])
    async def test_bad_body_stores_nothing(
        self, fault: str, fake_pypi: FakePyPI, make_proxy: ProxyFactory, tmp_path: Path
    ) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0", payload_bytes=300_000)
        fake_pypi.faults[dist.filename] = fault
        proxy = await make_proxy(upstream=fake_pypi)
        with pytest.raises(aiohttp.ClientPayloadError):
            resp = await proxy.get(f"/pypi/files/demo/{dist.filename}")
            await resp.read()
        assert blobs(tmp_path) == []
        assert list((tmp_path / "data" / "tmp").iterdir()) == []
        # The next request tries the upstream again (nothing was cached).
        del fake_pypi.faults[dist.filename]
        resp = await proxy.get(f"/pypi/files/demo/{dist.filename}")
        assert await resp.read() == dist.data

    async def test_integrity_failure_counted(
        self, fake_pypi: FakePyPI, make_proxy: ProxyFactory
    ) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        fake_pypi.faults[dist.filename] = "corrupt"
        proxy = await make_proxy(upstream=fake_pypi)
        resp = await proxy.get(f"/pypi/files/demo/{dist.filename}", headers={"Range": "bytes=0-9"})
        assert resp.status == 502
        assert "does not match its published digest" in resp.reason
        metrics = await (await proxy.get("/metrics")).text()
        assert 'stockade_integrity_failures_total{ecosystem="pypi",upstream="pypi"} 1.0' in metrics

    async def test_head_and_range(self, fake_pypi: FakePyPI, make_proxy: ProxyFactory) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0", payload_bytes=100_000)
        proxy = await make_proxy(upstream=fake_pypi)
        head = await proxy.head(f"/pypi/files/demo/{dist.filename}")
        assert head.status == 200
        assert int(head.headers["Content-Length"]) == len(dist.data)
        ranged = await proxy.get(f"/pypi/files/demo/{dist.filename}",
                                 headers={"Range": "bytes=-100"})
        assert ranged.status == 206
        assert await ranged.read() == dist.data[-100:]
        assert fake_pypi.count(dist.filename) == 1

    async def test_core_metadata_file(self, fake_pypi: FakePyPI, make_proxy: ProxyFactory) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0", requires=["other>=1"])
        proxy = await make_proxy(upstream=fake_pypi)
        resp = await proxy.get(f"/pypi/files/demo/{dist.filename}.metadata")
        assert resp.status == 200
        assert await resp.read() == dist.metadata

    async def test_unknown_file_is_404(self, fake_pypi: FakePyPI, make_proxy: ProxyFactory) -> None:
        fake_pypi.add_wheel("demo", "1.0")
        proxy = await make_proxy(upstream=fake_pypi)
        resp = await proxy.get("/pypi/files/demo/demo-9.9-py3-none-any.whl")
        assert resp.status == 404


class TestHostileInput:
    @pytest.mark.parametrize(
        "path",
        [
            "/pypi/files/demo/..%2F..%2Fetc%2Fpasswd",
            "/pypi/files/demo/.hidden",
            "/pypi/files/..%2F..%2F/x.whl",
            "/pypi/simple/bad%20name/",
            "/pypi/simple/-leading/",
            "/pypi/pypi/x%2Fy/json",
        ],
    )
    async def test_rejected(self, path: str, fake_pypi: FakePyPI, make_proxy: ProxyFactory,
                            tmp_path: Path) -> None:
        proxy = await make_proxy(upstream=fake_pypi)
        resp = await proxy.get(path, allow_redirects=False)
        assert resp.status in (400, 404)
        assert fake_pypi.requests == []
        assert not any(p.name == "passwd" for p in tmp_path.rglob("*"))

    async def test_foreign_link_dropped(self, fake_pypi: FakePyPI,
                                        make_proxy: ProxyFactory) -> None:
        good = fake_pypi.add_wheel("demo", "1.0")
        bad = fake_pypi.add_wheel("demo", "2.0")
        fake_pypi.foreign_links[bad.filename] = "https://evil.example/demo-2.0-py3-none-any.whl"
        proxy = await make_proxy(upstream=fake_pypi)
        doc = await (await proxy.get("/pypi/simple/demo/", headers={"Accept": JSON_V1})).json(
            content_type=None)
        assert [f["filename"] for f in doc["files"]] == [good.filename]
        resp = await proxy.get(f"/pypi/files/demo/{bad.filename}")
        assert resp.status == 404


class TestUpstreamFailures:
    async def test_upstream_down_serves_cache(
        self, fake_pypi: FakePyPI, aiohttp_client: object, tmp_path: Path, make_proxy: ProxyFactory
    ) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        settings = settings_for(
            tmp_path, [{"name": "pypi", "url": fake_pypi.url, "retries": 0}],
        )
        settings = settings.model_copy(update={"pypi": settings.pypi.model_copy(update={
            "cache": settings.pypi.cache.model_copy(update={"metadata_ttl_s": 0.001})})})
        proxy = await make_proxy(settings)
        assert (await proxy.get(f"/pypi/files/demo/{dist.filename}")).status == 200
        await fake_pypi.stop()
        page = await proxy.get("/pypi/simple/demo/")
        assert page.status == 200
        assert page.headers["X-Stockade-Cache"] == "stale"
        resp = await proxy.get(f"/pypi/files/demo/{dist.filename}")
        assert resp.status == 200
        assert await resp.read() == dist.data
        missing = await proxy.get("/pypi/simple/never-fetched/")
        assert missing.status == 502
        metrics = await (await proxy.get("/metrics")).text()
        assert 'stockade_cache_requests_total{ecosystem="pypi",result="stale"}' in metrics

    async def test_upstream_500_is_502(self, fake_pypi: FakePyPI, make_proxy: ProxyFactory,
                                       tmp_path: Path) -> None:
        fake_pypi.add_wheel("demo", "1.0")
        fake_pypi.page_faults["demo"] = "500"
        settings = settings_for(tmp_path, [{"name": "pypi", "url": fake_pypi.url, "retries": 2}])
        proxy = await make_proxy(settings)
        resp = await proxy.get("/pypi/simple/demo/")
        assert resp.status == 502
        assert fake_pypi.count("/simple/demo/") == 3  # first try and two retries

    async def test_hanging_upstream_is_504(self, fake_pypi: FakePyPI, make_proxy: ProxyFactory,
                                           tmp_path: Path) -> None:
        fake_pypi.add_wheel("demo", "1.0")
        fake_pypi.page_faults["demo"] = "hang"
        settings = settings_for(
            tmp_path, [{"name": "pypi", "url": fake_pypi.url, "retries": 0, "read_timeout_s": 0.3}]
        )
        proxy = await make_proxy(settings)
        resp = await proxy.get("/pypi/simple/demo/")
        assert resp.status == 504

    async def test_metadata_coalesced(self, fake_pypi: FakePyPI, make_proxy: ProxyFactory) -> None:
        fake_pypi.add_wheel("demo", "1.0")
        proxy = await make_proxy(upstream=fake_pypi)
        results = await asyncio.gather(*(proxy.get("/pypi/simple/demo/") for _ in range(15)))
        assert {r.status for r in results} == {200}
        assert fake_pypi.count("/simple/demo/") == 1


class TestRoutingAndPrivacy:
    async def test_internal_namespace_never_public(
        self, make_proxy: ProxyFactory, tmp_path: Path
    ) -> None:
        public, internal = FakePyPI(), FakePyPI()
        await public.start()
        await internal.start()
        try:
            public.add_wheel("acme-tools", "99.0")
            mine = internal.add_wheel("acme-tools", "1.0")
            settings = settings_for(tmp_path, [
                {"name": "internal", "url": internal.url, "namespaces": ["acme-*"]},
                {"name": "pypi", "url": public.url},
            ])
            proxy = await make_proxy(settings)
            doc = await (await proxy.get("/pypi/simple/acme-tools/",
                                         headers={"Accept": JSON_V1})).json(content_type=None)
            assert [f["filename"] for f in doc["files"]] == [mine.filename]
            assert public.requests == []
            gone = await proxy.get("/pypi/simple/acme-missing/")
            assert gone.status == 404
            assert public.requests == []
        finally:
            await public.stop()
            await internal.stop()

    async def test_credentials_only_to_own_upstream(
        self, fake_pypi: FakePyPI, aiohttp_client: object, tmp_path: Path, engine: FakeEngine
    ) -> None:
        from stockade.proxy.app import make_app

        dist = fake_pypi.add_wheel("demo", "1.0")
        settings = settings_for(tmp_path, [
            {"name": "pypi", "url": fake_pypi.url, "auth": {"token_env": "PYPI_TOKEN"}},
        ])
        app = make_app(settings, environ={"PYPI_TOKEN": "s3cret"}, engine_factory=lambda _s: engine)
        proxy = await aiohttp_client(app)  # type: ignore[operator]
        resp = await proxy.get(f"/pypi/files/demo/{dist.filename}", headers={
            "User-Agent": "pip/24.0 {\"ci\":null,\"user_data\":\"secret project\"}",
            "Cookie": "session=abc", "Authorization": "Basic Y2xpZW50OnB3", "Referer": "x",
        })
        assert resp.status == 200
        for headers in fake_pypi.headers_seen:
            assert headers.get("Authorization") == "Bearer s3cret"
            assert headers["User-Agent"].startswith("stockade/")
            assert "Cookie" not in headers and "Referer" not in headers


class TestPolicy:
    async def test_blocked_project_listed_download_refused(
        self, fake_pypi: FakePyPI, make_proxy: ProxyFactory, engine: FakeEngine
    ) -> None:
        dist = fake_pypi.add_wheel("reqeusts", "1.0")
        engine.blocked_names.add("reqeusts")
        proxy = await make_proxy(upstream=fake_pypi)
        page = await proxy.get("/pypi/simple/reqeusts/")
        assert page.status == 200
        assert page.headers["X-Stockade-Refused"] == "deny-list"
        resp = await proxy.get(f"/pypi/files/reqeusts/{dist.filename}")
        assert resp.status == 403
        assert resp.reason == "Blocked by stockade: reqeusts is on the deny list (rule deny-list)"
        assert fake_pypi.count(dist.filename) == 0

    async def test_refused_version_hidden(
        self, fake_pypi: FakePyPI, make_proxy: ProxyFactory, engine: FakeEngine
    ) -> None:
        old = fake_pypi.add_wheel("demo", "1.0")
        new = fake_pypi.add_wheel("demo", "2.0")
        engine.blocked_versions.add(("demo", "2.0"))
        proxy = await make_proxy(upstream=fake_pypi)
        page = await proxy.get("/pypi/simple/demo/", headers={"Accept": JSON_V1})
        doc = await page.json(content_type=None)
        assert [f["filename"] for f in doc["files"]] == [old.filename]
        assert page.headers["X-Stockade-Filtered"] == "1 versions hidden by rules: age"
        direct = await proxy.get(f"/pypi/files/demo/{new.filename}")
        assert direct.status == 403

    async def test_every_version_refused_stays_listed(
        self, fake_pypi: FakePyPI, make_proxy: ProxyFactory, engine: FakeEngine
    ) -> None:
        only = fake_pypi.add_wheel("demo", "1.0")
        engine.blocked_versions.add(("demo", "1.0"))
        proxy = await make_proxy(upstream=fake_pypi)
        doc = await (await proxy.get("/pypi/simple/demo/", headers={"Accept": JSON_V1})).json(
            content_type=None)
        assert [f["filename"] for f in doc["files"]] == [only.filename]
        resp = await proxy.get(f"/pypi/files/demo/{only.filename}")
        assert resp.status == 403
        assert "younger than 7 days" in resp.reason


class TestJsonApiAndOps:
    async def test_json_api_rewritten(self, fake_pypi: FakePyPI, make_proxy: ProxyFactory) -> None:
        dist = fake_pypi.add_wheel("demo", "1.0")
        proxy = await make_proxy(upstream=fake_pypi)
        for path in ("/pypi/pypi/demo/json", "/pypi/pypi/demo/1.0/json"):
            doc = await (await proxy.get(path)).json()
            (url,) = [u["url"] for u in doc["urls"]]
            assert url.endswith(f"/pypi/files/demo/{dist.filename}")
            assert url.startswith(str(proxy.make_url("/")).rstrip("/"))
            data = await (await proxy.get(url.split("127.0.0.1", 1)[1].split("/", 1)[1].join(
                ["/", ""]))).read()
            assert hashlib.sha256(data).hexdigest() == dist.sha256

    async def test_json_api_filtered_as_the_simple_page(
        self, fake_pypi: FakePyPI, make_proxy: ProxyFactory, engine: FakeEngine
    ) -> None:
        for version in ("1.0", "1.1", "2.0rc1", "2.0"):
            fake_pypi.add_wheel("demo", version)
        engine.blocked_versions.add(("demo", "2.0"))
        proxy = await make_proxy(upstream=fake_pypi)
        resp = await proxy.get("/pypi/pypi/demo/json")
        assert resp.headers["X-Stockade-Filtered"] == "1 versions hidden by rules: age"
        doc = await resp.json()
        assert sorted(doc["releases"]) == ["1.0", "1.1", "2.0rc1"]
        assert doc["info"]["version"] == "1.1"  # the newest final release left
        (url,) = [u["url"] for u in doc["urls"]]
        assert url.endswith("/pypi/files/demo/demo-1.1-py3-none-any.whl")
        refused = await proxy.get("/pypi/pypi/demo/2.0/json")
        assert refused.status == 403
        assert refused.reason.startswith("Blocked by stockade: ")
        assert (await proxy.get("/pypi/pypi/demo/1.0/json")).status == 200

    async def test_a_warm_page_is_not_rendered_again(
        self, fake_pypi: FakePyPI, make_proxy: ProxyFactory, engine: FakeEngine,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        from stockade.proxy.ecosystems import pypi_pages

        rendered: list[int] = []
        real = pypi_pages.render_html

        def counting(page: pypi_pages.ProjectPage) -> bytes:
            rendered.append(len(page.files))
            return real(page)

        monkeypatch.setattr(pypi_pages, "render_html", counting)
        for version in ("1.0", "2.0"):
            fake_pypi.add_wheel("demo", version)
        engine.blocked_versions.add(("demo", "2.0"))
        proxy = await make_proxy(upstream=fake_pypi)
        bodies = {await (await proxy.get("/pypi/simple/demo/")).text() for _ in range(5)}
        assert len(bodies) == 1 and "demo-2.0" not in bodies.pop()
        assert rendered == [1]  # rendered once, with the refused version left out

    async def test_unreadable_root_index_is_the_upstreams_fault(
        self, fake_pypi: FakePyPI, make_proxy: ProxyFactory
    ) -> None:
        fake_pypi.index_body = "<html><![:CDATA[<a href='x/'>x</a>"  # found by fuzzing
        proxy = await make_proxy(upstream=fake_pypi)
        resp = await proxy.get("/pypi/simple/")
        assert resp.status == 502
        assert "unreadable index" in await resp.text()

    async def test_ops_endpoints(self, fake_pypi: FakePyPI, make_proxy: ProxyFactory) -> None:
        proxy = await make_proxy(upstream=fake_pypi)
        assert (await proxy.get("/healthz")).status == 200
        ready = await proxy.get("/readyz")
        assert ready.status == 200
        assert (await ready.json())["storage_writable"] is True
        text = await (await proxy.get("/metrics")).text()
        for name in ("stockade_requests_total", "stockade_request_duration_seconds",
                     "stockade_storage_bytes"):
            assert name in text
